#!/usr/bin/env python3
"""weft/test/reference/make_eval_fixtures.py v1 — transformers' references for `weft eval --task` (multiple choice)
and `weft generate` (greedy).

Run where transformers and torch are installed (the GPU machine; it computes on the CPU in float32), after
make_hf_fixtures.py made test/fixtures/hf/llama2:
    python3 test/reference/make_eval_fixtures.py [FIXTURE_DIR]        (default: test/fixtures/hf/llama2)

Writes FIXTURE_DIR/task.jsonl (a few multiple-choice items in lm-evaluation-harness's form) and
FIXTURE_DIR/task_reference.json: per item the log-likelihood of each choice after its context, computed by the
transformers model on byte ids (each UTF-8 byte its own id, as weft's `bytes` tokenizer; the fixture's vocabulary is
512), with lm-evaluation-harness's conventions: a context's trailing spaces move to the choice; acc = the best
log-likelihood, acc_norm = the best per character of the choice. And FIXTURE_DIR/generate_reference.json:
transformers' greedy `generate` (8 new tokens, no end id) from the prompt ids [[(i·53 + 17) mod 512 for i in
0..6], [the same for i in 7..13]], as test/cli/generate_test.cpp builds them.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_hf_fixtures import load_fp32  # noqa: E402

DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                          "fixtures", "hf", "llama2")
ITEMS = [
    {"context": "The whale is a ", "choices": ["mammal", "fish", "very large bird of the sea"], "answer": 0},
    {"context": "Call me", "choices": [" Ishmael.", " Ahab.", " Queequeg, the harpooneer."], "answer": 0},
    {"context": "Two plus two is", "choices": [" four", " five", " twenty-two", " 4"], "answer": 0},
    {"context": "Der Wal ist ", "choices": ["groß", "klein"], "answer": 0},
]


def log_likelihood(model, context, choice):
    spaces = len(context) - len(context.rstrip(" "))
    if spaces:
        context, choice = context[:-spaces], context[-spaces:] + choice
    ctx, whole = list(context.encode()), list((context + choice).encode())
    ids = torch.tensor([whole])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits.double(), dim=-1)[0]
    return sum(logp[i - 1, whole[i]].item() for i in range(len(ctx), len(whole)))


def main():
    torch.set_num_threads(4)
    model = load_fp32(DIR).eval()
    per_item, correct, correct_norm = [], 0, 0
    for item in ITEMS:
        ll = [log_likelihood(model, item["context"], c) for c in item["choices"]]
        best = max(range(len(ll)), key=lambda i: ll[i])
        best_norm = max(range(len(ll)), key=lambda i: ll[i] / len(item["choices"][i]))
        correct += best == item["answer"]
        correct_norm += best_norm == item["answer"]
        per_item.append({"log_likelihoods": ll, "prediction": best, "prediction_norm": best_norm})
    with open(os.path.join(DIR, "task.jsonl"), "w") as f:
        for item in ITEMS:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    import transformers
    ref = {"acc": correct / len(ITEMS), "acc_norm": correct_norm / len(ITEMS), "per_item": per_item,
           "transformers": transformers.__version__, "torch": torch.__version__}
    with open(os.path.join(DIR, "task_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    prompt = torch.tensor([[(i * 53 + 17) % 512 for i in range(r * 7, r * 7 + 7)] for r in range(2)])
    with torch.no_grad():
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False,
                             eos_token_id=None, pad_token_id=0)
    with open(os.path.join(DIR, "generate_reference.json"), "w") as f:
        json.dump({"prompt": prompt.tolist(), "tokens": out.tolist(), "transformers": transformers.__version__}, f)
    print(f"generate fixture: {out.tolist()}")
    print(f"eval fixture: {len(ITEMS)} items, acc {ref['acc']:.4f}, acc_norm {ref['acc_norm']:.4f}")


if __name__ == "__main__":
    main()
