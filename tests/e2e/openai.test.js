// The official `openai` npm package, unmodified, against a running
// `tandem serve`. TANDEM (the binary) and TD_SOURCE_ROOT come from meson.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import OpenAI from 'openai';
import { startServer, TANDEM, MODEL_DIR } from './server.js';

let server;
let client;

function tokenCount(text) {
  const out = execFileSync(TANDEM, ['tokenize', '--tokenizer',
    path.join(MODEL_DIR, 'tokenizer.json'), text]);
  return JSON.parse(out.toString()).length;
}

before(async () => {
  const s = await startServer();
  server = s.proc;
  client = new OpenAI({ baseURL: s.url + '/v1', apiKey: 'unused', maxRetries: 0 });
});

after(() => { if (server) server.kill('SIGTERM'); });

test('models.list names the served model', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ['tiny-v4']);
});

test('chat completion, non-stream: message, finish reason, usage', async () => {
  const r = await client.chat.completions.create({
    model: 'tiny-v4', messages: [{ role: 'user', content: 'Hello there' }],
    max_tokens: 12, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['length', 'stop'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 0);
  if (r.choices[0].finish_reason === 'length') assert.equal(r.usage.completion_tokens, 12);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('chat stream equals the non-stream answer and ends with usage', async () => {
  const req = { model: 'tiny-v4', messages: [{ role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Count to five' }], max_tokens: 16, temperature: 0 };
  const whole = await client.chat.completions.create(req);
  const stream = await client.chat.completions.create({ ...req, stream: true,
    stream_options: { include_usage: true } });
  let text = '';
  let usage = null;
  let finish = null;
  let first = true;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    if (!chunk.choices.length) continue;
    if (first) { assert.equal(chunk.choices[0].delta.role, 'assistant'); first = false; }
    text += chunk.choices[0].delta.content ?? '';
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.deepEqual(usage, whole.usage);
});

test('completions: usage counts our tokenizer\'s tokens, seeds reproduce', async () => {
  const prompt = 'Once upon a time, 42 engineers';
  const a = await client.completions.create({ model: 'tiny-v4', prompt, max_tokens: 8,
    temperature: 1, seed: 11 });
  const b = await client.completions.create({ model: 'tiny-v4', prompt, max_tokens: 8,
    temperature: 1, seed: 11 });
  assert.equal(a.usage.prompt_tokens, tokenCount(prompt));
  assert.equal(a.choices[0].text, b.choices[0].text);
});

test('completions stream', async () => {
  const whole = await client.completions.create({ model: 'tiny-v4', prompt: 'abc',
    max_tokens: 10, temperature: 0 });
  const stream = await client.completions.create({ model: 'tiny-v4', prompt: 'abc',
    max_tokens: 10, temperature: 0, stream: true });
  let text = '';
  for await (const c of stream) text += c.choices[0]?.text ?? '';
  assert.equal(text, whole.choices[0].text);
});

test('errors surface as the SDK\'s APIError with status and message', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'tiny-v4', messages: 'not a list' }),
    (e) => e instanceof OpenAI.APIError && e.status === 400 && /messages/.test(e.message));
  await assert.rejects(
    client.completions.create({ model: 'tiny-v4', prompt: 'x'.repeat(100000), max_tokens: 4 }),
    (e) => e instanceof OpenAI.APIError && (e.status === 400 || e.status === 413));
});

// A tool-calling loop as an agent drives it: the assistant's tool call and
// the tool's result go back in the history and the next turn is served. The
// tiny model's random text never emits a DSML block, so the call itself is
// supplied as history (the parser is tested on recorded streams in C); what
// this checks is that the SDK's shapes round-trip and the prompt the server
// encodes is exactly `tandem render-chat` of the same body.
test('tool-calling loop: tool call and result in history, next turn, exact prompt', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather',
    description: 'Weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' },
      days: { type: 'integer' } }, required: ['city'] } } }];
  const messages = [
    { role: 'system', content: 'You are a helpful agent.' },
    { role: 'user', content: 'Weather in Tokyo for 3 days?' },
  ];
  const first = await client.chat.completions.create({ model: 'tiny-v4', messages, tools,
    max_tokens: 8, temperature: 0 });
  assert.ok(['stop', 'length', 'tool_calls'].includes(first.choices[0].finish_reason));
  const history = [...messages,
    { role: 'assistant', content: '', reasoning_content: 'Need the weather tool.',
      tool_calls: [{ id: 'call_1', type: 'function',
        function: { name: 'get_weather', arguments: '{"city": "Tokyo", "days": 3}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: '{"forecast": ["sun", "rain", "sun"]}' },
  ];
  const body = { model: 'tiny-v4', messages: history, tools, max_tokens: 8, temperature: 0,
    reasoning_effort: 'high' };
  const next = await client.chat.completions.create(body);
  assert.equal(next.object, 'chat.completion');
  const fs = await import('node:fs');
  const os = await import('node:os');
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'td-')), 'body.json');
  fs.writeFileSync(file, JSON.stringify(body));
  const ids = JSON.parse(execFileSync(TANDEM, ['render-chat', '--model', MODEL_DIR, '--ids',
    file]).toString());
  assert.equal(next.usage.prompt_tokens, ids.length);
  const text = execFileSync(TANDEM, ['render-chat', file]).toString();
  assert.match(text, /<｜DSML｜invoke name="get_weather">/);
  assert.match(text, /<tool_result>/);
  assert.match(text, /Need the weather tool\./);   // reasoning kept: the conversation has tools
});

// Constrained decoding makes even the tiny model's random weights call a
// tool when tool_choice demands one, with arguments that fit the schema.
const weatherTools = [{ type: 'function', function: { name: 'get_weather', parameters: {
  type: 'object', properties: { days: { type: 'integer' }, unit: { enum: ['c', 'f'] } },
  required: ['days', 'unit'] } } }];

test('tool_choice required: a live tool call, non-stream and stream', async () => {
  const body = { model: 'tiny-v4', max_tokens: 200, temperature: 0, tools: weatherTools,
    tool_choice: 'required', parallel_tool_calls: false,
    messages: [{ role: 'user', content: 'Weather in Oslo?' }] };
  const r = await client.chat.completions.create(body);
  const m = r.choices[0].message;
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.ok(m.tool_calls.length >= 1);
  const args = JSON.parse(m.tool_calls[0].function.arguments);
  assert.equal(m.tool_calls[0].function.name, 'get_weather');
  assert.ok(Number.isInteger(args.days) && ['c', 'f'].includes(args.unit));
  // The SDK's stream helper assembles the call from the deltas: the same call.
  const stream = client.chat.completions.stream({ ...body, stream: true });
  const final = await stream.finalChatCompletion();
  assert.equal(final.choices[0].finish_reason, 'tool_calls');
  assert.deepEqual(JSON.parse(final.choices[0].message.tool_calls[0].function.arguments), args);
});

test('response_format json_schema: the content parses and fits', async () => {
  const r = await client.chat.completions.create({ model: 'tiny-v4', max_tokens: 200,
    temperature: 0, messages: [{ role: 'user', content: 'Give me a record.' }],
    response_format: { type: 'json_schema', json_schema: { name: 'rec', schema: {
      type: 'object', properties: { id: { type: 'integer' }, ok: { type: 'boolean' } },
      required: ['id', 'ok'] } } } });
  const v = JSON.parse(r.choices[0].message.content);
  assert.ok(Number.isInteger(v.id) && typeof v.ok === 'boolean');
});
