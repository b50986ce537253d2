#!/usr/bin/env python3
"""Checks, in float32 arithmetic, that the two forms of the decode q/k preparation's sum of squares add the same
values in the same order, so that they give the same bits:

- the block form (cuda/decode_ops.cuh, qk_prep_head + decode_norm.cuh's block_sum over qk_prep_kernel's 128 threads):
  thread t sums x[t]^2, x[t + 128]^2 (those below head_dim) from 0; each warp reduces its threads' sums by the xor
  butterfly (offsets 16, 8, 4, 2, 1); the block adds the four warps' results to 0 in warp order;
- the warp form (qk_prep_head_warp, the fused attention's): lane l holds x[l + 32 e], e < head_dim / 32; its partial w
  (w < 4) sums e = w, w + 4 from 0, each reduced by the same butterfly, the four added to 0 in order.

A reversed warp order (partials added 3, 2, 1, 0) is checked too, to show the model tells orders apart. No GPU, no
numpy: every addition and product is rounded to float32 through struct. Run: python3 native/tools/qk_prep_order_model.py
"""
import random
import struct
import sys


def f32(v):
    return struct.unpack("f", struct.pack("f", v))[0]


def add(a, b):
    return f32(a + b)


def mul(a, b):
    return f32(a * b)


def butterfly(values):  # values[lane] of one warp -> every lane's result (lane 0's returned)
    v = list(values)
    off = 16
    while off > 0:
        v = [add(v[lane], v[lane ^ off]) for lane in range(32)]
        off >>= 1
    return v[0]


def block_form(x, hd):
    threads = [0.0] * 128
    for t in range(128):
        ss = 0.0
        j = t
        while j < hd:
            ss = add(ss, mul(x[j], x[j]))
            j += 128
        threads[t] = ss
    total = 0.0
    for w in range(4):
        total = add(total, butterfly(threads[32 * w:32 * w + 32]))
    return total


def warp_form(x, hd, reverse=False):
    kt = hd // 32
    parts = []
    for w in range(4):
        lanes = []
        for lane in range(32):
            ss = 0.0
            e = w
            while e < kt:
                ss = add(ss, mul(x[lane + 32 * e], x[lane + 32 * e]))
                e += 4
            lanes.append(ss)
        parts.append(butterfly(lanes))
    total = 0.0
    for p in (reversed(parts) if reverse else parts):
        total = add(total, p)
    return total


def main():
    rng = random.Random(1)
    bad = 0
    for hd in (64, 128, 256):
        rows, differ_rev = 300, 0
        for _ in range(rows):
            scale = 10 ** rng.uniform(-3, 3)
            x = [f32(rng.gauss(0.0, 1.0) * scale) for _ in range(hd)]
            a, b = block_form(x, hd), warp_form(x, hd)
            if struct.pack("f", a) != struct.pack("f", b):
                bad += 1
            if struct.pack("f", a) != struct.pack("f", warp_form(x, hd, reverse=True)):
                differ_rev += 1
        print(f"head_dim {hd}: warp form equal to block form on {rows} rows: "
              f"{'yes' if bad == 0 else 'NO'}; reversed order differs on {differ_rev}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
