// The decoding engine (slothsharp.h, "Decoding engine"): a decoder object that runs one whole decode step of a
// decoder-only LM with the library's kernels, on the CPU or, on CUDA, on its own stream as a replayed CUDA graph.
// Also the exports of the two decode kernels that tests call directly (attention, dense GEMV).
//
// Design: the description (three flat arrays) is parsed and validated once into Layer/Proj records; the step is one
// function, enqueue(), that issues the kernels in order through run(), which picks the CPU twin or the CUDA version.
// Every per-step value lives in device memory (ids, positions, length), so enqueue() issues the same launches with
// the same arguments at every step of a batch size: exactly what a CUDA graph needs.
//
// Launches per step (batch <= 8, NF4 weights, no LoRA, no biases; L layers): embed 1 + per layer [q/k/v 1 (one
// grouped launch) + qk_prep 1 + attention 2 (partials; their merge) + o 1 + gate/up 1 (grouped, with the gated
// activation at the end) + down 1 + the two residual RMSNorms 2 = 9] + final norm 1 + LM head 1 + length increment 1
// = 9 L + 4. On CUDA with sm_90 code, where the attention is the cluster form (decode_cluster_shape: bf16/f16, head_dim
// 64 or 128, at most 8 query heads per KV head, batch <= 8), the merge is in the walk's launch: 8 L + 4; with
// kDecodeFusedPrep (decode_kernels.h; experimental, off) the q/k preparation is in that launch too: 7 L + 4. The fusions
// (sloth_decoder_set_fusions, off by default) take 3 more per layer: FUSE_NORM computes each residual norm in the
// grouped GEMV that reads it (-2), FUSE_ATTENTION_MERGE merges the partials in the attention's last block (-1): 6 L + 4
// with both. Round 10 timed each on the H100 (Llama-3.2-1B, L = 16, one lease): at batch 1
// 817 tokens/s with none, 653 with FUSE_NORM, 684 with FUSE_ATTENTION_MERGE, 566 with both; no gain at batch 64. So
// they stay switches, off by default (bench --suite decode --fusions times them on other GPUs). History: 13 L + 4
// with q, k, v, gate, up and the activation apart (212). A LoRA adapter adds 2 per adapted projection and keeps the
// activation apart when gate or up is adapted (or has a bias); dense weights are not grouped, so their norms run apart.
// SLOTH_DECODE_FUSE_PERSISTENT (CUDA, batch 1, shapes decode_persistent_prepare covers): the embedding, the layers and
// the final norm as one persistent kernel (cuda/decode_persistent.cuh), then the LM head: 2 launches, the same bits.
// kernel_launches (sloth_decoder_kernel_launches) counts what the last enqueued step issued.
#include "decode_kernels.h"
#include "validate.h"

#include <algorithm>
#include <initializer_list>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

using namespace sloth;

namespace {

constexpr int64_t kAlign = 256;
constexpr int64_t kGemmWorkspace = int64_t{4} << 20;  // cuBLASLt split-K scratch for batch > 8

int64_t align_up(int64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

struct Proj {
    int kind = SLOTH_WEIGHT_NONE;
    int32_t blocksize = 0, nested_blocksize = 0;
    int64_t rank = 0;
    float lora_scale = 0.0f;
    int64_t in = 0, out = 0;
    const void* weight = nullptr;
    const uint8_t* absmax_codes = nullptr;
    const float* nested_code_map = nullptr;
    const float* nested_absmax = nullptr;
    const float* nested_offset = nullptr;
    const float* code_table = nullptr;
    const void* bias = nullptr;
    const void* lora_a = nullptr;
    const void* lora_b = nullptr;
};

struct Layer {
    int64_t window = 0, rotary_dim = 0;
    const void* norm[4] = {nullptr, nullptr, nullptr, nullptr};  // input, post-attention, pre-MLP, post-MLP
    const void* q_norm = nullptr;
    const void* k_norm = nullptr;
    const void* cos = nullptr;
    const void* sin = nullptr;
    void* k_cache = nullptr;
    void* v_cache = nullptr;
    Proj p[SLOTH_DECODER_PROJ_COUNT];
};

// Sizes of the global part, shared by workspace_bytes and create.
struct Shape {
    int64_t layers, hidden, heads, kv_heads, head_dim, inter, vocab, max_batch, max_length, max_rank;
    sloth_dtype dtype;
};

struct Workspace {  // byte offsets into the workspace
    int64_t h, h2, y, qkv, qr, attn, o, gu, act, lora, partial, arrivals, barrier, table, dq, wide, logits, gemm, total;
};

Workspace layout(const Shape& s) {
    const int64_t e = dtype_size(s.dtype), b = s.max_batch;
    Workspace w{};
    int64_t at = 0;
    auto take = [&](int64_t bytes) { const int64_t r = at; at += align_up(bytes); return r; };
    w.h = take(b * s.hidden * e);
    w.h2 = take(b * s.hidden * e);  // the residual stream's second buffer (norms folded into grouped GEMVs)
    w.y = take(b * s.hidden * e);
    w.qkv = take(b * (s.heads + 2 * s.kv_heads) * s.head_dim * e);
    w.qr = take(b * s.heads * s.head_dim * e);
    w.attn = take(b * s.heads * s.head_dim * e);
    w.o = take(b * s.hidden * e);
    w.gu = take(b * 2 * s.inter * e);
    w.act = take(b * s.inter * e);
    w.lora = take(b * (s.max_rank > 0 ? s.max_rank : 1) * e);
    w.partial = take(decode_partial_floats(b, s.heads, s.head_dim, s.max_length) * 4);
    // The attention's int32 arrival counters, one per (row, kv head), at a place that does not move with the step's
    // batch size: zeroed once when the decoder is created (CUDA), left zero by every launch.
    w.arrivals = take(b * s.kv_heads * 4);
    // The persistent step's grid barrier (two words, zeroed with the arrivals) and its device table of the layers.
    w.barrier = take(8);
    w.table = take(s.layers * kPersistentLayerBytes);
    if (b > SLOTH_NF4_GEMV_MAX_BATCH) {  // the GEMM path: a dequantized weight, dtype logits, cuBLASLt scratch
        const int64_t qkv_out = (s.heads + 2 * s.kv_heads) * s.head_dim;
        int64_t most = qkv_out * s.hidden;
        most = std::max(most, s.heads * s.head_dim * s.hidden);
        most = std::max(most, 2 * s.inter * s.hidden);
        w.dq = take(most * e);
        // The wide NF4 GEMM's float32 partial sums (cuda/nf4_gemm_wide.cu), for the largest of its launches: each
        // projection alone [out, in] (fused or not), q/k/v grouped, gate/up gated; with the kernel's row blocks.
        const int64_t q_out = s.heads * s.head_dim, kv_out = s.kv_heads * s.head_dim;
        const int64_t wb = std::min(b, kNf4WideMaxBatch);
        int64_t wide = 0;
        for (const auto& [out, in] : {std::pair{q_out, s.hidden}, std::pair{kv_out, s.hidden}, std::pair{qkv_out, s.hidden},
                                      std::pair{s.hidden, q_out}, std::pair{s.inter, s.hidden},
                                      std::pair{2 * s.inter, s.hidden}, std::pair{s.hidden, s.inter}})
            wide = std::max(wide, nf4_wide_partial_floats(wb, ceil_div(out, kNf4WideRows), out, in));
        const int64_t qkv_blocks = ceil_div(q_out, kNf4WideRows) + 2 * ceil_div(kv_out, kNf4WideRows);
        wide = std::max(wide, nf4_wide_partial_floats(wb, qkv_blocks, qkv_out, s.hidden));
        wide = std::max(wide, nf4_wide_partial_floats(wb, ceil_div(s.inter, kNf4WideRows / 2), 2 * s.inter, s.hidden));
        w.wide = take(wide * 4);
        w.logits = take(b * s.vocab * e);
        w.gemm = take(kGemmWorkspace);
    } else {
        w.dq = w.wide = w.logits = w.gemm = -1;
    }
    w.total = at;
    return w;
}

sloth_status read_shape(const char* fn, const int64_t* ints, int64_t int_count, Shape* s) {
    SLOTH_CHECK(require_ptr(fn, ints, "ints"));
    if (int_count < SLOTH_DECODER_I_GLOBAL_COUNT)
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: int_count = %lld; the global part alone has %d entries", fn,
                    (long long)int_count, SLOTH_DECODER_I_GLOBAL_COUNT);
    s->layers = ints[SLOTH_DECODER_I_LAYERS];
    s->hidden = ints[SLOTH_DECODER_I_HIDDEN];
    s->heads = ints[SLOTH_DECODER_I_HEADS];
    s->kv_heads = ints[SLOTH_DECODER_I_KV_HEADS];
    s->head_dim = ints[SLOTH_DECODER_I_HEAD_DIM];
    s->inter = ints[SLOTH_DECODER_I_INTERMEDIATE];
    s->vocab = ints[SLOTH_DECODER_I_VOCAB];
    s->max_batch = ints[SLOTH_DECODER_I_MAX_BATCH];
    s->max_length = ints[SLOTH_DECODER_I_MAX_LENGTH];
    s->max_rank = ints[SLOTH_DECODER_I_MAX_LORA_RANK];
    const int64_t dt = ints[SLOTH_DECODER_I_DTYPE];
    SLOTH_CHECK(require_dtype(fn, static_cast<int>(dt), "ints[SLOTH_DECODER_I_DTYPE]"));
    s->dtype = static_cast<sloth_dtype>(dt);
    const struct { int64_t v; int64_t min, max; const char* name; } checks[] = {
        {s->layers, 1, 1 << 16, "layers"},
        {s->hidden, 1, 1 << 20, "hidden"},
        {s->heads, 1, 1 << 12, "heads"},
        {s->kv_heads, 1, 1 << 12, "kv_heads"},
        {s->head_dim, 2, kDecodeMaxHeadDim, "head_dim"},
        {s->inter, 1, 1 << 22, "intermediate"},
        {s->vocab, 1, int64_t{1} << 24, "vocab"},
        {s->max_batch, 1, 1 << 16, "max_batch"},
        {s->max_length, 1, int64_t{1} << 24, "max_length"},
        {s->max_rank, 0, 1 << 16, "max_lora_rank"},
    };
    for (const auto& c : checks)
        if (c.v < c.min || c.v > c.max)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: %s = %lld must be in [%lld, %lld]", fn, c.name, (long long)c.v,
                        (long long)c.min, (long long)c.max);
    if (s->head_dim % 2 != 0)
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: head_dim = %lld must be even", fn, (long long)s->head_dim);
    if (s->heads % s->kv_heads != 0 || s->heads / s->kv_heads > kDecodeMaxGroup)
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: heads = %lld must be a multiple of kv_heads = %lld, at most %lld times",
                    fn, (long long)s->heads, (long long)s->kv_heads, (long long)kDecodeMaxGroup);
    return SLOTH_OK;
}

