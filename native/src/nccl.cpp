// NCCL collectives, loaded at run time: libslothsharp has no link-time dependency on NCCL (a CPU-only machine, or a
// GPU machine without NCCL, loads it fine and answers "unsupported"). The symbols are resolved with dlsym into
// the handful of declarations below, written from NCCL's public API documentation (the enum values and the
// 128-byte unique id are stable across NCCL 2.x); NCCL's header is not needed. Streams cross as void* (a
// cudaStream_t is a pointer), so this file needs no CUDA header and is compiled in every build.
#include "backends.h"
#include "dynamic_symbols.h"
#include "validate.h"

#include <dlfcn.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

namespace sloth {
namespace {

// ---- the NCCL declarations used here ------------------------------------------------------------------------
using NcclResult = int;  // ncclResult_t
constexpr NcclResult kNcclSuccess = 0;
constexpr NcclResult kNcclInvalidArgument = 4;
constexpr NcclResult kNcclInvalidUsage = 5;
struct NcclUniqueId {  // ncclUniqueId
    char internal[SLOTH_NCCL_UNIQUE_ID_BYTES];
};
using NcclComm = void*;  // ncclComm_t: a pointer to an opaque struct

// ncclDataType_t and ncclRedOp_t values.
constexpr int kNcclInt8 = 0, kNcclUint8 = 1, kNcclInt32 = 2, kNcclInt64 = 4, kNcclFloat16 = 6, kNcclFloat32 = 7,
              kNcclFloat64 = 8, kNcclBfloat16 = 9;
constexpr int kNcclSum = 0, kNcclMax = 2, kNcclAvg = 4;

// ncclBfloat16 and ncclAvg appeared in NCCL 2.10 (version code 2 * 10000 + 10 * 100).
constexpr int kMinNcclVersion = 21000;

struct NcclApi {
    bool ok = false;
    std::string why;  // when !ok: what is missing, and what to do
    int version = 0;
    NcclResult (*get_version)(int*) = nullptr;
    NcclResult (*get_unique_id)(NcclUniqueId*) = nullptr;
    NcclResult (*comm_init_rank)(NcclComm*, int, NcclUniqueId, int) = nullptr;
    NcclResult (*comm_destroy)(NcclComm) = nullptr;
    const char* (*get_error_string)(NcclResult) = nullptr;
    const char* (*get_last_error)(NcclComm) = nullptr;  // optional (NCCL >= 2.13)
    NcclResult (*all_reduce)(const void*, void*, size_t, int, int, NcclComm, void*) = nullptr;
    NcclResult (*all_gather)(const void*, void*, size_t, int, NcclComm, void*) = nullptr;
    NcclResult (*reduce_scatter)(const void*, void*, size_t, int, int, NcclComm, void*) = nullptr;
    NcclResult (*broadcast)(const void*, void*, size_t, int, int, NcclComm, void*) = nullptr;
    NcclResult (*group_start)() = nullptr;
    NcclResult (*group_end)() = nullptr;
};

NcclApi load() {
    NcclApi a;
    if (!cuda::built()) {
        a.why = "this libslothsharp was built without CUDA (NCCL works on CUDA device memory); rebuild on a machine "
                "with nvcc (./build.sh native)";
        return a;
    }
    const char* override_path = std::getenv("SLOTHSHARP_NCCL_LIBRARY");
    const char* file = override_path != nullptr && override_path[0] != '\0' ? override_path : "libnccl.so.2";
    // The handle is kept for the life of the process (communicators may live until exit).
    void* handle = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
        const char* err = dlerror();
        a.why = std::string("could not load ") + file + " (" + (err != nullptr ? err : "dlopen failed") +
                "). NCCL comes with PyTorch's CUDA wheels (site-packages/nvidia/nccl/lib, or torch/lib) and with "
                "NVIDIA's libnccl2 package: put its directory on LD_LIBRARY_PATH, or set SLOTHSHARP_NCCL_LIBRARY "
                "to the file";
        return a;
    }
    std::string missing;
    resolve_symbol(handle, "ncclGetVersion", a.get_version, missing);
    resolve_symbol(handle, "ncclGetUniqueId", a.get_unique_id, missing);
    resolve_symbol(handle, "ncclCommInitRank", a.comm_init_rank, missing);
    resolve_symbol(handle, "ncclCommDestroy", a.comm_destroy, missing);
    resolve_symbol(handle, "ncclGetErrorString", a.get_error_string, missing);
    resolve_symbol(handle, "ncclAllReduce", a.all_reduce, missing);
    resolve_symbol(handle, "ncclAllGather", a.all_gather, missing);
    resolve_symbol(handle, "ncclReduceScatter", a.reduce_scatter, missing);
    resolve_symbol(handle, "ncclBroadcast", a.broadcast, missing);
    resolve_symbol(handle, "ncclGroupStart", a.group_start, missing);
    resolve_symbol(handle, "ncclGroupEnd", a.group_end, missing);
    if (!missing.empty()) {
        a.why = std::string(file) + " lacks " + missing + ": not a usable NCCL 2 library";
        return a;
    }
    std::string optional_missing;
    resolve_symbol(handle, "ncclGetLastError", a.get_last_error, optional_missing);
    if (a.get_version(&a.version) != kNcclSuccess) a.version = 0;
    if (a.version < kMinNcclVersion) {
        a.why = std::string(file) + " is NCCL version code " + std::to_string(a.version) +
                "; SlothSharp needs NCCL 2.10 or newer (bfloat16 and average reductions)";
        return a;
    }
    a.ok = true;
    return a;
}

const NcclApi& api() {
    static const NcclApi instance = load();  // thread-safe, once per process
    return instance;
}

sloth_status unavailable(const char* fn) {
    return fail(SLOTH_ERROR_UNSUPPORTED, "%s: NCCL is unavailable: %s", fn, api().why.c_str());
}

// A communicator as handed to the caller: NCCL's handle plus what the collectives check against.
struct Comm {
    uint64_t magic;
    NcclComm comm;
    int32_t rank;
    int32_t nranks;
    int32_t device;
};
constexpr uint64_t kCommMagic = 0x736c6f74686e636cULL;  // "slothncl"

sloth_status require_comm(const char* fn, void* handle, Comm** out) {
    SLOTH_CHECK(require_ptr(fn, handle, "comm"));
    auto* c = static_cast<Comm*>(handle);
    if (c->magic != kCommMagic)
        return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: comm is not a live communicator of sloth_nccl_comm_init "
                    "(destroyed already?)", fn);
    *out = c;
    return SLOTH_OK;
}

