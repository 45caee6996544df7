#!/usr/bin/env python3
"""weft/test/reference/make_numpy_fixture.py v1 — numpy.random.RandomState shuffles, the order Megatron uses.

Writes test/fixtures/numpy/shuffles.json: for several seeds and lengths, arange(n) after RandomState(seed).shuffle,
and for long arrays a position-weighted checksum. Run with Debian's python3-numpy (apt) or any numpy >= 1.17:
    python3 test/reference/make_numpy_fixture.py
"""
import json
import os

import numpy

cases = []
for seed in (0, 1234, 4294967295):
    for n in (1, 2, 3, 10, 1000, 70000):
        for dtype in (numpy.int32, numpy.int64):
            rng = numpy.random.RandomState(seed)
            a = numpy.arange(n, dtype=dtype)
            rng.shuffle(a)
            # A second shuffle from the same state checks that the stream continues the same way.
            b = numpy.arange(5, dtype=dtype)
            rng.shuffle(b)
            case = {"seed": seed, "n": n, "dtype": numpy.dtype(dtype).name, "then": b.tolist()}
            if n <= 1000:
                case["shuffled"] = a.tolist()
            else:
                case["head"] = a[:16].tolist()
                case["checksum"] = int(numpy.sum(numpy.arange(n, dtype=numpy.int64) * a.astype(numpy.int64)) % (2**61 - 1))
            cases.append(case)

out = os.path.join(os.path.dirname(__file__), "..", "fixtures", "numpy", "shuffles.json")
with open(out, "w") as f:
    json.dump({"numpy_version": numpy.__version__, "cases": cases}, f)
print(f"wrote {len(cases)} cases to {out}")