class Decoder {
  public:
    Shape s{};
    Workspace ws{};
    int32_t device = -1;
    void* stream = nullptr;
    bool unit_offset = false, sandwich = false, qk_norm = false, fused_qkv = false, fused_gate_up = false;
    sloth_gate_activation activation = SLOTH_GATE_SILU;
    float eps = 0, attn_scale = 0, attn_softcap = 0, final_softcap = 0, embed_scale = 1;
    const void* embed = nullptr;
    const void* final_norm = nullptr;
    const void* lm_head = nullptr;
    int64_t* ids = nullptr;
    int64_t* positions = nullptr;
    int64_t* length = nullptr;
    uint8_t* valid = nullptr;
    float* logits = nullptr;
    char* work = nullptr;
    std::vector<Layer> layers;
    std::map<int64_t, void*> graphs;  // batch -> instantiated graph
    std::set<int64_t> warmed;         // batch sizes that ran eagerly once
    int64_t captures = 0;
    int64_t kernel_launches = 0;  // issued by the last enqueue (a cuBLASLt GEMM counts as one)
    // During enqueue: the buffer holding the residual stream (ws.h or ws.h2), and the residual norm that is due before
    // ws.y is next read. A grouped NF4 GEMV reading ws.y computes that norm itself (its launch writes the new stream
    // into the other buffer, since all its blocks read the current one); any other reader first runs it as its own
    // launch (flush_norm).
    void* h_cur = nullptr;
    struct PendingNorm {
        bool due = false;
        const void* delta = nullptr;
        const void* delta_norm = nullptr;
        const void* weight = nullptr;
    } pending;
    int32_t fusions = SLOTH_DECODE_FUSE_NONE;  // sloth_decode_fusion flags in force
    int32_t omitted = SLOTH_DECODE_PART_NONE;  // sloth_decode_part classes left out (diagnostics: timing only)
    bool omitting = false;                     // the section being enqueued is left out: launchers issue nothing
    bool programmatic = false;    // launch the step's kernels with programmatic dependent launch (CUDA, sm_90 kernels)
    bool programmatic_supported = false;
    bool tensor_core_gemv = false;  // sloth_decoder_set_tensor_core_gemv (CUDA only)
    int32_t gemm_tuning = SLOTH_GEMM_NO_TUNING;          // sloth_decoder_set_gemm_tuning
    std::vector<GemmArgs>* recorded_gemms = nullptr;     // during warm_step: the cuBLASLt GEMMs the step issued
    // The persistent step (SLOTH_DECODE_FUSE_PERSISTENT): its arguments and grid, prepared at creation where the shape
    // is covered (persistent_blocks > 0), else 0.
    std::vector<PersistentLayerArgs> persistent_layers;
    PersistentStepArgs persistent{};
    int32_t persistent_blocks = 0;

    ~Decoder() {
        if (device >= 0) {
            // The stream first: destroying it waits for its work, so no graph is still running when it is freed.
            if (stream) cuda::decoder_stream_destroy("sloth_decoder_destroy", device, stream);
            for (auto& g : graphs) cuda::graph_destroy(device, g.second);
        }
    }

    template <class T>
    T* at(int64_t offset) const { return reinterpret_cast<T*>(work + offset); }
    bool cpu() const { return device < 0; }

    sloth_status step(const char* fn, int64_t batch) {
        if (cpu()) return enqueue(fn, batch);
        const auto g = graphs.find(batch);
        if (g != graphs.end()) return cuda::graph_launch(fn, device, g->second, stream);
        if (warmed.insert(batch).second) return warm_step(fn, batch);  // first step of this size: eager (lazy loading)
        SLOTH_CHECK(cuda::graph_capture_begin(fn, device, stream));
        const sloth_status st = enqueue_launches(fn, batch);
        void* exec = nullptr;
        const sloth_status end = cuda::graph_capture_end(fn, device, stream, st == SLOTH_OK, &exec);
        if (st != SLOTH_OK) return st;
        SLOTH_CHECK(end);
        graphs[batch] = exec;
        ++captures;
        return cuda::graph_launch(fn, device, exec, stream);
    }

    // The first step of a batch size, eager: the kernels load lazily, and each cuBLASLt GEMM shape it issues is seen
    // once with the heuristic's choice; then, with gemm_tuning on, each of those GEMMs runs once more with tuning, so
    // that the graph the next step captures uses the tuned algorithms (sloth_decoder_set_gemm_tuning says why). The
    // GEMMs run again read whatever their inputs hold after the step and write only scratch outputs (q/k/v, o, gate/up,
    // down and the LM head's rows, each rewritten by the next step before it is read), so the step's results stand.
    sloth_status warm_step(const char* fn, int64_t batch) {
        std::vector<GemmArgs> gemms;
        if (gemm_tuning != SLOTH_GEMM_NO_TUNING) recorded_gemms = &gemms;
        const sloth_status st = enqueue_launches(fn, batch);
        recorded_gemms = nullptr;
        SLOTH_CHECK(st);
        for (GemmArgs g : gemms) {
            g.tune = gemm_tuning;
            SLOTH_CHECK(cuda::gemm(fn, g, device, stream));
        }
        return SLOTH_OK;
    }

    sloth_status set_gemm_tuning(const char* fn, int32_t tune) {
        if (tune == gemm_tuning) return SLOTH_OK;
        SLOTH_CHECK(drop_graphs(fn));
        warmed.clear();
        gemm_tuning = tune;
        return SLOTH_OK;
    }

    // Turns programmatic dependent launch on (where the kernels support it) or off; the captured graphs hold the old
    // launches, so they go (after the stream's work is done) and the next step of each size captures again.
    sloth_status set_programmatic(const char* fn, bool on) {
        const bool want = on && programmatic_supported;
        if (want == programmatic) return SLOTH_OK;
        SLOTH_CHECK(drop_graphs(fn));
        programmatic = want;
        return SLOTH_OK;
    }

    // The NF4 GEMVs on tensor cores or on the lane kernels (sloth_decoder_set_tensor_core_gemv); graphs go as above.
    sloth_status set_tensor_core_gemv(const char* fn, bool on) {
        const bool want = on && !cpu();
        if (want == tensor_core_gemv) return SLOTH_OK;
        SLOTH_CHECK(drop_graphs(fn));
        tensor_core_gemv = want;
        return SLOTH_OK;
    }

    // Sets a switch of the step's launches (fusions, omitted parts); as for the launch mode, the captured graphs hold
    // the old launches and go.
    sloth_status set_flags(const char* fn, int32_t Decoder::*field, int32_t value) {
        if (this->*field == value) return SLOTH_OK;
        SLOTH_CHECK(drop_graphs(fn));
        this->*field = value;
        return SLOTH_OK;
    }

    // The captured graphs go (once the stream's work is done): the next step of each batch size captures again.
    sloth_status drop_graphs(const char* fn) {
        if (graphs.empty()) return SLOTH_OK;
        SLOTH_CHECK(cuda::synchronize_stream(fn, device, stream));
        for (auto& g : graphs) cuda::graph_destroy(device, g.second);
        graphs.clear();
        return SLOTH_OK;
    }

    // The persistent step's arguments at batch 1, where every projection is NF4 without an adapter and only q/k/v have
    // biases (added in the q/k preparation, which the kernel runs as the launches do), then the table and the grid
    // (decode_persistent_prepare, which also checks the kernel's own limits). Not covered: persistent_blocks stays 0.
    sloth_status prepare_persistent(const char* fn) {
        const sloth_status st = describe_persistent(fn);
        if (persistent_blocks == 0) persistent_layers.clear();  // not covered: nothing kept
        return st;
    }

