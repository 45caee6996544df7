// weft/test/reference/readers/read_png.js v1 — decodes a PNG with pngjs (which checks its chunks' CRCs and inflates
// its data) and prints JSON: width, height, and for each colour asked for, how many pixels have it exactly and the
// mean row of those pixels in the left and right fifths of the image within rows [TOP, BOTTOM).
// Usage: node read_png.js FILE TOP BOTTOM R,G,B [R,G,B ...]
"use strict";
const fs = require("fs");
const { PNG } = require("pngjs");

const [file, top, bottom, ...colors] = process.argv.slice(2);
const png = PNG.sync.read(fs.readFileSync(file), { checkCRC: true });
const out = { width: png.width, height: png.height, colors: {} };
for (const c of colors) {
  const [r, g, b] = c.split(",").map(Number);
  const stats = { count: 0, left_rows: [], right_rows: [] };
  for (let y = 0; y < png.height; ++y)
    for (let x = 0; x < png.width; ++x) {
      const i = (y * png.width + x) * 4;
      if (png.data[i] !== r || png.data[i + 1] !== g || png.data[i + 2] !== b) continue;
      ++stats.count;
      if (y < Number(top) || y >= Number(bottom)) continue;
      if (x < png.width / 5) stats.left_rows.push(y);
      else if (x >= (png.width * 4) / 5) stats.right_rows.push(y);
    }
  const mean = (v) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : null);
  out.colors[c] = { count: stats.count, left_mean_row: mean(stats.left_rows), right_mean_row: mean(stats.right_rows) };
}
console.log(JSON.stringify(out));
