// Microbenchmark (not part of the library): what one dependency between two phases of work costs on this GPU, by the
// mechanism that carries it. Built and run by a GPU step (tools/gpu-steps/lease-r28-3.sh):
//     nvcc -O3 -std=c++17 -arch=sm_90 -o sync_latency native/tools/sync_latency.cu && ./sync_latency
//
// Why: at batch 1 the decode step is nine dependent kernels a layer, each 3-11 us whatever its bytes
// (bench/results/2026-12-07-round26), and round 18's persistent step lost to the launches because its grid barrier
// took 4.4 us (an arrival, a reset and a release: four dependent L2 round trips). cuda/decode_persistent.cuh proposes a
// barrier of one fire-and-forget arrival on a counter that only grows, polled with acquire loads, and per-dependency
// flags. Whether a persistent step can beat the launches turns on what those cost next to a kernel boundary, measured
// here on the same toy work: each phase, every block reads one value another block wrote in the previous phase and
// writes one value (a true dependency, as a GEMV's input is the previous phase's output).
//
// Mechanisms, each over `phases` phases of `blocks` blocks (one per SM, all co-resident: cooperative launches):
//   launches       one kernel per phase in a CUDA graph, plain stream order;
//   launches+pdl   the same with programmatic dependent launch (griddepcontrol.wait / launch_dependents), as the
//                  decoder's step runs today;
//   grid-barrier   one persistent kernel; a barrier per phase as decode_persistent.cuh's (count, reset, generation);
//   counter        one persistent kernel; per phase each block adds 1 (red.release) to a counter that only grows and
//                  waits (ld.acquire) until it holds (phase + 1) x blocks: all-to-all, as a GEMV's dependency;
//   flag           one persistent kernel; each block waits only for the one block whose value it reads (a per-block
//                  flag set with st.release to the phase): the one-to-one lower bound of per-dependency flags.
// Prints microseconds per phase for each; the lower the better.
#include <cuda_runtime.h>

#include <cstdlib>  // first: clang's CUDA wrapper of <algorithm> needs malloc declared (the syntax check)
#include <algorithm>
#include <cstdio>
#include <initializer_list>

