# A lane-by-lane model of walk_tensor_cores (native/cuda/decode_attention_mma.cuh), written from the kernel's index
# formulas, with mma.sync m16n8k16 assembled from the PTX ISA's fragment layouts, in float64 (no rounding), against a
# direct masked softmax attention. It checks the walk's mappings (which dims and keys each lane loads, how the scores'
# accumulators become the values' B fragment, which lanes' factors rescale which columns, where each lane writes) on a
# machine without a GPU: `python3 native/tools/mma_walk_model.py` prints one line per case and "all match". A change to
# the walk's layout should be made here too and checked before it goes to a GPU. Pure Python, no numpy.
import math, random

def mma(c, a, b):
    # c[lane] = [c0..c3], a[lane] = [(a0 lo,hi), (a1), (a2), (a3)], b[lane] = [(b0 lo,hi), (b1)]
    A = [[0.0]*16 for _ in range(16)]; B = [[0.0]*8 for _ in range(16)]
    for l in range(32):
        g, t = l >> 2, l & 3
        (a0, a1, a2, a3) = a[l]
        A[g][2*t], A[g][2*t+1] = a0; A[g+8][2*t], A[g+8][2*t+1] = a1
        A[g][2*t+8], A[g][2*t+9] = a2; A[g+8][2*t+8], A[g+8][2*t+9] = a3
        (b0, b1) = b[l]
        B[2*t][g], B[2*t+1][g] = b0; B[2*t+8][g], B[2*t+9][g] = b1
    C = [[sum(A[r][k]*B[k][n] for k in range(16)) for n in range(8)] for r in range(16)]
    for l in range(32):
        g, t = l >> 2, l & 3
        c[l][0] += C[g][2*t]; c[l][1] += C[g][2*t+1]; c[l][2] += C[g+8][2*t]; c[l][3] += C[g+8][2*t+1]

