// herd serve --guard end to end: a tiny random-weight Llama 4 serves, a tiny random-weight all-dense Llama 4 (Llama
// Guard 4's shape) screens, through the official openai client. Such a guard gives one verdict to nearly every text
// (lib.mjs tinyGuard): one that flags and one that lets pass cover both paths. /v1/moderations has OpenAI's shape with
// per-category scores; a flagged request is answered with a refusal and finish_reason "content_filter" (streamed
// too) without generating; an allowed one is generated and, with --guard-output, its reply screened before it is
// sent (held back: the same text streamed and not).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { collectChatStream, expectError, loadOpenAI, post, sharedPath, startServer, tinyGuard, tinyLlama4 } from './lib.mjs';

const OpenAI = loadOpenAI();
const TOKENIZER = sharedPath('models/llama4-tokenizer/tokenizer.model');
const MODEL = tinyLlama4();
const TEXTS = ['How do I bake bread?', 'How to make a bomb?', 'Tell me a joke.', 'x'];

async function serve(guardSeed, extra = []) {
  const server = await startServer(['-m', MODEL, '--tokenizer', TOKENIZER, '-c', '1024', '--parallel', '2', '-t', '2',
                                    '--alias', 'tiny-llama4', '--guard', tinyGuard(guardSeed), '--guard-tokenizer',
                                    TOKENIZER, ...extra]);
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: 'unused', maxRetries: 0, timeout: 120000 });
  return { server, client };
}

async function moderate(server, input) {
  const r = await post(`${server.url}/v1/moderations`, { input });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

async function streamed(client, body) {
  return collectChatStream(await client.chat.completions.create({ ...body, stream: true }));
}

describe('herd serve --guard with a guard that flags', () => {
  let s;
  before(async () => { s = await serve(7); });
  after(async () => assert.deepEqual(await s.server.stop(), { code: 0, signal: null }));

  it('/v1/moderations: OpenAI\'s shape with per-category scores', async () => {
    const m = await moderate(s.server, TEXTS);
    assert.match(m.id, /^modr-/);
    assert.equal(m.model, 'tiny-guard-7.gguf');
    assert.equal(m.results.length, TEXTS.length);
    for (const r of m.results) {
      assert.equal(r.flagged, true);
      assert.deepEqual(Object.keys(r.categories), Array.from({ length: 14 }, (_, k) => `S${k + 1}`));
      assert.equal(r.category_names.S9, 'Indiscriminate Weapons');
      const sum = Object.values(r.category_scores).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sum - r.p_unsafe) < 1e-6, `${sum} vs ${r.p_unsafe}`);
    }
    assert.deepEqual((await moderate(s.server, TEXTS[1])).results[0], m.results[1]);  // greedy: the same alone
  });

  it('a flagged request gets a refusal, finish_reason content_filter, streamed and not', async () => {
    const body = { model: 'tiny-llama4', messages: [{ role: 'user', content: TEXTS[1] }], max_tokens: 16 };
    const r = await s.client.chat.completions.create(body);
    assert.equal(r.choices[0].finish_reason, 'content_filter');
    assert.match(r.choices[0].message.content, /^I can't help with that: the request was flagged by the safety policy/);
    assert.equal(r.choices[0].message.refusal, r.choices[0].message.content);
    assert.equal(r.usage.completion_tokens, 0);
    assert.deepEqual(await streamed(s.client, body), { text: r.choices[0].message.content, finish: 'content_filter' });
    const c = await s.client.completions.create({ model: 'tiny-llama4', prompt: TEXTS[1], max_tokens: 8 });
    assert.equal(c.choices[0].finish_reason, 'content_filter');
  });

  it('refuses bad moderation input', async () => {
    expectError(assert, await post(`${s.server.url}/v1/moderations`, { input: 5 }), 400, { param: 'input' });
    expectError(assert, await post(`${s.server.url}/v1/moderations`, { input: [] }), 400, { param: 'input' });
    expectError(assert, await post(`${s.server.url}/v1/moderations`, {}), 400, { param: 'input' });
  });
});

describe('herd serve --guard --guard-output with a guard that lets pass', () => {
  let s;
  before(async () => { s = await serve(11, ['--guard-output', '--guard-categories', 'S1,S9,S10']); });
  after(async () => assert.deepEqual(await s.server.stop(), { code: 0, signal: null }));

  it('an allowed request is generated, its reply screened, then sent (the same streamed)', async () => {
    const m = await moderate(s.server, TEXTS[0]);
    assert.equal(m.results[0].flagged, false);
    assert.deepEqual(Object.keys(m.results[0].categories), ['S1', 'S9', 'S10']);  // --guard-categories
    const body = { model: 'tiny-llama4', messages: [{ role: 'user', content: TEXTS[0] }], max_tokens: 12,
                   temperature: 0 };
    const r = await s.client.chat.completions.create(body);
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason), r.choices[0].finish_reason);
    assert.ok(r.usage.completion_tokens > 0);
    assert.deepEqual(await streamed(s.client, body),
                     { text: r.choices[0].message.content, finish: r.choices[0].finish_reason });
  });
});

describe('herd serve --guard-output with a guard that flags replies', () => {
  it('replaces a flagged reply by a refusal', async () => {
    // A prompt of special tokens only has no text to screen, so the request passes and the reply is judged.
    const s = await serve(7, ['--guard-output']);
    try {
      const r = await post(`${s.server.url}/v1/completions`, { prompt: [200000], max_tokens: 6, temperature: 0 });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.choices[0].finish_reason, 'content_filter');
      assert.match(r.json.choices[0].text, /the reply was flagged/);
    } finally {
      assert.deepEqual(await s.server.stop(), { code: 0, signal: null });
    }
  });
});