namespace {

#define CHECK(call)                                                                                   \
    do {                                                                                              \
        const cudaError_t e_ = (call);                                                                \
        if (e_ != cudaSuccess) {                                                                      \
            std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            std::exit(1);                                                                             \
        }                                                                                             \
    } while (0)

constexpr int kThreads = 256;

__device__ __forceinline__ void red_release_add(unsigned* p, unsigned v) {
    asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ unsigned ld_acquire(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void st_release(unsigned* p, unsigned v) {
    asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ unsigned ld_relaxed(const unsigned* p) {
    unsigned v;
    asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

// The toy work of phase p in block i: read what block (i + 1) % n wrote in phase p - 1, write one value. data holds
// one value per (phase, block), so no phase overwrites what a slower block has still to read. Thread 0 only.
__device__ __forceinline__ void work(float* data, int p, unsigned n) {
    const unsigned i = blockIdx.x;
    const float in = p > 0 ? __ldcg(data + static_cast<size_t>(p - 1) * n + (i + 1) % n) : 0.0f;
    data[static_cast<size_t>(p) * n + i] = in + 1.0f;
}

// One phase as a kernel of its own (the launch mechanisms). pdl: wait for the previous grid, then let the next launch.
__global__ void phase_kernel(float* data, int p, bool pdl) {
    if (pdl) {
        asm volatile("griddepcontrol.wait;" ::: "memory");
        asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    }
    if (threadIdx.x == 0) work(data, p, gridDim.x);
}

// decode_persistent.cuh's barrier: bar[0] counts arrivals, bar[1] is the generation.
__device__ __forceinline__ void grid_barrier(unsigned* bar) {
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned g = ld_relaxed(bar + 1);
        __threadfence();
        if (atomicAdd(bar, 1u) + 1 == gridDim.x) {
            bar[0] = 0;
            st_release(bar + 1, g + 1);
        } else {
            while (ld_acquire(bar + 1) == g) {
            }
        }
    }
    __syncthreads();
}

__global__ void persistent_grid_barrier(float* data, int phases, unsigned* bar) {
    for (int p = 0; p < phases; ++p) {
        if (threadIdx.x == 0) work(data, p, gridDim.x);
        grid_barrier(bar);
    }
}

__global__ void persistent_counter(float* data, int phases, unsigned* counter) {
    for (int p = 0; p < phases; ++p) {
        if (threadIdx.x == 0) {
            work(data, p, gridDim.x);
            red_release_add(counter, 1u);
            const unsigned target = static_cast<unsigned>(p + 1) * gridDim.x;
            while (ld_acquire(counter) < target) {
            }
        }
        __syncthreads();
    }
}

__global__ void persistent_flag(float* data, int phases, unsigned* flags) {
    const unsigned producer = (blockIdx.x + 1) % gridDim.x;
    for (int p = 0; p < phases; ++p) {
        if (threadIdx.x == 0) {
            if (p > 0)
                while (ld_acquire(flags + producer) < static_cast<unsigned>(p)) {
                }
            work(data, p, gridDim.x);
            st_release(flags + blockIdx.x, static_cast<unsigned>(p + 1));
        }
        __syncthreads();
    }
}

// kernel<<<blocks, kThreads, 0, s>>>(args...) through cudaLaunchKernelEx, with `attribute` when not null.
template <class... Params, class... Args>
cudaError_t launch_with(const cudaLaunchAttribute* attribute, void (*kernel)(Params...), unsigned blocks, cudaStream_t s,
                        Args... args) {
    cudaLaunchAttribute copy[1];
    if (attribute != nullptr) copy[0] = *attribute;
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(blocks);
    config.blockDim = dim3(kThreads);
    config.stream = s;
    config.attrs = copy;
    config.numAttrs = attribute != nullptr ? 1 : 0;
    return cudaLaunchKernelEx(&config, kernel, args...);
}

cudaError_t launch_phase(float* data, int p, unsigned blocks, bool pdl, cudaStream_t s) {
    cudaLaunchAttribute attribute;
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    return launch_with(pdl ? &attribute : nullptr, phase_kernel, blocks, s, data, p, pdl);
}

// A persistent kernel, every block co-resident (or the launch fails).
cudaError_t launch_cooperative(void (*kernel)(float*, int, unsigned*), unsigned blocks, cudaStream_t s, float* data,
                               int phases, unsigned* sync) {
    cudaLaunchAttribute attribute;
    attribute.id = cudaLaunchAttributeCooperative;
    attribute.val.cooperative = 1;
    return launch_with(&attribute, kernel, blocks, s, data, phases, sync);
}

// Milliseconds of `run` (already warmed up once by the caller's first call), the median of 5.
template <class Run>
float time_ms(cudaStream_t s, Run&& run) {
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    float times[5];
    for (float& t : times) {
        CHECK(cudaEventRecord(a, s));
        run();
        CHECK(cudaEventRecord(b, s));
        CHECK(cudaEventSynchronize(b));
        CHECK(cudaEventElapsedTime(&t, a, b));
    }
    CHECK(cudaEventDestroy(a));
    CHECK(cudaEventDestroy(b));
    std::sort(times, times + 5);
    return times[2];
}

// Checks that every phase's chain ran: the last phase's value of each block is the number of phases.
void check_result(const float* data, int phases, unsigned blocks, const char* what) {
    float* host = static_cast<float*>(std::malloc(sizeof(float) * blocks));
    CHECK(cudaMemcpy(host, data + static_cast<size_t>(phases - 1) * blocks, sizeof(float) * blocks, cudaMemcpyDeviceToHost));
    for (unsigned i = 0; i < blocks; ++i)
        if (host[i] != static_cast<float>(phases)) {
            std::fprintf(stderr, "%s: block %u ended with %g, not %d\n", what, i, host[i], phases);
            std::exit(2);
        }
    std::free(host);
}

}  // namespace

int main(int argc, char** argv) {
    const int phases = argc > 1 ? std::atoi(argv[1]) : 1000;
    cudaDeviceProp prop{};
    CHECK(cudaGetDeviceProperties(&prop, 0));
    const unsigned blocks = static_cast<unsigned>(prop.multiProcessorCount);
    std::printf("%s, %u blocks of %d threads, %d phases\n", prop.name, blocks, kThreads, phases);
    cudaStream_t s;
    CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    float* data = nullptr;
    unsigned* sync = nullptr;
    CHECK(cudaMalloc(&data, sizeof(float) * static_cast<size_t>(phases) * blocks));
    CHECK(cudaMalloc(&sync, sizeof(unsigned) * (blocks + 2)));

    for (const bool pdl : {false, true}) {
        CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
        for (int p = 0; p < phases; ++p) CHECK(launch_phase(data, p, blocks, pdl, s));
        cudaGraph_t graph;
        CHECK(cudaStreamEndCapture(s, &graph));
        cudaGraphExec_t exec;
        CHECK(cudaGraphInstantiate(&exec, graph, 0));
        CHECK(cudaGraphLaunch(exec, s));  // warm-up
        const float ms = time_ms(s, [&] { CHECK(cudaGraphLaunch(exec, s)); });
        CHECK(cudaStreamSynchronize(s));
        check_result(data, phases, blocks, pdl ? "launches+pdl" : "launches");
        std::printf("%-14s %8.3f us/phase\n", pdl ? "launches+pdl" : "launches", 1000.0f * ms / phases);
        CHECK(cudaGraphExecDestroy(exec));
        CHECK(cudaGraphDestroy(graph));
    }
    struct Persistent {
        const char* name;
        void (*kernel)(float*, int, unsigned*);
    };
    for (const Persistent& k : {Persistent{"grid-barrier", persistent_grid_barrier}, Persistent{"counter", persistent_counter},
                                Persistent{"flag", persistent_flag}}) {
        auto run = [&] {
            CHECK(cudaMemsetAsync(sync, 0, sizeof(unsigned) * (blocks + 2), s));
            CHECK(launch_cooperative(k.kernel, blocks, s, data, phases, sync));
        };
        run();  // warm-up
        const float ms = time_ms(s, run);
        CHECK(cudaStreamSynchronize(s));
        check_result(data, phases, blocks, k.name);
        std::printf("%-14s %8.3f us/phase\n", k.name, 1000.0f * ms / phases);
    }
    CHECK(cudaFree(data));
    CHECK(cudaFree(sync));
    CHECK(cudaStreamDestroy(s));
    return 0;
}
