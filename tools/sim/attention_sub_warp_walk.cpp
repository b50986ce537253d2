// Build and run: g++ -O2 -std=c++17 -o /tmp/walk tools/sim/attention_sub_warp_walk.cpp && /tmp/walk (expects "0 failures").
// Host simulation of walk_sub_warps (decode_attention.cu, branch h-attn-walk) + the partial merge, against a direct
// softmax attention in double. Lanes and shuffles are arrays; same index formulas as the kernel.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>
#include <algorithm>
constexpr int kWarps = 4;
struct Part { float m, s; std::vector<float> acc; };
int main() {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    int fails = 0;
    for (int trial = 0; trial < 300; ++trial) {
        const int P = (trial % 2) ? 4 : 2, L = 32 / P, E = 8, hd = L * E;
        const int group = 1 + trial % 8, maxlen = 40 + trial % 50;
        const int len = trial % maxlen;  // current index; keys = len + 1
        const int keys = len + 1;
        const int window = (trial % 5 == 0) ? 1 + trial % 9 : 0;
        const float softcap = (trial % 7 == 0) ? 5.0f : 0.0f;
        const int chunk = (trial % 3 == 0) ? 16 : 64, splits = (maxlen + chunk - 1) / chunk;
        std::vector<float> q(group * hd), K(maxlen * hd), V(maxlen * hd);
        std::vector<int> valid(maxlen);
        for (auto& x : q) x = nd(rng);
        for (auto& x : K) x = nd(rng);
        for (auto& x : V) x = nd(rng);
        for (auto& v : valid) v = (rng() % 10) < 7;
        valid[len] = 1;
        const float scale = 1.0f / std::sqrt((float)hd);
        auto vis = [&](int j) { return valid[j] != 0 && (window <= 0 || j > len - window); };
        std::vector<std::vector<Part>> partials(group);  // per head: splits * kWarps
        for (int split = 0; split < splits; ++split) {
            const int start = split * chunk;
            if (start >= keys) break;
            const int end = std::min(start + chunk, keys);
            for (int warp = 0; warp < kWarps; ++warp) {
                // lane state
                std::vector<std::vector<float>> mx(32, std::vector<float>(group, -INFINITY)), sum(32, std::vector<float>(group, 0.f));
                std::vector<std::vector<std::vector<float>>> acc(32, std::vector<std::vector<float>>(group, std::vector<float>(E, 0.f)));
                const int stride = kWarps * P;
                for (int j0 = start + warp * P; j0 < end; j0 += stride) {
                    // per lane
                    std::vector<std::vector<float>> dot(32, std::vector<float>(group, 0.f));
                    std::vector<int> jl(32); std::vector<bool> visl(32);
                    for (int lane = 0; lane < 32; ++lane) {
                        const int sub = lane / L, d0 = (lane % L) * E;
                        const int j = j0 + sub;  // == start + warp*P + sub + it*stride
                        jl[lane] = j;
                        visl[lane] = j < end && vis(j);
                        for (int g = 0; g < group; ++g) {
                            float d = 0;
                            for (int e = 0; e < E; ++e) d = std::fma(q[g * hd + d0 + e], j < end ? K[j * hd + d0 + e] : 0.f, d);
                            dot[lane][g] = d;
                        }
                    }
                    for (int off = L / 2; off > 0; off >>= 1) {
                        auto nd2 = dot;
                        for (int lane = 0; lane < 32; ++lane) for (int g = 0; g < group; ++g) nd2[lane][g] = dot[lane][g] + dot[lane ^ off][g];
                        dot = nd2;
                    }
                    for (int lane = 0; lane < 32; ++lane) {
                        const int d0 = (lane % L) * E, j = jl[lane];
                        for (int g = 0; g < group; ++g) {
                            float sc = dot[lane][g] * scale;
                            if (softcap > 0) sc = softcap * std::tanh(sc / softcap);
                            const bool v = visl[lane];
                            const float nm = v ? std::fmax(mx[lane][g], sc) : mx[lane][g];
                            const float corr = v ? std::exp(mx[lane][g] - nm) : 1.f;
                            const float pg = v ? std::exp(sc - nm) : 0.f;
                            sum[lane][g] = sum[lane][g] * corr + pg;
                            mx[lane][g] = nm;
                            for (int e = 0; e < E; ++e) acc[lane][g][e] = std::fma(pg, j < end ? V[j * hd + d0 + e] : 0.f, acc[lane][g][e] * corr);
                        }
                    }
                }
                for (int off = L; off < 32; off <<= 1) {
                    auto mx2 = mx; auto s2 = sum; auto a2 = acc;
                    for (int lane = 0; lane < 32; ++lane) for (int g = 0; g < group; ++g) {
                        const float m2 = mx2[lane ^ off][g], ss2 = s2[lane ^ off][g];
                        const float m = std::fmax(mx2[lane][g], m2);
                        const float c1 = mx2[lane][g] == -INFINITY ? 0.f : std::exp(mx2[lane][g] - m);
                        const float c2 = m2 == -INFINITY ? 0.f : std::exp(m2 - m);
                        sum[lane][g] = s2[lane][g] * c1 + ss2 * c2;
                        for (int e = 0; e < E; ++e) acc[lane][g][e] = a2[lane][g][e] * c1 + a2[lane ^ off][g][e] * c2;
                        mx[lane][g] = m;
                    }
                }
                for (int g = 0; g < group; ++g) {
                    Part p{mx[0][g], sum[0][g], std::vector<float>(hd)};
                    for (int lane = 0; lane < L; ++lane) for (int e = 0; e < E; ++e) p.acc[(lane % L) * E + e] = acc[lane][g][e];
                    partials[g].push_back(p);
                }
            }
        }
        for (int g = 0; g < group; ++g) {
            float m = -INFINITY;
            for (auto& p : partials[g]) m = std::fmax(m, p.m);
            std::vector<double> num(hd, 0); double den = 0;
            for (auto& p : partials[g]) {
                const float w = (m == -INFINITY || p.m == -INFINITY) ? 0.f : std::exp(p.m - m);
                den += w * p.s;
                for (int d = 0; d < hd; ++d) num[d] += w * p.acc[d];
            }
            // reference
            std::vector<double> s(keys); double mm = -1e300;
            for (int j = 0; j < keys; ++j) {
                double dd = 0; for (int d = 0; d < hd; ++d) dd += (double)q[g * hd + d] * K[j * hd + d];
                dd *= scale; if (softcap > 0) dd = softcap * std::tanh(dd / softcap);
                s[j] = vis(j) ? dd : -INFINITY; mm = std::max(mm, s[j]);
            }
            double z = 0; std::vector<double> o(hd, 0);
            for (int j = 0; j < keys; ++j) if (vis(j)) { const double w = std::exp(s[j] - mm); z += w; for (int d = 0; d < hd; ++d) o[d] += w * V[j * hd + d]; }
            double worst = 0;
            for (int d = 0; d < hd; ++d) worst = std::max(worst, std::fabs(num[d] / den - o[d] / z));
            if (!(worst < 1e-4)) { if (fails < 5) printf("trial %d head %d: worst %g (P %d group %d len %d window %d chunk %d)\n", trial, g, worst, P, group, len, window, chunk); ++fails; }
        }
    }
    printf("%d failures\n", fails);
}
