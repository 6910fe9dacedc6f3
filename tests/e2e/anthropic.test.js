// The official `@anthropic-ai/sdk` npm package, unmodified, against a
// running `tandem serve` (POST /v1/messages, /v1/messages/count_tokens).
// The tiny model's text is random: these tests check shapes, event order,
// block types the prompt makes certain, and token counts, not content.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { startServer } from './server.js';

let server;
let client;
let baseURL;

before(async () => {
  const s = await startServer({});
  server = s.proc;
  baseURL = s.url;
  client = new Anthropic({ baseURL, apiKey: 'unused', maxRetries: 0 });
});

after(() => { if (server) server.kill('SIGTERM'); });

const MODEL = 'claude-any';  // any model name is accepted; the served one answers
const BLOCK_TYPES = ['text', 'thinking', 'tool_use'];

test('messages.create: message shape, stop reason, usage = count_tokens', async () => {
  const req = { model: MODEL, max_tokens: 12, temperature: 0,
    system: 'Be brief.', messages: [{ role: 'user', content: 'Hello there' }] };
  const m = await client.messages.create(req);
  assert.match(m.id, /^msg_/);
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.equal(m.model, 'tiny-v4');
  assert.ok(Array.isArray(m.content));
  for (const b of m.content) assert.ok(BLOCK_TYPES.includes(b.type), b.type);
  assert.ok(['end_turn', 'max_tokens', 'tool_use'].includes(m.stop_reason));
  assert.equal(m.stop_sequence, null);
  if (m.stop_reason === 'max_tokens') assert.equal(m.usage.output_tokens, 12);
  const { model, max_tokens, temperature, ...countReq } = req;
  const c = await client.messages.countTokens({ model, ...countReq });
  assert.ok(c.input_tokens > 0);
  // Anthropic's input_tokens leaves out what a prompt cache served.
  assert.equal(m.usage.input_tokens + m.usage.cache_read_input_tokens, c.input_tokens);
});

test('messages.stream: exact event order, finalMessage equals the non-stream answer', async () => {
  const req = { model: MODEL, max_tokens: 16, temperature: 0,
    messages: [{ role: 'user', content: [{ type: 'text', text: 'Count to five' }] }] };
  const whole = await client.messages.create(req);
  const stream = client.messages.stream(req);
  const events = [];
  stream.on('streamEvent', (e) => events.push(e));
  const final = await stream.finalMessage();
  const names = events.map((e) => e.type);
  assert.equal(names[0], 'message_start');
  assert.equal(names[names.length - 1], 'message_stop');
  assert.equal(names[names.length - 2], 'message_delta');
  // Between them: blocks, each start, deltas, stop, with indices 0, 1, ...
  let open = -1;
  let next = 0;
  for (const e of events.slice(1, -2)) {
    if (e.type === 'content_block_start') {
      assert.equal(open, -1); assert.equal(e.index, next); open = next++;
    } else if (e.type === 'content_block_delta') {
      assert.equal(e.index, open);
    } else if (e.type === 'content_block_stop') {
      assert.equal(e.index, open); open = -1;
    } else {
      assert.equal(e.type, 'ping');
    }
  }
  assert.equal(open, -1);
  assert.deepEqual(final.content, whole.content);
  assert.equal(final.stop_reason, whole.stop_reason);
  assert.equal(final.usage.input_tokens, whole.usage.input_tokens);
  assert.equal(final.usage.output_tokens, whole.usage.output_tokens);
});

test('ping comes right after message_start (raw SSE)', async () => {
  const r = await fetch(baseURL + '/v1/messages', { method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, max_tokens: 2, stream: true,
      messages: [{ role: 'user', content: 'x' }] }) });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /text\/event-stream/);
  const text = await r.text();
  const names = [...text.matchAll(/^event: (\w+)\ndata: (.*)$/gm)].map((m) => {
    assert.equal(JSON.parse(m[2]).type, m[1]);
    return m[1];
  });
  assert.deepEqual(names.slice(0, 2), ['message_start', 'ping']);
  assert.deepEqual(names.slice(-2), ['message_delta', 'message_stop']);
});

