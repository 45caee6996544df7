#!/usr/bin/env python3
# weft/test/reference/check_chat_templates.py v1 — transformers itself renders the chats of
# test/fixtures/tokenizer/chat_reference.json (made with @huggingface/jinja by tokenizers/chat.js) with each package's
# chat template, as apply_chat_template does (render_jinja_template with the special tokens), and says how many
# texts agree; weft's renderings are tested against that fixture (test/unit/jinja_test.cpp).
#
#   python3 test/reference/check_chat_templates.py CONFIG_DIR test/fixtures/tokenizer/chat_reference.json
#
# CONFIG_DIR holds each family's tokenizer_config.json as FAMILY.json (the GPU machine has no npm: gpu-check.sh's
# chat-templates stage reads them from .carry/chat_configs, copied there from test/reference/tokenizers/node_modules).
# Exits 1 when any text differs.
import json
import os
import sys

from transformers.utils.chat_template_utils import render_jinja_template

SPECIAL = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def token_text(v):
    return v["content"] if isinstance(v, dict) else v


def main():
    config_dir, reference = sys.argv[1:3]
    ref = json.load(open(reference))
    failed = 0
    for family, chats in ref.items():
        config = json.load(open(os.path.join(config_dir, family + ".json")))
        specials = {k: token_text(config[k]) for k in SPECIAL if config.get(k)}
        if isinstance(config.get("additional_special_tokens"), list):
            specials["additional_special_tokens"] = [token_text(t) for t in config["additional_special_tokens"]]
        same = 0
        for c in chats:
            texts, _ = render_jinja_template(conversations=[c["messages"]], chat_template=config["chat_template"],
                                             add_generation_prompt=c["add_generation_prompt"], **specials)
            same += texts[0] == c["text"]
        failed += same != len(chats)
        print(f"{family}: transformers renders {same} of {len(chats)} chats as the fixture")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
