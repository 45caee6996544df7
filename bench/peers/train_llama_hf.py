#!/usr/bin/env python3
"""weft/bench/peers/train_llama_hf.py v4 — the PyTorch baseline: HF LlamaForCausalLM training on one GPU.

    python3 bench/peers/train_llama_hf.py --mode eager|compile [--steps 12] [--warmup 4]

The benchmark shape of the CUDA issue (hidden 2048, 16 layers, 32 heads, 8 KV groups, ffn 8192, vocab 128256,
seq 4096, micro-batch 2), bf16 weights, SDPA attention, fused AdamW. Prints one JSON line: tokens/s, model
TFLOP/s (Megatron's formula, as weft reports it) and peak memory; the median step time over the timed steps.
Also `--attention [--head-dim D] [--reps N] [--forward-only]`: SDPA forward and backward alone at the same shape
(causal, GQA; head dim 128 as the issue's attention target asks, or the model's 64), in TFLOP/s, the median of N
timed calls each.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

HIDDEN, LAYERS, HEADS, GROUPS, FFN, VOCAB, SEQ, MBS = 2048, 16, 32, 8, 8192, 128256, 4096, 2
DIM = HIDDEN // HEADS


def megatron_flops(batch, seq):
    q, kv = HEADS * DIM, GROUPS * DIM
    per_token = 6 * (HIDDEN * FFN * 3 * LAYERS + LAYERS * (HIDDEN * (q + 2 * kv) + q * HIDDEN) + HIDDEN * VOCAB)
    attention = batch * seq * seq * LAYERS * 6 * q / 2 * 2
    return batch * seq * per_token + attention


def attention_bench(dim, reps, forward_only):
    q = torch.randn(MBS, HEADS, SEQ, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(MBS, GROUPS, SEQ, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(MBS, GROUPS, SEQ, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    flops_fwd = 2 * 2 * MBS * HEADS * SEQ * SEQ * dim / 2

    def timed(fn):
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b) / 1e3)
        return statistics.median(times)

    fwd = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))
    result = {"peer": "torch sdpa", "head_dim": dim, "attention_fwd_tflops": flops_fwd / fwd / 1e12}
    if not forward_only:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        grad = torch.randn_like(out)
        bwd = timed(lambda: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True))
        result["attention_bwd_tflops"] = 2.5 * flops_fwd / bwd / 1e12
    print(json.dumps(result | {"torch": torch.__version__, "device": torch.cuda.get_device_name()}))


def time_training(model, vocab, mbs, seq, mode, steps, warmup):
    """The median seconds of `steps` training steps (after `warmup`) of an HF causal LM on random tokens, and the
    peak memory in GiB: bf16 weights, fused AdamW, eager or torch.compile."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
    fwd = torch.compile(model) if mode == "compile" else model
    ids = torch.randint(0, vocab, (mbs, seq), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(warmup + steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = fwd(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), torch.cuda.max_memory_allocated() / 2**30


def train_bench(mode, steps, warmup):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
                      num_attention_heads=HEADS, num_key_value_heads=GROUPS, max_position_embeddings=SEQ,
                      tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(device="cuda", dtype=torch.bfloat16)
    t, peak = time_training(model, VOCAB, MBS, SEQ, mode, steps, warmup)
    print(json.dumps({"peer": f"HF transformers {mode}", "tokens_per_s": MBS * SEQ / t,
                      "tflops": megatron_flops(MBS, SEQ) / t / 1e12, "peak_memory_gib": peak, "step_s": t,
                      "torch": torch.__version__, "device": torch.cuda.get_device_name()}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["eager", "compile"], default="eager")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--attention", action="store_true")
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=20, help="timed calls of each attention pass")
    ap.add_argument("--forward-only", action="store_true", help="time the attention forward alone")
    a = ap.parse_args()
    if a.attention:
        attention_bench(a.head_dim, a.reps, a.forward_only)
    else:
        train_bench(a.mode, a.steps, a.warmup)
