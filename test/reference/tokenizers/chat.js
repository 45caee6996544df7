#!/usr/bin/env node
// weft/test/reference/tokenizers/chat.js v1 — the reference renderings of chats: transformers.js (@lenml/tokenizers)
// applying each npm tokenizer package's own chat template (tokenizer_config.json's Jinja) to a few conversations,
// with and without the generation prompt.
//   node chat.js <out.json>
// Writes {family: [{"messages": [...], "add_generation_prompt": bool, "text": "...", "ids": [...]}, ...], ...}; a
// family whose template transformers.js cannot parse (Qwen3's, with @lenml/tokenizers 3.7.2) is left out, named on
// stderr.
const fs = require("fs");
const conversations = [
  [{ role: "user", content: "Call me Ishmael." }],
  [{ role: "system", content: "You are a sailor." }, { role: "user", content: "Where is the whale?" }],
  [
    { role: "system", content: "You are a sailor." },
    { role: "user", content: "Where is the whale?" },
    { role: "assistant", content: "Below us, captain." },
    { role: "user", content: "  Lower the boats!  " },
  ],
];
const out = {};
for (const family of ["llama3", "qwen3", "deepseek_v3"]) {
  const { fromPreTrained } = require(`@lenml/tokenizer-${family}`);
  const tokenizer = fromPreTrained();
  const rendered = [];
  try {
    for (const messages of conversations)
      for (const add_generation_prompt of [false, true]) {
        const options = { add_generation_prompt, enable_thinking: false };
        rendered.push({
          messages, add_generation_prompt,
          text: tokenizer.apply_chat_template(messages, { ...options, tokenize: false }),
          ids: Array.from(tokenizer.apply_chat_template(messages, { ...options, tokenize: true })),
        });
      }
    out[family] = rendered;
  } catch (e) {
    console.error(`${family}: transformers.js cannot render its template: ${e.message}`);
  }
}
fs.writeFileSync(process.argv[2], JSON.stringify(out, null, 1));
