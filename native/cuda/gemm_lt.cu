// sloth_gemm: row-major GEMM through cuBLASLt with a per-shape tuner (the fused loss's three GEMMs, issue 15).
//
// Why not TorchSharp's mm: on the fused loss's shapes cuBLAS's default pick leaves SMs idle (the dX GEMM of a
// 1792-row chunk has 14 x 16 output tiles for 132 SMs, 1.7 waves) and cannot be asked for another algorithm. cuBLASLt
// lists its candidates (tile shapes, split-K, cluster shapes); the tuner times them once per shape on the real operands
// and keeps the fastest, as PyTorch's TunableOp does for its own GEMMs.
//
// cuBLASLt is opened with dlopen, never linked: libslothsharp keeps loading on machines without it (the managed side
// then uses TorchSharp's GEMM), and inside a TorchSharp process it reuses the copy libtorch already loaded. The few
// declarations below follow cuBLASLt's public API (stable from cuBLAS 11 to 13); when the toolkit's header is present
// at build time, static_asserts check every value against it.
#include "cuda_common.cuh"
#include "../src/dynamic_symbols.h"

#include <dlfcn.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#if __has_include(<cublasLt.h>)
#include <cublasLt.h>
#define SLOTH_CHECK_CUBLASLT_DECLARATIONS 1
#endif

