/*
 * slothsharp.h — the C ABI of libslothsharp.so, and its single source of truth.
 *
 * The C# bindings in src/Interop/Generated are produced from this file by tools/bindgen; edit this file,
 * then run `./build.sh bindings`. Keep declarations to what the generator understands: enums, #define integer
 * constants, and `SLOTH_API <type> <name>(<params>);` with fixed-width integer, float, enum and pointer types.
 *
 * Conventions
 *  - Every function returns sloth_status, except sloth_abi_version() and sloth_last_error(), which cannot fail.
 *  - On a non-OK status, sloth_last_error() returns a message for the calling thread. It is owned by the library
 *    and stays valid until the next failing call on the same thread.
 *  - No C++ exception crosses this boundary and the library never terminates the process.
 *  - `device` selects where the pointers live: -1 = host memory (CPU kernels), 0..N-1 = that CUDA device.
 *    `stream` is a cudaStream_t (NULL = the legacy default stream, the one TorchSharp uses); ignored on the CPU.
 *    GPU work is enqueued on the stream and never synchronized: results are ready when the stream says so.
 *  - Element counts are 64-bit. Pointers must be aligned to their element type.
 */
#ifndef SLOTHSHARP_H
#define SLOTHSHARP_H

#include <stdint.h>

#if defined(_WIN32)
#define SLOTH_API __declspec(dllexport)
#else
#define SLOTH_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on every incompatible change of this header; the managed loader refuses any other value. */
#define SLOTH_ABI_VERSION 18

/* NF4 blocksize and nested_blocksize: powers of two in [MIN, MAX] (the managed API checks the same constants). */
#define SLOTH_NF4_BLOCKSIZE_MIN 32
#define SLOTH_NF4_BLOCKSIZE_MAX 4096

typedef enum sloth_status {
    SLOTH_OK = 0,
    SLOTH_ERROR_INVALID_ARGUMENT = 1, /* a null pointer, a bad size, an unknown dtype, a label out of range */
    SLOTH_ERROR_NO_CUDA = 2,          /* a CUDA device was asked for, but this build or machine has none */
    SLOTH_ERROR_CUDA = 3,             /* the CUDA runtime reported an error; the message names it */
    SLOTH_ERROR_UNSUPPORTED = 4,      /* valid arguments this build does not implement */
    SLOTH_ERROR_INTERNAL = 5          /* a bug in SlothSharp: please report it with the message */
} sloth_status;

typedef enum sloth_dtype {
    SLOTH_DTYPE_F32 = 0,
    SLOTH_DTYPE_F16 = 1,
    SLOTH_DTYPE_BF16 = 2
} sloth_dtype;

/* Size in bytes of an NCCL unique id (ncclUniqueId; NCCL_UNIQUE_ID_BYTES). */
#define SLOTH_NCCL_UNIQUE_ID_BYTES 128

/* Element types of the collectives (mapped to NCCL's own values inside the library). */
typedef enum sloth_comm_dtype {
    SLOTH_COMM_U8 = 0,
    SLOTH_COMM_I8 = 1,
    SLOTH_COMM_I32 = 2,
    SLOTH_COMM_I64 = 3,
    SLOTH_COMM_F16 = 4,
    SLOTH_COMM_BF16 = 5,
    SLOTH_COMM_F32 = 6,
    SLOTH_COMM_F64 = 7
} sloth_comm_dtype;

/* Reductions of the collectives. AVG divides the sum by the number of ranks (integer types: truncated). */
typedef enum sloth_comm_op {
    SLOTH_COMM_SUM = 0,
    SLOTH_COMM_AVG = 1,
    SLOTH_COMM_MAX = 2
} sloth_comm_op;

/* Memory layout of the q/k tensors given to sloth_rope (contiguous, head_dim innermost). */
typedef enum sloth_rope_layout {
    SLOTH_ROPE_BHTD = 0, /* [batch, heads, seq, head_dim]: Hugging Face's layout after transpose(1, 2) */
    SLOTH_ROPE_BTHD = 1  /* [batch, seq, heads, head_dim]: the projection's output viewed per head */
} sloth_rope_layout;

/* The activation of the gate in a gated MLP, act(gate) * up (sloth_swiglu_forward / _backward). */
typedef enum sloth_gate_activation {
    SLOTH_GATE_SILU = 0,     /* silu(g) = g / (1 + exp(-g)): Llama, Qwen, Mistral, Phi-3 (SwiGLU) */
    SLOTH_GATE_GELU_TANH = 1 /* gelu_pytorch_tanh: 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))): Gemma (GeGLU) */
} sloth_gate_activation;

/* Largest number of activation rows sloth_nf4_gemv takes (batch-1 decoding, a few sequences at once). */
#define SLOTH_NF4_GEMV_MAX_BATCH 8

/* ---- library ---------------------------------------------------------------------------------------- */

/* SLOTH_ABI_VERSION as compiled into the library. */
SLOTH_API int32_t sloth_abi_version(void);

/* The calling thread's last error message ("" if none). Owned by the library. */
SLOTH_API const char* sloth_last_error(void);

/* *out = 1 if the library was compiled with CUDA kernels, else 0. */
SLOTH_API sloth_status sloth_built_with_cuda(int32_t* out);

/* ---- CUDA devices (a CPU-only build answers "no CUDA": available = 0, count = 0) ---------------------- */

/* *out = 1 when CUDA kernels are compiled in and at least one device is usable, else 0. Never fails for lack of CUDA. */
SLOTH_API sloth_status sloth_cuda_available(int32_t* out);

/* *out = number of usable CUDA devices (0 without CUDA). */
SLOTH_API sloth_status sloth_cuda_device_count(int32_t* out);

/* Writes the device's name, NUL-terminated and truncated to fit, into name[0..capacity). */
SLOTH_API sloth_status sloth_cuda_device_name(int32_t device, char* name, int32_t capacity);

SLOTH_API sloth_status sloth_cuda_compute_capability(int32_t device, int32_t* major, int32_t* minor);

/* Free and total device memory in bytes (cudaMemGetInfo). */
SLOTH_API sloth_status sloth_cuda_mem_info(int32_t device, int64_t* free_bytes, int64_t* total_bytes);

/* The __CUDA_ARCH__ value (e.g. 900, or 750 for the compute_75 PTX path) that this library's kernels run with on
 * the device: which compiled code path the driver picked. Launches a tiny kernel and waits for it (diagnostic). */
SLOTH_API sloth_status sloth_cuda_kernel_arch(int32_t device, int32_t* arch);

/* Waits for all work on the device (cudaDeviceSynchronize). For tests and benchmarks, never called by kernels. */
SLOTH_API sloth_status sloth_cuda_synchronize(int32_t device);

/* collect != 0: starts the collection of a profiler attached with collection off at start (cudaProfilerStart; e.g.
 * `ncu --profile-from-start off`, `nsys profile --capture-range=cudaProfilerApi`); 0 stops it (cudaProfilerStop). For
 * benchmarks that profile their timed window only, not the warm-up (where cuBLASLt tunes its GEMMs). Without a
 * profiler attached, nothing happens. */
SLOTH_API sloth_status sloth_cuda_profiler(int32_t device, int32_t collect);

/* ---- NF4 (bitsandbytes layout, double-quantized absmax) ---------------------------------------------- */

/*
 * Dequantizes n NF4 values into out (dtype out_dtype), bit-identical to bitsandbytes' dequantize_4bit:
 *   b = i / blocksize, c = b / nested_blocksize,
 *   scale  = (nested_code_map[absmax_codes[b]] * nested_absmax[c]) + *nested_offset   (multiply, then add)
 *   out[i] = round_to_nearest_even(nf4_code_table[nibble(i)] * scale)
 * packed:         uint8[ceil(n/2)], element 2k in the HIGH nibble of byte k
 * absmax_codes:   uint8[ceil(n/blocksize)]
 * nested_code_map float32[256], nested_absmax float32[ceil(ceil(n/blocksize)/nested_blocksize)],
 * nested_offset:  pointer to ONE float32 (read on the device for GPU calls), nf4_code_table float32[16].
 * blocksize and nested_blocksize: powers of two in [32, 4096]. n >= 1; n need not be a multiple of blocksize
 * (the last block is partial). All pointers on the same device.
 */