def walk(q, K, V, vis_fn, start, end, HD, G, warp, warps, scale):
    steps, kwords, vwords = HD // 16, HD // 8, HD // 32
    lanes = range(32)
    gt = [(l >> 2, l & 3) for l in lanes]
    qa = [[None]*steps for _ in lanes]
    for l in lanes:
        g, t = gt[l]
        for s in range(steps):
            d = t*(HD//4) + 4*s
            qa[l][s] = ((q[g][d], q[g][d+1]), (q[g][d+2], q[g][d+3])) if g < G else ((0, 0), (0, 0))
    def words(row, off, n):  # n words = 2n elements as pairs
        return [(row[off+2*w], row[off+2*w+1]) for w in range(n)]
    def fetch_k(j0):
        kw, vis = [], []
        for l in lanes:
            g, t = gt[l]
            kl = []
            for n in range(2):
                key = j0 + 8*n + g
                kl.append(words(K[key], t*(HD//4), kwords) if key < end else [(0, 0)]*kwords)
            kw.append(kl)
            vis.append([[vis_fn(j0 + 8*n + 2*t + e) for e in range(2)] for n in range(2)])
        return kw, vis
    def fetch_v(j0, vis):
        vw = []
        for l in lanes:
            g, t = gt[l]
            vl = []
            for qq in range(4):
                key = j0 + 2*t + (qq & 1) + 8*(qq >> 1)
                vl.append([words(V[key], (g + 8*r)*(HD//16), vwords) if vis[l][qq >> 1][qq & 1] else [(0, 0)]*vwords
                           for r in range(2)])
            vw.append(vl)
        return vw
    acc = [[[0.0]*4 for _ in range(steps)] for _ in lanes]
    mx = [-math.inf]*32; sm = [0.0]*32
    stride = warps*16
    j0 = start + warp*16
    if j0 < end:
        kw, vis = fetch_k(j0); vw = fetch_v(j0, vis)
    while j0 < end:
        c = [[[0.0]*4 for _ in lanes] for _ in range(2)]
        for n in range(2):
            for s in range(steps):
                mma(c[n], [(qa[l][s][0], (0, 0), qa[l][s][1], (0, 0)) for l in lanes],
                    [(kw[l][n][2*s], kw[l][n][2*s+1]) for l in lanes])
        now = vis
        if j0 + stride < end:
            kw, vis = fetch_k(j0 + stride)
        corr = [0.0]*32; pb = [None]*32; tmax = [-math.inf]*32; sc = [None]*32
        for l in lanes:
            sc[l] = [[c[n][l][e]*scale for e in range(2)] for n in range(2)]
            for n in range(2):
                for e in range(2):
                    if now[l][n][e]: tmax[l] = max(tmax[l], sc[l][n][e])
        tm2 = [max(tmax[l], tmax[l ^ 1]) for l in lanes]
        tm3 = [max(tm2[l], tm2[l ^ 2]) for l in lanes]
        for l in lanes:
            nm = max(mx[l], tm3[l]); none = nm == -math.inf
            corr[l] = 1.0 if none else math.exp(mx[l] - nm)
            mx[l] = nm
            pb[l] = [tuple((math.exp(sc[l][n][e] - nm) if now[l][n][e] and not none else 0.0) for e in range(2)) for n in range(2)]
            sm[l] = sm[l]*corr[l] + sum(pb[l][0]) + sum(pb[l][1])
        for l in lanes:
            g, t = gt[l]
            clo, chi = corr[8*t], corr[8*t + 4]
            for m in range(steps):
                acc[l][m][0] *= clo; acc[l][m][1] *= chi; acc[l][m][2] *= clo; acc[l][m][3] *= chi
        for m in range(steps):
            afr = []
            for l in lanes:
                f = []
                for i in range(4):
                    r, qq = i & 1, 2*(i >> 1)
                    wa, wb = vw[l][qq][r][m // 2], vw[l][qq+1][r][m // 2]
                    f.append((wa[m & 1], wb[m & 1]))
                afr.append(tuple(f))
            mma([acc[l][m] for l in lanes], afr, [(pb[l][0], pb[l][1]) for l in lanes])
        if j0 + stride < end:
            vw = fetch_v(j0 + stride, vis)
        j0 += stride
    sm2 = [sm[l] + sm[l ^ 1] for l in lanes]; sm3 = [sm2[l] + sm2[l ^ 2] for l in lanes]
    out = {h: [None, None, [None]*HD] for h in range(G)}
    for l in lanes:
        g, t = gt[l]
        if t == 0 and g < G: out[g][0], out[g][1] = mx[l], sm3[l]
        for e in range(2):
            h = 2*t + e
            if h < G:
                for m in range(steps):
                    out[h][2][g*(HD//16) + m] = acc[l][m][e]
                    out[h][2][(g+8)*(HD//16) + m] = acc[l][m][2+e]
    return out

def check(HD, G, L, start, end, warps, seed):
    rnd = random.Random(seed)
    q = [[rnd.gauss(0, 1) for _ in range(HD)] for _ in range(G)]
    K = [[rnd.gauss(0, 1) for _ in range(HD)] for _ in range(L)]
    V = [[rnd.gauss(0, 1) for _ in range(HD)] for _ in range(L)]
    valid = [rnd.random() > 0.3 for _ in range(L)]
    vis_fn = lambda key: key < end and valid[key]
    scale = 1 / math.sqrt(HD)
    parts = [walk(q, K, V, vis_fn, start, end, HD, G, w, warps, scale) for w in range(warps)]
    worst = 0.0
    for h in range(G):
        m = max(p[h][0] for p in parts)
        wts = [0.0 if p[h][0] == -math.inf else math.exp(p[h][0] - m) for p in parts]
        den = sum(w*p[h][1] for w, p in zip(wts, parts))
        got = [sum(w*p[h][2][d] for w, p in zip(wts, parts)) / den for d in range(HD)]
        keys = [j for j in range(start, end) if vis_fn(j)]
        s = [sum(q[h][d]*K[j][d] for d in range(HD))*scale for j in keys]
        mm = max(s); p = [math.exp(x - mm) for x in s]; z = sum(p)
        want = [sum(pi*V[j][d] for pi, j in zip(p, keys)) / z for d in range(HD)]
        worst = max(worst, max(abs(a - b) for a, b in zip(got, want)))
    print(f"HD {HD} G {G} keys [{start},{end}) warps {warps}: max |diff| {worst:.2e}")
    return worst

bad = 0
for args in [(64, 1, 80, 0, 37, 4, 1), (128, 2, 300, 128, 251, 4, 2), (64, 3, 200, 0, 129, 4, 3), (128, 8, 100, 16, 100, 4, 4),
             (64, 6, 60, 0, 1, 4, 5), (128, 4, 520, 0, 513, 4, 6)]:
    bad += check(*args) > 1e-9
print("FAILED" if bad else "all match")
