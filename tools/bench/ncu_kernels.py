"""Summarizes `ncu --csv --metrics gpu__time_duration.sum` of any run: kernels grouped by name (templates and
arguments cut), their count, total and mean time, largest first, with each group's share of all kernel time. Used for
the training step's profile (bench --suite step-row --shape <family>-prof), whose rows are one warm-up and one timed
step of two layers plus the LM head: halve the totals for one step."""
import csv, collections, sys
by = collections.defaultdict(lambda: [0, 0.0])
for r in csv.reader(open(sys.argv[1], errors="replace")):
    if len(r) > 10 and r[-1].replace(".", "", 1).replace(",", "").isdigit() and r[-3] == "gpu__time_duration.sum":
        name = r[4]
        unit = r[-2]; v = float(r[-1].replace(",", ""))
        v = v / 1e3 if unit in ("nsecond", "ns") else v * 1e3 if unit in ("msecond", "ms") else v
        key = name.split("(")[0].replace("void ", "").strip()
        if "<" in key and len(key) > 90: key = key[:90] + "…"
        by[key][0] += 1; by[key][1] += v
total = sum(u for _, u in by.values())
print(f"{sum(c for c, _ in by.values())} kernels, {total / 1e3:.2f} ms of kernel time")
for n, (c, u) in sorted(by.items(), key=lambda x: -x[1][1])[:60]:
    print(f"{u / 1e3:9.2f} ms {100 * u / total:5.1f}%  x{c:5}  {u / c:9.1f} us each  {n}")
