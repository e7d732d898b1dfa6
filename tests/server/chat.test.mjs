// herd serve end to end on chat: a tiny random-weight Llama 4 (herd bench --synthetic --save) with the real Llama 4
// tokenizer (shared/models/llama4-tokenizer), through the official openai client: the chat template rendered as
// Meta's format (the same tokens through /v1/completions give the same greedy reply, and so does `herd run`),
// streamed chunks with the role first, logprobs, n = 2, image input refused, unknown model refused.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { expectError, herd, loadOpenAI, post, sharedPath, startServer, tinyLlama4 } from './lib.mjs';

const OpenAI = loadOpenAI();
const TOKENIZER = sharedPath('models/llama4-tokenizer/tokenizer.model');
const MODEL = tinyLlama4();
const MESSAGES = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Name three colours.' },
];
// Llama 4's special tokens (shared/models/llama4-tokenizer/PROVENANCE.md).
const BOS = 200000, HEADER_START = 200005, HEADER_END = 200006, EOT = 200008;

let server;
let client;

before(async () => {
  server = await startServer(['-m', MODEL, '--tokenizer', TOKENIZER, '-c', '1024', '--parallel', '4', '-t', '2',
                              '--alias', 'tiny-llama4']);
  client = new OpenAI({ baseURL: server.baseURL, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
});

after(async () => {
  const e = await server.stop();
  assert.deepEqual(e, { code: 0, signal: null }, server.lines.join('\n'));
});

async function tokens(text) {
  const r = await post(`${server.url}/tokenize`, { content: text, add_special: false, parse_special: false });
  assert.equal(r.status, 200, r.text);
  return r.json.tokens;
}

// Meta's Llama 4 format (llama4.md 8.1): BOS, then per message <|header_start|>role<|header_end|>\n\n content
// <|eot|>, then the open assistant header.
async function rendered(messages) {
  const ids = [BOS];
  const header = async (role) => ids.push(HEADER_START, ...(await tokens(role)), HEADER_END, ...(await tokens('\n\n')));
  for (const m of messages) {
    await header(m.role);
    ids.push(...(await tokens(m.content)), EOT);
  }
  await header('assistant');
  return ids;
}

describe('herd serve: chat on a tiny Llama 4 with the real tokenizer', () => {
  it('replies in OpenAI\'s shape', async () => {
    const r = await client.chat.completions.create({ model: 'tiny-llama4', messages: MESSAGES, max_tokens: 12,
                                                     temperature: 0 });
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, 'tiny-llama4');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(typeof r.choices[0].message.content, 'string');
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
    const prompt = await rendered(MESSAGES);
    assert.equal(r.usage.prompt_tokens, prompt.length);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  });

  it('renders the template: the same tokens as a completion and in herd run give the same greedy reply', async () => {
    const chat = await client.chat.completions.create({ model: 'tiny-llama4', messages: MESSAGES, max_tokens: 16,
                                                        temperature: 0 });
    const reply = chat.choices[0].message.content;
    const ids = await rendered(MESSAGES);
    const completion = await client.completions.create({ model: 'tiny-llama4', prompt: ids, max_tokens: 16,
                                                         temperature: 0 });
    // A completion stops only at the model's own end tokens, which include the chat's end-of-turn tokens here.
    assert.equal(completion.choices[0].text, reply);
    assert.equal(completion.usage.prompt_tokens, chat.usage.prompt_tokens);
    const text = (await post(`${server.url}/detokenize`, { tokens: ids })).json.content;
    const run = herd(['run', '-m', MODEL, '--tokenizer', TOKENIZER, '--special', '--no-bos', '-p', text, '-n', '16',
                      '--temp', '0', '-t', '1']);
    assert.equal(run.code, 0, run.stderr);
    assert.ok(run.stdout.endsWith(`${reply}\n`), `herd run: ${JSON.stringify(run.stdout)}, server: ${JSON.stringify(reply)}`);
  });

  it('streams the role first, then content, then the finish reason', async () => {
    const whole = await client.chat.completions.create({ model: 'tiny-llama4', messages: MESSAGES, max_tokens: 10,
                                                         temperature: 0 });
    const stream = await client.chat.completions.create({ model: 'tiny-llama4', messages: MESSAGES, max_tokens: 10,
                                                          temperature: 0, stream: true,
                                                          stream_options: { include_usage: true } });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(chunks[0].object, 'chat.completion.chunk');
    assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '' });
    let text = '';
    let finish = null;
    for (const c of chunks) {
      for (const ch of c.choices) {
        text += ch.delta.content ?? '';
        if (ch.finish_reason) finish = ch.finish_reason;
      }
    }
    assert.equal(text, whole.choices[0].message.content);
    assert.equal(finish, whole.choices[0].finish_reason);
    assert.deepEqual(chunks.at(-1).choices, []);
    assert.deepEqual(chunks.at(-1).usage, whole.usage);
  });

  it('returns chat logprobs', async () => {
    const r = await client.chat.completions.create({ model: 'tiny-llama4', messages: MESSAGES, max_tokens: 6,
                                                     temperature: 0, logprobs: true, top_logprobs: 4 });
    const content = r.choices[0].logprobs.content;
    assert.equal(content.length, r.usage.completion_tokens);
    for (const t of content) {
      assert.equal(typeof t.token, 'string');
      assert.ok(Array.isArray(t.bytes));
      assert.ok(t.logprob <= 0);
      assert.equal(t.top_logprobs.length, 4);
      assert.ok(Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-4);  // greedy: the most likely token
      for (let i = 1; i < 4; ++i) assert.ok(t.top_logprobs[i].logprob <= t.top_logprobs[i - 1].logprob);
    }
  });

  it('n = 2 gives two choices', async () => {
    const r = await client.chat.completions.create({ model: 'tiny-llama4', messages: MESSAGES, max_tokens: 8, n: 2,
                                                     temperature: 1, seed: 11 });
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
    assert.ok(r.choices.every((c) => c.message.role === 'assistant'));
  });

  it('accepts content parts and refuses images and unknown models', async () => {
    const parts = await client.chat.completions.create({
      model: 'tiny-llama4', max_tokens: 8, temperature: 0,
      messages: [MESSAGES[0], { role: 'user', content: [{ type: 'text', text: 'Name three ' },
                                                        { type: 'text', text: 'colours.' }] }],
    });
    const plain = await client.chat.completions.create({ model: 'tiny-llama4', messages: MESSAGES, max_tokens: 8,
                                                         temperature: 0 });
    assert.equal(parts.choices[0].message.content, plain.choices[0].message.content);
    await assert.rejects(client.chat.completions.create({
      model: 'tiny-llama4',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' },
                                           { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }] }],
    }), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.code, 'image_input_not_supported');
      assert.match(e.error?.message ?? e.message, /no vision tower \(start the server with --mmproj FILE\)/);
      return true;
    });
    await assert.rejects(client.chat.completions.create({ model: 'llama-5', messages: MESSAGES }), (e) => {
      assert.equal(e.status, 404);
      assert.equal(e.code, 'model_not_found');
      return true;
    });
    expectError(assert, await post(`${server.baseURL}/chat/completions`, { messages: [{ role: 'robot', content: 'x' }] }),
                400, { param: 'messages[0].role' });
  });
});