SLOTH_API sloth_status sloth_nf4_dequantize(const uint8_t* packed, const uint8_t* absmax_codes,
                                            const float* nested_code_map, const float* nested_absmax,
                                            const float* nested_offset, const float* nf4_code_table, int64_t n,
                                            int32_t blocksize, int32_t nested_blocksize, sloth_dtype out_dtype,
                                            void* out, int32_t device, void* stream);

/*
 * Quantizes n values of src (dtype src_dtype) to NF4 with double-quantized absmax, as bitsandbytes'
 * quantize_4bit(blocksize, compress_statistics=True, quant_type="nf4") does:
 *   absmax[b]       = max |x| over block b (float32)
 *   packed nibble   = NF4 code of x * (1 / absmax[b]) (bitsandbytes' decision tree; a missing last element of an
 *                     odd n is quantized as 0)
 *   *nested_offset  = mean(absmax), summed in double in a fixed order (lane t of 1024 sums b = t, t + 1024, ...
 *                     in turn, then the 1024 lane sums are added in lane order) and rounded once: the CPU and the
 *                     GPU give the same bits
 *   nested_absmax[c]= max |absmax - offset| over nested block c
 *   absmax_codes[b] = code of (absmax[b] - offset) * (1 / nested_absmax[c]) in nested_code_map (bitsandbytes'
 *                     binary search with midpoint rounding)
 * Output sizes as for sloth_nf4_dequantize. nested_code_map: the 256-entry signed dynamic map (input).
 * absmax_scratch: float32[ceil(n/blocksize)] working memory owned by the caller.
 * Host memory (device = -1) or a CUDA device (all pointers there; four launches on `stream`, no allocation, no
 * sync). Non-finite input: the CPU fails with SLOTH_ERROR_INVALID_ARGUMENT; the GPU cannot report it without a
 * sync and leaves the outputs unspecified (check the input first).
 */
SLOTH_API sloth_status sloth_nf4_quantize(const void* src, sloth_dtype src_dtype, int64_t n, int32_t blocksize,
                                          int32_t nested_blocksize, const float* nested_code_map, uint8_t* packed,
                                          uint8_t* absmax_codes, float* nested_absmax, float* nested_offset,
                                          float* absmax_scratch, int32_t device, void* stream);

/*
 * Matrix-vector products with an NF4 weight, dequantized inside the dot product (decoding: the weight is read once,
 * 0.5 byte per element plus its block codes; no dequantized copy is ever written):
 *   y[b, r] = to_dtype( sum over c < k of float(x[b, c]) * w(r, c) ),   b < batch, r < m
 *   w(r, c) = float(to_dtype(nf4_code_table[nibble(i)] * scale(i)))  with i = r * k + c, scale(i) as in
 *             sloth_nf4_dequantize: exactly the values sloth_nf4_dequantize(out_dtype = dtype) writes, so y is
 *             `x @ dequantize(W).T` up to the order of the float32 sum (for bf16/fp16 every product is exact in
 *             float32: only the summation order differs from a GEMM on the dequantized weight).
 * x: [batch, k] row-major in dtype; y: [batch, m] in dtype (must not overlap x); the weight is the [m, k] matrix of
 * the NF4 tensors (packed, absmax_codes, nested_* and nf4_code_table as for sloth_nf4_dequantize with n = m * k).
 * 1 <= batch <= SLOTH_NF4_GEMV_MAX_BATCH, k >= 1, m >= 1. The sum is in float32 (the GPU: a fixed order, so a call
 * always gives the same bits; the CPU: in double, rounded to float32; the two may differ in the last bits of float32).
 * GPU: one launch on `stream`, no allocation, no sync; the fast path needs k % 32 == 0 and 16-byte aligned packed
 * and x (anything else takes a slower element-wise path with the same result).
 */
SLOTH_API sloth_status sloth_nf4_gemv(const void* x, sloth_dtype dtype, int64_t batch, int64_t k, int64_t m,
                                      const uint8_t* packed, const uint8_t* absmax_codes,
                                      const float* nested_code_map, const float* nested_absmax,
                                      const float* nested_offset, const float* nf4_code_table, int32_t blocksize,
                                      int32_t nested_blocksize, void* y, int32_t device, void* stream);

/* ---- GGUF block quantization (ggml's reference quantizers) ------------------------------------------ */

/*
 * Quantizes `rows` contiguous float32 rows of `row_length` values to ggml's block format `ggml_type`, byte-identical
 * to ggml's reference quantizers without an importance matrix (quantize_row_*_ref, what llama-quantize does) and to
 * SlothSharp's C# quantizers:
 *   ggml_type  8 = Q8_0: 32-element blocks of 34 bytes
 *             12 = Q4_K: 256-element super-blocks of 144 bytes
 *             13 = Q5_K: 256-element super-blocks of 176 bytes
 *             14 = Q6_K: 256-element super-blocks of 210 bytes
 * row_length must be a multiple of the block size (32 or 256); out gets rows * row_length / block_size blocks back
 * to back (row by row) and must not overlap x. rows >= 1.
 * Host memory (device = -1; the blocks are split over the CPU cores) or a CUDA device (x and out there; one launch on
 * `stream`, one thread per block, no allocation, no sync). Both run the same per-block code with every float
 * operation rounded separately (no FMA contraction), so they give the same bytes for finite input; for NaN or
 * infinite input the GPU's bytes are unspecified (it makes NaNs canonical where the CPU keeps their payload, and
 * Q4_K/Q5_K blocks then differ): quantize such input on the CPU, as SlothSharp's exporter does.
 */
SLOTH_API sloth_status sloth_ggml_quantize(const float* x, int64_t rows, int64_t row_length, int32_t ggml_type,
                                           void* out, int32_t device, void* stream);

/* ---- Cross-entropy on a logits chunk, gradient written in place --------------------------------------- */

/*
 * For each of `rows` rows of `logits` (dtype dtype, row r at logits + r * row_stride elements, `vocab` columns):
 *   z_j   = logit_scale * x_j, then softcap > 0: z_j = softcap * tanh(z_j / softcap)
 *   lse   = log(sum_j exp(z_j))
 *   loss  = (1 - label_smoothing) * (lse - z_y) + label_smoothing * (lse - mean_j z_j) + z_loss * lse^2
 * and overwrites x_j IN PLACE with grad_scale_r * dloss/dx_j (computed in float32, rounded once), where
 * grad_scale_r = row_grad_scale[r] if row_grad_scale is not NULL, else grad_scale.
 * Rows whose label equals ignore_index get loss 0, lse 0 and a zero gradient.
 * labels: int64[rows], each in [0, vocab) or ignore_index. On the CPU an out-of-range label fails with
 * SLOTH_ERROR_INVALID_ARGUMENT; on the GPU (which cannot report without a sync) that row's loss becomes NaN.
 * loss_out, lse_out: float32[rows]. compute_grad = 0 leaves the logits untouched (forward only).
 * row_stride >= vocab. All pointers on the same device.
 */
SLOTH_API sloth_status sloth_cross_entropy_chunk(void* logits, sloth_dtype dtype, int64_t rows, int64_t vocab,
                                                 int64_t row_stride, const int64_t* labels, int64_t ignore_index,
                                                 float logit_scale, float softcap, float label_smoothing,
                                                 float z_loss, const float* row_grad_scale, float grad_scale,
                                                 int32_t compute_grad, float* loss_out, float* lse_out,
                                                 int32_t device, void* stream);

/*
 * The same, with the CUDA launch chosen (for benchmarks; the results agree to float32 rounding; ignored on the CPU):
 * threads_per_row: 0 = the library's choice (1024 from a vocabulary of 32768 on, else 256), or 256, 512 or 1024;
 * rows_in_flight: 0 = the library's choice (one block per row), else at most this many blocks, each looping over
 * rows, so that only that many rows are read at a time (e.g. one per SM: their bytes then fit L2 for pass 2).
 */
SLOTH_API sloth_status sloth_cross_entropy_chunk_tuned(void* logits, sloth_dtype dtype, int64_t rows, int64_t vocab,
                                                       int64_t row_stride, const int64_t* labels, int64_t ignore_index,
                                                       float logit_scale, float softcap, float label_smoothing,
                                                       float z_loss, const float* row_grad_scale, float grad_scale,
                                                       int32_t compute_grad, float* loss_out, float* lse_out,
                                                       int32_t threads_per_row, int64_t rows_in_flight, int32_t device,
                                                       void* stream);

