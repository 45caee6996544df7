#!/usr/bin/env node
// weft/test/reference/tokenizers/encode.js v1 — the reference ids: transformers.js (@lenml/tokenizers) encoding a
// JSONL corpus with one of the npm tokenizer packages.
//   node encode.js <family> <corpus.jsonl> <out.json>      family: llama2 | llama3 | qwen3 | deepseek_v3
// Writes {"ids": [[...], ...], "ids_with_special": [[...], ...], "decoded": ["...", ...]}.
const fs = require("fs");
const [family, corpusPath, outPath] = process.argv.slice(2);
const { fromPreTrained } = require(`@lenml/tokenizer-${family}`);
const tokenizer = fromPreTrained();
const lines = fs.readFileSync(corpusPath, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l).text);
const ids = [], withSpecial = [], decoded = [];
for (const text of lines) {
  const plain = tokenizer.encode(text, { add_special_tokens: false });
  ids.push(plain);
  withSpecial.push(tokenizer.encode(text, { add_special_tokens: true }));
  decoded.push(tokenizer.decode(plain, { skip_special_tokens: false, clean_up_tokenization_spaces: false }));
}
fs.writeFileSync(outPath, JSON.stringify({ ids, ids_with_special: withSpecial, decoded }));
