#!/usr/bin/env python3
"""weft/bench/peers/kernel_time_summary.py v1 — GPU kernel time by kernel name from a profiler's CSV.

    kernel_time_summary.py nsys|ncu CSV STEPS

nsys: the `nsys stats --report cuda_gpu_kern_sum --format csv` table (time share, total ns, calls, ..., name).
ncu: `ncu --metrics gpu__time_duration.sum --csv --print-units base` rows, one per kernel launch.
Prints the total per step first, then the 25 kernels that take the most time.
"""
import csv
import sys
from collections import defaultdict


def by_name(tool, path):
    """{kernel name: [total ns, calls]}"""
    totals = defaultdict(lambda: [0.0, 0])
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(line for line in f if line.startswith('"') or line[:1].isdigit())]
    if tool == "nsys":
        for r in rows:
            if len(r) > 8 and r[0][:1].isdigit():
                totals[r[8]][0] += float(r[1])
                totals[r[8]][1] += int(r[2])
        return totals
    header = next((r for r in rows if "Kernel Name" in r and "Metric Value" in r), None)
    if header is None:
        sys.exit(f"{path}: no ncu CSV header (Kernel Name, Metric Value) found")
    name, value, metric = header.index("Kernel Name"), header.index("Metric Value"), header.index("Metric Name")
    for r in rows:
        if r is header or len(r) <= value or r[metric] != "gpu__time_duration.sum":
            continue
        totals[r[name]][0] += float(r[value].replace(",", ""))
        totals[r[name]][1] += 1
    return totals


def main():
    tool, path, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    totals = by_name(tool, path)
    total = sum(t for t, _ in totals.values())
    if total == 0:
        sys.exit(f"{path}: no kernel times")
    print(f"GPU kernel time ({tool}, {steps} step(s)): {total / 1e6 / steps:.1f} ms per step")
    for kernel, (t, calls) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:25]:
        print(f"{100 * t / total:5.1f}%  {t / 1e6 / steps:8.2f} ms/step  {calls // steps:6d} calls/step  {kernel[:110]}")


if __name__ == "__main__":
    main()