namespace sloth::cuda {
namespace {

// ---- the cuBLASLt declarations used here --------------------------------------------------------------------
using LtStatus = int;  // cublasStatus_t
constexpr LtStatus kLtSuccess = 0;
using LtHandle = void*;      // cublasLtHandle_t
using LtMatmulDesc = void*;  // cublasLtMatmulDesc_t
using LtLayout = void*;      // cublasLtMatrixLayout_t
using LtPreference = void*;  // cublasLtMatmulPreference_t
struct LtAlgo {              // cublasLtMatmulAlgo_t
    uint64_t data[8];
};
struct LtHeuristic {  // cublasLtMatmulHeuristicResult_t
    LtAlgo algo;
    size_t workspace_size;
    LtStatus state;
    float waves_count;
    int reserved[4];
};
constexpr int kComputeF32 = 68;                             // CUBLAS_COMPUTE_32F
constexpr int kDataF32 = 0, kDataF16 = 2, kDataBf16 = 14;  // cudaDataType_t
constexpr int kOpN = 0, kOpT = 1;                           // cublasOperation_t
constexpr int kDescTransA = 3, kDescTransB = 4;             // cublasLtMatmulDescAttributes_t
constexpr int kPrefMaxWorkspaceBytes = 1;                   // cublasLtMatmulPreferenceAttributes_t
// cublasLtMatmulAlgoConfigAttributes_t (uint32 values except inner and cluster shape, uint16)
constexpr int kCfgId = 0, kCfgTile = 1, kCfgSplitK = 2, kCfgSwizzle = 4, kCfgStages = 6, kCfgCluster = 8;
// cublasLtMatmulAlgoCapAttributes_t
constexpr int kCapSwizzleSupport = 2, kCapTileIds = 6;
// cublasLtClusterShape_t: the library's choice, 1x1, 2x1 and 1x2 (the shapes the wide search tries)
constexpr uint16_t kClusterAuto = 0, kCluster1x1 = 2, kCluster2x1 = 3, kCluster1x2 = 5;

#ifdef SLOTH_CHECK_CUBLASLT_DECLARATIONS
static_assert(kLtSuccess == CUBLAS_STATUS_SUCCESS, "cublasStatus_t");
static_assert(kComputeF32 == CUBLAS_COMPUTE_32F, "cublasComputeType_t");
static_assert(kDataF32 == CUDA_R_32F && kDataF16 == CUDA_R_16F && kDataBf16 == CUDA_R_16BF, "cudaDataType_t");
static_assert(kOpN == CUBLAS_OP_N && kOpT == CUBLAS_OP_T, "cublasOperation_t");
static_assert(kDescTransA == CUBLASLT_MATMUL_DESC_TRANSA && kDescTransB == CUBLASLT_MATMUL_DESC_TRANSB,
              "cublasLtMatmulDescAttributes_t");
static_assert(kPrefMaxWorkspaceBytes == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, "cublasLtMatmulPreferenceAttributes_t");
static_assert(kCfgId == CUBLASLT_ALGO_CONFIG_ID && kCfgTile == CUBLASLT_ALGO_CONFIG_TILE_ID &&
                  kCfgSplitK == CUBLASLT_ALGO_CONFIG_SPLITK_NUM && kCfgSwizzle == CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING &&
                  kCfgStages == CUBLASLT_ALGO_CONFIG_STAGES_ID,
              "cublasLtMatmulAlgoConfigAttributes_t");
static_assert(kCapSwizzleSupport == CUBLASLT_ALGO_CAP_CTA_SWIZZLING_SUPPORT && kCapTileIds == CUBLASLT_ALGO_CAP_TILE_IDS,
              "cublasLtMatmulAlgoCapAttributes_t");
#if defined(CUBLAS_VER_MAJOR) && CUBLAS_VER_MAJOR >= 12  // cluster shapes came with Hopper's cuBLAS
static_assert(kClusterAuto == CUBLASLT_CLUSTER_SHAPE_AUTO && kCluster1x1 == CUBLASLT_CLUSTER_SHAPE_1x1x1 &&
                  kCluster2x1 == CUBLASLT_CLUSTER_SHAPE_2x1x1 && kCluster1x2 == CUBLASLT_CLUSTER_SHAPE_1x2x1,
              "cublasLtClusterShape_t");
static_assert(kCfgCluster == CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, "cublasLtMatmulAlgoConfigAttributes_t");
#endif
static_assert(sizeof(LtAlgo) == sizeof(cublasLtMatmulAlgo_t), "cublasLtMatmulAlgo_t");
static_assert(sizeof(LtHeuristic) == sizeof(cublasLtMatmulHeuristicResult_t), "cublasLtMatmulHeuristicResult_t");
#endif

struct LtApi {
    bool ok = false;
    std::string why;   // when !ok: what was tried and what to do
    std::string file;  // the library that was opened
    size_t version = 0;
    LtStatus (*create)(LtHandle*) = nullptr;
    LtStatus (*desc_create)(LtMatmulDesc*, int, int) = nullptr;
    LtStatus (*desc_set)(LtMatmulDesc, int, const void*, size_t) = nullptr;
    LtStatus (*desc_destroy)(LtMatmulDesc) = nullptr;
    LtStatus (*layout_create)(LtLayout*, int, uint64_t, uint64_t, int64_t) = nullptr;
    LtStatus (*layout_destroy)(LtLayout) = nullptr;
    LtStatus (*pref_create)(LtPreference*) = nullptr;
    LtStatus (*pref_set)(LtPreference, int, const void*, size_t) = nullptr;
    LtStatus (*pref_destroy)(LtPreference) = nullptr;
    LtStatus (*heuristic)(LtHandle, LtMatmulDesc, LtLayout, LtLayout, LtLayout, LtLayout, LtPreference, int,
                          LtHeuristic*, int*) = nullptr;
    LtStatus (*algo_check)(LtHandle, LtMatmulDesc, LtLayout, LtLayout, LtLayout, LtLayout, const LtAlgo*,
                           LtHeuristic*) = nullptr;
    LtStatus (*matmul)(LtHandle, LtMatmulDesc, const void*, const void*, LtLayout, const void*, LtLayout, const void*,
                       const void*, LtLayout, void*, LtLayout, const LtAlgo*, void*, size_t, cudaStream_t) = nullptr;
    size_t (*get_version)() = nullptr;
    const char* (*status_string)(LtStatus) = nullptr;  // optional
    // Optional: the wide search and the report's configuration column (without them: the heuristic list only).
    LtStatus (*config_get)(const LtAlgo*, int, void*, size_t, size_t*) = nullptr;
    LtStatus (*config_set)(LtAlgo*, int, const void*, size_t) = nullptr;
    LtStatus (*cap_get)(const LtAlgo*, int, void*, size_t, size_t*) = nullptr;
};

LtApi load_api() {
    LtApi a;
    const char* override_path = std::getenv("SLOTHSHARP_CUBLASLT_LIBRARY");
    void* handle = nullptr;
    std::string tried;
    if (override_path != nullptr && override_path[0] != '\0') {
        handle = dlopen(override_path, RTLD_NOW | RTLD_LOCAL);
        a.file = override_path;
        if (handle == nullptr) {
            const char* err = dlerror();
            a.why = std::string("SLOTHSHARP_CUBLASLT_LIBRARY=") + override_path + " could not be loaded (" +
                    (err != nullptr ? err : "dlopen failed") + ")";
            return a;
        }
    } else {
        // The process's copy first (libtorch's, so one cuBLASLt serves both), then the library path.
        const char* names[] = {"libcublasLt.so.13", "libcublasLt.so.12"};
        for (const int flags : {RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD, RTLD_NOW | RTLD_LOCAL}) {
            for (const char* name : names) {
                handle = dlopen(name, flags);
                if (handle != nullptr) {
                    a.file = name;
                    break;
                }
            }
            if (handle != nullptr) break;
        }
        if (handle == nullptr) {
            a.why = "no cuBLASLt could be loaded (tried libcublasLt.so.13 and libcublasLt.so.12). It comes with "
                    "PyTorch's CUDA wheels (site-packages/nvidia/cublas/lib) and with the CUDA toolkit: put its "
                    "directory on LD_LIBRARY_PATH, or set SLOTHSHARP_CUBLASLT_LIBRARY to the file";
            return a;
        }
    }
    std::string missing;
    resolve_symbol(handle, "cublasLtCreate", a.create, missing);
    resolve_symbol(handle, "cublasLtMatmulDescCreate", a.desc_create, missing);
    resolve_symbol(handle, "cublasLtMatmulDescSetAttribute", a.desc_set, missing);
    resolve_symbol(handle, "cublasLtMatmulDescDestroy", a.desc_destroy, missing);
    resolve_symbol(handle, "cublasLtMatrixLayoutCreate", a.layout_create, missing);
    resolve_symbol(handle, "cublasLtMatrixLayoutDestroy", a.layout_destroy, missing);
    resolve_symbol(handle, "cublasLtMatmulPreferenceCreate", a.pref_create, missing);
    resolve_symbol(handle, "cublasLtMatmulPreferenceSetAttribute", a.pref_set, missing);
    resolve_symbol(handle, "cublasLtMatmulPreferenceDestroy", a.pref_destroy, missing);
    resolve_symbol(handle, "cublasLtMatmulAlgoGetHeuristic", a.heuristic, missing);
    resolve_symbol(handle, "cublasLtMatmulAlgoCheck", a.algo_check, missing);
    resolve_symbol(handle, "cublasLtMatmul", a.matmul, missing);
    resolve_symbol(handle, "cublasLtGetVersion", a.get_version, missing);
    if (!missing.empty()) {
        a.why = a.file + " lacks " + missing + " (a cuBLASLt older than 11?)";
        return a;
    }
    std::string optional_missing;
    resolve_symbol(handle, "cublasLtGetStatusString", a.status_string, optional_missing);
    resolve_symbol(handle, "cublasLtMatmulAlgoConfigGetAttribute", a.config_get, optional_missing);
    resolve_symbol(handle, "cublasLtMatmulAlgoConfigSetAttribute", a.config_set, optional_missing);
    resolve_symbol(handle, "cublasLtMatmulAlgoCapGetAttribute", a.cap_get, optional_missing);
    a.version = a.get_version();
    if (a.version < 110000) {
        a.why = a.file + " is cuBLASLt " + std::to_string(a.version) + "; 11.0 or newer is needed";
        return a;
    }
    a.ok = true;
    return a;
}

const LtApi& api() {
    static const LtApi instance = load_api();  // thread-safe, once per process
    return instance;
}

const char* status_name(LtStatus s) {
    if (api().status_string != nullptr) {
        const char* text = api().status_string(s);
        if (text != nullptr) return text;
    }
    return "cuBLAS status";
}

sloth_status lt_fail(const char* fn, const char* what, LtStatus s) {
    // Execution failures are device faults; the rest (unsupported configuration, bad value) are cuBLASLt refusing.
    const bool device_fault = s == 13 /* CUBLAS_STATUS_EXECUTION_FAILED */ || s == 11 /* MAPPING_ERROR */;
    return fail(device_fault ? SLOTH_ERROR_CUDA : SLOTH_ERROR_UNSUPPORTED, "%s: cuBLASLt %s failed: %s (%d)", fn, what,
                status_name(s), s);
}

#define SLOTH_LT_CHECK(fn, what, call)                               \
    do {                                                             \
        const LtStatus sloth_s_ = (call);                            \
        if (sloth_s_ != kLtSuccess) return lt_fail(fn, what, sloth_s_); \
    } while (0)

// ---- the tuner's memory: one choice per shape, for the process ---------------------------------------------
using ShapeKey = std::tuple<int32_t, int, int, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int>;
enum { kKeyDevice, kKeyDtype, kKeyTransA, kKeyTransB, kKeyM, kKeyN, kKeyK, kKeyLda, kKeyLdb, kKeyLdc, kKeyAlign };

struct Choice {
    LtAlgo algo{};
    size_t workspace = 0;
    bool tuned = false;
    int candidates = 0;
    int chosen = 0;
    float best_ms = 0;
    float first_ms = 0;  // the heuristic's first candidate, for the report
    bool borrowed = false;  // taken from the same shape tuned with another k
    bool wide = false;      // tuned over the wide candidate set
    int generation = 0;     // the tuner's count of tuned shapes when borrowing was last tried
};

// Bounds of the tuner's memory: shapes tuned (each costs its timing once) and shapes remembered (a heuristic query
// costs tens of microseconds, so forgetting the rest is cheap).
constexpr int kMaxTunedShapes = 256;
constexpr size_t kMaxRememberedShapes = 4096;

struct Tuner {
    std::mutex mutex;
    std::map<int32_t, LtHandle> handles;
    std::map<ShapeKey, Choice> choices;
    int tuned_shapes = 0;
};

Tuner& tuner() {
    static Tuner* instance = new Tuner();  // never destroyed: GEMMs may run from threads during process exit
    return *instance;
}

// cuBLASLt objects of one call, destroyed on every path.
struct Descriptors {
    const LtApi& lt;
    LtMatmulDesc op = nullptr;
    LtLayout a = nullptr, b = nullptr, c = nullptr;
    LtPreference pref = nullptr;
    explicit Descriptors(const LtApi& api) : lt(api) {}
    Descriptors(const Descriptors&) = delete;
    Descriptors& operator=(const Descriptors&) = delete;
    ~Descriptors() {
        if (pref != nullptr) lt.pref_destroy(pref);
        if (c != nullptr) lt.layout_destroy(c);
        if (b != nullptr) lt.layout_destroy(b);
        if (a != nullptr) lt.layout_destroy(a);
        if (op != nullptr) lt.desc_destroy(op);
    }
};

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt's first operand is our B, its second our
// A, and C's row-major [m, n] buffer is a column-major n x m matrix with leading dimension ldc.
sloth_status make_descriptors(const char* fn, const GemmArgs& g, size_t workspace, Descriptors& d) {
    const LtApi& lt = d.lt;
    const int data = g.dtype == SLOTH_DTYPE_BF16 ? kDataBf16 : kDataF16;
    SLOTH_LT_CHECK(fn, "cublasLtMatmulDescCreate", lt.desc_create(&d.op, kComputeF32, kDataF32));
    const int32_t op_first = g.trans_b ? kOpT : kOpN;
    const int32_t op_second = g.trans_a ? kOpT : kOpN;
    SLOTH_LT_CHECK(fn, "setting TRANSA", lt.desc_set(d.op, kDescTransA, &op_first, sizeof(op_first)));
    SLOTH_LT_CHECK(fn, "setting TRANSB", lt.desc_set(d.op, kDescTransB, &op_second, sizeof(op_second)));
    const auto n = static_cast<uint64_t>(g.n), m = static_cast<uint64_t>(g.m), k = static_cast<uint64_t>(g.k);
    SLOTH_LT_CHECK(fn, "cublasLtMatrixLayoutCreate (B)",
                   lt.layout_create(&d.a, data, g.trans_b ? k : n, g.trans_b ? n : k, g.ldb));
    SLOTH_LT_CHECK(fn, "cublasLtMatrixLayoutCreate (A)",
                   lt.layout_create(&d.b, data, g.trans_a ? m : k, g.trans_a ? k : m, g.lda));
    SLOTH_LT_CHECK(fn, "cublasLtMatrixLayoutCreate (C)", lt.layout_create(&d.c, data, n, m, g.ldc));
    SLOTH_LT_CHECK(fn, "cublasLtMatmulPreferenceCreate", lt.pref_create(&d.pref));
    const uint64_t ws = workspace;
    SLOTH_LT_CHECK(fn, "setting MAX_WORKSPACE_BYTES", lt.pref_set(d.pref, kPrefMaxWorkspaceBytes, &ws, sizeof(ws)));
    return SLOTH_OK;
}

// Replaces `choice` by the choice tuned for the same shape with another k when cuBLASLt accepts it for this k (the
// chunks of one loss differ in k only: rows per chunk). Returns whether it did.
bool borrow(const LtApi& lt, LtHandle h, const Descriptors& d, const GemmArgs& g, const ShapeKey& key, const Tuner& t,
            Choice& choice) {
    for (const auto& [other, c] : t.choices) {
        if (!c.tuned || std::get<kKeyK>(other) == g.k) continue;
        ShapeKey same = other;
        std::get<kKeyK>(same) = g.k;
        if (same != key) continue;
        LtHeuristic check{};
        if (lt.algo_check(h, d.op, d.a, d.b, d.c, d.c, &c.algo, &check) == kLtSuccess &&
            check.workspace_size <= static_cast<size_t>(g.workspace_bytes)) {
            choice.algo = c.algo;
            choice.workspace = check.workspace_size;
            choice.borrowed = true;
            return true;
        }
    }
    return false;
}

sloth_status handle_for(const char* fn, Tuner& t, int32_t device, LtHandle* out) {
    auto it = t.handles.find(device);
    if (it == t.handles.end()) {
        LtHandle h = nullptr;
        SLOTH_LT_CHECK(fn, "cublasLtCreate", api().create(&h));
        it = t.handles.emplace(device, h).first;
    }
    *out = it->second;
    return SLOTH_OK;
}

int alignment_bits(const GemmArgs& g) {
    const auto aligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) % 16) == 0 ? 1 : 0; };
    return aligned(g.a) | aligned(g.b) << 1 | aligned(g.c) << 2;
}