sloth_status nccl_fail(const char* fn, const char* what, NcclResult r, NcclComm comm) {
    const NcclApi& a = api();
    const char* text = a.get_error_string != nullptr ? a.get_error_string(r) : "unknown";
    const char* detail = a.get_last_error != nullptr ? a.get_last_error(comm) : nullptr;
    const sloth_status status = r == kNcclInvalidArgument || r == kNcclInvalidUsage ? SLOTH_ERROR_INVALID_ARGUMENT
                                                                                    : SLOTH_ERROR_CUDA;
    return fail(status, "%s: %s failed: %s (ncclResult_t %d)%s%s", fn, what, text, r,
                detail != nullptr && detail[0] != '\0' ? ": " : "", detail != nullptr ? detail : "");
}

sloth_status nccl_dtype(const char* fn, int dtype, int* out) {
    switch (dtype) {
        case SLOTH_COMM_U8: *out = kNcclUint8; return SLOTH_OK;
        case SLOTH_COMM_I8: *out = kNcclInt8; return SLOTH_OK;
        case SLOTH_COMM_I32: *out = kNcclInt32; return SLOTH_OK;
        case SLOTH_COMM_I64: *out = kNcclInt64; return SLOTH_OK;
        case SLOTH_COMM_F16: *out = kNcclFloat16; return SLOTH_OK;
        case SLOTH_COMM_BF16: *out = kNcclBfloat16; return SLOTH_OK;
        case SLOTH_COMM_F32: *out = kNcclFloat32; return SLOTH_OK;
        case SLOTH_COMM_F64: *out = kNcclFloat64; return SLOTH_OK;
        default:
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: dtype = %d is not a sloth_comm_dtype (0..7)", fn, dtype);
    }
}

sloth_status nccl_op(const char* fn, int op, int* out) {
    switch (op) {
        case SLOTH_COMM_SUM: *out = kNcclSum; return SLOTH_OK;
        case SLOTH_COMM_AVG: *out = kNcclAvg; return SLOTH_OK;
        case SLOTH_COMM_MAX: *out = kNcclMax; return SLOTH_OK;
        default:
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: op = %d is not a sloth_comm_op (0 = sum, 1 = avg, 2 = max)",
                        fn, op);
    }
}