/* ---- Fused decoder layers (forward and backward) ------------------------------------------------------ */
/* Element-wise and row-wise kernels in float32 arithmetic with the roundings of the reference PyTorch code
 * (Hugging Face transformers' Llama, Qwen2/3, Mistral, Gemma 1/2/3, Phi-3) reproduced where it rounds to the input
 * dtype; float32 expressions are evaluated left to right as written. All tensors contiguous, all
 * pointers on one device, dtype f32, f16 or bf16 for every non-float32 tensor. */

/*
 * RMSNorm forward, per row of x [rows, cols] with rstd = 1 / sqrt(mean(float(x)^2) + eps) (float32):
 *  unit_offset = 0, LlamaRMSNorm (Llama, Qwen2/3, Mistral, Phi-3):
 *      h   = to_dtype(float(x) * rstd)                          (rounded to dtype, as .to(input_dtype))
 *      y   = to_dtype(float(weight) * float(h))                 (the product in dtype, rounded once)
 *  unit_offset = 1, GemmaRMSNorm (Gemma, Gemma 2, Gemma 3): everything in float32, one rounding at the end:
 *      y   = to_dtype((float(x) * rstd) * (1 + float(weight)))
 * weight [cols] in dtype; y [rows, cols] (may alias x); rstd_out float32 [rows] (saved for the backward) or NULL.
 * eps >= 0 and finite; rows >= 0, cols >= 1; unit_offset 0 or 1. Per-head q/k norms: rows = batch * seq * heads,
 * cols = head_dim on a contiguous [batch, seq, heads, head_dim] tensor.
 */
SLOTH_API sloth_status sloth_rms_norm_forward(const void* x, const void* weight, sloth_dtype dtype, int64_t rows,
                                              int64_t cols, float eps, int32_t unit_offset, void* y, float* rstd_out,
                                              int32_t device, void* stream);

/*
 * RMSNorm backward (autograd of the forward's expression), with xhat = float(x) * rstd (float32):
 *  unit_offset = 0: g = float(to_dtype(dy * w))   (the product rounds to dtype as in autograd of `w * h`)
 *                   grad_weight[j] = sum over rows of float(dy) * float(h),  h = to_dtype(xhat)
 *  unit_offset = 1: g = float(dy) * (1 + float(w))   (float32, no rounding)
 *                   grad_weight[j] = sum over rows of float(dy) * xhat
 *  then grad_x = to_dtype(rstd * (g - xhat * mean(g * xhat)))
 * grad_weight: float32 [cols], overwritten, float32 accumulation (NULL: not computed). rstd: float32 [rows] from the
 * forward. grad_x may alias grad_out.
 */
SLOTH_API sloth_status sloth_rms_norm_backward(const void* grad_out, const void* x, const void* weight,
                                               const float* rstd, sloth_dtype dtype, int64_t rows, int64_t cols,
                                               int32_t unit_offset, void* grad_x, float* grad_weight, int32_t device,
                                               void* stream);

/*
 * Rotary position embedding with Hugging Face's rotate_half convention, on the first rotary_dim features of each head
 * (partial rotary, as Phi-3's partial_rotary_factor; rotary_dim = head_dim rotates everything). For each head vector
 * v at sequence position t of batch row b, with r = rotary_dim / 2, v1 = v[0..r), v2 = v[r..2r), c = cos[b', t],
 * s = sin[b', t] (b' = b, or 0 when cos_batch = 1), all products and sums rounded to dtype as the PyTorch
 * expression `x * cos + rotate_half(x) * sin` rounds them:
 *   forward  (inverse = 0): out1 = v1 c1 - v2 s1,   out2 = v2 c2 + v1 s2
 *   backward (inverse = 1): out1 = v1 c1 + v2 s2,   out2 = v2 c2 - v1 s1     (the gradient of the forward)
 *   features rotary_dim..head_dim-1 are copied unchanged (their gradient is the identity too).
 * x, out: batch * heads * seq * head_dim values in `layout`; out may equal x (in place).
 * cos, sin: [cos_batch, seq, rotary_dim] in dtype, cos_batch 1 or batch. head_dim >= 2; rotary_dim even, in
 * [2, head_dim].
 */
SLOTH_API sloth_status sloth_rope(const void* x, const void* cos, const void* sin, sloth_dtype dtype,
                                  sloth_rope_layout layout, int64_t batch, int64_t heads, int64_t seq,
                                  int64_t head_dim, int64_t rotary_dim, int64_t cos_batch, int32_t inverse, void* out,
                                  int32_t device, void* stream);

/*
 * Gated activation forward (SwiGLU / GeGLU): out = to_dtype(float(to_dtype(act(float(gate)))) * float(up)), act
 * computed in float32 as PyTorch does and rounded to dtype, then the product rounded (PyTorch's `act(g) * u`):
 *   SLOTH_GATE_SILU:      act(g) = g / (1 + exp(-g))
 *   SLOTH_GATE_GELU_TANH: act(g) = (0.5 g) (1 + tanh(kBeta (g + kKappa (g g) g))), kBeta = float(sqrt(2 / pi)),
 *                         kKappa = float(0.044715)   (F.gelu(g, approximate="tanh"))
 * gate, up, out: n values of dtype; out may alias gate or up.
 */
SLOTH_API sloth_status sloth_swiglu_forward(const void* gate, const void* up, sloth_dtype dtype,
                                            sloth_gate_activation activation, int64_t n, void* out, int32_t device,
                                            void* stream);

/*
 * Gated activation backward, as autograd of the forward's expression:
 *   grad_up   = to_dtype(dy * to_dtype(act(g)))
 *   grad_gate = to_dtype(float(to_dtype(dy * up)) * act'(g)), act' as PyTorch's silu_backward / gelu_backward:
 *     SILU:      s (1 + g (1 - s)),  s = sigmoid(g)
 *     GELU_TANH: 0.5 (1 + t) + (0.5 g) (1 - t t) kBeta (1 + 3 kKappa g g),  t = tanh(kBeta (g + kKappa g^3))
 * grad_gate and grad_up may alias any input (element-wise).
 */
SLOTH_API sloth_status sloth_swiglu_backward(const void* grad_out, const void* gate, const void* up,
                                             sloth_dtype dtype, sloth_gate_activation activation, int64_t n,
                                             void* grad_gate, void* grad_up, int32_t device, void* stream);

/*
 * The same activation on a packed gate/up: gate_up [rows, 2 * cols], each row's first cols values the gate and its
 * last cols the up projection (the output of a fused gate_up_proj, as Phi-3/4 store it), so the caller needs no
 * split copies and backward writes one gradient tensor instead of two that autograd would join. Element (r, c) is
 * computed exactly as sloth_swiglu_forward / _backward compute element i of gate and up: the same bits.
 *   forward:  out [rows, cols] = act(gate) * up
 *   backward: grad_gate_up [rows, 2 * cols] (gate half, then up half, per row) for grad_out [rows, cols];
 *             grad_gate_up may alias gate_up (each element is read, then written, by one thread).
 */
SLOTH_API sloth_status sloth_swiglu_packed_forward(const void* gate_up, sloth_dtype dtype,
                                                   sloth_gate_activation activation, int64_t rows, int64_t cols,
                                                   void* out, int32_t device, void* stream);
SLOTH_API sloth_status sloth_swiglu_packed_backward(const void* grad_out, const void* gate_up, sloth_dtype dtype,
                                                    sloth_gate_activation activation, int64_t rows, int64_t cols,
                                                    void* grad_gate_up, int32_t device, void* stream);

/* ---- Soft-capped attention probabilities (Gemma 2's attn_logit_softcapping), one block of query rows ---- */

