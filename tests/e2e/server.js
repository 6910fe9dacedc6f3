// Shared by the SDK tests: starts `tandem serve` on a free port and waits
// until it is ready. TANDEM (the binary) and TD_SOURCE_ROOT come from meson.
import { spawn, execFileSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import path from 'node:path';

export const TANDEM = process.env.TANDEM;
export const ROOT = process.env.TD_SOURCE_ROOT;
export const MODEL_DIR = path.join(ROOT, 'models', 'tiny-v4');

// Resolves to { proc, url } once /ready answers 200.
export async function startServer(env = {}) {
  const proc = spawn(TANDEM, ['serve', '--port', '0', '--model', MODEL_DIR, '--threads', '1'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const url = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('no startup line: ' + buf)), 60000);
    const onData = (d) => {
      buf += d.toString();
      // the router's own line: its workers log other URLs (their /metrics)
      const m = buf.match(/tandem: serving \S+ on (http:\/\/[0-9.]+:[0-9]+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    // TANDEM_SERVER_LOG=FILE keeps the server's (and its workers') log
    if (process.env.TANDEM_SERVER_LOG)
      proc.stderr.on('data', (d) => appendFileSync(process.env.TANDEM_SERVER_LOG, d));
    proc.on('exit', (c, sig) => {
      reject(new Error('server exited ' + c + ': ' + buf));
      // After startup an exit nobody asked for is the failure to explain.
      if (!proc.stopping)
        console.error('tandem serve exited (' + (c ?? sig) + '); its log:\n' + buf.slice(-8000));
    });
  });
  for (let i = 0; i < 600; i++) {
    const r = await fetch(url + '/ready').catch(() => null);
    if (r && r.status === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const kill = proc.kill.bind(proc);
  proc.kill = (sig) => { proc.stopping = true; return kill(sig); };
  return { proc, url };
}

// The prompt length of an OpenAI chat body as the server's own encoder
// counts it (`tandem render-chat --ids`).
export function promptTokens(chatBody) {
  const out = execFileSync(TANDEM, ['render-chat', '--model', MODEL_DIR, '--ids', '-'],
    { input: JSON.stringify(chatBody) });
  return JSON.parse(out.toString()).length;
}
