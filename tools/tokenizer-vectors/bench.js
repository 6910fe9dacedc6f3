#!/usr/bin/env node
// Encode speed of Hugging Face tokenizers on a file, to compare with
// tandem's tokenizer_bench on the same input:
//   node bench.js TOKENIZER_JSON TEXT_FILE
// One encode call over the whole file, load time excluded.
'use strict';

const fs = require('fs');
const { Tokenizer } = require('tokenizers');

async function main() {
  const [tokPath, textPath] = process.argv.slice(2);
  if (!tokPath || !textPath) {
    console.error('usage: node bench.js TOKENIZER_JSON TEXT_FILE');
    process.exit(2);
  }
  let t = process.hrtime.bigint();
  const tok = Tokenizer.fromFile(tokPath);
  const load = Number(process.hrtime.bigint() - t) / 1e9;
  const buf = fs.readFileSync(textPath);
  const text = buf.toString('utf8');
  t = process.hrtime.bigint();
  const enc = await tok.encode(text, null, { addSpecialTokens: false });
  const secs = Number(process.hrtime.bigint() - t) / 1e9;
  const n = enc.getIds().length;
  console.log(`load ${load.toFixed(3)} s; encode ${buf.length} bytes -> ${n} tokens in ` +
              `${secs.toFixed(3)} s = ${(buf.length / 1e6 / secs).toFixed(1)} MB/s`);
}

main().catch((e) => { console.error(e); process.exit(1); });