/*
 * The element-wise and row-wise work of soft-capped attention between its matmuls, with the roundings of
 * transformers' eager expression in dtype D (bf16, f16 or f32) step by step (round = round to D, nearest even):
 *   s1 = round(s0 * scale), s2 = round(s1 / cap), t = round(tanh(s2)), s3 = round(t * cap),
 *   s3 = -inf where the mask forbids, p32 = softmax in float32 over the row (max, exp(x - max), sum, divide),
 *   probs = round(p32).
 * s1 / cap is PyTorch's division by a scalar on that device: on CUDA s1 * (1 / cap) (PyTorch's CUDA kernel multiplies
 * by the float reciprocal), on the CPU a true division; so each backend matches TorchSharp on its own device. tanh and
 * exp are IEEE (tanhf, expf); the float32 sums' order is the kernel's own.
 * Layout: scores, grad_probs, probs and grad_scores are contiguous [batch, heads, rows, cols] (what a matmul returns),
 * element (b, h, i, j) at ((b * heads + h) * rows + i) * cols + j.
 * allowed: uint8/bool (nonzero = may attend) or NULL (every key). Element (b, h, i, j) is read at
 *   allowed[b * allowed_batch_stride + h * allowed_head_stride + i * allowed_row_stride + j]
 * (element strides; 0 broadcasts a mask of batch or heads 1), so one block's narrow view of a [B|1, H|1, T, L] mask
 * is read in place without an expanded copy. Its columns must be contiguous.
 * A row with no allowed key gets NaN probabilities (and NaN grad_scores), as the eager softmax of -inf does.
 * batch, rows >= 0, heads, cols >= 1; scale finite; cap finite and > 0; the strides >= 0.
 */
SLOTH_API sloth_status sloth_softcap_softmax_forward(const void* scores, const void* allowed, sloth_dtype dtype,
                                                     int64_t batch, int64_t heads, int64_t rows, int64_t cols,
                                                     int64_t allowed_batch_stride, int64_t allowed_head_stride,
                                                     int64_t allowed_row_stride, float scale, float cap, void* probs,
                                                     int32_t device, void* stream);

/*
 * Backward of the same block from the recomputed s0 and grad_probs = dout * v^T (dtype D, as the matmul gives it):
 * probs as sloth_softcap_softmax_forward (for dV = probs^T * dout), and grad_scores (dS0, to multiply by k and q) with
 * the roundings of autograd through the eager expression:
 *   S = sum_j(dp_j * p32_j) in float32 (dp = float(grad_probs)), ds = round(p32 * (dp - S)),
 *   grad_scores = round(round(round(round(ds * cap) * round(1 - round(t * t))) / cap) * scale)
 * with t the forward's round(tanh(s2)) and "/ cap" as in forward (reciprocal on CUDA, division on the CPU).
 * Outputs may not alias the inputs.
 */
SLOTH_API sloth_status sloth_softcap_softmax_backward(const void* scores, const void* grad_probs, const void* allowed,
                                                      sloth_dtype dtype, int64_t batch, int64_t heads, int64_t rows,
                                                      int64_t cols, int64_t allowed_batch_stride,
                                                      int64_t allowed_head_stride, int64_t allowed_row_stride,
                                                      float scale, float cap, void* probs, void* grad_scores,
                                                      int32_t device, void* stream);

/* ---- Soft-capped attention in one pass (flash style): the scores never reach memory ---- */

/* Largest head_dim sloth_softcap_flash_forward / _backward take (the CUDA kernels: a multiple of 16 up to it). */
#define SLOTH_SOFTCAP_FLASH_MAX_HEAD_DIM 256

/*
 * Gemma 2's soft-capped attention for q [batch, heads, rows, head_dim], k and v [batch, heads, keys, head_dim] (GQA
 * already expanded; contiguous, dtype D), with f() = float32 arithmetic, each step one float32 operation:
 *   s_ij = sum_d q_id k_jd (the dtype products summed in float32, in the kernel's order),
 *   t_ij = tanh(s_ij * c) with c = float32(scale / cap), z_ij = cap * t_ij, and z_ij = -inf where not allowed,
 *   m_i = max_j z_ij, l_i = sum_j exp(z_ij - m_i), out_i = round(sum_j round(exp(z_ij - m)) v_j / l_i),
 *   lse_i = m_i + log(l_i) (float32 [batch, heads, rows]; kept for backward).
 * round = to the dtype, nearest even: the unnormalised probabilities are rounded to D for the tensor-core product with
 * v (the CUDA kernel's m is the running maximum of the key tiles read so far, its partial sums rescaled in float32; the
 * CPU twin's is the row's maximum), so the backends agree to the dtype's rounding, not bit for bit; exp and tanh are
 * the accurate functions (tanhf, exp2f of a log2e-scaled argument on CUDA).
 * A row with no allowed key gets out = NaN and lse = -inf (the eager softmax of -inf is NaN).
 * allowed: uint8/bool (nonzero = may attend) or NULL (every key); element (b, h, i, j) at
 *   allowed[b * allowed_batch_stride + h * allowed_head_stride + i * allowed_row_stride + j] (0 broadcasts).
 * CUDA: bf16 and f16, head_dim a multiple of 16, sm_80 or newer with enough shared memory per block
 * (sloth_softcap_flash_supported says); anything else is SLOTH_ERROR_UNSUPPORTED. The CPU backend takes every dtype
 * and 1 <= head_dim <= SLOTH_SOFTCAP_FLASH_MAX_HEAD_DIM. CUDA pointers must be 16-byte aligned.
 * batch, rows >= 0; heads, keys, head_dim >= 1; scale finite; cap finite and > 0; strides >= 0. Outputs may not alias.
 */
SLOTH_API sloth_status sloth_softcap_flash_forward(const void* q, const void* k, const void* v, const void* allowed,
                                                   sloth_dtype dtype, int64_t batch, int64_t heads, int64_t rows,
                                                   int64_t keys, int64_t head_dim, int64_t allowed_batch_stride,
                                                   int64_t allowed_head_stride, int64_t allowed_row_stride,
                                                   float scale, float cap, void* out, float* lse, int32_t device,
                                                   void* stream);

/*
 * Backward of sloth_softcap_flash_forward from its out and lse and grad_out (dtype, [batch, heads, rows, head_dim]):
 *   delta_i = sum_d f(grad_out_id) f(out_id) (float32; written to delta [batch, heads, rows], caller's scratch),
 *   p_ij = exp(z_ij - lse_i) (0 where not allowed), dp_ij = sum_d grad_out_id v_jd (float32),
 *   g_ij = round(p_ij (dp_ij - delta_i) (1 - t_ij^2) scale)   (the gradient of s_ij, rounded for the products below),
 *   grad_v_j = round(sum_i round(p_ij) grad_out_i), grad_k_j = round(sum_i g_ij q_i), grad_q_i = round(sum_j g_ij k_j),
 * each sum in float32. Deterministic: every output element is summed by one thread in a fixed order (no atomics).
 * A row with no allowed key (lse = -inf) gets what autograd gives on the eager path: grad_q = 0 for the row and
 * nothing added to grad_k (masked_fill's backward zeroes all its scores' gradients), but grad_v NaN for every key of its
 * (batch, head) (its NaN probabilities reach them all). Outputs may not alias the inputs or each other.
 */
SLOTH_API sloth_status sloth_softcap_flash_backward(const void* q, const void* k, const void* v, const void* out,
                                                    const void* grad_out, const float* lse, const void* allowed,
                                                    sloth_dtype dtype, int64_t batch, int64_t heads, int64_t rows,
                                                    int64_t keys, int64_t head_dim, int64_t allowed_batch_stride,
                                                    int64_t allowed_head_stride, int64_t allowed_row_stride,
                                                    float scale, float cap, float* delta, void* grad_q, void* grad_k,
                                                    void* grad_v, int32_t device, void* stream);

/* *out = 1 if sloth_softcap_flash_forward / _backward run for this dtype and head_dim on `device` (-1: the CPU, always
 * for a valid head_dim), else 0 (CUDA: f32, a head_dim not a multiple of 16, an architecture before sm_80 or code
 * built for one, or too little shared memory per block). */
SLOTH_API sloth_status sloth_softcap_flash_supported(sloth_dtype dtype, int64_t head_dim, int32_t device, int32_t* out);

/* ---- NCCL collectives (multi-GPU) --------------------------------------------------------------------- */
/* NCCL is not linked: the first call dlopen()s "libnccl.so.2" (or the file named by the environment variable
 * SLOTHSHARP_NCCL_LIBRARY) and resolves its symbols. When the library cannot be found, or this build has no CUDA,
 * every function but sloth_nccl_available fails with SLOTH_ERROR_UNSUPPORTED and a message saying why. (A process
 * that has loaded PyTorch's CUDA libtorch has libnccl.so.2 loaded already, and dlopen finds it by name.)
 * Communicators come from sloth_nccl_comm_init; every rank must issue the same collectives in the same order.
 * Collectives are enqueued on `stream` (NULL = the legacy default stream, TorchSharp's) and never synchronized;
 * buffers are device memory on the communicator's device. NVLink SHARP (multicast) is switched off: the library
 * sets NCCL_NVLS_ENABLE=0 in the environment before the first init unless it is set already. */

