#!/usr/bin/env python3
"""weft/test/reference/make_hf_fixtures.py v1 — HuggingFace reference outputs for weft's parity tests.

Run where transformers and torch are installed (the GPU machine; it computes on the CPU in float32):
    python3 test/reference/make_hf_fixtures.py [OUT_DIR]        (default: test/fixtures/hf)

For each tiny model (llama2-style, llama3.1-style with llama3 RoPE scaling, mistral with a sliding window shorter
than the sequence, qwen2 with qkv bias and tied embeddings) it writes, into OUT_DIR/<case>/:
    config.json + model.safetensors   saved by transformers itself, in bfloat16
    input_ids.npy                     int64 [2, 32]
    logits.npy                        float32 [2, 32, 512]: the model with its bf16 weights upcast to float32
    reference.json                    the mean next-token loss, and the library versions
and OUT_DIR/train/: a Megatron dataset (stream.bin/.idx, written here by hand from the format) and
reference.json with 20 steps of a plain PyTorch AdamW loop from the llama31 weights over the same samples.
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "hf")
V5 = int(transformers.__version__.split(".")[0]) >= 5
torch.set_num_threads(4)

COMMON = dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=256, initializer_range=0.05, hidden_act="silu", attention_dropout=0.0)
CASES = {
    "llama2": dict(model_type="llama", intermediate_size=176, num_key_value_heads=4, rms_norm_eps=1e-5,
                   rope_theta=10000.0, rope=None, tie_word_embeddings=False),
    "llama31": dict(model_type="llama", intermediate_size=176, num_key_value_heads=2, rms_norm_eps=1e-5,
                    rope_theta=500000.0, tie_word_embeddings=False,
                    rope=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                              original_max_position_embeddings=16)),
    "mistral": dict(model_type="mistral", intermediate_size=160, num_key_value_heads=2, rms_norm_eps=1e-5,
                    rope_theta=10000.0, rope=None, sliding_window=8, tie_word_embeddings=False),
    "qwen2": dict(model_type="qwen2", intermediate_size=128, num_key_value_heads=2, rms_norm_eps=1e-6,
                  rope_theta=1000000.0, rope=None, tie_word_embeddings=True),
}


def make_config(spec):
    kw = dict(COMMON)
    kw.update(spec)
    model_type, rope, theta = kw.pop("model_type"), kw.pop("rope"), kw.pop("rope_theta")
    if V5:
        params = {"rope_type": "default", "rope_theta": theta}
        params.update(rope or {})
        return AutoConfig.for_model(model_type, rope_parameters=params, **kw)
    return AutoConfig.for_model(model_type, rope_theta=theta, rope_scaling=rope, **kw)


def load_fp32(path):
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        return AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager")


def make_case(name, spec, gen):
    path = os.path.join(OUT, name)
    os.makedirs(path, exist_ok=True)
    torch.manual_seed(1000 + len(name))
    model = AutoModelForCausalLM.from_config(make_config(spec)).to(torch.float32)
    with torch.no_grad():  # norms and biases away from their trivial init, so the tests see them
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif pname.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
    model.to(torch.bfloat16).save_pretrained(path)
    ref = load_fp32(path).eval()
    ids = torch.randint(0, COMMON["vocab_size"], (2, 32), generator=gen)
    with torch.no_grad():
        out = ref(input_ids=ids, labels=ids)
    np.save(os.path.join(path, "input_ids.npy"), ids.numpy().astype(np.int64))
    np.save(os.path.join(path, "logits.npy"), out.logits.float().numpy())
    with open(os.path.join(path, "reference.json"), "w") as f:
        json.dump({"loss": out.loss.item(), "transformers": transformers.__version__, "torch": torch.__version__}, f)
    print(f"{name}: loss {out.loss.item():.6f}, saved {os.listdir(path)}")


def write_megatron_dataset(prefix, tokens):
    """One document of one sequence, in Megatron's indexed format (uint16 tokens)."""
    with open(prefix + ".bin", "wb") as f:
        f.write(np.asarray(tokens, dtype=np.uint16).tobytes())
    with open(prefix + ".idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00")
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", 8))  # uint16
        f.write(struct.pack("<Q", 1))  # sequences
        f.write(struct.pack("<Q", 2))  # document index entries: [0, 1]
        f.write(np.array([len(tokens)], dtype=np.int32).tobytes())
        f.write(np.array([0], dtype=np.int64).tobytes())
        f.write(np.array([0, 1], dtype=np.int64).tobytes())


def make_training_reference():
    path = os.path.join(OUT, "train")
    os.makedirs(path, exist_ok=True)
    steps, batch, seq, vocab = 20, 4, 32, COMMON["vocab_size"]
    # A learnable stream: each token mostly determines the next one.
    rng = np.random.RandomState(7)
    table = rng.randint(0, vocab, size=(vocab, 4))
    stream = [int(rng.randint(vocab))]
    while len(stream) < steps * batch * seq + 1:
        stream.append(int(table[stream[-1], rng.randint(4)]) if rng.rand() < 0.9 else int(rng.randint(vocab)))
    write_megatron_dataset(os.path.join(path, "stream"), stream)
    samples = torch.tensor([stream[k * seq:(k + 1) * seq + 1] for k in range(steps * batch)])

    model = load_fp32(os.path.join(OUT, "llama31")).train()
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    losses, norms = [], []
    for step in range(steps):
        b = samples[step * batch:(step + 1) * batch]
        logits = model(input_ids=b[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, vocab).float(), b[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        norms.append(norm.item())
    with open(os.path.join(path, "reference.json"), "w") as f:
        json.dump({"model": "llama31", "steps": steps, "micro_batch": batch, "seq_length": seq, "lr": 1e-3,
                   "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1, "clip_grad": 1.0,
                   "losses": losses, "grad_norms": norms, "torch": torch.__version__}, f)
    print("train: losses", [round(x, 4) for x in losses])


if __name__ == "__main__":
    print("transformers", transformers.__version__, "torch", torch.__version__)
    gen = torch.Generator().manual_seed(1234)
    for name, spec in CASES.items():
        make_case(name, spec, gen)
    make_training_reference()