LtStatus run(LtHandle h, const Descriptors& d, const GemmArgs& g, const LtAlgo& algo, cudaStream_t s) {
    return d.lt.matmul(h, d.op, &g.alpha, g.b, d.a, g.a, d.b, &g.beta, g.c, d.c, g.c, d.c, &algo, g.workspace,
                       static_cast<size_t>(g.workspace_bytes), s);
}

// Runs `algo` `runs` times between two events and sets *ms to the mean time of one run (the host waits for the stop
// event), *ran to false when cuBLASLt refused the algorithm.
struct Timer {
    cudaEvent_t start = nullptr, stop = nullptr;
    Timer() = default;
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;
    ~Timer() {
        if (start != nullptr) cudaEventDestroy(start);
        if (stop != nullptr) cudaEventDestroy(stop);
    }
    sloth_status init(const char* fn) {
        SLOTH_CUDA_CHECK(fn, cudaEventCreate(&start));
        SLOTH_CUDA_CHECK(fn, cudaEventCreate(&stop));
        return SLOTH_OK;
    }
    sloth_status time(const char* fn, LtHandle h, const Descriptors& d, const GemmArgs& g, const LtAlgo& algo,
                      int64_t runs, cudaStream_t s, bool* ran, float* ms) {
        SLOTH_CUDA_CHECK(fn, cudaEventRecord(start, s));
        *ran = true;
        for (int64_t r = 0; r < runs && *ran; ++r) *ran = run(h, d, g, algo, s) == kLtSuccess;
        SLOTH_CUDA_CHECK(fn, cudaEventRecord(stop, s));
        SLOTH_CUDA_CHECK(fn, cudaEventSynchronize(stop));
        SLOTH_CUDA_CHECK(fn, cudaEventElapsedTime(ms, start, stop));
        *ms /= static_cast<float>(runs);
        return SLOTH_OK;
    }
};