/* *out = 1 when CUDA is compiled in and libnccl.so.2 loads with every symbol needed, else 0; *version = NCCL's
 * version code (e.g. 22703 for 2.27.3) or 0. Never fails for lack of NCCL. version may be NULL. */
SLOTH_API sloth_status sloth_nccl_available(int32_t* out, int32_t* version);

/* Writes a new unique id (SLOTH_NCCL_UNIQUE_ID_BYTES bytes) into out: made by one rank, sent to all the others. */
SLOTH_API sloth_status sloth_nccl_get_unique_id(uint8_t* out);

/* Joins communicator `id` as `rank` of `nranks` on CUDA device `device`; blocks until all ranks have joined.
 * *comm receives an opaque handle for the collectives and sloth_nccl_comm_destroy. 1 <= nranks, 0 <= rank < nranks. */
SLOTH_API sloth_status sloth_nccl_comm_init(const uint8_t* id, int32_t nranks, int32_t rank, int32_t device, void** comm);

/* Frees a communicator (after its work on the streams is complete). comm = NULL is a no-op. */
SLOTH_API sloth_status sloth_nccl_comm_destroy(void* comm);

/* recv[i] = op over ranks of send[i], i < count, on every rank. send may equal recv (in place). */
SLOTH_API sloth_status sloth_nccl_all_reduce(const void* send, void* recv, int64_t count, sloth_comm_dtype dtype,
                                             sloth_comm_op op, void* comm, void* stream);

/* recv[r * count + i] = send of rank r [i]: recv holds nranks * count elements in rank order. send may equal
 * recv + rank * count (in place). */
SLOTH_API sloth_status sloth_nccl_all_gather(const void* send, void* recv, int64_t count, sloth_comm_dtype dtype,
                                             void* comm, void* stream);

/* recv[i] = op over ranks of send[rank * count + i]: send holds nranks * count elements, recv `count`. recv may
 * equal send + rank * count (in place). */
SLOTH_API sloth_status sloth_nccl_reduce_scatter(const void* send, void* recv, int64_t count, sloth_comm_dtype dtype,
                                                 sloth_comm_op op, void* comm, void* stream);

/* recv = send of rank `root` (count elements) on every rank; send is read on the root only (send may equal recv). */
SLOTH_API sloth_status sloth_nccl_broadcast(const void* send, void* recv, int64_t count, sloth_comm_dtype dtype,
                                            int32_t root, void* comm, void* stream);

/* Collectives between group_start and group_end are launched together (ncclGroupStart/ncclGroupEnd), e.g. the
 * all-gathers of one layer's weights. Groups nest. */
SLOTH_API sloth_status sloth_nccl_group_start(void);
SLOTH_API sloth_status sloth_nccl_group_end(void);

/* *rank, *nranks and *device of a communicator (any may be NULL). */
SLOTH_API sloth_status sloth_nccl_comm_info(void* comm, int32_t* rank, int32_t* nranks, int32_t* device);

/* ---- CUDA streams and events (dist: collectives beside the computation) ------------------------------ */
/* A side stream for work that should overlap TorchSharp's computation (e.g. the next layer's all-gather), and
 * events to order it against other streams. TorchSharp computes on the legacy default stream: pass stream = NULL
 * for it. The side stream is created with cudaStreamNonBlocking, so it does not serialize with the legacy default
 * stream (the events are the only ordering). Events have timing disabled. Handles are opaque; every call makes
 * `device` current for its duration and restores the caller's device. In a build without CUDA every function
 * fails with SLOTH_ERROR_UNSUPPORTED and a message saying so. Nothing here synchronizes the host. */

/* *stream = a new non-blocking stream on `device`. Destroy it with sloth_cuda_stream_destroy. */
SLOTH_API sloth_status sloth_cuda_stream_create(int32_t device, void** stream);

/* Destroys a stream made by sloth_cuda_stream_create (work already queued on it still completes). NULL: no-op. */
SLOTH_API sloth_status sloth_cuda_stream_destroy(int32_t device, void* stream);

/* *event = a new event on `device` (cudaEventDisableTiming). Destroy it with sloth_cuda_event_destroy. */
SLOTH_API sloth_status sloth_cuda_event_create(int32_t device, void** event);

/* Destroys an event (a pending record still completes). NULL: no-op. */
SLOTH_API sloth_status sloth_cuda_event_destroy(int32_t device, void* event);

/* Records `event` on `stream` (NULL = the legacy default stream): it completes when the work queued before it has. */
SLOTH_API sloth_status sloth_cuda_event_record(int32_t device, void* event, void* stream);

/* Makes `stream` (NULL = the legacy default stream) wait, on the device, until `event`'s last record has completed;
 * the host does not wait. */
SLOTH_API sloth_status sloth_cuda_stream_wait_event(int32_t device, void* stream, void* event);

/* ---- Matrix multiply through cuBLASLt, with per-shape tuning (the fused loss's GEMMs) ------------------- */
/*
 * Row-major GEMM on a CUDA device: C = alpha * op(A) * op(B) + beta * C, op(A) [m, k], op(B) [k, n], C [m, n].
 *   A: trans_a = 0: [m, k] with row stride lda >= k;  trans_a = 1: [k, m] with lda >= m (op(A) is its transpose).
 *   B: trans_b = 0: [k, n] with ldb >= n;             trans_b = 1: [n, k] with ldb >= k.
 *   C: [m, n] with ldc >= n. beta = 0 ignores C's contents (NaN included). m, n, k >= 1.
 * dtype: f16 or bf16 for A, B and C; products accumulate in float32 (CUBLAS_COMPUTE_32F), C is rounded once.
 * workspace: device memory for split-K partial sums (workspace_bytes = 0 is allowed: fewer algorithms qualify). Two
 * GEMMs that may run at the same time need two workspaces.
 * Algorithm choice, per shape (device, dtype, transposes, m, n, k, strides, 16-byte alignment of the pointers):
 *   - the first call of a shape: cuBLASLt's first heuristic choice, remembered (tuning pays only for shapes that come
 *     back; a kept-row count that changes every batch never repeats).
 *   - a later call with tune != 0 and beta = 0, not tuned yet, stream not capturing, fewer than 256 shapes tuned in
 *     the process: the candidates run on these operands, one warm-up and SLOTH_GEMM_TUNE_RUNS timed runs each, the
 *     host waiting for each timing; the fastest is kept for the process and C gets its result. This is the only
 *     synchronization in this function, once per shape. (beta != 0 cannot tune: repeated runs would add the product
 *     several times.) The candidates:
 *       tune = SLOTH_GEMM_TUNE_HEURISTIC (1): cuBLASLt's heuristic list (at most SLOTH_GEMM_TUNE_CANDIDATES);
 *       tune = SLOTH_GEMM_TUNE_WIDE (2): that list, then variants of its entries (other tile shapes, cluster shapes,
 *         CTA swizzling) that cublasLtMatmulAlgoCheck accepts for this shape and workspace, at most
 *         SLOTH_GEMM_WIDE_CANDIDATES in all (about a second per shape instead of ~0.1 s). Every candidate
 *         accumulates in float32 and rounds C once, as the heuristic's do.
 *     tune = 0 (SLOTH_GEMM_NO_TUNING) never tunes.
 *   - otherwise the kept choice. A heuristic choice gives way to one tuned for the same shape with another k once
 *     there is one and cuBLASLt accepts it for this k (so a loss's later chunks, whose dW GEMMs run with beta = 1
 *     and row counts of their own, use the first chunk's tuning).
 * cuBLASLt is opened at first use and never linked: the copy already in the process (libtorch loads one), else
 * libcublasLt.so.13 or .so.12 from the library path; SLOTHSHARP_CUBLASLT_LIBRARY names a file to use instead. When
 * none loads this fails with SLOTH_ERROR_UNSUPPORTED and says what was tried (callers fall back to their own GEMM).
 * device < 0 (the CPU): SLOTH_ERROR_UNSUPPORTED. Built without CUDA: SLOTH_ERROR_NO_CUDA.
 */
