#!/usr/bin/env node
// How HF's V4 pre-tokenizer classes every code point, as runs:
//   node classes.js TOKENIZER_JSON OUT_JSON
// writes {"runs": [[first, last, group], ...]} with group
//   "L"  letter or mark  ("a" c "a" stays one piece)
//   "N"  number          (c c c c splits 3 + 1)
//   "P"  punctuation or symbol (c c c c stays one piece)
//   "O"  anything else   ("a" c "a" splits as "a" | c "a")
// The matcher never needs to tell L from M or P from S, so these four
// groups are all it depends on. ASCII and the CJK ranges of step 2 come
// out as artifacts of the probes (tests skip them; the vectors cover them).
// Surrogates are left out. tests/unit/tokenizer checks tandem's classes
// against this file, which catches libutf8proc knowing an older Unicode
// than HF's Oniguruma.
'use strict';

const fs = require('fs');
const { Tokenizer } = require('tokenizers');

const [tokPath, outPath] = process.argv.slice(2);
if (!tokPath || !outPath) {
  console.error('usage: node classes.js TOKENIZER_JSON OUT_JSON');
  process.exit(2);
}
const pt = Tokenizer.fromFile(tokPath).getPreTokenizer();
const runs = [];
for (let c = 0; c < 0x110000; c++) {
  if (c >= 0xd800 && c <= 0xdfff) continue;
  const ch = String.fromCodePoint(c);
  const n = pt.preTokenizeString('a' + ch + 'a').length;
  let g = n === 1 ? 'L' : n === 2 ? 'O'
        : pt.preTokenizeString(ch + ch + ch + ch).length === 2 ? 'N' : 'P';
  const last = runs[runs.length - 1];
  if (last && last[1] === c - 1 && last[2] === g) last[1] = c;
  else runs.push([c, c, g]);
}
fs.writeFileSync(outPath, '{"runs": [\n' + runs.map((r) => JSON.stringify(r)).join(',\n') + '\n]}\n');
console.error(`${outPath}: ${runs.length} runs`);