// A candidate algorithm and the workspace it needs for this problem.
struct Candidate {
    LtAlgo algo;
    size_t workspace;
};

// The usable entries of cuBLASLt's heuristic list, in its order.
std::vector<Candidate> heuristic_list(const LtHeuristic* cands, int count) {
    std::vector<Candidate> out;
    for (int i = 0; i < count; ++i)
        if (cands[i].state == kLtSuccess) out.push_back({cands[i].algo, cands[i].workspace_size});
    return out;
}

// A configuration value of `algo` (cluster shape is 16-bit, the others 32-bit); -1 when cuBLASLt cannot say.
int64_t config_value(const LtApi& lt, const LtAlgo& algo, int attr) {
    if (lt.config_get == nullptr) return -1;
    size_t written = 0;
    if (attr == kCfgCluster) {
        uint16_t v = 0;
        return lt.config_get(&algo, attr, &v, sizeof v, &written) == kLtSuccess ? static_cast<int64_t>(v) : -1;
    }
    uint32_t v = 0;
    return lt.config_get(&algo, attr, &v, sizeof v, &written) == kLtSuccess ? static_cast<int64_t>(v) : -1;
}

// Appends `algo` when cuBLASLt accepts it for this problem within the caller's workspace and it is not listed yet.
// Returns whether it did.
bool add_checked(const LtApi& lt, LtHandle h, const Descriptors& d, const GemmArgs& g, const LtAlgo& algo,
                 std::vector<Candidate>& out) {
    if (out.size() >= SLOTH_GEMM_WIDE_CANDIDATES) return false;
    for (const Candidate& c : out)
        if (std::memcmp(&c.algo, &algo, sizeof algo) == 0) return false;
    LtHeuristic check{};
    if (lt.algo_check(h, d.op, d.a, d.b, d.c, d.c, &algo, &check) != kLtSuccess || check.state != kLtSuccess ||
        check.workspace_size > static_cast<size_t>(g.workspace_bytes))
        return false;
    out.push_back({algo, check.workspace_size});
    return true;
}