#define SLOTH_GEMM_NO_TUNING 0
#define SLOTH_GEMM_TUNE_HEURISTIC 1
#define SLOTH_GEMM_TUNE_WIDE 2
#define SLOTH_GEMM_TUNE_CANDIDATES 16
#define SLOTH_GEMM_WIDE_CANDIDATES 96
#define SLOTH_GEMM_TUNE_RUNS 3
SLOTH_API sloth_status sloth_gemm(int32_t trans_a, int32_t trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                                  const void* a, int64_t lda, const void* b, int64_t ldb, float beta, void* c,
                                  int64_t ldc, sloth_dtype dtype, void* workspace, int64_t workspace_bytes,
                                  int32_t tune, int32_t device, void* stream);

/*
 * What the tuner chose so far: a first line naming the cuBLASLt in use, then one line per shape: "device <d> <dtype>
 * <ta><tb> m=.. n=.. k=.. lda=.. ldb=.. ldc=..: " followed by "<n> candidates[ (wide)], chose #<i> <ms> ms (heuristic
 * #0 <ms> ms)", "untuned (heuristic #0)" or "borrowed the choice tuned for another k", then ", workspace <bytes>" and
 * the choice's cuBLASLt configuration ("algo <id> tile <id> stages <id> splitk <n> cluster <id> swizzle <n>", cuBLASLt's
 * enum values). Written NUL-terminated into text[capacity] (cut at capacity - 1 bytes); *needed (may be NULL) gets the
 * full length + 1. For benchmarks and diagnostics.
 */
SLOTH_API sloth_status sloth_gemm_tuning_report(char* text, int32_t capacity, int32_t* needed);

/*
 * Forgets every choice the tuner kept (all devices), so that each shape starts again from its first call. For
 * benchmarks that compare tuning modes in one process, and for re-tuning after the conditions changed (clocks, other
 * work on the GPU). Not while another thread is inside sloth_gemm on the same shapes (it waits for the tuner's lock,
 * so it is safe, but that thread's next call starts afresh). Without CUDA: nothing to forget, SLOTH_OK.
 */
SLOTH_API sloth_status sloth_gemm_forget_tuning(void);

/* ---- Decoding engine: one whole decode step of a decoder-only LM, natively (CUDA graph on GPUs) ---------- */
/*
 * A decoder object runs one decode step of the whole model -- embedding, every layer, final norm, LM head -- with the
 * library's own kernels, for `batch` new tokens (one per sequence) over a KV cache. On a CUDA device it enqueues on
 * its own stream, created with default (blocking) flags so it orders with the legacy default stream (TorchSharp's)
 * without events; the first step of a batch size runs eagerly, the second captures the step as a CUDA graph
 * (cudaStreamCaptureModeThreadLocal) and every later step of that size replays the graph (cudaGraphLaunch); no step
 * synchronizes the host. On the CPU (device -1) the same step runs with the CPU kernels, synchronously, no graph.
 *
 * Every per-step value is read from device memory by the kernels, so a replayed graph is correct at every step: the
 * token ids, the positions (rotary tables' rows), the cache length, all in buffers fixed at creation (the caller
 * writes ids and positions before each step, on the legacy default stream). The step:
 *   h = embed[ids] (x embed_scale, pre-rounded to dtype, when not 1), y = norm(h, input_norm[0])
 *   per layer: q, k, v = proj(y) (+ LoRA) ; per head: + bias, [RMSNorm over head_dim (qk_norm)], RoPE with
 *     cos/sin[position] on the first rotary_dim features ; k, v written into the cache at index L = *length, and
 *     valid[b, L] = 1 ; attention of each query over keys j <= L with valid[b, j] and (window > 0: j > L - window),
 *     scores x attention_scale, [softcap: c tanh(s / c)], softmax in float32 (split over the keys, then combined) ;
 *     o = proj(attn) ; h += [post_attention_norm](o) ; y = norm(h, pre_mlp_norm) ; a = act(gate(y)) * up(y) ;
 *     d = down(a) ; h += [post_mlp_norm](d) ; y = norm(h, next layer's input_norm, or final_norm)
 *   logits[b, :] = float32(to_dtype(y lm_head^T)) (then final_softcap: c tanh(z / c) when > 0) ; *length += 1
 * Norms are LlamaRMSNorm, or GemmaRMSNorm with unit_offset_norms (as sloth_rms_norm_forward). Every intermediate is
 * rounded to dtype where the reference PyTorch code rounds it, except that a q/k/v bias is added after the LoRA
 * delta (not before it): the same in float32, an ulp apart at most in bf16/f16.
 * A projection is dense (weight [out, in] in dtype) or NF4 (the six arrays and two block sizes of sloth_nf4_gemv),
 * with an optional bias [out] in dtype and an optional LoRA adapter (A [rank, in], B [out, rank], both in dtype,
 * and a float scale: y += to_dtype(to_dtype(B (A x)) * scale)). Fused projections (Phi-3): with fused_qkv the Q slot
 * holds qkv_proj [(heads + 2 kv_heads) head_dim, hidden] and K, V are SLOTH_WEIGHT_NONE; with fused_gate_up the GATE
 * slot holds gate_up_proj [2 intermediate, hidden] (gate rows first) and UP is NONE.
 * Batch > SLOTH_NF4_GEMV_MAX_BATCH on CUDA: NF4 weights are dequantized into the workspace and multiplied with
 * sloth_gemm (cuBLASLt, no tuning), as are dense f16/bf16 weights; f32 weights use the GEMV kernels in 8-row chunks.
 *
 * The description is three flat arrays (so every language can build it): int64 `ints`, float `floats` and pointer
 * `ptrs`, each a global part then one part per layer (layer l's part at GLOBAL_COUNT + l * LAYER_COUNT), indexed by
 * the SLOTH_DECODER_I_*, _F_*, _P_* constants below. A projection p's entries are at PROJ + p * (its stride) + field.
 * Pointers of absent parts (no bias, no LoRA, no Q/K norm, a sandwich norm of a two-norm model) are NULL.
 * Buffers (all on `device`, contiguous; the decoder does not own them and they must outlive it):
 *   ids int64 [max_batch], positions int64 [max_batch] (each < max_length), length int64 [1] (L; keys 0..L are
 *   attended, the new one at L), valid uint8/bool [max_batch, max_length], logits float32 [max_batch, vocab],
 *   k_cache/v_cache per layer [max_batch, kv_heads, max_length, head_dim] in dtype (KvCache's layout), cos/sin per
 *   layer [max_length, rotary_dim] in dtype (row p: position p, both halves, as transformers' tables), workspace of
 *   at least sloth_decoder_workspace_bytes(ints) bytes (256-byte aligned; any contents: the decoder zeroes the part
 *   that must start at zero on its own stream when it is created). Weights and norms in dtype.
 * Rows b >= batch of the buffers are untouched by a step. Out-of-range ids and positions are clamped, not reported
 * (a GPU kernel cannot report without a sync): check them before writing them.
 */
typedef enum sloth_weight_kind {
    SLOTH_WEIGHT_NONE = 0,
    SLOTH_WEIGHT_DENSE = 1,
    SLOTH_WEIGHT_NF4 = 2
} sloth_weight_kind;

/* Projection slots of a layer. */
#define SLOTH_DECODER_PROJ_Q 0
#define SLOTH_DECODER_PROJ_K 1
#define SLOTH_DECODER_PROJ_V 2
#define SLOTH_DECODER_PROJ_O 3
#define SLOTH_DECODER_PROJ_GATE 4
#define SLOTH_DECODER_PROJ_UP 5
#define SLOTH_DECODER_PROJ_DOWN 6
#define SLOTH_DECODER_PROJ_COUNT 7