    sloth_status describe_persistent(const char* fn) {
        persistent_layers.assign(layers.size(), PersistentLayerArgs{});
        for (size_t li = 0; li < layers.size(); ++li) {
            const Layer& L = layers[li];
            for (const Proj& p : L.p) {
                if (p.kind == SLOTH_WEIGHT_NONE) continue;
                if (p.kind != SLOTH_WEIGHT_NF4 || p.rank != 0) return SLOTH_OK;
            }
            const Proj &pq = L.p[SLOTH_DECODER_PROJ_Q], &pk = L.p[SLOTH_DECODER_PROJ_K], &pv = L.p[SLOTH_DECODER_PROJ_V];
            const Proj &po = L.p[SLOTH_DECODER_PROJ_O], &pg = L.p[SLOTH_DECODER_PROJ_GATE], &pu = L.p[SLOTH_DECODER_PROJ_UP];
            const Proj& pd = L.p[SLOTH_DECODER_PROJ_DOWN];
            const Proj* up = fused_gate_up ? nullptr : &pu;
            if (po.bias || pg.bias || pd.bias || (up && up->bias)) return SLOTH_OK;
            if (!(fused_qkv ? nf4_alike({&pq}, 1) : nf4_alike({&pq, &pk, &pv}, 1)) || !nf4_alike({&po}, 1) ||
                !nf4_alike({&pd}, 1) || !nf4_alike({&pg, up ? up : &pg}, 1))
                return SLOTH_OK;
            PersistentLayerArgs& P = persistent_layers[li];
            P.qkv = qkv_group(L, 1);
            P.prep = prep_args(L, 1, qkv_rows(1, fused_qkv));
            P.attention = attention_args(L, 1, false);
            P.o = one_member_group(po, at<void>(ws.attn), at<void>(ws.o));
            P.gate_up = gated_args(pg, up, 1);
            P.down = one_member_group(pd, at<void>(ws.act), at<void>(ws.o));
            for (int i = 0; i < 4; ++i) P.norm[i] = L.norm[i];
        }
        persistent = PersistentStepArgs{s.dtype, 1, s.hidden, s.vocab, s.layers, s.heads, s.kv_heads, s.head_dim, eps,
                                        embed_scale, unit_offset, activation, ids, embed, final_norm, length,
                                        at<void>(ws.h), at<void>(ws.h2), at<void>(ws.y), at<void>(ws.o), at<void>(ws.attn),
                                        at<uint32_t>(ws.barrier), at<void>(ws.table), persistent_layers.data(),
                                        SLOTH_DECODE_PART_NONE};
        const sloth_status st = cuda::decode_persistent_prepare(fn, persistent, device, stream, &persistent_blocks);
        if (st == SLOTH_ERROR_UNSUPPORTED) {
            persistent_blocks = 0;
            return SLOTH_OK;
        }
        return st;
    }

  private:
    // enqueue() with this decoder's launch mode on the calling thread (restored after, whatever happens).
    sloth_status enqueue_launches(const char* fn, int64_t batch) {
        const bool previous = cuda::set_programmatic_launch(programmatic);
        // The persistent step is the lane kernels' code: where it runs, every batch size runs them (the same bits).
        const bool tiles = tensor_core_gemv && !((fusions & SLOTH_DECODE_FUSE_PERSISTENT) && persistent_blocks > 0);
        const bool previous_tiles = cuda::set_nf4_gemv_tiles(tiles);
        const sloth_status st = enqueue(fn, batch);
        cuda::set_nf4_gemv_tiles(previous_tiles);
        cuda::set_programmatic_launch(previous);
        return st;
    }

    // Every launch of an omittable kernel class goes through here: counted and issued, unless the section being
    // enqueued is omitted (sloth_decoder_set_omitted).
    template <class Launch>
    sloth_status issue(int64_t launches, Launch&& launch) {
        if (omitting) return SLOTH_OK;
        kernel_launches += launches;
        return launch();
    }

    // Dense product y[b, :] = x[b, :] w^T: the GEMV kernel, or cuBLASLt past 8 rows on CUDA for f16/bf16.
    // The dense GEMV kernel: launches of 8 activation rows each (decode_gemv.cu).
    sloth_status dense_gemv(const char* fn, const DenseGemvArgs& a) {
        return issue((a.batch + 7) / 8, [&] { return cpu() ? cpu::dense_gemv(fn, a) : cuda::dense_gemv(fn, a, device, stream); });
    }

    sloth_status dense(const char* fn, const void* x, const void* w, int64_t batch, int64_t k, int64_t m, void* y) {
        if (!cpu() && batch > SLOTH_NF4_GEMV_MAX_BATCH && s.dtype != SLOTH_DTYPE_F32) {
            const GemmArgs g{false, true, batch, m, k, 1.0f, x, k, w, k, 0.0f, y, m, s.dtype,
                             at<void>(ws.gemm), kGemmWorkspace, SLOTH_GEMM_NO_TUNING};
            return issue(1, [&] {
                if (recorded_gemms) recorded_gemms->push_back(g);
                return cuda::gemm(fn, g, device, stream);
            });
        }
        return dense_gemv(fn, DenseGemvArgs{x, w, s.dtype, batch, k, m, 1.0f, false, false, 0.0f, y});
    }

    // y = x W^T without the adapter: the NF4 GEMV, NF4 dequantization + GEMM past 8 rows on CUDA, or dense.
    sloth_status product(const char* fn, const Proj& p, const void* x, int64_t batch, void* y) {
        if (p.kind != SLOTH_WEIGHT_NF4) return dense(fn, x, p.weight, batch, p.in, p.out, y);
        if (cpu() || batch <= SLOTH_NF4_GEMV_MAX_BATCH) {
            const Nf4GemvArgs a{x, s.dtype, batch, p.in, p.out, static_cast<const uint8_t*>(p.weight), p.absmax_codes,
                                p.nested_code_map, p.nested_absmax, p.nested_offset, p.code_table, p.blocksize,
                                p.nested_blocksize, y};
            return issue(1, [&] { return cpu() ? cpu::nf4_gemv(fn, a) : cuda::nf4_gemv(fn, a, device, stream); });
        }
        if (const Nf4GemvGroupArgs g = alone(p, x, batch, y); cuda::nf4_wide_group_takes(g)) return wide(fn, g);
        const Nf4DequantArgs d = dequant_args(p, at<void>(ws.dq));
        SLOTH_CHECK(issue(1, [&] { return cuda::nf4_dequantize(fn, d, device, stream); }));
        return dense(fn, x, at<void>(ws.dq), batch, p.in, p.out, y);
    }

    // p's NF4 product of x [batch, p.in] into y as a one-member group.
    Nf4GemvGroupArgs alone(const Proj& p, const void* x, int64_t batch, void* y) const {
        Nf4GemvGroupArgs g = group_args(p, x, batch);
        g.count = 1;
        g.member[0] = member(p, 0, p.out, y, p.out);
        return g;
    }

    // The wide NF4 GEMM (CUDA, past 8 rows) of g, which nf4_wide_group_takes: one launch, or two where a second one
    // adds the splits' partials (cuda/nf4_gemm_wide.cu).
    sloth_status wide(const char* fn, const Nf4GemvGroupArgs& g) {
        return issue(cuda::nf4_wide_group_launches(g),
                     [&] { return cuda::nf4_gemm_wide_group(fn, g, at<float>(ws.wide), device, stream); });
    }

    // g (q/k/v, or gate/up gated) as one wide NF4 GEMM past 8 rows on CUDA, after the due residual norm; false:
    // nothing launched (the GEMV path's batch, a format the kernel does not take, members not NF4 alike).
    bool try_wide(const char* fn, const Nf4GemvGroupArgs& g, std::initializer_list<const Proj*> ps, sloth_status* st) {
        if (cpu() || !nf4_same_format(ps) || !cuda::nf4_wide_group_takes(g)) return false;  // takes: 9+ rows only
        *st = flush_norm(fn, g.batch);
        if (*st == SLOTH_OK) *st = wide(fn, g);
        return true;
    }

    // p's whole NF4 weight dequantized into out ([p.out, p.in] in the dtype).
    Nf4DequantArgs dequant_args(const Proj& p, void* out) const {
        return Nf4DequantArgs{static_cast<const uint8_t*>(p.weight), p.absmax_codes, p.nested_code_map, p.nested_absmax,
                              p.nested_offset, p.code_table, p.in * p.out, p.blocksize, p.nested_blocksize, s.dtype, out};
    }

    // Projections of one x on CUDA's GEMM path (past the GEMV's 8 rows, 16-bit dtype), all NF4 with the same input
    // width and no adapter: their weights dequantized one under the other into ws.dq (sized for q/k/v stacked) and
    // multiplied in one GEMM, y = [batch, sum of their outputs]. For q/k/v: one launch per weight plus one instead of
    // two per weight, and one wide GEMM instead of two narrow k/v ones that could not fill the GPU (H100, batch 64:
    // the Llama-1B step's q/k/v 0.457 -> 0.312 ms). Not used for gate/up: there the one [batch, 2I] GEMM was slower
    // than two (0.92 -> 1.03 ms), bench/results/2026-12-06-h100-round11. False: not applicable, nothing launched.
    bool stacked_gemm(const char* fn, std::initializer_list<const Proj*> ps, int64_t batch, void* y, sloth_status* st) {
        if (cpu() || batch <= SLOTH_NF4_GEMV_MAX_BATCH || s.dtype == SLOTH_DTYPE_F32) return false;
        const Proj* first = *ps.begin();
        int64_t rows = 0;
        for (const Proj* p : ps) {
            if (p->kind != SLOTH_WEIGHT_NF4 || p->in != first->in || p->rank != 0) return false;
            rows += p->out;
        }
        // The wide NF4 GEMM reads the NF4 weights as they are: no dequantized copy to stack them in.
        if (cuda::nf4_wide_group_takes(alone(*first, at<void>(ws.y), batch, y))) return false;
        *st = flush_norm(fn, batch);
        char* dq = at<char>(ws.dq);
        for (const Proj* p : ps) {
            if (*st != SLOTH_OK) return true;
            const Nf4DequantArgs d = dequant_args(*p, dq);
            *st = issue(1, [&] { return cuda::nf4_dequantize(fn, d, device, stream); });
            dq += p->in * p->out * dtype_size(s.dtype);
        }
        if (*st == SLOTH_OK) *st = dense(fn, at<void>(ws.y), at<void>(ws.dq), batch, first->in, rows, y);
        return true;
    }