// The wide search: after the heuristic's list, variants of each of its entries, best-ranked first: the other cluster
// shapes, CTA swizzling flipped, and every other tile shape the algorithm offers (with the entry's stages, else
// cuBLASLt's pick). The heuristic ranks by a model of the GPU at full clock; under a power cap or on shapes that
// split into partial waves, a variant it ranked lower (or never listed) can be faster, and only timing tells.
void widen(const LtApi& lt, LtHandle h, const Descriptors& d, const GemmArgs& g, std::vector<Candidate>& out) {
    if (lt.config_get == nullptr || lt.config_set == nullptr || lt.cap_get == nullptr) return;
    const size_t seeds = out.size();
    for (size_t i = 0; i < seeds && out.size() < SLOTH_GEMM_WIDE_CANDIDATES; ++i) {
        const LtAlgo seed = out[i].algo;
        for (const uint16_t cluster : {kClusterAuto, kCluster1x1, kCluster2x1, kCluster1x2}) {
            LtAlgo v = seed;
            if (lt.config_set(&v, kCfgCluster, &cluster, sizeof cluster) == kLtSuccess) add_checked(lt, h, d, g, v, out);
        }
        uint32_t swizzle_ok = 0;
        size_t written = 0;
        if (lt.cap_get(&seed, kCapSwizzleSupport, &swizzle_ok, sizeof swizzle_ok, &written) == kLtSuccess &&
            swizzle_ok != 0) {
            LtAlgo v = seed;
            const uint32_t flipped = config_value(lt, seed, kCfgSwizzle) == 1 ? 0 : 1;
            if (lt.config_set(&v, kCfgSwizzle, &flipped, sizeof flipped) == kLtSuccess) add_checked(lt, h, d, g, v, out);
        }
        size_t bytes = 0;
        if (lt.cap_get(&seed, kCapTileIds, nullptr, 0, &bytes) != kLtSuccess || bytes < sizeof(uint32_t)) continue;
        std::vector<uint32_t> tiles(bytes / sizeof(uint32_t));
        if (lt.cap_get(&seed, kCapTileIds, tiles.data(), tiles.size() * sizeof(uint32_t), &bytes) != kLtSuccess)
            continue;
        const int64_t own = config_value(lt, seed, kCfgTile);
        for (const uint32_t tile : tiles) {
            if (tile == 0 || tile == own) continue;  // 0: CUBLASLT_MATMUL_TILE_UNDEFINED
            LtAlgo v = seed;
            if (lt.config_set(&v, kCfgTile, &tile, sizeof tile) != kLtSuccess) continue;
            if (add_checked(lt, h, d, g, v, out)) continue;
            const uint32_t any_stages = 0;  // CUBLASLT_MATMUL_STAGES_UNDEFINED: the seed's stages may not fit this tile
            if (lt.config_set(&v, kCfgStages, &any_stages, sizeof any_stages) == kLtSuccess)
                add_checked(lt, h, d, g, v, out);
        }
    }
}

