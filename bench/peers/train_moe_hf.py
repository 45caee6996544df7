#!/usr/bin/env python3
"""weft/bench/peers/train_moe_hf.py v1 — the PyTorch baseline for the MoE issue: HF Mixtral / Qwen2-MoE training on
one GPU.

    python3 bench/peers/train_moe_hf.py --model mixtral-small|qwen2-moe-small [--mode eager|compile]
                                        [--steps 12] [--warmup 4]

The two shapes of the MoE issue (the same as bench/decks/mixtral-small.ini and qwen2-moe-small.ini), bf16 weights,
SDPA attention, fused AdamW, random tokens; the routers' load-balancing loss is on (output_router_logits, as
weft's moe.aux_loss_coeff). Prints one JSON line: tokens/s, model TFLOP/s counting only the experts each token is
routed to (Megatron's formula, as weft reports it), peak memory, the median step time over the timed steps, and the
experts implementation transformers ran.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_llama_hf import time_training  # noqa: E402

SHAPES = {
    "mixtral-small": dict(model_type="mixtral", hidden=2048, layers=8, heads=32, groups=8, expert_ffn=5632, experts=8,
                          topk=2, shared_ffn=0, vocab=32000, seq=4096, mbs=2),
    "qwen2-moe-small": dict(model_type="qwen2_moe", hidden=2048, layers=8, heads=16, groups=16, expert_ffn=1408,
                            experts=60, topk=4, shared_ffn=5632, vocab=151936, seq=4096, mbs=1),
}


def megatron_flops(s):
    dim = s["hidden"] // s["heads"]
    q, kv, h, L = s["heads"] * dim, s["groups"] * dim, s["hidden"], s["layers"]
    ffn = s["expert_ffn"] * s["topk"] + s["shared_ffn"]
    per_token = 6 * (h * ffn * 3 * L + L * (h * (q + 2 * kv) + q * h) + h * s["vocab"])
    attention = s["mbs"] * s["seq"] * s["seq"] * L * 6 * q / 2 * 2
    return s["mbs"] * s["seq"] * per_token + attention


def make_model(s):
    common = dict(vocab_size=s["vocab"], hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                  num_attention_heads=s["heads"], num_key_value_heads=s["groups"], max_position_embeddings=s["seq"],
                  tie_word_embeddings=False, num_experts_per_tok=s["topk"], output_router_logits=True,
                  router_aux_loss_coef=0.01)
    if s["model_type"] == "mixtral":
        from transformers import MixtralConfig, MixtralForCausalLM
        cfg = MixtralConfig(intermediate_size=s["expert_ffn"], num_local_experts=s["experts"], **common)
        cls = MixtralForCausalLM
    else:
        from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM
        cfg = Qwen2MoeConfig(intermediate_size=s["shared_ffn"], moe_intermediate_size=s["expert_ffn"],
                             shared_expert_intermediate_size=s["shared_ffn"], num_experts=s["experts"],
                             decoder_sparse_step=1, norm_topk_prob=False, **common)
        cls = Qwen2MoeForCausalLM
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = cls(cfg).to(device="cuda", dtype=torch.bfloat16)
    return model, getattr(cfg, "_experts_implementation", getattr(cfg, "experts_implementation", "default"))


def train_bench(name, mode, steps, warmup):
    s = SHAPES[name]
    model, experts_impl = make_model(s)
    t, peak = time_training(model, s["vocab"], s["mbs"], s["seq"], mode, steps, warmup)
    print(json.dumps({"peer": f"HF transformers {mode}", "model": name, "tokens_per_s": s["mbs"] * s["seq"] / t,
                      "tflops": megatron_flops(s) / t / 1e12, "peak_memory_gib": peak, "step_s": t,
                      "experts_implementation": str(experts_impl), "torch": torch.__version__,
                      "device": torch.cuda.get_device_name()}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=sorted(SHAPES), required=True)
    ap.add_argument("--mode", choices=["eager", "compile"], default="eager")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=4)
    a = ap.parse_args()
    train_bench(a.model, a.mode, a.steps, a.warmup)
