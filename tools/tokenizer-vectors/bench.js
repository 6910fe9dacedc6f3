#!/usr/bin/env node
// Encode speed of Hugging Face tokenizers on a file, to compare with
// tandem's tokenizer_bench on the same input:
//   node bench.js TOKENIZER_JSON TEXT_FILE [--chunks]
// One encode call over the whole file, load time excluded. With --chunks,
// the file is cut after newlines into ~4 KB chunks encoded one after the
// other (HF is much faster on many short inputs than on one long one).
'use strict';

const fs = require('fs');
const { Tokenizer } = require('tokenizers');

async function main() {
  const [tokPath, textPath, mode] = process.argv.slice(2);
  if (!tokPath || !textPath) {
    console.error('usage: node bench.js TOKENIZER_JSON TEXT_FILE');
    process.exit(2);
  }
  let t = process.hrtime.bigint();
  const tok = Tokenizer.fromFile(tokPath);
  const load = Number(process.hrtime.bigint() - t) / 1e9;
  const buf = fs.readFileSync(textPath);
  const text = buf.toString('utf8');
  const chunks = [];
  if (mode === '--chunks') {
    for (let at = 0; at < text.length;) {
      let end = text.indexOf('\n', at + 4096);
      end = end < 0 ? text.length : end + 1;
      chunks.push(text.slice(at, end));
      at = end;
    }
  } else {
    chunks.push(text);
  }
  t = process.hrtime.bigint();
  let n = 0;
  for (const c of chunks) {
    const enc = await tok.encode(c, null, { addSpecialTokens: false });
    n += enc.getIds().length;
  }
  const secs = Number(process.hrtime.bigint() - t) / 1e9;
  console.log(`load ${load.toFixed(3)} s; encode ${buf.length} bytes (${chunks.length} calls) -> ${n} tokens in ` +
              `${secs.toFixed(3)} s = ${(buf.length / 1e6 / secs).toFixed(1)} MB/s`);
}

main().catch((e) => { console.error(e); process.exit(1); });