// Times every candidate on the caller's operands (beta = 0, so each run rewrites C with the same product) and keeps
// the fastest; C ends with the chosen candidate's result.
sloth_status tune_shape(const char* fn, LtHandle h, const Descriptors& d, const GemmArgs& g,
                        const std::vector<Candidate>& cands, cudaStream_t s, Choice& out) {
    Timer timer;
    SLOTH_CHECK(timer.init(fn));
    int best = -1;
    float best_ms = std::numeric_limits<float>::infinity(), first_ms = 0;
    for (size_t i = 0; i < cands.size(); ++i) {
        bool ran = false;
        float ms = 0;
        SLOTH_CHECK(timer.time(fn, h, d, g, cands[i].algo, 1, s, &ran, &ms));  // warm-up
        if (!ran) continue;  // a refusal drops the candidate
        SLOTH_CHECK(timer.time(fn, h, d, g, cands[i].algo, SLOTH_GEMM_TUNE_RUNS, s, &ran, &ms));
        if (i == 0) first_ms = ms;
        if (ran && ms < best_ms) {
            best_ms = ms;
            best = static_cast<int>(i);
        }
    }
    if (best < 0)
        return fail(SLOTH_ERROR_UNSUPPORTED, "%s: none of cuBLASLt's %zu candidates ran for m=%lld n=%lld k=%lld", fn,
                    cands.size(), static_cast<long long>(g.m), static_cast<long long>(g.n),
                    static_cast<long long>(g.k));
    out.algo = cands[best].algo;
    out.workspace = cands[best].workspace;
    out.tuned = true;
    out.borrowed = false;
    out.wide = g.tune == SLOTH_GEMM_TUNE_WIDE;
    out.candidates = static_cast<int>(cands.size());
    out.chosen = best;
    out.best_ms = best_ms;
    out.first_ms = first_ms;
    // The last timed candidate wrote C: run the chosen one so that C holds its (deterministic) result.
    SLOTH_LT_CHECK(fn, "cublasLtMatmul", run(h, d, g, out.algo, s));
    return SLOTH_OK;
}

