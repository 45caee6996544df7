#!/usr/bin/env python3
"""weft/test/reference/make_megatron_fixtures.py v1 — regenerates test/fixtures/megatron with Megatron-LM's own code.

Run where Megatron-LM (megatron/core at commit d98e8a64dd or later) and torch are importable:
    PYTHONPATH=/path/to/Megatron-LM python3 test/reference/make_megatron_fixtures.py [OUT_DIR]
                                                                 (default: test/fixtures/megatron)

It reads the token lists the fixtures were made from (each NAME.json: `documents[d]` is the list of sequences of
document d, and `dtype`), writes NAME.bin/.idx with megatron.core.datasets' IndexedDatasetBuilder, and writes
tiny_uint16_s16_gptdataset.json: the first 64 training samples of a GPTDataset (through
BlendedMegatronDatasetBuilder) over tiny_uint16 with random_seed 1234, sequence_length 16, split "100,0,0", no
position/attention resets and no EOD loss masking, in the order dataset[i] returns them. Compare the outputs with the
committed files (cmp): the test suite holds weft to them byte for byte and sample for sample.
"""
import json
import os
import sys

import numpy
import torch
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "fixtures", "megatron")
OUT = sys.argv[1] if len(sys.argv) > 1 else SOURCE
DATASETS = ("tiny_uint16", "tiny_int32", "sentences_uint16")


class EodTokenizer:
    """What GPTDataset asks of a tokenizer: the vocabulary size and the end-of-document id."""

    def __init__(self, vocab_size):
        self.vocab_size = vocab_size
        self.eod = vocab_size - 1
        self.pad = -1


def source(name):
    with open(os.path.join(SOURCE, name + ".json")) as f:
        return json.load(f)


def write_indexed(name):
    spec = source(name)
    builder = IndexedDatasetBuilder(os.path.join(OUT, name + ".bin"), dtype=getattr(numpy, spec["dtype"]))
    for sequences in spec["documents"]:
        builder.add_document(torch.tensor([t for s in sequences for t in s]), [len(s) for s in sequences])
    builder.finalize(os.path.join(OUT, name + ".idx"))


def write_samples():
    config = GPTDatasetConfig(random_seed=1234, sequence_length=16, blend=([os.path.join(OUT, "tiny_uint16")], None),
                              split="100,0,0", reset_position_ids=False, reset_attention_mask=False,
                              eod_mask_loss=False, tokenizer=EodTokenizer(source("tiny_uint16")["vocab"]))
    train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [64, 0, 0], lambda: True, config).build()
    samples = []
    for i in range(64):
        s = train[i]
        samples.append({k: s[k].tolist() for k in ("tokens", "labels", "loss_mask")})
    with open(os.path.join(OUT, "tiny_uint16_s16_gptdataset.json"), "w") as f:
        json.dump({"prefix": "tiny_uint16", "seq_length": 16, "seed": 1234, "split": "100,0,0", "num_samples": 64,
                   "samples": samples}, f)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name in DATASETS:
        write_indexed(name)
    write_samples()
    print("wrote", sorted(os.listdir(OUT)))
