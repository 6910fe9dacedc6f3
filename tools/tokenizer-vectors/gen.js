#!/usr/bin/env node
// Writes reference vectors for tandem's tokenizer tests using Hugging Face
// `tokenizers` (the npm package wraps the Rust core; its prebuilt binary is
// in the package), an implementation independent of tandem's.
//
//   npm ci && node gen.js TOKENIZER_JSON OUT_JSON [INPUTS_JS]
//
// OUT_JSON holds
//   encode: [{group, text, ids}]   ids = encode(text), no post-processing
//   decode: [{ids, skip_special, text}]   text = HF's (lossy) decode(ids)
// The decode cases are random id sequences, many of single bytes, so some
// split UTF-8 characters: HF turns those into U+FFFD, which is what
// tandem's streaming decoder must print for them.
'use strict';

const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

function xorshift(seed) {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}

async function main() {
  const [tokPath, outPath, inputsPath] = process.argv.slice(2);
  if (!tokPath || !outPath) {
    console.error('usage: node gen.js TOKENIZER_JSON OUT_JSON [INPUTS_JS]');
    process.exit(2);
  }
  const inputs = require(path.resolve(inputsPath || path.join(__dirname, 'inputs.js')));
  const tok = Tokenizer.fromFile(tokPath);
  const version = require('tokenizers/package.json').version;

  const encode = [];
  for (const [group, texts] of Object.entries(inputs.groups)) {
    for (const text of texts) {
      const enc = await tok.encode(text, null, { addSpecialTokens: false });
      encode.push({ group, text, ids: Array.from(enc.getIds()) });
    }
  }

  // Decode cases: single-byte tokens (ids of the 256 byte symbols), any
  // vocab id, and the added tokens, mixed.
  const vocab = tok.getVocab(true);
  const allIds = Object.values(vocab).sort((a, b) => a - b);
  const byteIds = [];
  for (const [s, id] of Object.entries(vocab))
    if ([...s].length === 1 && s.codePointAt(0) < 0x144) byteIds.push(id);
  byteIds.sort((a, b) => a - b);
  const addedIds = [];
  for (const id of allIds) {
    const t = tok.idToToken(id);
    if (t && (t.startsWith('<') || t.includes('｜'))) addedIds.push(id);
  }
  const rnd = xorshift(7);
  const decode = [];
  for (let i = 0; i < 120; i++) {
    const n = 1 + (rnd() % 12);
    const ids = [];
    for (let k = 0; k < n; k++) {
      const r = rnd() % 10;
      const pool = r < 6 ? byteIds : r < 9 || !addedIds.length ? allIds : addedIds;
      ids.push(pool[rnd() % pool.length]);
    }
    const skip = i % 2 === 1;
    decode.push({ ids, skip_special: skip, text: await tok.decode(ids, skip) });
  }

  const out = {
    generator: `tokenizers@${version} (npm, Hugging Face Rust core)`,
    tokenizer: path.basename(path.dirname(path.resolve(tokPath))) + '/' + path.basename(tokPath),
    encode,
    decode,
  };
  fs.writeFileSync(outPath, JSON.stringify(out, null, 0).replace(/\},\{/g, '},\n{') + '\n');
  console.error(`${outPath}: ${encode.length} encode and ${decode.length} decode vectors`);
}

main().catch((e) => { console.error(e); process.exit(1); });