bool capturing(cudaStream_t s) {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(s, &status) != cudaSuccess) {
        cudaGetLastError();
        return true;  // unknown: do not sync
    }
    return status != cudaStreamCaptureStatusNone;
}

// ", algo <id> tile <id> stages <id> splitk <n> cluster <id> swizzle <n>" (cuBLASLt's enum values), or "" when
// cuBLASLt cannot describe its algorithms.
std::string describe(const LtApi& lt, const LtAlgo& algo) {
    if (lt.config_get == nullptr) return "";
    char text[160];
    std::snprintf(text, sizeof text, ", algo %lld tile %lld stages %lld splitk %lld cluster %lld swizzle %lld",
                  static_cast<long long>(config_value(lt, algo, kCfgId)),
                  static_cast<long long>(config_value(lt, algo, kCfgTile)),
                  static_cast<long long>(config_value(lt, algo, kCfgStages)),
                  static_cast<long long>(config_value(lt, algo, kCfgSplitK)),
                  static_cast<long long>(config_value(lt, algo, kCfgCluster)),
                  static_cast<long long>(config_value(lt, algo, kCfgSwizzle)));
    return text;
}

}  // namespace

sloth_status gemm(const char* fn, const GemmArgs& g, int32_t device, void* stream) {
    const LtApi& lt = api();
    if (!lt.ok) return fail(SLOTH_ERROR_UNSUPPORTED, "%s: %s", fn, lt.why.c_str());
    DeviceGuard guard;
    SLOTH_CHECK(guard.enter(fn, device));
    const auto s = static_cast<cudaStream_t>(stream);
    Descriptors d(lt);
    SLOTH_CHECK(make_descriptors(fn, g, static_cast<size_t>(g.workspace_bytes), d));
    const ShapeKey key{device, g.dtype, g.trans_a, g.trans_b, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, alignment_bits(g)};

    Tuner& t = tuner();
    std::lock_guard<std::mutex> lock(t.mutex);  // held while tuning: one tuning per shape, even from several threads
    LtHandle h = nullptr;
    SLOTH_CHECK(handle_for(fn, t, device, &h));
    auto found = t.choices.find(key);
    // Tuning costs ~0.1-0.3 s, worth it only for shapes that come back: the first call of a shape uses the heuristic's
    // choice, a later one (beta = 0, tune) times the candidates. Shapes that never repeat (a kept-row count that changes
    // every batch) then never pay for tuning; kMaxTunedShapes bounds the total.
    // A choice kept for calls with a larger workspace does not serve this one: it gets the heuristic's choice for its
    // own workspace, neither tuned nor remembered.
    const bool kept = found != t.choices.end() && found->second.workspace <= static_cast<size_t>(g.workspace_bytes);
    const bool want_tuning = g.tune != SLOTH_GEMM_NO_TUNING && g.beta == 0.0f && kept && !found->second.tuned &&
                             t.tuned_shapes < kMaxTunedShapes && !capturing(s);
    if (kept && !want_tuning) {
        Choice& choice = found->second;
        // A heuristic choice made before a sibling shape (another k) was tuned may borrow that tuning now: the chunks'
        // dW GEMMs after the first (beta = 1, never tuned themselves) get the first chunk's choice.
        if (!choice.tuned && !choice.borrowed && choice.generation != t.tuned_shapes) {
            choice.generation = t.tuned_shapes;
            borrow(lt, h, d, g, key, t, choice);
        }
        SLOTH_LT_CHECK(fn, "cublasLtMatmul", run(h, d, g, choice.algo, s));
        return SLOTH_OK;
    }
    LtHeuristic cands[SLOTH_GEMM_TUNE_CANDIDATES];
    int count = 0;
    SLOTH_LT_CHECK(fn, "cublasLtMatmulAlgoGetHeuristic",
                   lt.heuristic(h, d.op, d.a, d.b, d.c, d.c, d.pref, want_tuning ? SLOTH_GEMM_TUNE_CANDIDATES : 1,
                                cands, &count));
    if (count < 1)
        return fail(SLOTH_ERROR_UNSUPPORTED, "%s: cuBLASLt offers no algorithm for m=%lld n=%lld k=%lld", fn,
                    static_cast<long long>(g.m), static_cast<long long>(g.n), static_cast<long long>(g.k));
    Choice choice;
    if (want_tuning) {
        std::vector<Candidate> list = heuristic_list(cands, count);
        if (g.tune == SLOTH_GEMM_TUNE_WIDE) widen(lt, h, d, g, list);
        SLOTH_CHECK(tune_shape(fn, h, d, g, list, s, choice));
        t.choices[key] = choice;
        ++t.tuned_shapes;
        return SLOTH_OK;
    }
    // No tuning: the heuristic's choice; for a new shape, one tuned for the same shape with another k if there is one.
    choice.algo = cands[0].algo;
    choice.workspace = cands[0].workspace_size;
    choice.generation = t.tuned_shapes;
    if (found == t.choices.end()) {
        borrow(lt, h, d, g, key, t, choice);
        if (t.choices.size() < kMaxRememberedShapes) t.choices[key] = choice;
    }
    SLOTH_LT_CHECK(fn, "cublasLtMatmul", run(h, d, g, choice.algo, s));
    return SLOTH_OK;
}