    // y += to_dtype(to_dtype(B (A x)) * scale), when the projection has an adapter.
    sloth_status lora(const char* fn, const Proj& p, const void* x, int64_t batch, void* y) {
        if (p.rank == 0) return SLOTH_OK;
        SLOTH_CHECK(dense_gemv(fn, DenseGemvArgs{x, p.lora_a, s.dtype, batch, p.in, p.rank, 1.0f, false, false, 0.0f,
                                                 at<void>(ws.lora)}));
        return dense_gemv(fn, DenseGemvArgs{at<void>(ws.lora), p.lora_b, s.dtype, batch, p.rank, p.out, p.lora_scale,
                                            true, false, 0.0f, y});
    }

    sloth_status linear(const char* fn, const Proj& p, const void* x, int64_t batch, void* y) {
        SLOTH_CHECK(product(fn, p, x, batch, y));
        return lora(fn, p, x, batch, y);
    }

    // Grouped NF4 GEMVs (decode_kernels.h, Nf4GemvGroupArgs): projections of one x share a launch when all are NF4
    // with equal block sizes, on the GEMV path (batch <= 8) and, for CUDA's kernel, nf4_group_fits. The CPU takes
    // the same decisions (its twin runs each member as nf4_gemv) so that the CPU tests check the plumbing and the
    // launch count.
    bool nf4_alike(std::initializer_list<const Proj*> ps, int64_t batch) const {
        return batch <= SLOTH_NF4_GEMV_MAX_BATCH && nf4_same_format(ps);
    }

    // All NF4, of one input width and equal block sizes (one launch's members).
    static bool nf4_same_format(std::initializer_list<const Proj*> ps) {
        const Proj* first = *ps.begin();
        for (const Proj* p : ps)
            if (p->kind != SLOTH_WEIGHT_NF4 || p->in != first->in || p->blocksize != first->blocksize ||
                p->nested_blocksize != first->nested_blocksize)
                return false;
        return true;
    }

    // Arguments without members: x, its shape and the block sizes of `first`.
    Nf4GemvGroupArgs group_args(const Proj& first, const void* x, int64_t batch) const {
        Nf4GemvGroupArgs g{};
        g.x = x;
        g.dtype = s.dtype;
        g.batch = batch;
        g.k = first.in;
        g.blocksize = first.blocksize;
        g.nested_blocksize = first.nested_blocksize;
        g.activation = activation;
        return g;
    }

    // Rows [row0, row0 + m) of p's NF4 weight into y (row stride y_stride).
    static Nf4GroupMember member(const Proj& p, int64_t row0, int64_t m, void* y, int64_t y_stride) {
        return Nf4GroupMember{static_cast<const uint8_t*>(p.weight), p.absmax_codes, p.nested_code_map, p.nested_absmax,
                              p.nested_offset, p.code_table, p.out, row0, m, y, y_stride};
    }

    sloth_status group(const char* fn, const Nf4GemvGroupArgs& g) {
        return issue(1, [&] { return cpu() ? cpu::nf4_gemv_group(fn, g) : cuda::nf4_gemv_group(fn, g, device, stream); });
    }

    // g as one grouped launch if the kernel takes it, with the due residual norm folded in where it can be (else run
    // first on its own). False: nothing launched (not even the norm), the caller takes the plain path.
    bool try_group(const char* fn, Nf4GemvGroupArgs g, sloth_status* st) {
        g.fold_norm = false;
        if (!nf4_group_fits(g)) return false;
        if (pending.due && (fusions & SLOTH_DECODE_FUSE_NORM)) {
            Nf4GemvGroupArgs f = g;
            f.fold_norm = true;
            f.norm = ResidualNormArgs{s.dtype, g.batch, s.hidden, eps, unit_offset, h_cur, pending.delta,
                                      pending.delta_norm, pending.weight, at<void>(ws.y)};
            f.norm_h_out = pending.delta ? other_h() : nullptr;
            if (nf4_group_fits(f)) {
                pending.due = false;
                if (f.norm.delta) h_cur = f.norm_h_out;
                *st = group(fn, f);
                return true;
            }
        }
        *st = flush_norm(fn, g.batch);
        if (*st == SLOTH_OK) *st = group(fn, g);
        return true;
    }

    void* other_h() const { return h_cur == at<void>(ws.h) ? at<void>(ws.h2) : at<void>(ws.h); }

    // The residual norm that writes ws.y, due before ws.y is next read (see h_cur).
    void norm_due(const void* delta, const void* delta_norm, const void* w) { pending = PendingNorm{true, delta, delta_norm, w}; }

    sloth_status flush_norm(const char* fn, int64_t batch) {
        if (!pending.due) return SLOTH_OK;
        pending.due = false;
        return residual_norm(fn, batch, pending.delta, pending.delta_norm, pending.weight);
    }

    // The MLP's act(gate) * up into ws.act, in one launch if it can be the gated NF4 GEMV: gate and up NF4 alike,
    // no adapter and no bias on either (both change the products before the activation). True when done.
    bool gated_group(const char* fn, const Proj& pg, const Proj* pu, int64_t batch, sloth_status* st) {
        const Proj& up = pu ? *pu : pg;
        if (pg.rank != 0 || up.rank != 0 || pg.bias || up.bias) return false;
        if (try_wide(fn, gated_args(pg, pu, batch), {&pg, &up}, st)) return true;
        if (!nf4_alike({&pg, &up}, batch)) return false;
        return try_group(fn, gated_args(pg, pu, batch), st);
    }

    // The gated NF4 GEMV's arguments: act(gate) * up of ws.y into ws.act (pu null: the fused gate_up projection, whose
    // up rows follow its gate rows).
    Nf4GemvGroupArgs gated_args(const Proj& pg, const Proj* pu, int64_t batch) const {
        Nf4GemvGroupArgs g = group_args(pg, at<void>(ws.y), batch);
        g.count = 2;
        g.member[0] = member(pg, 0, s.inter, nullptr, 0);
        g.member[1] = member(pu ? *pu : pg, pu ? 0 : s.inter, s.inter, nullptr, 0);
        g.gated = true;
        g.gated_out = at<void>(ws.act);
        return g;
    }

    // One NF4 projection of x into y ([1, p.out], batch 1) as a one-member group (the persistent step's o and down).
    Nf4GemvGroupArgs one_member_group(const Proj& p, void* x, void* y) const {
        Nf4GemvGroupArgs g = group_args(p, x, 1);
        g.count = 1;
        g.member[0] = member(p, 0, p.out, y, p.out);
        return g;
    }

    // Where a layer's q/k/v rows land in ws.qkv: one [batch, qn + 2 kvn] product (the fused projection, or stacked
    // copies), else three blocks [batch, qn], [batch, kvn], [batch, kvn].
    struct QkvRows {
        char *q, *k, *v;
        int64_t qs, ks, vs;
    };
    QkvRows qkv_rows(int64_t batch, bool one_product) const {
        const int64_t e = dtype_size(s.dtype), qn = s.heads * s.head_dim, kvn = s.kv_heads * s.head_dim;
        char* qkv = at<char>(ws.qkv);
        if (one_product) return QkvRows{qkv, qkv + qn * e, qkv + (qn + kvn) * e, qn + 2 * kvn, qn + 2 * kvn, qn + 2 * kvn};
        return QkvRows{qkv, qkv + batch * qn * e, qkv + batch * (qn + kvn) * e, qn, kvn, kvn};
    }

    // The grouped NF4 GEMV of a layer's q/k/v from ws.y into qkv_rows' places (the fused projection as one member).
    Nf4GemvGroupArgs qkv_group(const Layer& L, int64_t batch) const {
        const Proj &pq = L.p[SLOTH_DECODER_PROJ_Q], &pk = L.p[SLOTH_DECODER_PROJ_K], &pv = L.p[SLOTH_DECODER_PROJ_V];
        const int64_t qn = s.heads * s.head_dim, kvn = s.kv_heads * s.head_dim;
        const QkvRows r = qkv_rows(batch, fused_qkv);
        Nf4GemvGroupArgs g = group_args(pq, at<void>(ws.y), batch);
        if (fused_qkv) {
            g.count = 1;
            g.member[0] = member(pq, 0, pq.out, r.q, pq.out);
        } else {
            g.count = 3;
            g.member[0] = member(pq, 0, qn, r.q, qn);
            g.member[1] = member(pk, 0, kvn, r.k, kvn);
            g.member[2] = member(pv, 0, kvn, r.v, kvn);
        }
        return g;
    }

    // The q/k preparation of a layer whose projections wrote r: the biases are the fused projection's, split, or each
    // projection's own.
    QkPrepArgs prep_args(const Layer& L, int64_t batch, const QkvRows& r) const {
        const int64_t e = dtype_size(s.dtype), qn = s.heads * s.head_dim, kvn = s.kv_heads * s.head_dim;
        const void *qb = L.p[SLOTH_DECODER_PROJ_Q].bias, *kb = L.p[SLOTH_DECODER_PROJ_K].bias, *vb = L.p[SLOTH_DECODER_PROJ_V].bias;
        if (fused_qkv) {
            const char* bias = static_cast<const char*>(qb);
            kb = bias ? bias + qn * e : nullptr, vb = bias ? bias + (qn + kvn) * e : nullptr;
        }
        return QkPrepArgs{s.dtype, batch, s.heads, s.kv_heads, s.head_dim, L.rotary_dim, s.max_length, r.q, r.qs, r.k, r.ks,
                          r.v, r.vs, qb, kb, vb, L.q_norm, L.k_norm, eps, unit_offset, L.cos, L.sin, positions, length,
                          at<void>(ws.qr), L.k_cache, L.v_cache, valid};
    }

