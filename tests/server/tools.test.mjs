// herd serve end to end on tool calling, through the official openai client, on a tiny random-weight Llama 4 with
// the real tokenizer: tool_choice "required" and a named function give calls that always parse (the reply is
// grammar-constrained) with arguments valid for the function's schema (tests/tools/validate_json.py), parallel calls,
// streamed argument deltas that add up to the same calls, and the whole loop (call -> tool message -> answer).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { expectError, loadOpenAI, post, sharedPath, startServer, tinyLlama4, validateJson } from './lib.mjs';

const OpenAI = loadOpenAI();
const TOKENIZER = sharedPath('models/llama4-tokenizer/tokenizer.model');
const MODEL = tinyLlama4();

const WEATHER = {
  name: 'get_weather',
  description: 'Get the weather of a city',
  parameters: {
    type: 'object',
    properties: {
      city: { type: 'string', maxLength: 30 },
      days: { type: 'integer', minimum: 1, maximum: 7 },
      unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
    },
    required: ['city', 'days'],
    additionalProperties: false,
  },
};
const TIME = {
  name: 'get_time',
  description: 'The time in a time zone',
  parameters: { type: 'object', properties: { zone: { type: 'string', maxLength: 20 } }, required: ['zone'] },
};
const TOOLS = [{ type: 'function', function: WEATHER }, { type: 'function', function: TIME }];
const MESSAGES = [{ role: 'user', content: 'What is the weather in Paris for three days?' }];

function validateArguments(calls) {
  const schema = { get_weather: WEATHER.parameters, get_time: TIME.parameters };
  validateJson(calls.map((c) => ({ schema: schema[c.function.name], text: c.function.arguments })));
}

let server;
let client;

before(async () => {
  server = await startServer(['-m', MODEL, '--tokenizer', TOKENIZER, '-c', '4096', '--parallel', '4', '-t', '2',
                              '--alias', 'tiny-llama4']);
  client = new OpenAI({ baseURL: server.baseURL, apiKey: 'unused', maxRetries: 0, timeout: 120000 });
});

after(async () => {
  const e = await server.stop();
  assert.deepEqual(e, { code: 0, signal: null }, server.lines.join('\n'));
});

