// ggml block quantization (Q8_0, Q4_K, Q5_K, Q6_K) on the host: the shared per-block functions of
// src/ggml_quants.h over every block. Rows are contiguous and a multiple of the block size (checked by the export),
// so the rows are one flat run of blocks. Built with -ffp-contract=off (see ggml_quants.h on float semantics).
#include "../src/backends.h"
#include "../src/ggml_quants.h"
#include "parallel.h"

namespace sloth::cpu {

sloth_status ggml_quantize(const char* fn, const GgmlQuantArgs& a) {
    const int64_t elements = ggml::block_elements(a.type);
    const int64_t bytes = ggml::block_bytes(a.type);
    const int64_t blocks = a.rows * (a.row_length / elements);
    auto* out = static_cast<uint8_t*>(a.out);
    // Work per block in rough element operations: a K-quant super-block runs a ~20-step search over its 256 values.
    const int64_t work = elements == ggml::kQkK ? int64_t{256} * 64 : int64_t{32} * 4;
    return parallel_ranges(fn, blocks, work, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) ggml::quantize_block(a.type, a.x + b * elements, out + b * bytes);
    });
}

}  // namespace sloth::cpu
