// A minimal parallel-for over [0, count) for the CPU kernels: contiguous ranges, one per hardware thread, used only
// when the work is large enough to repay the thread start-up.
#pragma once
#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace sloth::cpu {

template <class Body>  // Body(int64_t begin, int64_t end); must not throw
void parallel_ranges(int64_t count, int64_t work_per_item, Body body) {
    const int64_t hw = std::max<int64_t>(1, std::thread::hardware_concurrency());
    const int64_t min_work_per_thread = int64_t{1} << 20;
    const int64_t by_work = std::max<int64_t>(1, count * std::max<int64_t>(1, work_per_item) / min_work_per_thread);
    const int64_t threads = std::min({hw, by_work, count});
    if (threads <= 1) {
        body(0, count);
        return;
    }
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(threads - 1));
    const int64_t step = (count + threads - 1) / threads;
    for (int64_t t = 1; t < threads; ++t) {
        const int64_t b = t * step, e = std::min(count, b + step);
        if (b < e) pool.emplace_back([=] { body(b, e); });
    }
    body(0, std::min(count, step));
    for (auto& th : pool) th.join();
}

}  // namespace sloth::cpu
