#!/usr/bin/env python3
"""weft/test/reference/make_tokenizer_corpus.py v1 — the hard corpus the tokenizer parity tests encode.

Writes test/fixtures/tokenizer/corpus.jsonl: one {"text": ...} per line, built to stress tokenizers: CJK and
other scripts, emoji with zero-width joiners and skin tones, combining marks (composed and decomposed, so NFC
matters), long digit runs, runs of spaces, tabs and newlines, code, URLs, special tokens inside text, and
invalid-looking but valid Unicode. Deterministic: run it again and the file is the same.
"""
import json
import os
import random

rng = random.Random(20261128)
texts = []


def add(t):
    texts.append(t)


# Plain prose and punctuation.
for s in ["Hello, world!", "The quick brown fox jumps over the lazy dog.", "  leading spaces", "trailing spaces   ",
          "It's, we're, they've, I'm, you'll, he'd", "IT'S WE'RE THEY'VE", "don't stop-believing...",
          "a", " ", "  ", "\t", "\n", "\n\n\n", "\r\n", "x\r\ny", "tab\tseparated\tvalues", "mixed \t \n whitespace \n\t ",
          "A  B   C    D     E", "end.\n", "¿Qué tal? ¡Muy bien!", "naïve café résumé façade", "Ærøskøbing Ålesund"]:
    add(s)
# Scripts.
for s in ["你好，世界！这是一个测试。", "日本語のテキストとカタカナ、ひらがな。", "한국어 문장입니다.", "Привет, мир! Как дела?",
          "Γειά σου Κόσμε", "שלום עולם", "مرحبا بالعالم", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Xin chào thế giới",
          "中文English混合text 123", "東京タワー（とうきょうタワー）", "漢字かなカナ", "𠜎𠜱𠝹𠱓 (astral CJK)"]:
    add(s)
# Emoji, ZWJ sequences, flags, skin tones, variation selectors.
for s in ["👍", "👍🏽 thumbs", "👩‍💻 coder", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "🇺🇸🇯🇵🇩🇪", "❤️ vs ❤", "☺︎ text style",
          "1️⃣2️⃣3️⃣", "🧑🏿‍🚀🚀✨", "emoji🙂inside🙃words", "🤷‍♀️🤷🏻‍♂️"]:
    add(s)
# Combining marks: decomposed forms that NFC composes, stacked marks, Hangul jamo.
for s in ["e\u0301", "cafe\u0301", "A\u030a", "n\u0303o", "o\u0308\u0304", "a\u0301\u0302\u0303", "\u1100\u1161\u11a8",
          "Z\u0351\u0353\u0359a\u0361\u0321l\u0315g\u0358o", "\u0915\u094d\u0937", "q\u0307\u0323", "\u00c5 vs A\u030a",
          "\u212b angstrom sign", "\u1e9b\u0323", "\ufb01 ligature", "x\u0338", "\u0300 leading combining"]:
    add(s)
# Digits.
for s in ["1", "12", "123", "1234", "12345678901234567890", "3.14159265358979323846", "1,000,000", "0x1F600",
          "2026-11-28T04:13:00Z", "+1 (555) 123-4567", "١٢٣٤٥ Arabic digits", "１２３ fullwidth", "½ ⅓ ¼ ⁵ ₂"]:
    add(s)
# Code.
for s in ["def f(x):\n    return x ** 2\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }", "if x != None and y >= 3:",
          "#include <stdio.h>\nint main(void) { printf(\"hi\\n\"); }", "const re = /\\s+(?!\\S)/gu;",
          "SELECT * FROM users WHERE id = 42;", "    indented    by    four", "\t\tdouble tab", "x=1;y=2;z=x+y",
          "<div class=\"a\">text</div>", "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}", "a_b_c __init__ self.x"]:
    add(s)
# URLs and paths.
for s in ["https://example.com/path?query=1&b=2#frag", "http://localhost:8080/", "mailto:someone@example.org",
          "/usr/local/bin/weft --flag=value", "C:\\Users\\name\\file.txt", "www.example.co.uk/ünïcode"]:
    add(s)
# Special tokens of the four families inside text.
for s in ["<s>", "</s>", "<unk>", "Hello <s> world </s>", "<s><s></s>", "a<s>b", " <s> ", "<|begin_of_text|>Hi",
          "text<|eot_id|>more", "<|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|>", "<|im_start|>user\nhi<|im_end|>",
          "<|endoftext|>", "x<|endoftext|>y", "<tool_call>call</tool_call>", "<｜begin▁of▁sentence｜>Hi",
          "<｜User｜>question<｜Assistant｜>answer", "<|reserved_special_token_5|>", "<|im_start|> spaced <|im_end|>",
          "not<s a token", "<|fake_token|>"]:
    add(s)
# Metaspace character and byte-fallback material.
for s in ["▁", "▁▁word", "a▁b", "\u0000 null byte", "\u007f del", "\u00a0nbsp\u00a0", "\u2028line sep\u2029para",
          "\ufeffBOM start", "zero\u200bwidth\u200cjoin\u200d", "\ue000 private use", "￼ object", "\U0001f9ff newest"]:
    add(s)
# Whitespace runs of every shape.
for n in (1, 2, 3, 5, 8, 16, 33):
    add(" " * n + "x" + " " * n)
    add("x" + "\n" * n + "y")
    add("\t" * n + "y")
# Random mixtures drawn from all of the above.
alphabet = list("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()[]{}<>-_=+*/\\\t\n") + \
    list("你好世界日本語한국어éüñçßøåπΩж") + ["👍", "🏽", "\u200d", "\u0301", "  ", "<s>", "<|im_start|>", "1234"]
while len(texts) < 260:
    add("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))))

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "tokenizer", "corpus.jsonl")
with open(out, "w", encoding="utf-8") as f:
    for t in texts:
        f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
print(f"wrote {len(texts)} lines to {out}")
