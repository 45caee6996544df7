#!/usr/bin/env python3
"""weft/test/reference/make_deepseek_fixtures.py v1 — HuggingFace reference outputs for weft's DeepSeek-V2 parity tests.

Run where transformers and torch are installed (the GPU machine; it computes on the CPU in float32):
    python3 test/reference/make_deepseek_fixtures.py [OUT_DIR]                 (default: test/fixtures/hf)
    python3 test/reference/make_deepseek_fixtures.py --check-export EXPORT_DIR FIXTURE_DIR

For each tiny model it writes, into OUT_DIR/<case>/ (as make_moe_fixtures.py does):
    config.json + model.safetensors   saved by transformers itself, in bfloat16, in the hub's per-expert layout
    input_ids.npy                     int64 [2, 32]
    logits.npy                        float32 [2, 32, 512]: the model with its bf16 weights upcast to float32
    reference.json                    the mean next-token loss, the routers' margins, the library versions
Cases: deepseek_v2 (a query latent, group_limited_greedy routing over 4 groups, routed_scaling_factor 2, YaRN with
mscale ≠ mscale_all_dim, a dense first layer, 2 shared experts) and deepseek_v2_lite (queries from the hidden state,
greedy routing, plain RoPE). Every token's choice is kept clear of ties: the best groups' and the chosen experts'
scores at least 1e-4 above the next, so that float32 rounding cannot change the experts chosen.

The softmax scale: DeepSeek-V2's own modeling code (and Megatron-Core's MLA) multiply 1/sqrt(q_head_dim) by
(0.1·mscale_all_dim·ln(factor) + 1)² under YaRN; where transformers' deepseek_v2 attention does not, this script sets
its scaling to that value and says so in reference.json ("softmax_scale_set_here"), so that the fixture follows the
released checkpoints' semantics. --check-export loads weft's HF export of a fixture the same way and prints how far
its logits are from the fixture's.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_hf_fixtures import COMMON, load_fp32, make_config  # noqa: E402
from make_moe_fixtures import save_in_hub_layout  # noqa: E402

MIN_MARGIN = 1e-4

CASES = {
    "deepseek_v2": dict(model_type="deepseek_v2", intermediate_size=160, num_key_value_heads=4, rms_norm_eps=1e-6,
                        rope_theta=10000.0, num_hidden_layers=3, max_position_embeddings=256,
                        rope={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                              "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 0.8},
                        tie_word_embeddings=False, q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16,
                        qk_rope_head_dim=8, v_head_dim=16, head_dim=8, n_routed_experts=8, num_experts_per_tok=2,
                        moe_intermediate_size=32, n_shared_experts=2, routed_scaling_factor=2.0,
                        topk_method="group_limited_greedy", n_group=4, topk_group=2, first_k_dense_replace=1,
                        moe_layer_freq=1, norm_topk_prob=False, attention_bias=False),
    "deepseek_v2_lite": dict(model_type="deepseek_v2", intermediate_size=144, num_key_value_heads=4,
                             rms_norm_eps=1e-6, rope_theta=10000.0, rope=None, num_hidden_layers=2,
                             tie_word_embeddings=False, q_lora_rank=None, kv_lora_rank=24, qk_nope_head_dim=12,
                             qk_rope_head_dim=8, v_head_dim=12, head_dim=8, n_routed_experts=6,
                             num_experts_per_tok=3, moe_intermediate_size=24, n_shared_experts=1,
                             routed_scaling_factor=1.0, topk_method="greedy", n_group=1, topk_group=1,
                             first_k_dense_replace=0, moe_layer_freq=1, norm_topk_prob=False, attention_bias=False),
}


def mscale(factor, m):
    return 1.0 if factor <= 1 else 0.1 * m * math.log(factor) + 1.0


def set_softmax_scale(model):
    """Gives every attention DeepSeek's YaRN softmax scale; returns whether transformers' differed."""
    cfg = model.config
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    want = (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim) ** -0.5
    if rope.get("rope_type", rope.get("type")) == "yarn" and rope.get("mscale_all_dim"):
        want *= mscale(rope["factor"], rope["mscale_all_dim"]) ** 2
    changed = False
    for layer in model.model.layers:
        if abs(layer.self_attn.scaling - want) > 1e-12 * want:
            layer.self_attn.scaling = want
            changed = True
    return changed


def router_margin(model, ids):
    """The smallest gap, over tokens and MoE layers, between the last kept and the first dropped group score and
    between the k-th and the next expert score among the kept groups (DeepSeek's gate, recomputed from each MoE
    block's input)."""
    cfg, inputs = model.config, []
    hooks = [layer.mlp.register_forward_pre_hook(lambda m, a: inputs.append(a[0].detach()))
             for layer in model.model.layers if hasattr(layer.mlp, "gate")]
    with torch.no_grad():
        model(input_ids=ids)
    for h in hooks:
        h.remove()
    margin = float("inf")
    gates = [layer.mlp.gate.weight for layer in model.model.layers if hasattr(layer.mlp, "gate")]
    for x, w in zip(inputs, gates):
        s = torch.softmax(x.reshape(-1, x.shape[-1]).double() @ w.double().t(), dim=-1)
        if cfg.topk_method == "group_limited_greedy":
            groups = s.view(s.shape[0], cfg.n_group, -1).max(dim=-1).values.sort(dim=-1, descending=True).values
            margin = min(margin, (groups[:, cfg.topk_group - 1] - groups[:, cfg.topk_group]).min().item())
            keep = torch.topk(s.view(s.shape[0], cfg.n_group, -1).max(dim=-1).values, cfg.topk_group, dim=-1).indices
            mask = torch.zeros(s.shape[0], cfg.n_group, dtype=torch.bool).scatter_(1, keep, True)
            s = s.masked_fill(~mask.repeat_interleave(s.shape[1] // cfg.n_group, dim=1), 0.0)
        top = s.sort(dim=-1, descending=True).values
        k = cfg.num_experts_per_tok
        margin = min(margin, (top[:, k - 1] - top[:, k]).min().item())
    return margin


def make_case(name, spec, gen):
    path = os.path.join(OUT, name)
    os.makedirs(path, exist_ok=True)
    ids = torch.randint(0, COMMON["vocab_size"], (2, 32), generator=gen)
    for attempt in range(40):
        torch.manual_seed(3000 + 31 * attempt + len(name))
        model = transformers.AutoModelForCausalLM.from_config(make_config(spec)).to(torch.float32)
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "norm" in pname:
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                elif pname.endswith("mlp.gate.weight"):
                    p.copy_(0.4 * torch.randn_like(p))  # decisive routing: clear gaps between the experts' scores
        saved_names = save_in_hub_layout(model, path, spec["model_type"])
        ref = load_fp32(path).eval()
        scale_set = set_softmax_scale(ref)
        made = model.to(torch.float32).eval()
        set_softmax_scale(made)
        with torch.no_grad():
            a, b = made(input_ids=ids).logits, ref(input_ids=ids).logits
        diff = ((a - b).abs().max() / b.abs().max()).item()
        print(f"{name}: the made model and the saved one differ by {diff:.2e} of max|logits|")
        assert diff < 1e-3, f"{name}: the saved model is not the one made ({diff:.2e})"
        margin = router_margin(ref, ids)
        if margin >= MIN_MARGIN:
            break
        print(f"{name}: router margin {margin:.2e} too small, drawing new weights")
    else:
        raise SystemExit(f"{name}: no draw gave a router margin of {MIN_MARGIN}")
    with torch.no_grad():
        out = ref(input_ids=ids, labels=ids)
    np.save(os.path.join(path, "input_ids.npy"), ids.numpy().astype(np.int64))
    np.save(os.path.join(path, "logits.npy"), out.logits.float().numpy())
    with open(os.path.join(path, "reference.json"), "w") as f:
        json.dump({"loss": out.loss.item(), "router_margin": margin, "softmax_scale_set_here": scale_set,
                   "saved_names_by_transformers": saved_names, "transformers": transformers.__version__,
                   "torch": torch.__version__}, f, indent=1)
    print(f"{name}: loss {out.loss.item():.6f}, margin {margin:.2e}, softmax scale set here: {scale_set}")


def check_export(export_dir, fixture_dir):
    model = load_fp32(export_dir).eval()
    set_softmax_scale(model)
    ids = torch.from_numpy(np.load(os.path.join(fixture_dir, "input_ids.npy")))
    ref = np.load(os.path.join(fixture_dir, "logits.npy"))
    with torch.no_grad():
        out = model(input_ids=ids).logits.numpy()
    print(f"transformers loaded the weft export: max|Δlogits| {np.abs(out - ref).max():.3e} "
          f"(max|ref| {np.abs(ref).max():.2f})")


if __name__ == "__main__":
    torch.set_num_threads(4)
    if len(sys.argv) > 1 and sys.argv[1] == "--check-export":
        check_export(sys.argv[2], sys.argv[3])
        sys.exit(0)
    OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                             "fixtures", "hf")
    print("transformers", transformers.__version__, "torch", torch.__version__)
    gen = torch.Generator().manual_seed(9876)
    for case, spec in CASES.items():
        make_case(case, spec, gen)
