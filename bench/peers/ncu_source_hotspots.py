#!/usr/bin/env python3
"""weft/bench/peers/ncu_source_hotspots.py v3 — the SASS instructions of one kernel with the most warp-stall samples.

    ncu_source_hotspots.py SOURCE_CSV [N] [--region COUNT]

SOURCE_CSV: `ncu --import REPORT --page source --csv --print-source sass`. Prints the N (default 40) instructions
with the most samples, each with its share of all samples and its largest stall reasons; then the samples summed by
how often an instruction ran, which sorts a kernel's code into its regions (once per block for each warp of a role,
once per loop turn, the producer's spin loop) without reading the SASS; then the samples summed by reason. With
--region, every instruction that ran COUNT times, in address order, with its samples and two largest reasons: where
in a loop body its time goes (a reduction waiting on its shuffles, exp2 paced by the MUFU pipe). Column names
differ between Nsight Compute versions, so they are found by pattern.
"""
import csv
import re
import sys


def number(s):
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


def main():
    args = sys.argv[1:]
    region_count = None
    if "--region" in args:
        at = args.index("--region")
        region_count = int(args[at + 1])
        del args[at:at + 2]
    path, n = args[0], int(args[1]) if len(args) > 1 else 40
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head_at = next((i for i, r in enumerate(rows) if any("Source" == c.strip() or "Address" in c for c in r)), None)
    if head_at is None:
        sys.exit(f"{path}: no header with Source/Address")
    head, body = rows[head_at], [r for r in rows[head_at + 1:] if len(r) == len(rows[head_at])]
    src = next(i for i, c in enumerate(head) if c.strip() == "Source" or c.strip().startswith("Source"))
    addr = next((i for i, c in enumerate(head) if "Address" in c), None)
    total_col = next((i for i, c in enumerate(head) if re.search(r"Warp Stall Sampling \(All", c)), None)
    if total_col is None:
        total_col = next(i for i, c in enumerate(head) if "Sampling" in c)
    reason_cols = [i for i, c in enumerate(head) if c.startswith("stall_") or re.match(r"^Stall", c)
                   or "_not_issued" in c or re.search(r"smsp__pcsamp_warps_issue_stalled_", c)]
    reason_cols = [i for i in reason_cols if "Not Issued" not in head[i]]  # all samples, as the total column
    if not reason_cols:  # name them by what is left: numeric columns other than the totals
        reason_cols = [i for i, c in enumerate(head) if i not in (src, addr, total_col)]
    executed = next((i for i, c in enumerate(head) if c.strip() == "Instructions Executed"), None)

    def samples(r):
        return number(r[total_col]) or 0

    def runs(r):  # how often the instruction ran: its region
        return int(number(r[executed]) or 0)

    def top_reasons(r, k):
        reasons = sorted(((number(r[i]) or 0, head[i]) for i in reason_cols), reverse=True)[:k]
        return ", ".join(f"{name} {v:.0f}" for v, name in reasons if v > 0)

    total = sum(samples(r) for r in body)
    print(f"{path}: {len(body)} instructions, {total:.0f} samples in column '{head[total_col]}'")
    print("columns:", "; ".join(head))
    for r in sorted(body, key=lambda r: -samples(r))[:n]:
        where = r[addr] if addr is not None else ""
        print(f"{100 * samples(r) / max(total, 1):5.2f}% {where:>8} {r[src].strip()[:70]:70}  {top_reasons(r, 3)}")
    if executed is not None:
        regions = {}
        for r in body:
            region = regions.setdefault(runs(r), [0.0, 0])
            region[0] += samples(r)
            region[1] += 1
        print("by execution count (a region of the code):")
        for count, (s, n_instr) in sorted(regions.items(), key=lambda kv: -kv[1][0])[:10]:
            print(f"  executed {count:>10} times: {n_instr:5} instructions, {100 * s / max(total, 1):5.1f}% of samples")
    sums = sorted(((sum(number(r[i]) or 0 for r in body), head[i]) for i in reason_cols), reverse=True)
    print("by reason:", ", ".join(f"{name} {100 * v / max(total, 1):.1f}%" for v, name in sums[:12] if v > 0))
    if region_count is not None:
        if executed is None:
            sys.exit(f"{path}: no 'Instructions Executed' column for --region")
        region = [r for r in body if runs(r) == region_count]
        in_region = sum(samples(r) for r in region)
        print(f"region executed {region_count} times: {len(region)} instructions, "
              f"{100 * in_region / max(total, 1):.1f}% of samples")
        for r in region:
            print(f"{samples(r):7.0f} {r[src].strip()[:70]:70}  {top_reasons(r, 2)}")


if __name__ == "__main__":
    main()
