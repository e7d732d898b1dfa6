// herd serve end to end on structured output: a tiny random-weight Llama 4 with the real Llama 4 tokenizer, through
// the official openai client. response_format json_schema and json_object, llama.cpp's `json_schema` and `grammar`
// fields, streamed and not: a model that knows nothing still answers JSON that parses and has the schema's shape
// (tests/tools/validate_json.py checks every one with an independent JSON Schema validator), finish_reason "stop";
// unsupported keywords and malformed formats are refused with 400 naming the parameter.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { collectChatStream, expectError, loadOpenAI, post, sharedPath, startServer, tinyLlama4, validateJson as validate } from './lib.mjs';

const OpenAI = loadOpenAI();
const TOKENIZER = sharedPath('models/llama4-tokenizer/tokenizer.model');
const MODEL = tinyLlama4();
const MESSAGES = [{ role: 'user', content: 'Describe a person as JSON.' }];

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 40 },
    age: { type: 'integer', minimum: 0, maximum: 150 },
    email: { type: 'string', format: 'email' },
    tags: { type: 'array', items: { type: 'string', enum: ['a', 'b', 'c'] }, maxItems: 3 },
    address: {
      type: 'object',
      properties: { city: { type: 'string' }, zip: { type: 'string', minLength: 5, maxLength: 5 } },
      required: ['city', 'zip'],
      additionalProperties: false,
    },
  },
  required: ['name', 'age', 'address'],
  additionalProperties: false,
};

let server;
let client;

before(async () => {
  server = await startServer(['-m', MODEL, '--tokenizer', TOKENIZER, '-c', '1024', '--parallel', '4', '-t', '2',
                              '--alias', 'tiny-llama4']);
  client = new OpenAI({ baseURL: server.baseURL, apiKey: 'unused', maxRetries: 0, timeout: 120000 });
});

after(async () => {
  const e = await server.stop();
  assert.deepEqual(e, { code: 0, signal: null }, server.lines.join('\n'));
});

describe('herd serve: structured output', () => {
  it('response_format json_schema: valid JSON of the schema, finish_reason stop, in parallel', async () => {
    const replies = await Promise.all([1, 2, 3, 4].map((seed) => client.chat.completions.create({
      model: 'tiny-llama4', messages: MESSAGES, max_tokens: 200, temperature: 1, seed,
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema: PERSON, strict: true } },
    })));
    const records = [];
    for (const r of replies) {
      assert.equal(r.choices[0].finish_reason, 'stop');
      const text = r.choices[0].message.content;
      const value = JSON.parse(text);
      assert.equal(typeof value.name, 'string');
      assert.ok(Number.isInteger(value.age) && value.age >= 0 && value.age <= 150);
      assert.ok(r.usage.completion_tokens <= 200);
      records.push({ schema: PERSON, text });
    }
    validate(records);
  });

  it('streams the same constrained text', async () => {
    const body = {
      model: 'tiny-llama4', messages: MESSAGES, max_tokens: 120, temperature: 1, seed: 11,
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema: PERSON } },
    };
    const whole = await client.chat.completions.create(body);
    const { text, finish } = await collectChatStream(await client.chat.completions.create({ ...body, stream: true }));
    assert.equal(text, whole.choices[0].message.content);
    assert.equal(finish, 'stop');
    validate([{ schema: PERSON, text }]);
  });

  it('json_object, and completions too: any JSON object', async () => {
    const chat = await client.chat.completions.create({
      model: 'tiny-llama4', messages: MESSAGES, max_tokens: 60, temperature: 1, seed: 5,
      response_format: { type: 'json_object' },
    });
    const completion = await client.completions.create({
      model: 'tiny-llama4', prompt: 'JSON:', max_tokens: 60, temperature: 1, seed: 6,
      response_format: { type: 'json_object' },
    });
    for (const text of [chat.choices[0].message.content, completion.choices[0].text]) {
      const value = JSON.parse(text);
      assert.equal(typeof value, 'object');
      assert.ok(!Array.isArray(value) && value !== null);
    }
    validate([{ schema: null, text: chat.choices[0].message.content },
              { schema: null, text: completion.choices[0].text }]);
  });

  it('llama.cpp\'s json_schema and grammar fields', async () => {
    const schema = { type: 'array', items: { type: 'integer', minimum: -5, maximum: 5 }, minItems: 2, maxItems: 4 };
    const r1 = await post(`${server.url}/v1/completions`, { prompt: 'x', max_tokens: 40, temperature: 1,
                                                             json_schema: schema });
    assert.equal(r1.status, 200, r1.text);
    validate([{ schema, text: r1.json.choices[0].text }]);
    const r2 = await post(`${server.url}/v1/completions`, {
      prompt: 'x', max_tokens: 40, temperature: 1, seed: 3,
      grammar: 'root ::= "yes" | "no" | "maybe " [0-9]{1,2} "%"',
    });
    assert.equal(r2.status, 200, r2.text);
    assert.match(r2.json.choices[0].text, /^(yes|no|maybe [0-9]{1,2}%)$/);
    assert.equal(r2.json.choices[0].finish_reason, 'stop');
  });

  it('refuses what it cannot honour, naming it', async () => {
    const url = `${server.url}/v1/chat/completions`;
    const schema = (s) => ({ type: 'json_schema', json_schema: { name: 'x', schema: s } });
    let r = await post(url, { messages: MESSAGES, response_format: schema({ type: 'integer', multipleOf: 3 }) });
    expectError(assert, r, 400, { param: 'response_format.json_schema.schema' });
    assert.match(r.json.error.message, /multipleOf/);
    r = await post(url, { messages: MESSAGES, response_format: schema({ type: 'string', pattern: '^a+$' }) });
    expectError(assert, r, 400, { param: 'response_format.json_schema.schema' });
    assert.match(r.json.error.message, /pattern/);
    r = await post(url, { messages: MESSAGES, response_format: { type: 'json_schema' } });
    expectError(assert, r, 400, { param: 'response_format.json_schema' });
    r = await post(url, { messages: MESSAGES, response_format: { type: 'xml' } });
    expectError(assert, r, 400, { param: 'response_format.type' });
    r = await post(url, { messages: MESSAGES, response_format: 'json' });
    expectError(assert, r, 400, { param: 'response_format' });
    r = await post(url, { messages: MESSAGES, grammar: 'root ::= undefined-rule' });
    expectError(assert, r, 400, { param: 'grammar' });
    assert.match(r.json.error.message, /undefined rule 'undefined-rule'/);
    // Nested repetitions that match the same text in too many ways: refused, not followed for minutes.
    const nest = Array.from({ length: 8 }).reduce((x) => `(${x}? "b"?){0,6}`, '"a"');
    r = await post(url, { messages: MESSAGES, grammar: `root ::= ${nest}` });
    expectError(assert, r, 400, {});
    assert.match(r.json.error.message, /too complex/);
    // The shortest valid answer does not fit max_tokens.
    r = await post(url, { messages: MESSAGES, max_tokens: 2, response_format: schema(PERSON) });
    expectError(assert, r, 400, {});
    assert.match(r.json.error.message, /shortest output/);
    // The server still serves.
    const ok = await client.chat.completions.create({ model: 'tiny-llama4', messages: MESSAGES, max_tokens: 4 });
    assert.ok(ok.choices[0].message.content !== undefined);
  });
});