/* ints, global part. Booleans are 0 or 1. */
#define SLOTH_DECODER_I_LAYERS 0
#define SLOTH_DECODER_I_HIDDEN 1
#define SLOTH_DECODER_I_HEADS 2
#define SLOTH_DECODER_I_KV_HEADS 3
#define SLOTH_DECODER_I_HEAD_DIM 4          /* even, <= 256 */
#define SLOTH_DECODER_I_INTERMEDIATE 5
#define SLOTH_DECODER_I_VOCAB 6
#define SLOTH_DECODER_I_DTYPE 7             /* sloth_dtype of weights, activations, cache */
#define SLOTH_DECODER_I_MAX_BATCH 8         /* the cache's batch: steps take 1..max_batch rows */
#define SLOTH_DECODER_I_MAX_LENGTH 9        /* the cache's length */
#define SLOTH_DECODER_I_UNIT_OFFSET_NORMS 10
#define SLOTH_DECODER_I_SANDWICH_NORMS 11   /* 4 norms per layer (Gemma 2/3) */
#define SLOTH_DECODER_I_QK_NORM 12
#define SLOTH_DECODER_I_ACTIVATION 13       /* sloth_gate_activation */
#define SLOTH_DECODER_I_FUSED_QKV 14
#define SLOTH_DECODER_I_FUSED_GATE_UP 15
#define SLOTH_DECODER_I_MAX_LORA_RANK 16    /* largest LoRA rank of any projection (0: none) */
#define SLOTH_DECODER_I_WORKSPACE_BYTES 17  /* bytes at the workspace pointer */
#define SLOTH_DECODER_I_GLOBAL_COUNT 18
/* ints, per layer */
#define SLOTH_DECODER_IL_WINDOW 0           /* sliding window (keys j > L - window), 0 = full attention */
#define SLOTH_DECODER_IL_ROTARY_DIM 1       /* even, in [2, head_dim] */
#define SLOTH_DECODER_IL_PROJ 2             /* + 4 p + field: */
#define SLOTH_DECODER_IL_PROJ_STRIDE 4
#define SLOTH_DECODER_IL_KIND 0             /* sloth_weight_kind */
#define SLOTH_DECODER_IL_BLOCKSIZE 1        /* NF4 only */
#define SLOTH_DECODER_IL_NESTED_BLOCKSIZE 2 /* NF4 only */
#define SLOTH_DECODER_IL_LORA_RANK 3        /* 0 = no adapter */
#define SLOTH_DECODER_IL_COUNT 30

/* floats, global part */
#define SLOTH_DECODER_F_EPS 0
#define SLOTH_DECODER_F_ATTENTION_SCALE 1
#define SLOTH_DECODER_F_ATTENTION_SOFTCAP 2 /* 0 = none */
#define SLOTH_DECODER_F_FINAL_SOFTCAP 3     /* 0 = none */
#define SLOTH_DECODER_F_EMBED_SCALE 4       /* 1 = none; else the factor already rounded to dtype */
#define SLOTH_DECODER_F_GLOBAL_COUNT 5
/* floats, per layer: the LoRA scale of projection p at p */
#define SLOTH_DECODER_FL_COUNT 7

/* ptrs, global part */
#define SLOTH_DECODER_P_EMBED 0             /* [vocab, hidden] */
#define SLOTH_DECODER_P_FINAL_NORM 1        /* [hidden] */
#define SLOTH_DECODER_P_LM_HEAD 2           /* [vocab, hidden] (the embedding when tied) */
#define SLOTH_DECODER_P_IDS 3
#define SLOTH_DECODER_P_POSITIONS 4
#define SLOTH_DECODER_P_LENGTH 5
#define SLOTH_DECODER_P_VALID 6
#define SLOTH_DECODER_P_LOGITS 7
#define SLOTH_DECODER_P_WORKSPACE 8
#define SLOTH_DECODER_P_GLOBAL_COUNT 9
/* ptrs, per layer */
#define SLOTH_DECODER_PL_INPUT_NORM 0
#define SLOTH_DECODER_PL_POST_ATTENTION_NORM 1 /* sandwich only */
#define SLOTH_DECODER_PL_PRE_MLP_NORM 2        /* "post_attention_layernorm" of two-norm models */
#define SLOTH_DECODER_PL_POST_MLP_NORM 3       /* sandwich only */
#define SLOTH_DECODER_PL_Q_NORM 4              /* [head_dim], qk_norm only */
#define SLOTH_DECODER_PL_K_NORM 5
#define SLOTH_DECODER_PL_COS 6
#define SLOTH_DECODER_PL_SIN 7
#define SLOTH_DECODER_PL_K_CACHE 8
#define SLOTH_DECODER_PL_V_CACHE 9
#define SLOTH_DECODER_PL_PROJ 10               /* + 9 p + field: */
#define SLOTH_DECODER_PL_PROJ_STRIDE 9
#define SLOTH_DECODER_PL_WEIGHT 0              /* dense weight, or NF4 packed */
#define SLOTH_DECODER_PL_ABSMAX_CODES 1
#define SLOTH_DECODER_PL_NESTED_CODE_MAP 2
#define SLOTH_DECODER_PL_NESTED_ABSMAX 3
#define SLOTH_DECODER_PL_NESTED_OFFSET 4
#define SLOTH_DECODER_PL_CODE_TABLE 5
#define SLOTH_DECODER_PL_BIAS 6
#define SLOTH_DECODER_PL_LORA_A 7
#define SLOTH_DECODER_PL_LORA_B 8
#define SLOTH_DECODER_PL_COUNT 73

/* *bytes = the workspace a decoder of this description needs (reads the global ints only; the workspace fields may
 * be anything). */
SLOTH_API sloth_status sloth_decoder_workspace_bytes(const int64_t* ints, int64_t int_count, int64_t* bytes);

/* Validates the description (counts, sizes, kinds, every pointer a present part needs) and makes a decoder; *decoder
 * receives its handle. `device` -1 = CPU, else the CUDA device of every pointer. Allocates host memory and, on CUDA,
 * a stream; no device memory. */
SLOTH_API sloth_status sloth_decoder_create(const int64_t* ints, int64_t int_count, const float* floats,
                                            int64_t float_count, const void* const* ptrs, int64_t ptr_count,
                                            int32_t device, void** decoder);

/* One decode step for rows 0..batch-1 (1 <= batch <= max_batch); see above. CPU: done on return. CUDA: enqueued. */
SLOTH_API sloth_status sloth_decoder_step(void* decoder, int64_t batch);

/* *count = CUDA graphs captured so far (0 on the CPU). */
SLOTH_API sloth_status sloth_decoder_graph_captures(void* decoder, int64_t* count);

/* *count = kernel launches the last enqueued step issued (a CUDA graph replays them; 0 before the first step; a
   cuBLASLt GEMM counts as one). On the CPU: the launches the same step would issue on CUDA at that batch size, except
   the CUDA-only GEMM path past 8 rows. For checking launch-count reductions (e.g. 6 L + 4 for L NF4 layers at
   batch <= 8 without adapters or biases and every fusion on, 9 L + 4 with none; see decoder.cpp). */
SLOTH_API sloth_status sloth_decoder_kernel_launches(void* decoder, int64_t* count);

/* Programmatic dependent launch of the step's kernels (CUDA): each kernel may start while the previous one finishes,
   fetching its weights before it waits for that kernel's results. On by default where the kernels support it (built
   from sm_90 PTX and running on sm_90+); enable = 0 turns it off, nonzero back on where supported. *enabled = the
   setting now in force. A change drops the captured graphs (after the stream's work is done); the next step of each
   batch size captures again. The CPU: *enabled = 0. */
SLOTH_API sloth_status sloth_decoder_set_programmatic_launch(void* decoder, int32_t enable, int32_t* enabled);

/* The step's NF4 matrix-vector products (CUDA, bf16/f16, batch <= SLOTH_NF4_GEMV_MAX_BATCH) on tensor cores: the
   weights decoded into mma fragments, the products summed by the tensor cores (nf4_gemv_tiles.cuh), where k is a
   multiple of 128 up to 8192 and the library was built for sm_80+; the other shapes keep the lane kernels. On by
   default; enable = 0 runs the lane kernels everywhere. The two differ in the float32 summation order only (the last
   bits of a product). Where the persistent step runs (SLOTH_DECODE_FUSE_PERSISTENT on and available), the decoder
   runs the lane kernels at every batch size (that step is built from their code), so a sequence's bits do not depend
   on its batch. *enabled = the setting
   now in force (0 on the CPU). A change drops the captured graphs, as for the launch mode. */
SLOTH_API sloth_status sloth_decoder_set_tensor_core_gemv(void* decoder, int32_t enable, int32_t* enabled);