// Runs `body` with `device` current (through the CUDA backend, which owns the runtime calls).
template <class Body>
sloth_status on_device(const char* fn, int32_t device, Body& body) {
    return cuda::run_on_device(fn, device, [](void* ctx) { return (*static_cast<Body*>(ctx))(); }, &body);
}

// The checks every collective shares; count = 0 returns OK before the pointer checks (nothing to do on any rank).
struct Collective {
    Comm* comm = nullptr;
    int dtype = 0;
    int op = 0;
};

sloth_status check_collective(const char* fn, const void* send, const void* recv, int64_t count, int dtype,
                              const int* op, void* comm, Collective* out, bool* empty) {
    *empty = false;
    if (!api().ok) return unavailable(fn);
    SLOTH_CHECK(require_count(fn, count, 0, "count"));
    SLOTH_CHECK(nccl_dtype(fn, dtype, &out->dtype));
    if (op != nullptr) SLOTH_CHECK(nccl_op(fn, *op, &out->op));
    SLOTH_CHECK(require_comm(fn, comm, &out->comm));
    if (count == 0) {
        *empty = true;
        return SLOTH_OK;
    }
    SLOTH_CHECK(require_ptr(fn, send, "send"));
    SLOTH_CHECK(require_ptr(fn, recv, "recv"));
    return SLOTH_OK;
}

// Runs one NCCL collective on the communicator's device (NCCL takes the device from the current one) and turns its
// result into a status naming the NCCL function.
template <class Call>
sloth_status run_collective(const char* fn, const char* nccl_name, const Collective& k, Call call) {
    NcclResult r = kNcclSuccess;
    auto body = [&]() -> sloth_status {
        r = call();
        return SLOTH_OK;
    };
    SLOTH_CHECK(on_device(fn, k.comm->device, body));
    return r == kNcclSuccess ? SLOTH_OK : nccl_fail(fn, nccl_name, r, k.comm->comm);
}

}  // namespace
}  // namespace sloth

using namespace sloth;

extern "C" {

SLOTH_API sloth_status sloth_nccl_available(int32_t* out, int32_t* version) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, out, "out"));
        const NcclApi& a = api();
        *out = a.ok ? 1 : 0;
        if (version != nullptr) *version = a.ok ? a.version : 0;
        return SLOTH_OK;
    });
}

SLOTH_API sloth_status sloth_nccl_get_unique_id(uint8_t* out) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, out, "out"));
        if (!api().ok) return unavailable(fn);
        NcclUniqueId id{};
        const NcclResult r = api().get_unique_id(&id);
        if (r != kNcclSuccess) return nccl_fail(fn, "ncclGetUniqueId", r, nullptr);
        std::memcpy(out, id.internal, sizeof id.internal);
        return SLOTH_OK;
    });
}

SLOTH_API sloth_status sloth_nccl_comm_init(const uint8_t* id, int32_t nranks, int32_t rank, int32_t device,
                                            void** comm) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        SLOTH_CHECK(require_ptr(fn, id, "id"));
        SLOTH_CHECK(require_ptr(fn, comm, "comm"));
        *comm = nullptr;
        if (nranks < 1) return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: nranks = %d must be >= 1", fn, nranks);
        if (rank < 0 || rank >= nranks)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: rank = %d must be in [0, nranks = %d)", fn, rank, nranks);
        if (device < 0)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: device = %d must be a CUDA device (>= 0)", fn, device);
        if (!api().ok) return unavailable(fn);
        // NVLink SHARP needs multicast objects this environment does not provide; a user's own setting wins.
        setenv("NCCL_NVLS_ENABLE", "0", 0);
        NcclUniqueId uid{};
        std::memcpy(uid.internal, id, sizeof uid.internal);
        NcclComm raw = nullptr;
        NcclResult r = kNcclSuccess;
        auto body = [&]() -> sloth_status {
            r = api().comm_init_rank(&raw, nranks, uid, rank);
            return SLOTH_OK;
        };
        SLOTH_CHECK(on_device(fn, device, body));
        if (r != kNcclSuccess) return nccl_fail(fn, "ncclCommInitRank", r, nullptr);
        *comm = new Comm{kCommMagic, raw, rank, nranks, device};
        return SLOTH_OK;
    });
}