    DecodeAttentionArgs attention_args(const Layer& L, int64_t batch, bool merge_in_walk) const {
        return DecodeAttentionArgs{at<void>(ws.qr), L.k_cache, L.v_cache, valid, length, s.dtype, batch, s.heads,
                                   s.kv_heads, s.head_dim, s.max_length, L.window, attn_scale, attn_softcap,
                                   at<float>(ws.partial), at<int32_t>(ws.arrivals), at<void>(ws.attn), merge_in_walk};
    }

    sloth_status bias_add(const char* fn, const void* bias, int64_t batch, int64_t cols, void* y) {
        if (!bias) return SLOTH_OK;
        const BiasAddArgs a{s.dtype, batch, cols, y, bias};
        return issue(1, [&] { return cpu() ? cpu::decode_bias_add(fn, a) : cuda::decode_bias_add(fn, a, device, stream); });
    }

    sloth_status residual_norm(const char* fn, int64_t batch, const void* delta, const void* delta_norm, const void* w) {
        if (omitted & SLOTH_DECODE_PART_NORM) return SLOTH_OK;
        const ResidualNormArgs a{s.dtype, batch, s.hidden, eps, unit_offset, h_cur, delta, delta_norm, w, at<void>(ws.y)};
        ++kernel_launches;
        return cpu() ? cpu::decode_residual_norm(fn, a) : cuda::decode_residual_norm(fn, a, device, stream);
    }

    // The launches enqueued from here on belong to `part` (sloth_decode_part): issued unless that class is omitted.
    void section(int32_t part) { omitting = (omitted & part) != 0; }

    bool runs_persistent(int64_t batch) const {
        return !cpu() && persistent_blocks > 0 && batch == 1 && (fusions & SLOTH_DECODE_FUSE_PERSISTENT);
    }

    // The persistent step: the layers and the final norm (into ws.y) as one kernel, then the LM head as for a launch
    // step. The kernel increments the length itself.
    // Omitted classes (diagnostics) leave their phases' work out of the kernel, its barriers kept, and the LM head out.
    sloth_status enqueue_persistent(const char* fn, int64_t batch) {
        kernel_launches = 1;  // the LM head's launch counts itself
        PersistentStepArgs a = persistent;
        a.omitted = omitted;
        SLOTH_CHECK(cuda::decode_persistent_step(fn, a, persistent_blocks, device, stream));
        section(SLOTH_DECODE_PART_HEAD);
        const sloth_status st = dense_gemv(fn, DenseGemvArgs{at<void>(ws.y), lm_head, s.dtype, batch, s.hidden, s.vocab, 1.0f, false, true,
                                            final_softcap, logits});
        section(SLOTH_DECODE_PART_NONE);
        return st;
    }

    sloth_status enqueue(const char* fn, int64_t batch) {
        if (runs_persistent(batch)) return enqueue_persistent(fn, batch);
        section(SLOTH_DECODE_PART_NONE);
        const int64_t e = dtype_size(s.dtype);
        kernel_launches = 1;  // the embedding
        h_cur = at<void>(ws.h);
        pending = PendingNorm{};
        const EmbedArgs emb{ids, embed, s.dtype, batch, s.hidden, s.vocab, embed_scale, h_cur};
        SLOTH_CHECK(cpu() ? cpu::decode_embed(fn, emb) : cuda::decode_embed(fn, emb, device, stream));
        norm_due(nullptr, nullptr, layers[0].norm[0]);
        for (size_t li = 0; li < layers.size(); ++li) {
            const Layer& L = layers[li];
            QkvRows rows = qkv_rows(batch, fused_qkv);
            section(SLOTH_DECODE_PART_QKV);
            if (fused_qkv) {
                const Proj& pf = L.p[SLOTH_DECODER_PROJ_Q];
                sloth_status st = SLOTH_OK;
                // one member: the grouped kernel, for the folded norm
                const bool grouped = nf4_alike({&pf}, batch) && try_group(fn, qkv_group(L, batch), &st);
                SLOTH_CHECK(st);
                if (grouped) SLOTH_CHECK(lora(fn, pf, at<void>(ws.y), batch, rows.q));
                else {
                    SLOTH_CHECK(flush_norm(fn, batch));
                    SLOTH_CHECK(linear(fn, pf, at<void>(ws.y), batch, rows.q));
                }
            } else {
                const Proj &pq = L.p[SLOTH_DECODER_PROJ_Q], &pk = L.p[SLOTH_DECODER_PROJ_K], &pv = L.p[SLOTH_DECODER_PROJ_V];
                sloth_status st = SLOTH_OK;
                const bool grouped = (nf4_alike({&pq, &pk, &pv}, batch) && try_group(fn, qkv_group(L, batch), &st)) ||
                                     try_wide(fn, qkv_group(L, batch), {&pq, &pk, &pv}, &st);
                SLOTH_CHECK(st);
                const bool stacked = !grouped && stacked_gemm(fn, {&pq, &pk, &pv}, batch, rows.q, &st);
                SLOTH_CHECK(st);
                if (!grouped && !stacked) SLOTH_CHECK(flush_norm(fn, batch));
                if (grouped) {
                    SLOTH_CHECK(lora(fn, pq, at<void>(ws.y), batch, rows.q));
                    SLOTH_CHECK(lora(fn, pk, at<void>(ws.y), batch, rows.k));
                    SLOTH_CHECK(lora(fn, pv, at<void>(ws.y), batch, rows.v));
                } else if (!stacked) {
                    SLOTH_CHECK(linear(fn, pq, at<void>(ws.y), batch, rows.q));
                    SLOTH_CHECK(linear(fn, pk, at<void>(ws.y), batch, rows.k));
                    SLOTH_CHECK(linear(fn, pv, at<void>(ws.y), batch, rows.v));
                }
                if (stacked) rows = qkv_rows(batch, true);  // one [batch, qn + 2 kvn] product: the fused projection's layout
            }
            const QkPrepArgs prep = prep_args(L, batch, rows);
            const bool merge_in_walk = (fusions & SLOTH_DECODE_FUSE_ATTENTION_MERGE) != 0;
            const DecodeAttentionArgs att = attention_args(L, batch, merge_in_walk);
            const bool clustered = !cpu() && cuda::decode_attention_clustered(att);
            // kDecodeFusedPrep: the preparation inside the cluster form's launch, counted with the attention (unless a
            // per-class timing omits either: then each runs apart).
            const int prep_parts = SLOTH_DECODE_PART_QK_PREP | SLOTH_DECODE_PART_ATTENTION;
            if (kDecodeFusedPrep && clustered && (omitted & prep_parts) == 0) {
                section(SLOTH_DECODE_PART_ATTENTION);
                SLOTH_CHECK(issue(1, [&] { return cuda::decode_attention_prep_fused(fn, prep, att, device, stream); }));
            } else {
                section(SLOTH_DECODE_PART_QK_PREP);
                SLOTH_CHECK(issue(1, [&] { return cpu() ? cpu::decode_qk_prep(fn, prep) : cuda::decode_qk_prep(fn, prep, device, stream); }));
                section(SLOTH_DECODE_PART_ATTENTION);  // the partials, and their merge unless done in the walk
                SLOTH_CHECK(issue(merge_in_walk || clustered ? 1 : 2,
                                  [&] { return cpu() ? cpu::decode_attention(fn, att) : cuda::decode_attention(fn, att, device, stream); }));
            }
            section(SLOTH_DECODE_PART_O);
            const Proj& o = L.p[SLOTH_DECODER_PROJ_O];
            SLOTH_CHECK(linear(fn, o, at<void>(ws.attn), batch, at<void>(ws.o)));
            SLOTH_CHECK(bias_add(fn, o.bias, batch, s.hidden, at<void>(ws.o)));
            norm_due(at<void>(ws.o), L.norm[1], L.norm[2]);
            // MLP: act(gate) * up into ws.act. In one launch when the gated NF4 GEMV applies; else gate and up side by
            // side per row (fused: one [batch, 2I] product; else two [batch, I] blocks, grouped when NF4 alike), then
            // the gated activation.
            section(SLOTH_DECODE_PART_GATE_UP);
            const Proj& pg = L.p[SLOTH_DECODER_PROJ_GATE];
            const Proj& pu = L.p[SLOTH_DECODER_PROJ_UP];
            sloth_status gst = SLOTH_OK;
            if (gated_group(fn, pg, fused_gate_up ? nullptr : &pu, batch, &gst)) {
                SLOTH_CHECK(gst);
            } else {
                char* gu = at<char>(ws.gu);
                const void *gate, *up;
                int64_t stride;
                if (fused_gate_up) {
                    SLOTH_CHECK(flush_norm(fn, batch));
                    SLOTH_CHECK(linear(fn, pg, at<void>(ws.y), batch, gu));
                    SLOTH_CHECK(bias_add(fn, pg.bias, batch, 2 * s.inter, gu));
                    gate = gu, up = gu + s.inter * e, stride = 2 * s.inter;
                } else {
                    char* upp = gu + batch * s.inter * e;
                    bool grouped = false;
                    sloth_status st = SLOTH_OK;
                    if (nf4_alike({&pg, &pu}, batch)) {
                        Nf4GemvGroupArgs g = group_args(pg, at<void>(ws.y), batch);
                        g.count = 2;
                        g.member[0] = member(pg, 0, s.inter, gu, s.inter);
                        g.member[1] = member(pu, 0, s.inter, upp, s.inter);
                        grouped = try_group(fn, g, &st);
                    }
                    SLOTH_CHECK(st);
                    if (!grouped) SLOTH_CHECK(flush_norm(fn, batch));
                    if (grouped) {
                        SLOTH_CHECK(lora(fn, pg, at<void>(ws.y), batch, gu));
                        SLOTH_CHECK(bias_add(fn, pg.bias, batch, s.inter, gu));
                        SLOTH_CHECK(lora(fn, pu, at<void>(ws.y), batch, upp));
                        SLOTH_CHECK(bias_add(fn, pu.bias, batch, s.inter, upp));
                    } else {
                        SLOTH_CHECK(linear(fn, pg, at<void>(ws.y), batch, gu));
                        SLOTH_CHECK(bias_add(fn, pg.bias, batch, s.inter, gu));
                        SLOTH_CHECK(linear(fn, pu, at<void>(ws.y), batch, upp));
                        SLOTH_CHECK(bias_add(fn, pu.bias, batch, s.inter, upp));
                    }
                    gate = gu, up = upp, stride = s.inter;
                }
                const GatedActArgs act{s.dtype, activation, batch, s.inter, gate, up, stride, at<void>(ws.act)};
                SLOTH_CHECK(issue(1, [&] { return cpu() ? cpu::decode_gated_act(fn, act) : cuda::decode_gated_act(fn, act, device, stream); }));
            }
            section(SLOTH_DECODE_PART_DOWN);
            const Proj& down = L.p[SLOTH_DECODER_PROJ_DOWN];
            SLOTH_CHECK(linear(fn, down, at<void>(ws.act), batch, at<void>(ws.o)));
            SLOTH_CHECK(bias_add(fn, down.bias, batch, s.hidden, at<void>(ws.o)));
            const void* next = li + 1 < layers.size() ? layers[li + 1].norm[0] : final_norm;
            norm_due(at<void>(ws.o), L.norm[3], next);
            section(SLOTH_DECODE_PART_NONE);
        }
        SLOTH_CHECK(flush_norm(fn, batch));  // the final norm: the LM head reads ws.y
        // LM head: float32(to_dtype(y W^T)), soft-capped.
        section(SLOTH_DECODE_PART_HEAD);
        if (!cpu() && batch > SLOTH_NF4_GEMV_MAX_BATCH && s.dtype != SLOTH_DTYPE_F32) {
            SLOTH_CHECK(dense(fn, at<void>(ws.y), lm_head, batch, s.hidden, s.vocab, at<void>(ws.logits)));
            const LogitsFinishArgs fin{s.dtype, batch * s.vocab, at<void>(ws.logits), final_softcap, logits};
            SLOTH_CHECK(issue(1, [&] { return cuda::decode_logits_finish(fn, fin, device, stream); }));
        } else {
            SLOTH_CHECK(dense_gemv(fn, DenseGemvArgs{at<void>(ws.y), lm_head, s.dtype, batch, s.hidden, s.vocab, 1.0f, false,
                                                     true, final_softcap, logits}));
        }
        section(SLOTH_DECODE_PART_NONE);
        ++kernel_launches;  // the length increment
        return cpu() ? cpu::decode_increment(fn, length) : cuda::decode_increment(fn, length, device, stream);
    }
};