describe('herd serve: tool calling', () => {
  it('tool_choice required: calls that parse, of the request\'s functions, with valid arguments', async () => {
    const calls = [];
    for (const seed of [1, 2, 3]) {
      const r = await client.chat.completions.create({ model: 'tiny-llama4', messages: MESSAGES, tools: TOOLS,
                                                       tool_choice: 'required', max_tokens: 150, temperature: 1,
                                                       seed });
      const choice = r.choices[0];
      assert.equal(choice.finish_reason, 'tool_calls');
      assert.equal(choice.message.content, null);
      assert.ok(choice.message.tool_calls.length >= 1);
      for (const c of choice.message.tool_calls) {
        assert.equal(c.type, 'function');
        assert.match(c.id, /^call_/);
        assert.ok(['get_weather', 'get_time'].includes(c.function.name));
        calls.push(c);
      }
    }
    validateArguments(calls);
  });

  it('a named function, one call when parallel_tool_calls is false', async () => {
    const r = await client.chat.completions.create({
      model: 'tiny-llama4', messages: MESSAGES, tools: TOOLS, max_tokens: 150, temperature: 1, seed: 4,
      tool_choice: { type: 'function', function: { name: 'get_time' } }, parallel_tool_calls: false,
    });
    const calls = r.choices[0].message.tool_calls;
    assert.equal(calls.length, 1);
    assert.equal(calls[0].function.name, 'get_time');
    validateArguments(calls);
  });

  it('streams the calls as deltas that add up to the same calls', async () => {
    const body = { model: 'tiny-llama4', messages: MESSAGES, tools: TOOLS, tool_choice: 'required', max_tokens: 150,
                   temperature: 1, seed: 7 };
    const whole = await client.chat.completions.create(body);
    const stream = await client.chat.completions.create({ ...body, stream: true });
    const calls = [];
    let finish = null;
    let content = '';
    for await (const chunk of stream) {
      if (chunk.choices.length === 0) continue;
      const d = chunk.choices[0].delta;
      content += d.content ?? '';
      for (const t of d.tool_calls ?? []) {
        if (t.id) calls[t.index] = { id: t.id, type: t.type, function: { name: t.function.name, arguments: '' } };
        calls[t.index].function.arguments += t.function.arguments ?? '';
      }
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    assert.equal(finish, 'tool_calls');
    assert.equal(content, '');
    assert.deepEqual(calls.map((c) => c.function), whole.choices[0].message.tool_calls.map((c) => c.function));
  });

  it('the whole loop: call, tool message, answer', async () => {
    const first = await client.chat.completions.create({ model: 'tiny-llama4', messages: MESSAGES, tools: TOOLS,
                                                         tool_choice: 'required', max_tokens: 150, temperature: 1,
                                                         seed: 9 });
    const assistant = first.choices[0].message;
    const messages = [...MESSAGES, assistant,
                      ...assistant.tool_calls.map((c) => ({ role: 'tool', tool_call_id: c.id,
                                                            content: JSON.stringify({ temperature: 21 }) }))];
    const second = await client.chat.completions.create({ model: 'tiny-llama4', messages, tools: TOOLS,
                                                          max_tokens: 16, temperature: 0 });
    const reply = second.choices[0];
    assert.ok(['stop', 'length', 'tool_calls'].includes(reply.finish_reason));
    assert.ok(second.usage.prompt_tokens > first.usage.prompt_tokens);
    // With tool_choice none the functions are not described: a shorter prompt, and plain content.
    const none = await client.chat.completions.create({ model: 'tiny-llama4', messages, tools: TOOLS,
                                                        tool_choice: 'none', max_tokens: 8, temperature: 0 });
    assert.ok(none.usage.prompt_tokens < second.usage.prompt_tokens);
    assert.equal(none.choices[0].message.tool_calls, undefined);
  });

  it('parallel calls: two calls in one turn, two results, an answer', async () => {
    const calls = [{ id: 'call_a', type: 'function', function: { name: 'get_weather',
                                                                  arguments: '{"city": "Paris", "days": 2}' } },
                   { id: 'call_b', type: 'function', function: { name: 'get_time', arguments: '{"zone": "CET"}' } }];
    const messages = [...MESSAGES, { role: 'assistant', content: null, tool_calls: calls },
                      { role: 'tool', tool_call_id: 'call_a', content: '{"temperature": 21}' },
                      { role: 'tool', tool_call_id: 'call_b', content: '"14:05"' }];
    const r = await client.chat.completions.create({ model: 'tiny-llama4', messages, tools: TOOLS, max_tokens: 8,
                                                     temperature: 0 });
    assert.ok(['stop', 'length', 'tool_calls'].includes(r.choices[0].finish_reason));
    // Both calls and both results are in the prompt: more tokens than with one of each.
    const one = await client.chat.completions.create({
      model: 'tiny-llama4', tools: TOOLS, max_tokens: 1, temperature: 0,
      messages: [...MESSAGES, { role: 'assistant', content: null, tool_calls: calls.slice(0, 1) },
                 { role: 'tool', tool_call_id: 'call_a', content: '{"temperature": 21}' }],
    });
    assert.ok(r.usage.prompt_tokens > one.usage.prompt_tokens + 10);
    // Required calls in parallel form are a list: every reply parses, however many calls it holds.
    let most = 0;
    for (const seed of [21, 22, 23, 24]) {
      const p = await client.chat.completions.create({ model: 'tiny-llama4', messages: MESSAGES, tools: TOOLS,
                                                       tool_choice: 'required', parallel_tool_calls: true,
                                                       max_tokens: 200, temperature: 1, seed });
      most = Math.max(most, p.choices[0].message.tool_calls.length);
    }
    assert.ok(most >= 1);
  });

  it('refuses malformed tool requests, naming the field', async () => {
    const url = `${server.url}/v1/chat/completions`;
    let r = await post(url, { messages: MESSAGES, tools: TOOLS, tool_choice: { type: 'function',
                                                                                function: { name: 'nope' } } });
    expectError(assert, r, 400, { param: 'tool_choice' });
    r = await post(url, { messages: MESSAGES, tools: [{ type: 'function', function: { description: 'x' } }] });
    expectError(assert, r, 400, { param: 'tools[0].function.name' });
    r = await post(url, { messages: MESSAGES, tools: [{ type: 'retrieval' }] });
    expectError(assert, r, 400, { param: 'tools[0]' });
    r = await post(url, { messages: MESSAGES, tool_choice: 'required' });
    expectError(assert, r, 400, { param: 'tool_choice' });
    r = await post(url, { messages: MESSAGES, tools: TOOLS, tool_choice: 'sometimes' });
    expectError(assert, r, 400, { param: 'tool_choice' });
    r = await post(`${server.url}/v1/completions`, { prompt: 'x', tools: TOOLS });
    expectError(assert, r, 400, { param: 'tools' });
    r = await post(url, { messages: [...MESSAGES, { role: 'assistant', tool_calls: [{ type: 'function',
                                                                                     function: { name: 'get_time',
                                                                                                 arguments: '[1]' } }] }] });
    expectError(assert, r, 400, { param: 'messages[1].tool_calls' });
  });
});