/* How the step's cuBLASLt GEMMs (CUDA, f16/bf16, past SLOTH_NF4_GEMV_MAX_BATCH rows: dense weights, dense copies and
   dequantized NF4) choose their algorithm: a sloth_gemm tuning mode, SLOTH_GEMM_NO_TUNING by default (cuBLASLt's first
   heuristic choice). With SLOTH_GEMM_TUNE_HEURISTIC or _WIDE, the first (eager) step of each batch size runs, then each
   of its GEMMs runs once more with that mode, which tunes every shape not tuned yet in the process (sloth_gemm's tuner:
   the candidates timed on these operands, the host waiting; about 0.1 s a shape, or a second for _WIDE), so the graph
   captured by the next step uses the tuned choices. The extra runs write only scratch buffers. A tuned choice may sum
   in another order (split-K), so the logits can differ from an untuned step's in the last bits.
   Measured (H100, Qwen3-1.7B shape, batch 64, dense copies; bench/results/2026-12-07-round19): the heuristic's choices
   were already within 1 us of the best of its 8 candidates for every shape but the down projection (20 -> 15 us), and
   the step was no faster (3.61 ms untuned, 3.69 tuned), hence off by default; kept for other GPUs and shapes.
   A change drops the captured graphs: the next step of each batch size runs eagerly again (and tunes), the one after
   captures. Other values: invalid argument. The CPU ignores it. */
SLOTH_API sloth_status sloth_decoder_set_gemm_tuning(void* decoder, int32_t tune);

/* The decode step's kernel fusions, bit flags of sloth_decoder_set_fusions. Each removes launches for extra work in
   another kernel and leaves the output bits unchanged; which pays depends on the batch size and the GPU, so each is a
   switch the decode benchmark times both ways. */
typedef enum sloth_decode_fusion {
    SLOTH_DECODE_FUSE_NONE = 0,
    /* The residual RMSNorm computed in the grouped NF4 GEMV (q/k/v, gate/up) that reads it: one launch less per
       norm, but every block of that GEMV normalizes the whole row itself. */
    SLOTH_DECODE_FUSE_NORM = 1,
    /* The attention's partials merged by the last block of each (row, KV head) to finish its walk: one launch less
       per layer, the merge then runs on one block per KV head instead of one per query head. */
    SLOTH_DECODE_FUSE_ATTENTION_MERGE = 2,
    /* CUDA, batch 1: the decoder's layers as ONE persistent kernel whose blocks pass grid-wide barriers between the
       phases (the same device code as the launches, so the same bits); the LM head stays a launch of its own: 2
       launches a step instead of 9 per layer. Measured SLOWER than the launches on the H100 (Llama-3.2-1B 1.83 against
       1.19 ms a step: the barriers cost 4.4 us each, and a phase walks its blocks one after another), so off by
       default; kept as the base of a faster one (cuda/decode_persistent.cuh says what it lacks). Where the decoder's
       shape is not covered (the dtype not bf16/f16, head_dim not 64 or 128, more than 8 query heads per KV head, a
       projection that is not NF4, a bias other than q/k/v's, an unmerged adapter) and at other batch sizes, the step
       keeps its launches; sloth_decoder_persistent_available says which. The other flags do not apply to it. */
    SLOTH_DECODE_FUSE_PERSISTENT = 4,
    SLOTH_DECODE_FUSE_ALL = 7
} sloth_decode_fusion;

/* Sets the fusions in force (a combination of sloth_decode_fusion flags; SLOTH_DECODE_FUSE_NONE by default). A
   change drops the captured graphs (after the stream's work is done), as for the launch mode. Other bits: invalid
   argument. The CPU computes the same values either way (the launch count follows the flags). */
SLOTH_API sloth_status sloth_decoder_set_fusions(void* decoder, int32_t fusions);

/* *available = 1 when SLOTH_DECODE_FUSE_PERSISTENT would run this decoder's batch-1 steps as the persistent kernel
   (CUDA, a covered shape: see SLOTH_DECODE_FUSE_PERSISTENT), else 0 (always 0 on the CPU). */
SLOTH_API sloth_status sloth_decoder_persistent_available(void* decoder, int32_t* available);

/* Diagnostics: kernel classes of the decode step, bit flags of sloth_decoder_set_omitted. No profiler sees inside a
   replayed graph on every machine, so the decode benchmark times the step without one class at a time and reads the
   difference as that class's share of the step. A step with any class omitted computes garbage: timing only. */
typedef enum sloth_decode_part {
    SLOTH_DECODE_PART_NONE = 0,
    SLOTH_DECODE_PART_NORM = 1,       /* the residual RMSNorms run as their own launches (the final norm included) */
    SLOTH_DECODE_PART_QKV = 2,        /* the q/k/v projections (with a folded norm, if any) */
    SLOTH_DECODE_PART_QK_PREP = 4,    /* RoPE, q/k norms and the KV-cache write */
    SLOTH_DECODE_PART_ATTENTION = 8,  /* the walk over the cache and its merge */
    SLOTH_DECODE_PART_O = 16,         /* the output projection */
    SLOTH_DECODE_PART_GATE_UP = 32,   /* gate/up projections and the gated activation (with a folded norm, if any) */
    SLOTH_DECODE_PART_DOWN = 64,      /* the down projection */
    SLOTH_DECODE_PART_HEAD = 128,     /* the LM head */
    SLOTH_DECODE_PART_ALL = 255
} sloth_decode_part;

/* Leaves the given sloth_decode_part classes out of every later step (0, the default, leaves nothing out). A change
   drops the captured graphs, as for the fusions. Other bits: invalid argument. */
SLOTH_API sloth_status sloth_decoder_set_omitted(void* decoder, int32_t parts);

/* Waits for the decoder's stream, frees its graphs, stream and host memory. NULL: no-op. */
SLOTH_API sloth_status sloth_decoder_destroy(void* decoder);

/*
 * Attention of one new query per sequence over a KV cache (the decoder's kernel, exported for tests): for each row
 * b < batch and query head h (kv head h / (heads / kv_heads)), with L = *length:
 *   s_j = dot(q[b, h], k_cache[b, kvh, j]) * scale, [softcap > 0: softcap tanh(s_j / softcap)], over the keys j <= L
 *   with valid[b, j] != 0 and (window > 0: j > L - window); out[b, h] = to_dtype(sum_j softmax(s)_j v_cache[b, kvh, j])
 *   (float32 throughout). q [batch, heads, head_dim], out [batch, heads * head_dim], caches [cache_batch, kv_heads,
 *   max_length, head_dim] in dtype, valid uint8 [cache_batch, max_length], length int64 [1] on the device,
 *   L < max_length. partial: scratch of sloth_decode_attention_partial_floats(batch, heads, head_dim, max_length)
 *   float32 values: the partial results, then (its last batch * heads values) int32 arrival counters that must be
 *   zero when a call starts: zero the scratch once before its first use; every call leaves the counters zero again, so
 *   the same scratch serves any number of calls with these batch, heads, head_dim and max_length (on other values the
 *   counters sit elsewhere: zero it again). The calls using one scratch must not overlap in time (one stream).
 *   A row with no visible key gets zeros. head_dim even and <= 256; heads a multiple of kv_heads,
 *   heads / kv_heads <= 16.
 */
SLOTH_API sloth_status sloth_decode_attention(const void* q, const void* k_cache, const void* v_cache,
                                              const uint8_t* valid, const int64_t* length, sloth_dtype dtype,
                                              int64_t batch, int64_t cache_batch, int64_t heads, int64_t kv_heads,
                                              int64_t head_dim, int64_t max_length, int64_t window, float scale,
                                              float softcap, float* partial, void* out, int32_t device, void* stream);

/* *floats = the scratch sloth_decode_attention needs (float32 values: the partials, then batch * heads int32 arrival
   counters; see sloth_decode_attention). */
SLOTH_API sloth_status sloth_decode_attention_partial_floats(int64_t batch, int64_t heads, int64_t head_dim,
                                                             int64_t max_length, int64_t* floats);

/*
 * Dense matrix-vector products (the decoder's LM head and LoRA kernel, exported for tests): for b < batch, r < m,
 *   v = to_dtype(sum_c float(x[b, c]) float(w[r, c]))  (float32 sum);  scale != 1: v = to_dtype(v * scale);
 *   accumulate: v = to_dtype(y[b, r] + v);  then out_f32 = 1: y is float32 and gets v (softcap > 0: softcap tanh(v /
 *   softcap)), out_f32 = 0: y is dtype and gets v.
 * x [batch, k], w [m, k] in dtype; y [batch, m]. batch >= 1 (CUDA: 8-row chunks, the weight read once per chunk).
 * accumulate requires out_f32 = 0.
 */
SLOTH_API sloth_status sloth_dense_gemv(const void* x, const void* w, sloth_dtype dtype, int64_t batch, int64_t k,
                                        int64_t m, float scale, int32_t accumulate, int32_t out_f32, float softcap,
                                        void* y, int32_t device, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* SLOTHSHARP_H */