// Builds a Decoder from the description, checking every entry a present part needs.
sloth_status build(const char* fn, const int64_t* ints, int64_t int_count, const float* floats, int64_t float_count,
                   const void* const* ptrs, int64_t ptr_count, int32_t device, Decoder* d) {
    Shape& s = d->s;
    SLOTH_CHECK(read_shape(fn, ints, int_count, &s));
    SLOTH_CHECK(require_ptr(fn, floats, "floats"));
    SLOTH_CHECK(require_ptr(fn, ptrs, "ptrs"));
    SLOTH_CHECK(require_device(fn, device));
    const int64_t want_i = SLOTH_DECODER_I_GLOBAL_COUNT + s.layers * SLOTH_DECODER_IL_COUNT;
    const int64_t want_f = SLOTH_DECODER_F_GLOBAL_COUNT + s.layers * SLOTH_DECODER_FL_COUNT;
    const int64_t want_p = SLOTH_DECODER_P_GLOBAL_COUNT + s.layers * SLOTH_DECODER_PL_COUNT;
    if (int_count != want_i || float_count != want_f || ptr_count != want_p)
        return fail(SLOTH_ERROR_INVALID_ARGUMENT,
                    "%s: %lld layers need %lld ints, %lld floats and %lld pointers; got %lld, %lld and %lld", fn,
                    (long long)s.layers, (long long)want_i, (long long)want_f, (long long)want_p, (long long)int_count,
                    (long long)float_count, (long long)ptr_count);
    d->device = device;
    auto flag = [&](int i, const char* name, bool* out) {
        if (ints[i] != 0 && ints[i] != 1)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: %s = %lld must be 0 or 1", fn, name, (long long)ints[i]);
        *out = ints[i] == 1;
        return SLOTH_OK;
    };
    SLOTH_CHECK(flag(SLOTH_DECODER_I_UNIT_OFFSET_NORMS, "unit_offset_norms", &d->unit_offset));
    SLOTH_CHECK(flag(SLOTH_DECODER_I_SANDWICH_NORMS, "sandwich_norms", &d->sandwich));
    SLOTH_CHECK(flag(SLOTH_DECODER_I_QK_NORM, "qk_norm", &d->qk_norm));
    SLOTH_CHECK(flag(SLOTH_DECODER_I_FUSED_QKV, "fused_qkv", &d->fused_qkv));
    SLOTH_CHECK(flag(SLOTH_DECODER_I_FUSED_GATE_UP, "fused_gate_up", &d->fused_gate_up));
    const int64_t act = ints[SLOTH_DECODER_I_ACTIVATION];
    if (act != SLOTH_GATE_SILU && act != SLOTH_GATE_GELU_TANH)
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: activation = %lld is not a sloth_gate_activation", fn, (long long)act);
    d->activation = static_cast<sloth_gate_activation>(act);
    d->ws = layout(s);
    if (ints[SLOTH_DECODER_I_WORKSPACE_BYTES] < d->ws.total)
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: the workspace has %lld bytes; this decoder needs %lld", fn,
                    (long long)ints[SLOTH_DECODER_I_WORKSPACE_BYTES], (long long)d->ws.total);
    d->eps = floats[SLOTH_DECODER_F_EPS];
    d->attn_scale = floats[SLOTH_DECODER_F_ATTENTION_SCALE];
    d->attn_softcap = floats[SLOTH_DECODER_F_ATTENTION_SOFTCAP];
    d->final_softcap = floats[SLOTH_DECODER_F_FINAL_SOFTCAP];
    d->embed_scale = floats[SLOTH_DECODER_F_EMBED_SCALE];
    if (!(d->eps >= 0.0f) || !(d->attn_scale > 0.0f) || !(d->attn_softcap >= 0.0f) || !(d->final_softcap >= 0.0f) ||
        !(d->embed_scale > 0.0f))
        return fail(SLOTH_ERROR_INVALID_ARGUMENT,
                    "%s: eps %g >= 0, attention_scale %g > 0, soft-caps %g, %g >= 0 and embed_scale %g > 0 are required",
                    fn, d->eps, d->attn_scale, d->attn_softcap, d->final_softcap, d->embed_scale);
    struct Need { int index; const char* name; };
    for (const Need n : {Need{SLOTH_DECODER_P_EMBED, "embed"}, Need{SLOTH_DECODER_P_FINAL_NORM, "final_norm"},
                         Need{SLOTH_DECODER_P_LM_HEAD, "lm_head"}, Need{SLOTH_DECODER_P_IDS, "ids"},
                         Need{SLOTH_DECODER_P_POSITIONS, "positions"}, Need{SLOTH_DECODER_P_LENGTH, "length"},
                         Need{SLOTH_DECODER_P_VALID, "valid"}, Need{SLOTH_DECODER_P_LOGITS, "logits"},
                         Need{SLOTH_DECODER_P_WORKSPACE, "workspace"}})
        if (!ptrs[n.index]) return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: ptrs[%d] (%s) is NULL", fn, n.index, n.name);
    if (reinterpret_cast<uintptr_t>(ptrs[SLOTH_DECODER_P_WORKSPACE]) % kAlign != 0)
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: the workspace must be %lld-byte aligned", fn, (long long)kAlign);
    d->embed = ptrs[SLOTH_DECODER_P_EMBED];
    d->final_norm = ptrs[SLOTH_DECODER_P_FINAL_NORM];
    d->lm_head = ptrs[SLOTH_DECODER_P_LM_HEAD];
    d->ids = static_cast<int64_t*>(const_cast<void*>(ptrs[SLOTH_DECODER_P_IDS]));
    d->positions = static_cast<int64_t*>(const_cast<void*>(ptrs[SLOTH_DECODER_P_POSITIONS]));
    d->length = static_cast<int64_t*>(const_cast<void*>(ptrs[SLOTH_DECODER_P_LENGTH]));
    d->valid = static_cast<uint8_t*>(const_cast<void*>(ptrs[SLOTH_DECODER_P_VALID]));
    d->logits = static_cast<float*>(const_cast<void*>(ptrs[SLOTH_DECODER_P_LOGITS]));
    d->work = static_cast<char*>(const_cast<void*>(ptrs[SLOTH_DECODER_P_WORKSPACE]));

    const int64_t hd = s.head_dim, qn = s.heads * hd, kvn = s.kv_heads * hd;
    d->layers.resize(static_cast<size_t>(s.layers));
    for (int64_t l = 0; l < s.layers; ++l) {
        Layer& L = d->layers[static_cast<size_t>(l)];
        const int64_t* li = ints + SLOTH_DECODER_I_GLOBAL_COUNT + l * SLOTH_DECODER_IL_COUNT;
        const float* lf = floats + SLOTH_DECODER_F_GLOBAL_COUNT + l * SLOTH_DECODER_FL_COUNT;
        const void* const* lp = ptrs + SLOTH_DECODER_P_GLOBAL_COUNT + l * SLOTH_DECODER_PL_COUNT;
        L.window = li[SLOTH_DECODER_IL_WINDOW];
        L.rotary_dim = li[SLOTH_DECODER_IL_ROTARY_DIM];
        if (L.window < 0 || L.rotary_dim < 2 || L.rotary_dim > hd || L.rotary_dim % 2 != 0)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT,
                        "%s: layer %lld: window = %lld must be >= 0 and rotary_dim = %lld even in [2, head_dim %lld]", fn,
                        (long long)l, (long long)L.window, (long long)L.rotary_dim, (long long)hd);
        auto need = [&](int index, const char* name) {
            return lp[index] ? SLOTH_OK
                             : fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: layer %lld: %s (per-layer pointer %d) is NULL", fn,
                                    (long long)l, name, index);
        };
        SLOTH_CHECK(need(SLOTH_DECODER_PL_INPUT_NORM, "input_norm"));
        SLOTH_CHECK(need(SLOTH_DECODER_PL_PRE_MLP_NORM, "pre_mlp_norm"));
        if (d->sandwich) {
            SLOTH_CHECK(need(SLOTH_DECODER_PL_POST_ATTENTION_NORM, "post_attention_norm"));
            SLOTH_CHECK(need(SLOTH_DECODER_PL_POST_MLP_NORM, "post_mlp_norm"));
        }
        if (d->qk_norm) {
            SLOTH_CHECK(need(SLOTH_DECODER_PL_Q_NORM, "q_norm"));
            SLOTH_CHECK(need(SLOTH_DECODER_PL_K_NORM, "k_norm"));
        }
        for (const Need n : {Need{SLOTH_DECODER_PL_COS, "cos"}, Need{SLOTH_DECODER_PL_SIN, "sin"},
                             Need{SLOTH_DECODER_PL_K_CACHE, "k_cache"}, Need{SLOTH_DECODER_PL_V_CACHE, "v_cache"}})
            SLOTH_CHECK(need(n.index, n.name));
        L.norm[0] = lp[SLOTH_DECODER_PL_INPUT_NORM];
        L.norm[1] = d->sandwich ? lp[SLOTH_DECODER_PL_POST_ATTENTION_NORM] : nullptr;
        L.norm[2] = lp[SLOTH_DECODER_PL_PRE_MLP_NORM];
        L.norm[3] = d->sandwich ? lp[SLOTH_DECODER_PL_POST_MLP_NORM] : nullptr;
        L.q_norm = d->qk_norm ? lp[SLOTH_DECODER_PL_Q_NORM] : nullptr;
        L.k_norm = d->qk_norm ? lp[SLOTH_DECODER_PL_K_NORM] : nullptr;
        L.cos = lp[SLOTH_DECODER_PL_COS];
        L.sin = lp[SLOTH_DECODER_PL_SIN];
        L.k_cache = const_cast<void*>(lp[SLOTH_DECODER_PL_K_CACHE]);
        L.v_cache = const_cast<void*>(lp[SLOTH_DECODER_PL_V_CACHE]);
        // Expected [out, in] of each slot; a slot absent by fusion has out = 0.
        const int64_t shapes[SLOTH_DECODER_PROJ_COUNT][2] = {
            {d->fused_qkv ? qn + 2 * kvn : qn, s.hidden}, {d->fused_qkv ? 0 : kvn, s.hidden},
            {d->fused_qkv ? 0 : kvn, s.hidden},           {s.hidden, qn},
            {d->fused_gate_up ? 2 * s.inter : s.inter, s.hidden}, {d->fused_gate_up ? 0 : s.inter, s.hidden},
            {s.hidden, s.inter}};
        static const char* const names[] = {"q", "k", "v", "o", "gate", "up", "down"};
        for (int p = 0; p < SLOTH_DECODER_PROJ_COUNT; ++p) {
            Proj& P = L.p[p];
            const int64_t* pi = li + SLOTH_DECODER_IL_PROJ + p * SLOTH_DECODER_IL_PROJ_STRIDE;
            const void* const* pp = lp + SLOTH_DECODER_PL_PROJ + p * SLOTH_DECODER_PL_PROJ_STRIDE;
            P.kind = static_cast<int>(pi[SLOTH_DECODER_IL_KIND]);
            P.out = shapes[p][0];
            P.in = shapes[p][1];
            const int want = P.out == 0 ? SLOTH_WEIGHT_NONE : -1;
            if ((want == SLOTH_WEIGHT_NONE && P.kind != SLOTH_WEIGHT_NONE) ||
                (want != SLOTH_WEIGHT_NONE && P.kind != SLOTH_WEIGHT_DENSE && P.kind != SLOTH_WEIGHT_NF4))
                return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: layer %lld: projection %s has kind %d; expected %s", fn,
                            (long long)l, names[p], P.kind, want == SLOTH_WEIGHT_NONE ? "NONE (fused away)" : "DENSE or NF4");
            if (P.kind == SLOTH_WEIGHT_NONE) continue;
            auto needp = [&](int field, const char* name) {
                return pp[field] ? SLOTH_OK
                                 : fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: layer %lld: projection %s: %s is NULL", fn,
                                        (long long)l, names[p], name);
            };
            SLOTH_CHECK(needp(SLOTH_DECODER_PL_WEIGHT, "weight"));
            P.weight = pp[SLOTH_DECODER_PL_WEIGHT];
            P.bias = pp[SLOTH_DECODER_PL_BIAS];
            if (P.kind == SLOTH_WEIGHT_NF4) {
                SLOTH_CHECK(needp(SLOTH_DECODER_PL_ABSMAX_CODES, "absmax_codes"));
                SLOTH_CHECK(needp(SLOTH_DECODER_PL_NESTED_CODE_MAP, "nested_code_map"));
                SLOTH_CHECK(needp(SLOTH_DECODER_PL_NESTED_ABSMAX, "nested_absmax"));
                SLOTH_CHECK(needp(SLOTH_DECODER_PL_NESTED_OFFSET, "nested_offset"));
                SLOTH_CHECK(needp(SLOTH_DECODER_PL_CODE_TABLE, "code_table"));
                P.blocksize = static_cast<int32_t>(pi[SLOTH_DECODER_IL_BLOCKSIZE]);
                P.nested_blocksize = static_cast<int32_t>(pi[SLOTH_DECODER_IL_NESTED_BLOCKSIZE]);
                SLOTH_CHECK(require_blocksize(fn, pi[SLOTH_DECODER_IL_BLOCKSIZE], "blocksize"));
                SLOTH_CHECK(require_blocksize(fn, pi[SLOTH_DECODER_IL_NESTED_BLOCKSIZE], "nested_blocksize"));
                P.absmax_codes = static_cast<const uint8_t*>(pp[SLOTH_DECODER_PL_ABSMAX_CODES]);
                P.nested_code_map = static_cast<const float*>(pp[SLOTH_DECODER_PL_NESTED_CODE_MAP]);
                P.nested_absmax = static_cast<const float*>(pp[SLOTH_DECODER_PL_NESTED_ABSMAX]);
                P.nested_offset = static_cast<const float*>(pp[SLOTH_DECODER_PL_NESTED_OFFSET]);
                P.code_table = static_cast<const float*>(pp[SLOTH_DECODER_PL_CODE_TABLE]);
            }
            P.rank = pi[SLOTH_DECODER_IL_LORA_RANK];
            if (P.rank < 0 || P.rank > s.max_rank)
                return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: layer %lld: projection %s: LoRA rank %lld must be in [0, max_lora_rank %lld]",
                            fn, (long long)l, names[p], (long long)P.rank, (long long)s.max_rank);
            if (P.rank > 0) {
                SLOTH_CHECK(needp(SLOTH_DECODER_PL_LORA_A, "lora_a"));
                SLOTH_CHECK(needp(SLOTH_DECODER_PL_LORA_B, "lora_b"));
                P.lora_a = pp[SLOTH_DECODER_PL_LORA_A];
                P.lora_b = pp[SLOTH_DECODER_PL_LORA_B];
                P.lora_scale = lf[p];
            }
        }
    }
    if (device >= 0) {
        SLOTH_CHECK(cuda::decoder_stream_create(fn, device, &d->stream));
        // The attention's arrival counters must start at zero (the workspace comes uninitialized); ordered before
        // every step, which runs on the same stream.
        SLOTH_CHECK(cuda::zero_on_stream(fn, device, d->at<void>(d->ws.arrivals), s.max_batch * s.kv_heads * 4, d->stream));
        SLOTH_CHECK(cuda::zero_on_stream(fn, device, d->at<void>(d->ws.barrier), 8, d->stream));
        SLOTH_CHECK(cuda::programmatic_launch_supported(fn, device, &d->programmatic_supported));
        d->programmatic = d->programmatic_supported;  // on by default where the kernels carry the wait
        d->tensor_core_gemv = true;  // the kernels check their own build (nf4_gemv_tiles.cuh) and fall back
        SLOTH_CHECK(d->prepare_persistent(fn));
    }
    return SLOTH_OK;
}

}  // namespace

