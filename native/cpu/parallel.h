// A minimal parallel-for over [0, count) for the CPU kernels: contiguous ranges, one per hardware thread, used only
// when the work is large enough to repay the thread start-up.
//
// No exception leaves a worker (one escaping a std::thread would call std::terminate and end the host process): each
// range runs under a catch, the first failure is kept, and after every thread has joined it becomes the status the
// kernel returns (std::bad_alloc: "out of host memory in <export>"), with the message in the caller's error slot.
#pragma once
#include "../src/validate.h"  // fail(), SLOTH_CHECK for the callers

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace sloth::cpu {

namespace detail {

// Test-only fault injection: SLOTHSHARP_TEST_WORKER_FAULT=alloc makes every range throw std::bad_alloc, as a failed
// allocation inside a kernel would. Read on each call (not cached), so a test can set and unset it around one call.
inline bool worker_fault_requested() {
    const char* v = std::getenv("SLOTHSHARP_TEST_WORKER_FAULT");
    return v != nullptr && std::strcmp(v, "alloc") == 0;
}

// The first failure among the ranges of one parallel_ranges call.
struct FirstError {
    std::atomic<bool> set{false};
    bool out_of_memory = false;
    std::string what;

    void record(bool oom, const char* message) noexcept {
        bool expected = false;
        if (!set.compare_exchange_strong(expected, true)) return;  // keep the first
        out_of_memory = oom;
        try {
            what.assign(message);
        } catch (...) {
            // No memory for the text: the status still says what happened.
        }
    }
};

template <class Body>
void run_range(Body& body, int64_t b, int64_t e, bool inject_fault, FirstError& error) noexcept {
    try {
        if (inject_fault) throw std::bad_alloc();
        body(b, e);
    } catch (const std::bad_alloc&) {
        error.record(true, "");
    } catch (const std::exception& ex) {
        error.record(false, ex.what());
    } catch (...) {
        error.record(false, "unknown exception");
    }
}

}  // namespace detail

// Runs body(begin, end) over [0, count) split into ranges. `fn` names the export, for the error message. Returns
// SLOTH_OK, or SLOTH_ERROR_INTERNAL with the message set when a range threw.
template <class Body>  // Body(int64_t begin, int64_t end)
[[nodiscard]] sloth_status parallel_ranges(const char* fn, int64_t count, int64_t work_per_item, Body body) noexcept {
    const bool inject_fault = detail::worker_fault_requested();
    detail::FirstError error;
    const int64_t hw = std::max<int64_t>(1, std::thread::hardware_concurrency());
    const int64_t min_work_per_thread = int64_t{1} << 20;
    const int64_t by_work = std::max<int64_t>(1, count * std::max<int64_t>(1, work_per_item) / min_work_per_thread);
    const int64_t threads = std::min({hw, by_work, count});
    if (threads <= 1) {
        detail::run_range(body, 0, count, inject_fault, error);
    } else {
        std::vector<std::thread> pool;
        const int64_t step = (count + threads - 1) / threads;
        int64_t t = 1;
        try {
            pool.reserve(static_cast<size_t>(threads - 1));
            for (; t < threads; ++t) {
                const int64_t b = t * step, e = std::min(count, b + step);
                if (b < e) pool.emplace_back([&body, &error, b, e, inject_fault] { detail::run_range(body, b, e, inject_fault, error); });
            }
        } catch (...) {
            // No thread (std::system_error) or no memory for the pool: the ranges not handed out run here.
            for (; t < threads; ++t) {
                const int64_t b = t * step, e = std::min(count, b + step);
                if (b < e) detail::run_range(body, b, e, inject_fault, error);
            }
        }
        detail::run_range(body, 0, std::min(count, step), inject_fault, error);
        for (auto& th : pool) th.join();
    }
    if (!error.set.load()) return SLOTH_OK;
    if (error.out_of_memory)
        return fail(SLOTH_ERROR_INTERNAL, "out of host memory in %s (a CPU worker thread could not allocate)", fn);
    return fail(SLOTH_ERROR_INTERNAL, "%s: unexpected C++ exception in a CPU worker thread: %s", fn, error.what.c_str());
}

}  // namespace sloth::cpu
