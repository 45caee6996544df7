#!/usr/bin/env python3
"""weft/test/reference/read_tensorboard.py v1 — what TensorBoard itself reads from a log directory.

    python3 test/reference/read_tensorboard.py LOG_DIR

Loads every event file of LOG_DIR with TensorBoard's EventAccumulator (which drops the steps a resumed run logs again
when it meets the run's SessionLog START) and prints one JSON object: {tag: [[step, value], ...]} for every scalar
tag. Exits 77 (skipped, to ctest) where Python's tensorboard package is not installed.
"""
import json
import sys

try:
    from tensorboard.backend.event_processing import event_accumulator
except ImportError:
    print("read_tensorboard.py: no tensorboard package here", file=sys.stderr)
    sys.exit(77)

acc = event_accumulator.EventAccumulator(sys.argv[1], size_guidance={event_accumulator.SCALARS: 0})
acc.Reload()
print(json.dumps({tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}))