extern "C" {

SLOTH_API sloth_status sloth_decoder_workspace_bytes(const int64_t* ints, int64_t int_count, int64_t* bytes) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, bytes, "bytes"));
        Shape s{};
        SLOTH_CHECK(read_shape(fn, ints, int_count, &s));
        *bytes = layout(s).total;
        return SLOTH_OK;
    });
}

SLOTH_API sloth_status sloth_decoder_create(const int64_t* ints, int64_t int_count, const float* floats,
                                            int64_t float_count, const void* const* ptrs, int64_t ptr_count,
                                            int32_t device, void** decoder) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, decoder, "decoder"));
        *decoder = nullptr;
        auto d = std::make_unique<Decoder>();
        SLOTH_CHECK(build(fn, ints, int_count, floats, float_count, ptrs, ptr_count, device, d.get()));
        *decoder = d.release();
        return SLOTH_OK;
    });
}

SLOTH_API sloth_status sloth_decoder_step(void* decoder, int64_t batch) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, decoder, "decoder"));
        auto* d = static_cast<Decoder*>(decoder);
        if (batch < 1 || batch > d->s.max_batch)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: batch = %lld must be in [1, max_batch = %lld]", fn,
                        (long long)batch, (long long)d->s.max_batch);
        if (d->cpu() && *d->length >= d->s.max_length)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: the cache is full (length %lld of %lld)", fn,
                        (long long)*d->length, (long long)d->s.max_length);
        return d->step(fn, batch);
    });
}