SLOTH_API sloth_status sloth_nccl_comm_destroy(void* comm) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        if (comm == nullptr) return SLOTH_OK;
        Comm* c = nullptr;
        SLOTH_CHECK(require_comm(fn, comm, &c));
        const NcclResult r = api().comm_destroy(c->comm);
        c->magic = 0;
        delete c;
        if (r != kNcclSuccess) return nccl_fail(fn, "ncclCommDestroy", r, nullptr);
        return SLOTH_OK;
    });
}

SLOTH_API sloth_status sloth_nccl_comm_info(void* comm, int32_t* rank, int32_t* nranks, int32_t* device) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        Comm* c = nullptr;
        SLOTH_CHECK(require_comm(fn, comm, &c));
        if (rank != nullptr) *rank = c->rank;
        if (nranks != nullptr) *nranks = c->nranks;
        if (device != nullptr) *device = c->device;
        return SLOTH_OK;
    });
}

SLOTH_API sloth_status sloth_nccl_all_reduce(const void* send, void* recv, int64_t count, sloth_comm_dtype dtype,
                                             sloth_comm_op op, void* comm, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        Collective k;
        bool empty = false;
        const int op_value = op;
        SLOTH_CHECK(check_collective(fn, send, recv, count, dtype, &op_value, comm, &k, &empty));
        if (empty) return SLOTH_OK;
        return run_collective(fn, "ncclAllReduce", k, [&] {
            return api().all_reduce(send, recv, static_cast<size_t>(count), k.dtype, k.op, k.comm->comm, stream);
        });
    });
}

SLOTH_API sloth_status sloth_nccl_all_gather(const void* send, void* recv, int64_t count, sloth_comm_dtype dtype,
                                             void* comm, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        Collective k;
        bool empty = false;
        SLOTH_CHECK(check_collective(fn, send, recv, count, dtype, nullptr, comm, &k, &empty));
        if (empty) return SLOTH_OK;
        return run_collective(fn, "ncclAllGather", k, [&] {
            return api().all_gather(send, recv, static_cast<size_t>(count), k.dtype, k.comm->comm, stream);
        });
    });
}

SLOTH_API sloth_status sloth_nccl_reduce_scatter(const void* send, void* recv, int64_t count, sloth_comm_dtype dtype,
                                                 sloth_comm_op op, void* comm, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        Collective k;
        bool empty = false;
        const int op_value = op;
        SLOTH_CHECK(check_collective(fn, send, recv, count, dtype, &op_value, comm, &k, &empty));
        if (empty) return SLOTH_OK;
        return run_collective(fn, "ncclReduceScatter", k, [&] {
            return api().reduce_scatter(send, recv, static_cast<size_t>(count), k.dtype, k.op, k.comm->comm, stream);
        });
    });
}

SLOTH_API sloth_status sloth_nccl_broadcast(const void* send, void* recv, int64_t count, sloth_comm_dtype dtype,
                                            int32_t root, void* comm, void* stream) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        Collective k;
        bool empty = false;
        SLOTH_CHECK(check_collective(fn, send, recv, count, dtype, nullptr, comm, &k, &empty));
        if (root < 0 || root >= k.comm->nranks)
            return fail(SLOTH_ERROR_INVALID_ARGUMENT, "%s: root = %d must be in [0, nranks = %d)", fn, root,
                        k.comm->nranks);
        if (empty) return SLOTH_OK;
        return run_collective(fn, "ncclBroadcast", k, [&] {
            return api().broadcast(send, recv, static_cast<size_t>(count), k.dtype, root, k.comm->comm, stream);
        });
    });
}

SLOTH_API sloth_status sloth_nccl_group_start(void) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        if (!api().ok) return unavailable(fn);
        const NcclResult r = api().group_start();
        return r == kNcclSuccess ? SLOTH_OK : nccl_fail(fn, "ncclGroupStart", r, nullptr);
    });
}

SLOTH_API sloth_status sloth_nccl_group_end(void) {
    const char* fn = __func__;
    return guarded(fn, [&] {
        if (!api().ok) return unavailable(fn);
        const NcclResult r = api().group_end();
        return r == kNcclSuccess ? SLOTH_OK : nccl_fail(fn, "ncclGroupEnd", r, nullptr);
    });
}

}  // extern "C"
