#!/usr/bin/env python3
"""weft/test/reference/make_moe_fixtures.py v2 — HuggingFace reference outputs for weft's mixture-of-experts parity tests.

Run where transformers and torch are installed (the GPU machine; it computes on the CPU in float32):
    python3 test/reference/make_moe_fixtures.py [OUT_DIR]        (default: test/fixtures/hf)

For each tiny MoE model it writes, into OUT_DIR/<case>/ (as make_hf_fixtures.py does for the dense families):
    config.json + model.safetensors   saved by transformers itself, in bfloat16, in the hub's per-expert layout
    input_ids.npy                     int64 [2, 32]
    logits.npy                        float32 [2, 32, 512]: the model with its bf16 weights upcast to float32
    reference.json                    the mean next-token loss; per MoE layer the router's load-balancing loss in
                                      Megatron-Core's form and its z-loss, computed here from the router logits
                                      transformers returns (output_router_logits); the library versions
Cases: mixtral (top-2 of a softmax, renormalised), qwen2_moe (softmax then top-2 without renormalising, a shared
expert with its sigmoid gate, mlp_only_layers = [1] making layer 1 a dense MLP of its own width), qwen2_moe_norm
(norm_topk_prob, decoder_sparse_step = 2). Every router's top-k is checked to be clear of ties (the k-th and the
next probability at least 1e-4 apart on every token), so that float32 rounding cannot change the experts chosen.
"""
import json
import os
import sys

import numpy as np
import safetensors.torch
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_hf_fixtures import COMMON, load_fp32, make_config  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "hf")
MIN_MARGIN = 1e-4

CASES = {
    "mixtral": dict(model_type="mixtral", intermediate_size=96, num_key_value_heads=2, rms_norm_eps=1e-5,
                    rope_theta=1000000.0, rope=None, tie_word_embeddings=False, num_local_experts=4,
                    num_experts_per_tok=2, router_jitter_noise=0.0, sliding_window=None),
    "qwen2_moe": dict(model_type="qwen2_moe", intermediate_size=128, num_key_value_heads=2, rms_norm_eps=1e-6,
                      rope_theta=1000000.0, rope=None, tie_word_embeddings=False, num_hidden_layers=3,
                      num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                      shared_expert_intermediate_size=96, norm_topk_prob=False, decoder_sparse_step=1,
                      mlp_only_layers=[1], use_sliding_window=False),
    "qwen2_moe_norm": dict(model_type="qwen2_moe", intermediate_size=112, num_key_value_heads=4, rms_norm_eps=1e-6,
                           rope_theta=10000.0, rope=None, tie_word_embeddings=True, num_experts=6,
                           num_experts_per_tok=3, moe_intermediate_size=48, shared_expert_intermediate_size=64,
                           norm_topk_prob=True, decoder_sparse_step=2, mlp_only_layers=[], use_sliding_window=False),
}


def hub_layout(state, model_type):
    """transformers 5 may keep a layer's experts fused (experts.gate_up_proj [E, 2f, h], experts.down_proj
    [E, h, f]) under mlp.; the hub's checkpoints hold one tensor per expert (Mixtral's w1/w3/w2 under
    block_sparse_moe., Qwen-MoE's gate_proj/up_proj/down_proj under mlp.). Returns the state in the hub's names."""
    mixtral = model_type == "mixtral"
    gate, up, down = ("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")
    out = {}
    for name, t in state.items():
        fused = name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj")
        if mixtral and (fused or name.endswith("mlp.gate.weight")):
            name = name.replace(".mlp.", ".block_sparse_moe.")
        if not fused:
            out[name] = t
            continue
        prefix = name.rsplit(".", 1)[0]
        for e in range(t.shape[0]):
            if name.endswith("gate_up_proj"):
                g, u = t[e].chunk(2, dim=0)
                out[f"{prefix}.{e}.{gate}.weight"] = g.contiguous()
                out[f"{prefix}.{e}.{up}.weight"] = u.contiguous()
            else:
                out[f"{prefix}.{e}.{down}.weight"] = t[e].contiguous()
    return out