namespace {
// One of the decoder's int64 counters into *count, both pointers checked (the exports below).
sloth_status read_counter(const char* fn, void* decoder, int64_t* count, int64_t Decoder::*counter) {
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, decoder, "decoder"));
        SLOTH_CHECK(require_ptr(fn, count, "count"));
        *count = static_cast<Decoder*>(decoder)->*counter;
        return SLOTH_OK;
    });
}
}  // namespace

SLOTH_API sloth_status sloth_decoder_graph_captures(void* decoder, int64_t* count) {
    return read_counter(__func__, decoder, count, &Decoder::captures);
}

SLOTH_API sloth_status sloth_decoder_kernel_launches(void* decoder, int64_t* count) {
    return read_counter(__func__, decoder, count, &Decoder::kernel_launches);
}

SLOTH_API sloth_status sloth_decoder_persistent_available(void* decoder, int32_t* available) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, decoder, "decoder"));
        SLOTH_CHECK(require_ptr(fn, available, "available"));
        *available = static_cast<Decoder*>(decoder)->persistent_blocks > 0 ? 1 : 0;
        return SLOTH_OK;
    });
}

SLOTH_API sloth_status sloth_decoder_set_programmatic_launch(void* decoder, int32_t enable, int32_t* enabled) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, decoder, "decoder"));
        SLOTH_CHECK(require_ptr(fn, enabled, "enabled"));
        auto* d = static_cast<Decoder*>(decoder);
        SLOTH_CHECK(d->set_programmatic(fn, enable != 0));
        *enabled = d->programmatic ? 1 : 0;
        return SLOTH_OK;
    });
}

SLOTH_API sloth_status sloth_decoder_set_tensor_core_gemv(void* decoder, int32_t enable, int32_t* enabled) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, decoder, "decoder"));
        SLOTH_CHECK(require_ptr(fn, enabled, "enabled"));
        auto* d = static_cast<Decoder*>(decoder);
        SLOTH_CHECK(d->set_tensor_core_gemv(fn, enable != 0));
        *enabled = d->tensor_core_gemv ? 1 : 0;
        return SLOTH_OK;
    });
}

SLOTH_API sloth_status sloth_decoder_set_gemm_tuning(void* decoder, int32_t tune) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, decoder, "decoder"));
        SLOTH_CHECK(require_gemm_tuning(fn, tune));
        return static_cast<Decoder*>(decoder)->set_gemm_tuning(fn, tune);
    });
}

namespace {
// One of the decoder's flag switches set to `value` (the exports below): bits outside `all` are refused by name.
sloth_status set_decoder_flags(const char* fn, void* decoder, int32_t value, int32_t all, const char* what,
                               const char* all_name, int32_t Decoder::*field) {
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, decoder, "decoder"));
        if ((value & ~all) != 0)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: %s %d has bits outside %s (%d)", fn, what,
                        static_cast<int>(value), all_name, static_cast<int>(all));
        return static_cast<Decoder*>(decoder)->set_flags(fn, field, value);
    });
}
}  // namespace

SLOTH_API sloth_status sloth_decoder_set_omitted(void* decoder, int32_t parts) {
    return set_decoder_flags(__func__, decoder, parts, SLOTH_DECODE_PART_ALL, "parts", "SLOTH_DECODE_PART_ALL",
                             &Decoder::omitted);
}

SLOTH_API sloth_status sloth_decoder_set_fusions(void* decoder, int32_t fusions) {
    return set_decoder_flags(__func__, decoder, fusions, SLOTH_DECODE_FUSE_ALL, "fusions", "SLOTH_DECODE_FUSE_ALL",
                             &Decoder::fusions);
}

SLOTH_API sloth_status sloth_decoder_destroy(void* decoder) {
    return guarded(__func__, [&] {
        delete static_cast<Decoder*>(decoder);
        return SLOTH_OK;
    });
}

SLOTH_API sloth_status sloth_decode_attention_partial_floats(int64_t batch, int64_t heads, int64_t head_dim,
                                                             int64_t max_length, int64_t* floats) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, floats, "floats"));
        SLOTH_CHECK(require_count(fn, batch, 1, "batch"));
        SLOTH_CHECK(require_count(fn, heads, 1, "heads"));
        SLOTH_CHECK(require_count(fn, head_dim, 2, "head_dim"));
        SLOTH_CHECK(require_count(fn, max_length, 1, "max_length"));
        *floats = decode_attention_scratch_floats(batch, heads, head_dim, max_length);
        return SLOTH_OK;
    });
}

SLOTH_API sloth_status sloth_decode_attention(const void* q, const void* k_cache, const void* v_cache,
                                              const uint8_t* valid, const int64_t* length, sloth_dtype dtype,
                                              int64_t batch, int64_t cache_batch, int64_t heads, int64_t kv_heads,
                                              int64_t head_dim, int64_t max_length, int64_t window, float scale,
                                              float softcap, float* partial, void* out, int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_dtype(fn, dtype, "dtype"));
        SLOTH_CHECK(require_device(fn, device));
        SLOTH_CHECK(require_count(fn, batch, 1, "batch"));
        SLOTH_CHECK(require_count(fn, max_length, 1, "max_length"));
        if (cache_batch < batch)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: cache_batch = %lld < batch = %lld", fn, (long long)cache_batch, (long long)batch);
        if (head_dim < 2 || head_dim > kDecodeMaxHeadDim || head_dim % 2 != 0)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: head_dim = %lld must be even in [2, %lld]", fn, (long long)head_dim,
                        (long long)kDecodeMaxHeadDim);
        if (heads < 1 || kv_heads < 1 || heads % kv_heads != 0 || heads / kv_heads > kDecodeMaxGroup)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: heads = %lld must be a multiple of kv_heads = %lld, at most %lld times",
                        fn, (long long)heads, (long long)kv_heads, (long long)kDecodeMaxGroup);
        if (window < 0 || !(scale > 0.0f) || !(softcap >= 0.0f))
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: window %lld >= 0, scale %g > 0 and softcap %g >= 0 are required", fn,
                        (long long)window, scale, softcap);
        for (const void* p : {q, k_cache, v_cache, static_cast<const void*>(valid), static_cast<const void*>(length),
                              static_cast<const void*>(partial), static_cast<const void*>(out)})
            if (!p) return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: a pointer argument is NULL", fn);
        if (device < 0 && (*length < 0 || *length >= max_length))
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: *length = %lld must be in [0, max_length = %lld)", fn,
                        (long long)*length, (long long)max_length);
        // The scratch: the partials, then the arrival counters (decode_attention_scratch_floats).
        auto* const arrivals = reinterpret_cast<int32_t*>(partial + decode_partial_floats(batch, heads, head_dim, max_length));
        const DecodeAttentionArgs a{q, k_cache, v_cache, valid, length, dtype, batch, heads, kv_heads, head_dim,
                                    max_length, window, scale, softcap, partial, arrivals, out};
        return device < 0 ? cpu::decode_attention(fn, a) : cuda::decode_attention(fn, a, device, stream);
    });
}

SLOTH_API sloth_status sloth_dense_gemv(const void* x, const void* w, sloth_dtype dtype, int64_t batch, int64_t k,
                                        int64_t m, float scale, int32_t accumulate, int32_t out_f32, float softcap,
                                        void* y, int32_t device, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_dtype(fn, dtype, "dtype"));
        SLOTH_CHECK(require_device(fn, device));
        SLOTH_CHECK(require_count(fn, batch, 1, "batch"));
        SLOTH_CHECK(require_count(fn, k, 1, "k"));
        SLOTH_CHECK(require_count(fn, m, 1, "m"));
        SLOTH_CHECK(require_ptr(fn, x, "x"));
        SLOTH_CHECK(require_ptr(fn, w, "w"));
        SLOTH_CHECK(require_ptr(fn, y, "y"));
        if ((accumulate != 0 && accumulate != 1) || (out_f32 != 0 && out_f32 != 1) || (accumulate && out_f32))
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: accumulate = %d, out_f32 = %d: each 0 or 1, not both 1", fn,
                        accumulate, out_f32);
        if (!(softcap >= 0.0f) || (softcap > 0.0f && !out_f32))
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: softcap = %g must be >= 0, and > 0 only with out_f32", fn, softcap);
        const DenseGemvArgs a{x, w, dtype, batch, k, m, scale, accumulate != 0, out_f32 != 0, softcap, y};
        return device < 0 ? cpu::dense_gemv(fn, a) : cuda::dense_gemv(fn, a, device, stream);
    });
}

}  // extern "C"
