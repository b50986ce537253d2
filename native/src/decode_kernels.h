// The kernels of the decoding engine (decoder.cpp), after validation: one argument struct per kernel, a CPU twin
// (cpu/decode_*_cpu.cpp) and a CUDA version (cuda/decode_*.cu) of each. Per-step values (the cache length L, the
// positions, the token ids) are read from memory by the kernels, never passed by value, so a captured CUDA graph
// replays correctly at every step.
#pragma once
#include "backends.h"

#include <cstdint>

namespace sloth {

// The attention's split over the keys (flash-decoding): at most kDecodeMaxSplits splits of a cache, each of at least
// kDecodeMinChunk keys, so one sequence fills a GPU while the combine stays cheap. A small batch (at most
// kDecodeSmallBatch rows) has too few (row, kv head) pairs to fill the GPU, and each warp walks its keys one after the
// other (a load latency each): it gets finer splits (measured on the H100: 20 us per layer at chunk 64, batch 1).
constexpr int64_t kDecodeMaxSplits = 32;
constexpr int64_t kDecodeMinChunk = 64;
constexpr int64_t kDecodeSmallBatch = 4;
constexpr int64_t kDecodeSmallMaxSplits = 128;
constexpr int64_t kDecodeSmallMinChunk = 16;
constexpr int64_t kDecodeMaxHeadDim = 256;
constexpr int64_t kDecodeMaxGroup = 16;  // query heads per KV head

inline int64_t decode_chunk(int64_t batch, int64_t max_length) {
    const bool small = batch <= kDecodeSmallBatch;
    const int64_t splits = small ? kDecodeSmallMaxSplits : kDecodeMaxSplits, least = small ? kDecodeSmallMinChunk : kDecodeMinChunk;
    const int64_t c = (max_length + splits - 1) / splits;
    return c < least ? least : c;
}
inline int64_t decode_splits(int64_t batch, int64_t max_length) {
    const int64_t c = decode_chunk(batch, max_length);
    return (max_length + c - 1) / c;
}
// Each split is walked by this many warps of one block, each keeping its own partial result (no shared-memory
// merge inside the block: the combine kernel merges them all).
constexpr int64_t kDecodeWarpsPerSplit = 4;
// float32 values of the attention's partial results: per (row, head, split, warp) a max, a sum and head_dim
// accumulators.
// Enough for every batch up to `batch` (a small batch splits finer).
inline int64_t decode_partial_floats(int64_t batch, int64_t heads, int64_t head_dim, int64_t max_length) {
    const int64_t small = batch < kDecodeSmallBatch ? batch : kDecodeSmallBatch;
    const int64_t a = small * decode_splits(small, max_length), b = batch * decode_splits(batch, max_length);
    return (a > b ? a : b) * heads * kDecodeWarpsPerSplit * (head_dim + 2);
}

struct EmbedArgs {
    const int64_t* ids;  // [batch], clamped to [0, vocab)
    const void* table;   // [vocab, hidden]
    sloth_dtype dtype;
    int64_t batch, hidden, vocab;
    float scale;  // 1: copy; else out = to_dtype(row * scale)
    void* out;    // [batch, hidden]
};

struct DenseGemvArgs {
    const void* x;  // [batch, k]
    const void* w;  // [m, k]
    sloth_dtype dtype;
    int64_t batch, k, m;
    float scale;      // 1: none
    bool accumulate;  // y = to_dtype(y + v)
    bool out_f32;     // y float32
    float softcap;    // out_f32 only; 0: none
    void* y;          // [batch, m]
};

struct QkPrepArgs {
    sloth_dtype dtype;
    int64_t batch, heads, kv_heads, head_dim, rotary_dim, max_length;
    const void* q;  // projection rows: q + b * q_stride, heads * head_dim values
    int64_t q_stride;
    const void* k;
    int64_t k_stride;
    const void* v;
    int64_t v_stride;
    const void* q_bias;  // [heads * head_dim] or NULL; k_bias, v_bias [kv_heads * head_dim]
    const void* k_bias;
    const void* v_bias;
    const void* q_norm;  // [head_dim] or NULL (then k_norm NULL too)
    const void* k_norm;
    float eps;
    bool unit_offset;
    const void* cos;  // [max_length, rotary_dim]
    const void* sin;
    const int64_t* positions;  // [batch]
    const int64_t* length;     // [1]: the cache index L written
    void* q_out;               // [batch, heads, head_dim]
    void* k_cache;             // [>= batch, kv_heads, max_length, head_dim]
    void* v_cache;
    uint8_t* valid;  // [>= batch, max_length]: valid[b, L] = 1
};

struct DecodeAttentionArgs {
    const void* q;  // [batch, heads, head_dim]
    const void* k_cache;
    const void* v_cache;
    const uint8_t* valid;
    const int64_t* length;
    sloth_dtype dtype;
    int64_t batch, heads, kv_heads, head_dim, max_length;
    int64_t window;  // 0: none
    float scale;
    float softcap;  // 0: none
    float* partial;
    void* out;  // [batch, heads * head_dim]
};

struct ResidualNormArgs {
    sloth_dtype dtype;
    int64_t rows, cols;
    float eps;
    bool unit_offset;
    void* h;                 // [rows, cols] the residual stream
    const void* delta;       // NULL: y = norm(h); else h = to_dtype(h + [norm(delta, delta_norm)])
    const void* delta_norm;  // NULL: delta added as is
    const void* weight;
    void* y;  // [rows, cols]
};

struct GatedActArgs {
    sloth_dtype dtype;
    sloth_gate_activation activation;
    int64_t rows, cols;
    const void* gate;  // row r at gate + r * stride
    const void* up;
    int64_t stride;
    void* out;  // [rows, cols]
};

struct BiasAddArgs {
    sloth_dtype dtype;
    int64_t rows, cols;
    void* y;  // [rows, cols] += bias, rounded
    const void* bias;
};

struct LogitsFinishArgs {  // float32 logits from a dtype GEMM result
    sloth_dtype dtype;
    int64_t n;
    const void* src;
    float softcap;
    float* out;
};

namespace cpu {
sloth_status decode_embed(const char* fn, const EmbedArgs& a);
sloth_status dense_gemv(const char* fn, const DenseGemvArgs& a);
sloth_status decode_qk_prep(const char* fn, const QkPrepArgs& a);
sloth_status decode_attention(const char* fn, const DecodeAttentionArgs& a);
sloth_status decode_residual_norm(const char* fn, const ResidualNormArgs& a);
sloth_status decode_gated_act(const char* fn, const GatedActArgs& a);
sloth_status decode_bias_add(const char* fn, const BiasAddArgs& a);
sloth_status decode_logits_finish(const char* fn, const LogitsFinishArgs& a);
sloth_status decode_increment(const char* fn, int64_t* length);
}  // namespace cpu

namespace cuda {
sloth_status decode_embed(const char* fn, const EmbedArgs& a, int32_t device, void* stream);
sloth_status dense_gemv(const char* fn, const DenseGemvArgs& a, int32_t device, void* stream);
sloth_status decode_qk_prep(const char* fn, const QkPrepArgs& a, int32_t device, void* stream);
sloth_status decode_attention(const char* fn, const DecodeAttentionArgs& a, int32_t device, void* stream);
sloth_status decode_residual_norm(const char* fn, const ResidualNormArgs& a, int32_t device, void* stream);
sloth_status decode_gated_act(const char* fn, const GatedActArgs& a, int32_t device, void* stream);
sloth_status decode_bias_add(const char* fn, const BiasAddArgs& a, int32_t device, void* stream);
sloth_status decode_logits_finish(const char* fn, const LogitsFinishArgs& a, int32_t device, void* stream);
sloth_status decode_increment(const char* fn, int64_t* length, int32_t device, void* stream);
// The decoder's stream (default flags: blocking, ordered with the legacy default stream) and its CUDA graphs.
sloth_status decoder_stream_create(const char* fn, int32_t device, void** stream);
sloth_status decoder_stream_destroy(const char* fn, int32_t device, void* stream);  // waits for it first
sloth_status graph_capture_begin(const char* fn, int32_t device, void* stream);
// Ends the capture; ok = false discards it (an enqueue failed). *exec: the instantiated graph (ok only).
sloth_status graph_capture_end(const char* fn, int32_t device, void* stream, bool ok, void** exec);
sloth_status graph_launch(const char* fn, int32_t device, void* exec, void* stream);
void graph_destroy(int32_t device, void* exec);
}  // namespace cuda

}  // namespace sloth