void gemm_forget_tuning() {
    Tuner& t = tuner();
    std::lock_guard<std::mutex> lock(t.mutex);
    t.choices.clear();
    t.tuned_shapes = 0;
}

std::string gemm_tuning_report() {
    Tuner& t = tuner();
    std::lock_guard<std::mutex> lock(t.mutex);
    std::string out;
    if (api().ok) out += "cuBLASLt " + std::to_string(api().version) + " (" + api().file + ")\n";
    char line[512];
    for (const auto& [key, c] : t.choices) {
        const int n = std::snprintf(
            line, sizeof line, "device %d %s %c%c m=%" PRId64 " n=%" PRId64 " k=%" PRId64 " lda=%" PRId64
            " ldb=%" PRId64 " ldc=%" PRId64 ": ",
            std::get<kKeyDevice>(key), std::get<kKeyDtype>(key) == SLOTH_DTYPE_BF16 ? "bf16" : "f16",
            std::get<kKeyTransA>(key) ? 'T' : 'N', std::get<kKeyTransB>(key) ? 'T' : 'N', std::get<kKeyM>(key),
            std::get<kKeyN>(key), std::get<kKeyK>(key), std::get<kKeyLda>(key), std::get<kKeyLdb>(key),
            std::get<kKeyLdc>(key));
        out.append(line, n > 0 ? static_cast<size_t>(n) : 0);
        if (c.tuned)
            std::snprintf(line, sizeof line, "%d candidates%s, chose #%d %.3f ms (heuristic #0 %.3f ms), workspace %zu",
                          c.candidates, c.wide ? " (wide)" : "", c.chosen, c.best_ms, c.first_ms, c.workspace);
        else
            std::snprintf(line, sizeof line, "%s, workspace %zu",
                          c.borrowed ? "borrowed the choice tuned for another k" : "untuned (heuristic #0)", c.workspace);
        out += line;
        out += describe(api(), c.algo);
        out += '\n';
    }
    return out;
}

}  // namespace sloth::cuda