def save_in_hub_layout(model, path, model_type):
    """Saves `model` in bfloat16 with transformers, then rewrites the files in the hub's per-expert layout where
    transformers' own names differ (transformers must load both the same). Returns the names transformers saved."""
    model.to(torch.bfloat16).save_pretrained(path)
    files = [f for f in os.listdir(path) if f.endswith(".safetensors")]
    state = {}
    for f in files:
        state.update(safetensors.torch.load_file(os.path.join(path, f)))
    hub = hub_layout(state, model_type)
    if hub.keys() != state.keys():
        for f in files:
            os.remove(os.path.join(path, f))
        if os.path.exists(os.path.join(path, "model.safetensors.index.json")):
            os.remove(os.path.join(path, "model.safetensors.index.json"))
        safetensors.torch.save_file(hub, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    return sorted(state)


def megatron_router_losses(router_logits, top_k):
    """Per MoE layer: Megatron-Core's switch load-balancing loss (coefficient 1) and z-loss over all tokens."""
    aux, z = [], []
    for logits in router_logits:
        logits = logits.double()
        tokens, experts = logits.shape
        scores = torch.softmax(logits, dim=-1)
        chosen = torch.topk(scores, top_k, dim=-1).indices
        counts = torch.zeros(experts, dtype=torch.float64).scatter_add_(0, chosen.reshape(-1),
                                                                        torch.ones(chosen.numel(), dtype=torch.float64))
        aux.append((scores.sum(0) * counts).sum().item() * experts / (top_k * tokens * tokens))
        z.append(torch.logsumexp(logits, dim=-1).square().mean().item())
    return aux, z


def router_margin(router_logits, top_k):
    margin = float("inf")
    for logits in router_logits:
        probs = torch.sort(torch.softmax(logits.double(), dim=-1), dim=-1, descending=True).values
        margin = min(margin, (probs[:, top_k - 1] - probs[:, top_k]).min().item())
    return margin


def make_case(name, spec, gen):
    path = os.path.join(OUT, name)
    os.makedirs(path, exist_ok=True)
    top_k = spec["num_experts_per_tok"]
    ids = torch.randint(0, COMMON["vocab_size"], (2, 32), generator=gen)
    for attempt in range(20):
        torch.manual_seed(2000 + 17 * attempt + len(name))
        model = transformers.AutoModelForCausalLM.from_config(make_config(spec)).to(torch.float32)
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "norm" in pname:
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                elif pname.endswith("bias"):
                    p.copy_(0.05 * torch.randn_like(p))
                elif pname.endswith(".gate.weight") or "shared_expert_gate" in pname:
                    p.copy_(0.3 * torch.randn_like(p))  # decisive routing: clear gaps between the experts' scores
        saved_names = save_in_hub_layout(model, path, spec["model_type"])
        ref = load_fp32(path).eval()
        with torch.no_grad():
            out = ref(input_ids=ids, labels=ids, output_router_logits=True)
            # The saved files hold the model made here: its bf16 weights in float32 give the same logits (to the
            # rounding of another attention and experts implementation; a wrong tensor would be off by O(1)).
            made = model.to(torch.float32).eval()(input_ids=ids).logits
        diff = (made - out.logits).abs().max().item() / out.logits.abs().max().item()
        print(f"{name}: the made model and the saved one differ by {diff:.2e} of max|logits|")
        assert diff < 1e-3, f"{name}: the saved model is not the one made ({diff:.2e})"
        margin = router_margin(out.router_logits, top_k)
        if margin >= MIN_MARGIN:
            break
        print(f"{name}: router margin {margin:.2e} too small, drawing new weights")
    else:
        raise SystemExit(f"{name}: no draw gave a router margin of {MIN_MARGIN}")
    with torch.no_grad():
        plain = ref(input_ids=ids, labels=ids)
    aux, z = megatron_router_losses(out.router_logits, top_k)
    np.save(os.path.join(path, "input_ids.npy"), ids.numpy().astype(np.int64))
    np.save(os.path.join(path, "logits.npy"), plain.logits.float().numpy())
    with open(os.path.join(path, "reference.json"), "w") as f:
        json.dump({"loss": plain.loss.item(), "load_balancing_loss": aux, "z_loss": z,
                   "hf_aux_loss": out.aux_loss.item() if out.aux_loss is not None else None,
                   "router_margin": margin, "saved_names_by_transformers": saved_names,
                   "transformers": transformers.__version__, "torch": torch.__version__}, f, indent=1)
    print(f"{name}: loss {plain.loss.item():.6f}, margin {margin:.2e}, aux {aux}, z {z}")
    print(f"{name}: transformers saved {len(saved_names)} tensors, e.g. {[n for n in saved_names if 'expert' in n][:6]}")


if __name__ == "__main__":
    print("transformers", transformers.__version__, "torch", torch.__version__)
    gen = torch.Generator().manual_seed(4321)
    for case, spec in CASES.items():
        make_case(case, spec, gen)
