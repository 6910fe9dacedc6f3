// The official `openai` npm package, unmodified, against a running
// `tandem serve`: the Responses API (POST /v1/responses). The tiny model's
// text is random: these tests check shapes, event order, that the stream
// adds up to the final response, and token counts, not content.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, promptTokens } from './server.js';

let server;
let client;
let baseURL;

before(async () => {
  const s = await startServer();
  server = s.proc;
  baseURL = s.url;
  client = new OpenAI({ baseURL: s.url + '/v1', apiKey: 'unused', maxRetries: 0 });
});

after(() => { if (server) server.kill('SIGTERM'); });

const ITEM_TYPES = ['reasoning', 'message', 'function_call'];

function outputText(r) {
  return r.output.filter((i) => i.type === 'message')
    .flatMap((i) => i.content).map((c) => c.text).join('');
}

test('responses.create: response shape, status, usage = our token counts', async () => {
  const r = await client.responses.create({ model: 'tiny-v4', instructions: 'Be brief.',
    input: 'Hello there', max_output_tokens: 12, temperature: 0, store: false });
  assert.match(r.id, /^resp_/);
  assert.equal(r.object, 'response');
  assert.equal(r.model, 'tiny-v4');
  assert.equal(typeof r.created_at, 'number');
  assert.ok(['completed', 'incomplete'].includes(r.status));
  for (const it of r.output) {
    assert.ok(ITEM_TYPES.includes(it.type), it.type);
    if (it.type === 'message') {
      assert.match(it.id, /^msg_/);
      assert.equal(it.role, 'assistant');
      for (const c of it.content) { assert.equal(c.type, 'output_text'); assert.deepEqual(c.annotations, []); }
    }
  }
  if (r.status === 'incomplete') {
    assert.deepEqual(r.incomplete_details, { reason: 'max_output_tokens' });
    assert.equal(r.usage.output_tokens, 12);
  } else {
    assert.equal(r.incomplete_details, null);
  }
  assert.equal(r.output_text, outputText(r));  // the SDK's convenience field
  assert.equal(r.usage.input_tokens, promptTokens({ messages: [
    { role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello there' }] }));
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
});

test('responses.create stream: event order, deltas add up to response.completed', async () => {
  const req = { model: 'tiny-v4', input: [{ role: 'user', content: [{ type: 'input_text',
    text: 'Count to five' }] }], max_output_tokens: 16, temperature: 0 };
  const whole = await client.responses.create(req);
  const stream = await client.responses.create({ ...req, stream: true });
  const events = [];
  for await (const e of stream) events.push(e);
  const names = events.map((e) => e.type);
  assert.deepEqual(names.slice(0, 2), ['response.created', 'response.in_progress']);
  const last = events[events.length - 1];
  assert.ok(['response.completed', 'response.incomplete'].includes(last.type));
  events.forEach((e, i) => assert.equal(e.sequence_number, i));
  // Per item: added, (part added, deltas, text done, part done), item done.
  let open = null;
  let nextIndex = 0;
  let deltas = '';
  for (const e of events.slice(2, -1)) {
    if (e.type === 'response.output_item.added') {
      assert.equal(open, null); assert.equal(e.output_index, nextIndex++); open = e.item;
    } else if (e.type === 'response.output_item.done') {
      assert.equal(e.item.id, open.id); open = null;
    } else {
      assert.ok(open, e.type);
      assert.equal(e.item_id, open.id);
      if (e.type === 'response.output_text.delta') deltas += e.delta;
    }
  }
  assert.equal(open, null);
  const final = last.response;
  assert.equal(outputText(final), deltas);
  assert.deepEqual(final.output.map((i) => i.type), whole.output.map((i) => i.type));
  assert.equal(outputText(final), outputText(whole));
  assert.equal(final.status, whole.status);
  assert.deepEqual(final.usage, whole.usage);
});

test('responses.stream helper: finalResponse equals the streamed text', async () => {
  const stream = client.responses.stream({ model: 'tiny-v4', input: 'Say hi',
    max_output_tokens: 8, temperature: 0 });
  let text = '';
  stream.on('response.output_text.delta', (e) => { text += e.delta; });
  const final = await stream.finalResponse();
  assert.equal(outputText(final), text);
});

test('reasoning effort: the output opens with a reasoning item; tools and items are counted', async () => {
  const r = await client.responses.create({ model: 'tiny-v4', input: 'Why is the sky blue?',
    reasoning: { effort: 'high' }, max_output_tokens: 24, temperature: 0 });
  assert.ok(r.output.length > 0);
  assert.equal(r.output[0].type, 'reasoning');
  assert.match(r.output[0].id, /^rs_/);
  assert.equal(r.output[0].content[0].type, 'reasoning_text');
  const tools = [{ type: 'function', name: 'get_weather', description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }];
  const input = [
    { role: 'user', content: 'Weather in Paris?' },
    { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city": "Paris"}' },
    { type: 'function_call_output', call_id: 'call_1', output: '18C, sunny' },
  ];
  const t = await client.responses.create({ model: 'tiny-v4', input, tools,
    tool_choice: 'required', max_output_tokens: 8, temperature: 0 });
  assert.equal(t.usage.input_tokens, promptTokens({ tool_choice: 'required',
    tools: [{ type: 'function', function: { name: 'get_weather', description: 'Weather for a city',
      parameters: tools[0].parameters } }],
    messages: [{ role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: '', tool_calls: [{ id: 'call_1', type: 'function',
        function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '18C, sunny' }] }));
  for (const it of t.output) {
    assert.ok(ITEM_TYPES.includes(it.type));
    if (it.type === 'function_call') {
      assert.match(it.id, /^fc_/); assert.match(it.call_id, /^call_/);
      assert.equal(typeof JSON.parse(it.arguments), 'object');
    }
  }
});

test('errors surface as the SDK\'s APIError 400 in OpenAI\'s shape', async () => {
  const bad = (p, param, re) => assert.rejects(p, (e) => {
    assert.ok(e instanceof OpenAI.APIError, String(e));
    assert.equal(e.status, 400);
    assert.equal(e.error?.type, 'invalid_request_error');
    assert.equal(e.param, param);
    assert.match(e.message, re);
    return true;
  });
  await bad(client.responses.create({ model: 'tiny-v4', input: 'x',
    previous_response_id: 'resp_123' }), 'previous_response_id', /resp_123.*not found/);
  await bad(client.responses.create({ model: 'tiny-v4', input: 'x', max_output_tokens: 0 }),
    'max_output_tokens', /max_output_tokens/);
  await bad(client.responses.create({ model: 'tiny-v4', input: 'x',
    tools: [{ type: 'web_search' }] }), 'tools', /web_search/);
});

test('stored answers: retrieve, continue with previous_response_id, delete', async () => {
  const r1 = await client.responses.create({ model: 'tiny-v4', input: 'My name is Ada.',
    max_output_tokens: 8, temperature: 0 });
  assert.equal(r1.store, true);
  assert.equal(r1.previous_response_id, null);
  const got = await client.responses.retrieve(r1.id);
  assert.equal(got.id, r1.id);
  assert.deepEqual(got.output, r1.output);
  assert.deepEqual(got.usage, r1.usage);
  // The next turn names the answer instead of resending the conversation:
  // the prompt is the whole conversation, and its start is served from the
  // prefix cache (the same session, one prefill worker).
  const r2 = await client.responses.create({ model: 'tiny-v4', previous_response_id: r1.id,
    input: 'What is my name?', max_output_tokens: 8, temperature: 0 });
  assert.equal(r2.previous_response_id, r1.id);
  assert.equal(r2.usage.input_tokens, promptTokens({ messages: [
    { role: 'user', content: 'My name is Ada.' },
    { role: 'assistant', content: outputText(r1) },
    { role: 'user', content: 'What is my name?' }] }));
  assert.ok(r2.usage.input_tokens_details.cached_tokens >= r1.usage.input_tokens,
    JSON.stringify(r2.usage));
  // A streamed answer is stored before its last event arrives: the next
  // turn, sent at once, finds it.
  const stream = await client.responses.create({ model: 'tiny-v4', previous_response_id: r2.id,
    input: 'And mine?', max_output_tokens: 4, temperature: 0, stream: true });
  let r3;
  for await (const ev of stream) {
    if (ev.type === 'response.completed' || ev.type === 'response.incomplete') r3 = ev.response;
  }
  assert.ok(r3);
  const r4 = await client.responses.create({ model: 'tiny-v4', previous_response_id: r3.id,
    input: 'Bye', max_output_tokens: 2, temperature: 0 });
  assert.ok(r4.usage.input_tokens > r2.usage.input_tokens);
  // The items r4 was generated from: every earlier turn's input and output,
  // then its own input, with ids; newest first by default, paged.
  const all = [];
  for await (const it of client.responses.inputItems.list(r4.id, { order: 'asc', limit: 2 })) {
    all.push(it);
  }
  assert.deepEqual(all.map((it) => it.type === 'message' && it.role === 'user'
    ? (typeof it.content === 'string' ? it.content : it.content[0].text) : it.type),
    ['My name is Ada.', ...r1.output.map((o) => o.type), 'What is my name?',
      ...r2.output.map((o) => o.type), 'And mine?', ...r3.output.map((o) => o.type), 'Bye']);
  assert.ok(all.every((it) => typeof it.id === 'string'));
  const page = await client.responses.inputItems.list(r4.id, { limit: 1 });
  assert.equal(page.data.length, 1);
  assert.equal(page.data[0].id, all[all.length - 1].id);
  assert.equal(page.has_more, true);
  // Deleted: gone, and the turns after it can no longer be continued.
  await client.responses.delete(r2.id);
  await assert.rejects(client.responses.retrieve(r2.id), (e) => e.status === 404);
  await assert.rejects(client.responses.delete(r2.id), (e) => e.status === 404);
  await assert.rejects(client.responses.create({ model: 'tiny-v4', previous_response_id: r4.id,
    input: 'x', max_output_tokens: 1 }), (e) => e.status === 400 &&
    e.param === 'previous_response_id');
  // store: false is not kept.
  const r5 = await client.responses.create({ model: 'tiny-v4', input: 'x', store: false,
    max_output_tokens: 1 });
  assert.equal(r5.store, false);
  await assert.rejects(client.responses.retrieve(r5.id), (e) => e.status === 404);
  // Counted by endpoint; the store's size is a gauge.
  const m = await (await fetch(baseURL + '/metrics')).text();
  assert.match(m, /^tandem_requests_total\{endpoint="\/v1\/responses",status="200"\} [1-9]/m);
  assert.match(m, /^tandem_requests_total\{endpoint="\/v1\/responses\/\{id\}",status="404"\} [1-9]/m);
  assert.match(m, /^tandem_responses_stored [1-9]/m);
});
