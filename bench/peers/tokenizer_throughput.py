#!/usr/bin/env python3
"""weft/bench/peers/tokenizer_throughput.py v1 — HF's Rust tokenizers beside `weft preprocess`, same corpus, same machine.

    python3 bench/peers/tokenizer_throughput.py WEFT_BIN TOKENIZER_JSON CORPUS.jsonl HARD_CORPUS.jsonl [RANKS]

1. Parity: encodes HARD_CORPUS with the Rust `tokenizers` package and with `weft preprocess --no-specials`, and
   compares every document's ids.
2. Throughput: times the Rust tokenizer on CORPUS on one thread (TOKENIZERS_PARALLELISM=false, encode in a loop)
   and on all threads (encode_batch), and `weft preprocess` on 1 rank and on RANKS ranks (mpirun). Prints MB/s
   and tokens/s per core; the median of three runs each.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

weft, tok_path, corpus, hard, ranks = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else 8
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

tok = Tokenizer.from_file(tok_path)
tmp = tempfile.mkdtemp()


def read_megatron(prefix):
    idx = open(prefix + ".idx", "rb").read()
    code = idx[17]
    count, docs = struct.unpack("<QQ", idx[18:34])
    lengths = struct.unpack(f"<{count}i", idx[34:34 + 4 * count])
    size, fmt = {8: (2, "H"), 4: (4, "i")}[code]
    data = open(prefix + ".bin", "rb").read()
    out, at = [], 0
    for n in lengths:
        out.append(list(struct.unpack(f"<{n}{fmt}", data[at:at + n * size])))
        at += n * size
    return out


def run_weft(prefix, np_, src):
    cmd = ([] if np_ == 1 else ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(np_)]) + \
        [weft, "preprocess", "--input", src, "--tokenizer", tok_path, "--output-prefix", prefix, "--no-specials"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    # "... in S s: X MB/s, Y tokens/s over N ranks" (time after the tokenizer is loaded)
    secs = float(out.split(" in ")[1].split(" s:")[0])
    return secs, out


texts = [json.loads(line)["text"] for line in open(hard, encoding="utf-8") if line.strip()]
run_weft(os.path.join(tmp, "hard"), 1, hard)
ours = read_megatron(os.path.join(tmp, "hard"))
theirs = [e.ids for e in (tok.encode(t, add_special_tokens=False) for t in texts)]
theirs = [t for t in theirs if t]
mismatch = sum(1 for a, b in zip(ours, theirs) if a != b) + abs(len(ours) - len(theirs))
print(f"parity: {len(theirs)} documents of {os.path.basename(hard)}, {mismatch} differ from HF tokenizers (Rust)")

docs = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8") if line.strip()]
mb = os.path.getsize(corpus) / 1e6


def median(xs):
    return sorted(xs)[len(xs) // 2]


def hf_single():
    t = time.perf_counter()
    n = sum(len(tok.encode(d, add_special_tokens=False).ids) for d in docs)
    return time.perf_counter() - t, n


def hf_batch():
    t = time.perf_counter()
    n = sum(len(e.ids) for e in tok.encode_batch(docs, add_special_tokens=False))
    return time.perf_counter() - t, n


rows = []
secs, n = zip(*[hf_single() for _ in range(3)])
rows.append(("HF tokenizers (Rust), 1 thread", median(secs), n[0], 1))
os.environ["TOKENIZERS_PARALLELISM"] = "true"
secs, n = zip(*[hf_batch() for _ in range(3)])
rows.append((f"HF tokenizers (Rust), encode_batch, {os.cpu_count()} threads", median(secs), n[0], os.cpu_count()))
for np_ in (1, ranks):
    secs = median([run_weft(os.path.join(tmp, f"c{np_}"), np_, corpus)[0] for _ in range(3)])
    ntok = sum(len(d) for d in read_megatron(os.path.join(tmp, f"c{np_}")))
    rows.append((f"weft preprocess, {np_} rank{'s' if np_ > 1 else ''}", secs, ntok, np_))
print(f"corpus {os.path.basename(corpus)}: {mb:.1f} MB, {len(docs)} documents")
print(f"| tokenizer run | seconds | MB/s | tokens/s | MB/s per core |")
print(f"|---|---|---|---|---|")
for name, s, n, cores in rows:
    print(f"| {name} | {s:.2f} | {mb / s:.2f} | {n / s:,.0f} | {mb / s / cores:.2f} |")
