"""Summarizes `ncu --csv --metrics gpu__time_duration.sum` of the decode benchmark: one block per decode step (a step
starts at embed_kernel), its total kernel time and its kernels grouped by name, for the last step of each batch size."""
import csv, collections, sys
rows = []
for r in csv.reader(open(sys.argv[1], errors="replace")):
    if len(r) > 10 and r[-3:-2] and r[-1].replace(".", "", 1).replace(",", "").isdigit():
        name = next((c for c in r if "_kernel" in c or "gemm" in c or "nvjet" in c), r[4])
        unit = r[-2]; v = float(r[-1].replace(",", ""))
        v = v / 1e3 if unit in ("nsecond", "ns") else v * 1e3 if unit in ("msecond", "ms") else v
        rows.append((name.split("(")[0].split("<")[0].strip().replace("void ", ""), v))
steps, cur = [], None
for name, us in rows:
    if name.startswith("embed_kernel"):
        cur = []; steps.append(cur)
    if cur is not None: cur.append((name, us))
print(f"{len(rows)} kernels, {len(steps)} steps")
for i, s in enumerate(steps):
    print(f"step {i}: {len(s)} kernels, {sum(u for _, u in s):.1f} us")
for i in sorted({len(steps) - 1, max(0, len(steps) // 2 - 1)}):
    by = collections.defaultdict(lambda: [0, 0.0])
    for n, u in steps[i]: by[n][0] += 1; by[n][1] += u
    print(f"-- step {i}")
    for n, (c, u) in sorted(by.items(), key=lambda x: -x[1][1]): print(f"   {n:40} x{c:4}  {u:9.1f} us  ({u / c:7.2f} us each)")
