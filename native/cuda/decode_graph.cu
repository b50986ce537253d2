// The decoding engine's stream and CUDA graphs (decoder.cpp drives them). The stream is created with default flags:
// a blocking stream, implicitly ordered with the legacy default stream on which TorchSharp writes the step's inputs
// and reads its logits, so no event is needed. Capture uses cudaStreamCaptureModeThreadLocal: other threads (another
// model, TorchSharp work elsewhere) may keep calling CUDA while one step is being captured.
#include "../src/decode_kernels.h"
#include "cuda_common.cuh"

namespace sloth::cuda {

sloth_status decoder_stream_create(const char* fn, int32_t device, void** stream) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    cudaStream_t s = nullptr;
    SLOTH_CUDA_CHECK(fn, cudaStreamCreateWithFlags(&s, cudaStreamDefault));
    *stream = s;
    return SLOTH_OK;
}

sloth_status decoder_stream_destroy(const char* fn, int32_t device, void* stream) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    const auto s = static_cast<cudaStream_t>(stream);
    const cudaError_t sync = cudaStreamSynchronize(s);  // graphs and buffers may go once the last step is done
    SLOTH_CUDA_CHECK(fn, cudaStreamDestroy(s));
    SLOTH_CUDA_CHECK(fn, sync);
    return SLOTH_OK;
}

sloth_status graph_capture_begin(const char* fn, int32_t device, void* stream) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    SLOTH_CUDA_CHECK(fn, cudaStreamBeginCapture(static_cast<cudaStream_t>(stream), cudaStreamCaptureModeThreadLocal));
    return SLOTH_OK;
}

sloth_status graph_capture_end(const char* fn, int32_t device, void* stream, bool ok, void** exec) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(static_cast<cudaStream_t>(stream), &graph);
    if (!ok || end != cudaSuccess) {  // discard: the step failed while capturing, or the capture was invalidated
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();
        SLOTH_CUDA_CHECK(fn, end);
        return SLOTH_OK;
    }
    cudaGraphExec_t e = nullptr;
    const cudaError_t inst = cudaGraphInstantiate(&e, graph, 0);
    cudaGraphDestroy(graph);
    SLOTH_CUDA_CHECK(fn, inst);
    *exec = e;
    return SLOTH_OK;
}

sloth_status graph_launch(const char* fn, int32_t device, void* exec, void* stream) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    SLOTH_CUDA_CHECK(fn, cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), static_cast<cudaStream_t>(stream)));
    return SLOTH_OK;
}

sloth_status synchronize_stream(const char* fn, int32_t device, void* stream) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    SLOTH_CUDA_CHECK(fn, cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
    return SLOTH_OK;
}

sloth_status zero_on_stream(const char* fn, int32_t device, void* p, int64_t bytes, void* stream) {
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    SLOTH_CUDA_CHECK(fn, cudaMemsetAsync(p, 0, static_cast<size_t>(bytes), static_cast<cudaStream_t>(stream)));
    return SLOTH_OK;
}

namespace {
thread_local bool programmatic_launch = false;
thread_local bool nf4_tiles = true;
}  // namespace

bool programmatic_launch_on() { return programmatic_launch; }

bool set_nf4_gemv_tiles(bool on) {
    const bool previous = nf4_tiles;
    nf4_tiles = on;
    return previous;
}

bool nf4_gemv_tiles_on() { return nf4_tiles; }

bool set_programmatic_launch(bool on) {
    const bool previous = programmatic_launch;
    programmatic_launch = on;
    return previous;
}

void graph_destroy(int32_t device, void* exec) {
    DeviceGuard guard;
    if (guard.enter("sloth_decoder_destroy", device) == SLOTH_OK) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec));
}

}  // namespace sloth::cuda
