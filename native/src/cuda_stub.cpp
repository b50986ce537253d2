// The CUDA backend of a build without a CUDA toolkit: device queries answer "no CUDA", kernels refuse politely.
#include "backends.h"
#include "decode_kernels.h"
#include "status.h"

namespace sloth::cuda {

namespace {
sloth_status no_cuda(const char* fn) {
    return fail(SLOTH_ERROR_NO_CUDA,
                "%s: this libslothsharp was built without CUDA (no CUDA toolkit at build time); "
                "rebuild on a machine with nvcc (./build.sh native) to use GPU tensors",
                fn);
}
sloth_status no_streams(const char* fn) {
    return fail(SLOTH_ERROR_UNSUPPORTED,
                "%s: CUDA streams and events are unsupported: this libslothsharp was built without CUDA (no CUDA "
                "toolkit at build time); rebuild on a machine with nvcc (./build.sh native)",
                fn);
}
}  // namespace

bool built() { return false; }
sloth_status available(int32_t* out) { *out = 0; return SLOTH_OK; }
sloth_status device_count(int32_t* out) { *out = 0; return SLOTH_OK; }
sloth_status device_name(const char* fn, int32_t, char*, int32_t) { return no_cuda(fn); }
sloth_status compute_capability(const char* fn, int32_t, int32_t*, int32_t*) { return no_cuda(fn); }
sloth_status mem_info(const char* fn, int32_t, int64_t*, int64_t*) { return no_cuda(fn); }
sloth_status synchronize(const char* fn, int32_t) { return no_cuda(fn); }
sloth_status profiler(const char* fn, int32_t, bool) { return no_cuda(fn); }
sloth_status kernel_arch(const char* fn, int32_t, int32_t*) { return no_cuda(fn); }
sloth_status run_on_device(const char* fn, int32_t, sloth_status (*)(void*), void*) { return no_cuda(fn); }
sloth_status nf4_dequantize(const char* fn, const Nf4DequantArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status nf4_quantize(const char* fn, const Nf4QuantArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status nf4_gemv(const char* fn, const Nf4GemvArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status ggml_quantize(const char* fn, const GgmlQuantArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status cross_entropy_chunk(const char* fn, const CrossEntropyArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status rms_norm_forward(const char* fn, const RmsNormArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status rms_norm_backward(const char* fn, const RmsNormArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status rope(const char* fn, const RopeArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status swiglu_forward(const char* fn, const SwigluArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status swiglu_backward(const char* fn, const SwigluArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status softcap_softmax_forward(const char* fn, const SoftcapSoftmaxArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status softcap_softmax_backward(const char* fn, const SoftcapSoftmaxArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status softcap_flash_forward(const char* fn, const SoftcapFlashArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status softcap_flash_backward(const char* fn, const SoftcapFlashArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status softcap_flash_supported(const char* fn, sloth_dtype, int64_t, int32_t, int32_t*) { return no_cuda(fn); }
sloth_status stream_create(const char* fn, int32_t, void**) { return no_streams(fn); }
sloth_status stream_destroy(const char* fn, int32_t, void*) { return no_streams(fn); }
sloth_status event_create(const char* fn, int32_t, void**) { return no_streams(fn); }
sloth_status event_destroy(const char* fn, int32_t, void*) { return no_streams(fn); }
sloth_status event_record(const char* fn, int32_t, void*, void*) { return no_streams(fn); }
sloth_status stream_wait_event(const char* fn, int32_t, void*, void*) { return no_streams(fn); }
sloth_status gemm(const char* fn, const GemmArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status decode_embed(const char* fn, const EmbedArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status dense_gemv(const char* fn, const DenseGemvArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status nf4_gemv_group(const char* fn, const Nf4GemvGroupArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status decode_qk_prep(const char* fn, const QkPrepArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status decode_attention(const char* fn, const DecodeAttentionArgs&, int32_t, void*) { return no_cuda(fn); }
bool decode_attention_clustered(const DecodeAttentionArgs&) { return false; }
sloth_status decode_attention_prep_fused(const char* fn, const QkPrepArgs&, const DecodeAttentionArgs&, int32_t, void*) {
    return no_cuda(fn);
}
sloth_status decode_residual_norm(const char* fn, const ResidualNormArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status decode_gated_act(const char* fn, const GatedActArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status decode_bias_add(const char* fn, const BiasAddArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status decode_logits_finish(const char* fn, const LogitsFinishArgs&, int32_t, void*) { return no_cuda(fn); }
sloth_status decode_increment(const char* fn, int64_t*, int32_t, void*) { return no_cuda(fn); }
sloth_status decoder_stream_create(const char* fn, int32_t, void**) { return no_cuda(fn); }
sloth_status decoder_stream_destroy(const char* fn, int32_t, void*) { return no_cuda(fn); }
sloth_status graph_capture_begin(const char* fn, int32_t, void*) { return no_cuda(fn); }
sloth_status graph_capture_end(const char* fn, int32_t, void*, bool, void**) { return no_cuda(fn); }
sloth_status graph_launch(const char* fn, int32_t, void*, void*) { return no_cuda(fn); }
void graph_destroy(int32_t, void*) {}
sloth_status decode_persistent_prepare(const char* fn, const PersistentStepArgs&, int32_t, void*, int32_t*) { return no_cuda(fn); }
sloth_status decode_persistent_step(const char* fn, const PersistentStepArgs&, int32_t, int32_t, void*) { return no_cuda(fn); }
sloth_status synchronize_stream(const char* fn, int32_t, void*) { return no_cuda(fn); }
sloth_status zero_on_stream(const char* fn, int32_t, void*, int64_t, void*) { return no_cuda(fn); }
bool set_programmatic_launch(bool) { return false; }
bool set_nf4_gemv_tiles(bool) { return false; }
bool nf4_gemv_tiles_on() { return false; }
bool nf4_wide_group_takes(const Nf4GemvGroupArgs&) { return false; }
int64_t nf4_wide_group_launches(const Nf4GemvGroupArgs&) { return 0; }
sloth_status nf4_gemm_wide_group(const char* fn, const Nf4GemvGroupArgs&, float*, int32_t, void*) { return no_cuda(fn); }
sloth_status programmatic_launch_supported(const char* fn, int32_t, bool*) { return no_cuda(fn); }
std::string gemm_tuning_report() { return ""; }
void gemm_forget_tuning() {}

}  // namespace sloth::cuda
