// Rotary position embedding (rotate_half convention) on the host; every product and sum rounded to the dtype as
// PyTorch rounds `x * cos + rotate_half(x) * sin` evaluated in that dtype. Partial rotary: only the first rotary_dim
// features turn; the rest are copied.
#include "../src/backends.h"
#include "../src/status.h"
#include "float_convert.h"
#include "parallel.h"

#include <cstring>

namespace sloth::cpu {

sloth_status rope(const char* fn, const RopeArgs& a) {
    const sloth_dtype dt = a.dtype;
    const int64_t rows = a.batch * a.heads * a.seq;
    const int64_t d = a.head_dim, rd = a.rotary_dim, half = a.rotary_dim / 2;
    SLOTH_CHECK(parallel_ranges(fn, rows, d, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t t = a.layout == SLOTH_ROPE_BHTD ? r % a.seq : (r / a.heads) % a.seq;
            const int64_t b = r / (a.heads * a.seq);
            const int64_t cs = ((a.cos_batch == 1 ? 0 : b) * a.seq + t) * rd;
            const int64_t xs = r * d;
            for (int64_t i = 0; i < half; ++i) {  // one pair at a time, so out may equal x
                const float v1 = load_as_f32(a.x, dt, xs + i), v2 = load_as_f32(a.x, dt, xs + i + half);
                const float c1 = load_as_f32(a.cos, dt, cs + i), c2 = load_as_f32(a.cos, dt, cs + i + half);
                const float s1 = load_as_f32(a.sin, dt, cs + i), s2 = load_as_f32(a.sin, dt, cs + i + half);
                float o1, o2;
                if (!a.inverse) {
                    o1 = round_to(dt, v1 * c1) - round_to(dt, v2 * s1);
                    o2 = round_to(dt, v2 * c2) + round_to(dt, v1 * s2);
                } else {
                    o1 = round_to(dt, v1 * c1) + round_to(dt, v2 * s2);
                    o2 = round_to(dt, v2 * c2) - round_to(dt, v1 * s1);
                }
                store_from_f32(a.out, dt, xs + i, o1);
                store_from_f32(a.out, dt, xs + i + half, o2);
            }
            if (rd < d && a.out != a.x) {  // the pass-through features: bits copied unchanged, as torch.cat does
                const size_t es = static_cast<size_t>(dtype_size(dt));
                std::memcpy(static_cast<char*>(a.out) + (xs + rd) * es, static_cast<const char*>(a.x) + (xs + rd) * es,
                            static_cast<size_t>(d - rd) * es);
            }
        }
    }));
    return SLOTH_OK;
}

}  // namespace sloth::cpu
