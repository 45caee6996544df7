#!/usr/bin/env python3
"""weft/bench/attention_grid_model.py v1 — how long the causal flash kernels' blocks take in a given start order.

    python3 bench/attention_grid_model.py [--sms 132] [--seq 4096] [--segments 2] [--heads 32] [--kv-heads 8]

A list-scheduling model of one launch: the GPU hands the next block, in order of its index, to the first SM that
frees up (one block per SM, as the flash kernels' shared memory allows), and a block costs one time unit per tile
it walks. Prints, for the forward (128 query rows × 128-key tiles) and the backward key pass (128 keys × query
tiles of 128 rows at head dim 64, 64 at 128), the finish time in the old order (group after group: a (blocks,
heads) grid, x fastest), in the longest-first order (cuda/flash_common.cuh, longest_first_place) and for a perfect
balance. It ignores everything but the tile counts, so it shows only where the order alone loses time.
"""
import argparse
import heapq


def finish(costs, sms):
    free = [0.0] * sms
    for c in costs:
        heapq.heappush(free, heapq.heappop(free) + c)
    return max(free)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sms", type=int, default=132)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--segments", type=int, default=2)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    a = ap.parse_args()
    shapes = {"forward": (a.heads, 128, lambda pos, n: n - pos)}  # position 0 is the last query block
    for d, q_tile in ((64, 128), (128, 64)):  # key block `pos` walks the query tiles from its own on, per head
        per = 128 // q_tile
        shapes[f"key pass, head dim {d}"] = (a.kv_heads, 128,
                                             lambda pos, n, per=per: (a.heads // a.kv_heads) * per * (n - pos))
    for name, (groups, rows, cost) in shapes.items():
        n = a.seq // rows
        # old: group after group, each group's blocks longest first (the forward) or first key block first
        old = [cost(pos, n) for _ in range(a.segments * groups) for pos in range(n)]
        new = [cost(pos, n) for pos in range(n) for _ in range(a.segments * groups)]
        print(f"{name}: old order {finish(old, a.sms):.0f}, longest first {finish(new, a.sms):.0f}, "
              f"perfect balance {sum(old) / a.sms:.0f} tile-times")


if __name__ == "__main__":
    main()
