// Quantizes NaN-laden and subnormal-range blocks to Q8_0, Q4_K, Q5_K and Q6_K with native/src/ggml_quants.h and
// writes the bytes to <prefix>.<type>.bin. run.sh builds it twice: as the host CPU twin, and with
// SLOTH_GGML_EMULATE_DEVICE_NAN (every NaN result made the GPU's 0x7FFFFFFF, then put through x86_result, as the
// device code does), and compares the files: the device's NaN handling must give the host's (x86's) bytes.
#include "ggml_quants.h"

#include <cstdio>
#include <cstring>
#include <vector>

namespace {

uint64_t state = 0x9E3779B97F4A7C15ull;
float uniform() {  // in (-0.5, 0.5)
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>(static_cast<double>(state >> 11) / 9007199254740992.0 - 0.5);
}
float bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTPUT_PREFIX\n", argv[0]);
        return 2;
    }
    constexpr int kRow = 2304;
    const float specials[] = {bits(0xFFC00000u), bits(0x7FC00000u), bits(0x7FA00001u), bits(0xFFFFFFFFu), bits(0x7F800000u),
                              bits(0xFF800000u), 3.4028235e38f, -3.4028235e38f, -0.0f, 65520.0f, 1e-8f, bits(0x00000001u)};
    const int kinds = static_cast<int>(sizeof specials / sizeof specials[0]);
    std::vector<float> x;
    for (int r = 0; r < kinds; ++r)  // one special value every 37 elements, a different first position per row
        for (int i = 0; i < kRow; ++i) x.push_back(i % 37 == r % 37 ? specials[r] : uniform());
    for (int r = 0; r < 4; ++r)  // subnormal ranges: 1 / (max - min) overflows, 0 * inf makes a NaN from finite input
        for (int i = 0; i < kRow; ++i) x.push_back(uniform() * 1e-40f * static_cast<float>(r + 1));
    for (int r = 0; r < 4; ++r)  // a whole NaN block, then mixed payloads
        for (int i = 0; i < kRow; ++i) x.push_back(r == 0 ? bits(0xFFC00000u) : i % 5 == 0 ? specials[(i / 5 + r) % kinds] : uniform());
    const int32_t types[] = {sloth::ggml::kTypeQ8_0, sloth::ggml::kTypeQ4_K, sloth::ggml::kTypeQ5_K, sloth::ggml::kTypeQ6_K};
    for (const int32_t t : types) {
        const int elements = sloth::ggml::block_elements(t), bytes = sloth::ggml::block_bytes(t);
        const size_t blocks = x.size() / static_cast<size_t>(elements);
        std::vector<uint8_t> out(blocks * static_cast<size_t>(bytes));
        for (size_t b = 0; b < blocks; ++b) {
            const float* xb = x.data() + b * static_cast<size_t>(elements);
            uint8_t* yb = out.data() + b * static_cast<size_t>(bytes);
            if (t == sloth::ggml::kTypeQ8_0) sloth::ggml::quantize_block_q8_0(xb, yb);
            else if (t == sloth::ggml::kTypeQ4_K) sloth::ggml::quantize_block_q4_k(xb, yb);
            else if (t == sloth::ggml::kTypeQ5_K) sloth::ggml::quantize_block_q5_k(xb, yb);
            else sloth::ggml::quantize_block_q6_k(xb, yb);
        }
        char name[512];
        snprintf(name, sizeof name, "%s.%d.bin", argv[1], static_cast<int>(t));
        FILE* f = fopen(name, "wb");
        if (!f || fwrite(out.data(), 1, out.size(), f) != out.size()) {
            fprintf(stderr, "cannot write %s\n", name);
            return 1;
        }
        fclose(f);
    }
    return 0;
}