test('thinking enabled: the answer opens with a thinking block', async () => {
  // In think mode the prompt ends with <think>: whatever the model writes
  // before a </think> is reasoning, so the first block is thinking (unless
  // the very first token were </think>; greedy decoding here does not).
  const req = { model: MODEL, max_tokens: 1100, temperature: 0,
    thinking: { type: 'enabled', budget_tokens: 1024 },
    messages: [{ role: 'user', content: 'Why is the sky blue?' }] };
  const m = await client.messages.create(req);
  assert.ok(m.content.length > 0);
  assert.equal(m.content[0].type, 'thinking');
  assert.equal(typeof m.content[0].thinking, 'string');
  assert.equal(m.content[0].signature, '');
  const stream = client.messages.stream(req);
  let thinkingDeltas = 0;
  stream.on('streamEvent', (e) => {
    if (e.type === 'content_block_delta' && e.delta.type === 'thinking_delta') thinkingDeltas++;
  });
  const final = await stream.finalMessage();
  assert.ok(thinkingDeltas > 0);
  assert.deepEqual(final.content, m.content);
  // Thinking changes the prompt's end, not its length (<think> vs </think>).
  const { max_tokens, temperature, thinking, ...base } = req;
  const on = await client.messages.countTokens({ ...base, thinking });
  const off = await client.messages.countTokens({ ...base, thinking: { type: 'disabled' } });
  assert.equal(on.input_tokens, m.usage.input_tokens + m.usage.cache_read_input_tokens);
  assert.equal(off.input_tokens, on.input_tokens);
});

test('tools: tool_use / tool_result history is accepted and counted', async () => {
  const tools = [{ name: 'get_weather', description: 'Weather for a city',
    input_schema: { type: 'object', properties: { city: { type: 'string' } },
      required: ['city'] } }];
  const messages = [
    { role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', content: [{ type: 'text', text: 'Checking.' },
      { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { city: 'Paris' } }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_01',
      content: [{ type: 'text', text: '18C, sunny' }] }] },
  ];
  const withTools = await client.messages.countTokens({ model: MODEL, tools, messages });
  const none = await client.messages.countTokens({ model: MODEL, tools,
    tool_choice: { type: 'none' }, messages });
  assert.ok(withTools.input_tokens > none.input_tokens);  // the schema is in the prompt
  const m = await client.messages.create({ model: MODEL, max_tokens: 8, temperature: 0,
    tools, tool_choice: { type: 'any' }, messages });
  assert.equal(m.usage.input_tokens + m.usage.cache_read_input_tokens, withTools.input_tokens);
  for (const b of m.content) {
    assert.ok(BLOCK_TYPES.includes(b.type));
    if (b.type === 'tool_use') { assert.match(b.id, /^toolu_/); assert.equal(typeof b.input, 'object'); }
  }
});

test('errors surface as the SDK\'s APIError with Anthropic\'s shape and status', async () => {
  const bad = (p, status, type, re) => assert.rejects(p, (e) => {
    assert.ok(e instanceof Anthropic.APIError, String(e));
    assert.equal(e.status, status);
    assert.equal(e.error?.type, 'error');
    assert.equal(e.error?.error?.type, type);
    if (re) assert.match(e.message, re);
    return true;
  });
  await bad(client.messages.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }] }),
    400, 'invalid_request_error', /max_tokens/);
  await bad(client.messages.create({ model: MODEL, max_tokens: 4, messages: [{ role: 'user',
    content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AA==' } }] }] }),
    400, 'invalid_request_error', /image/);
  await bad(client.post('/v1/messages/nope', { body: {} }), 404, 'not_found_error');
  await bad(client.messages.create({ model: MODEL, max_tokens: 4,
    messages: [{ role: 'user', content: 'x'.repeat(2 << 20) }] }), 413, 'request_too_large');
});

test('a last assistant turn is a prefill: think mode answers with text only', async () => {
  const m = await client.messages.create({ model: MODEL, max_tokens: 1030, temperature: 0,
    thinking: { type: 'enabled', budget_tokens: 1024 }, stop_sequences: [],
    messages: [{ role: 'user', content: 'Say hi' }, { role: 'assistant', content: 'Hi' }] });
  for (const b of m.content) assert.equal(b.type === 'thinking', false);
});

test('API keys: 401 authentication_error in Anthropic\'s shape, x-api-key accepted', async () => {
  const s = await startServer({ TANDEM_API_KEYS: 'sk-test' });
  try {
    const req = { model: MODEL, messages: [{ role: 'user', content: 'x' }] };
    const wrong = new Anthropic({ baseURL: s.url, apiKey: 'nope', maxRetries: 0 });
    await assert.rejects(wrong.messages.countTokens(req), (e) => {
      assert.ok(e instanceof Anthropic.AuthenticationError, String(e));
      assert.equal(e.status, 401);
      assert.equal(e.error?.error?.type, 'authentication_error');
      return true;
    });
    const right = new Anthropic({ baseURL: s.url, apiKey: 'sk-test', maxRetries: 0 });
    assert.ok((await right.messages.countTokens(req)).input_tokens > 0);
  } finally {
    s.proc.kill('SIGTERM');
  }
});
