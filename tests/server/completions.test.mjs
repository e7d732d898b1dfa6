// herd serve end to end on stories260K (GGUF with its SentencePiece vocabulary; no chat template), through the
// official openai client: completions whole and streamed, greedy text equal to `herd run`'s, seeds, stop strings,
// usage with cached prompt tokens, logprobs, n = 2, 20 concurrent streams, errors, a client that aborts
// mid-stream, tokenize/detokenize, metrics, and a bounded load test (64 clients x 3 rounds, stable RSS).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { expectError, herd, loadOpenAI, post, rssKiB, SANITIZED, sharedPath, startServer } from './lib.mjs';

const OpenAI = loadOpenAI();
const MODEL = sharedPath('models/stories260K/stories260K.gguf');
const PROMPT = 'Once upon a time';

let server;
let client;

before(async () => {
  server = await startServer(['-m', MODEL, '-c', '512', '--parallel', '8', '-t', '2', '--alias', 'stories']);
  client = new OpenAI({ baseURL: server.baseURL, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
});

after(async () => {
  const e = await server.stop();
  assert.deepEqual(e, { code: 0, signal: null }, server.lines.join('\n'));
});

async function greedy(prompt, maxTokens, extra = {}) {
  const r = await client.completions.create({ model: 'stories', prompt, max_tokens: maxTokens, temperature: 0, ...extra });
  return r;
}

async function streamText(params) {
  const stream = await client.completions.create({ ...params, stream: true });
  const out = { text: {}, finish: {}, chunks: [], usage: null };
  for await (const chunk of stream) {
    out.chunks.push(chunk);
    if (chunk.usage) out.usage = chunk.usage;
    for (const c of chunk.choices) {
      out.text[c.index] = (out.text[c.index] ?? '') + c.text;
      if (c.finish_reason) out.finish[c.index] = c.finish_reason;
    }
  }
  return out;
}

describe('herd serve: completions on stories260K', () => {
  it('lists the served model and is healthy', async () => {
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ['stories']);
    assert.equal(models.data[0].object, 'model');
    const h = await fetch(`${server.url}/health`);
    assert.equal(h.status, 200);
    assert.deepEqual(await h.json(), { status: 'ok' });
  });

  it('answers in OpenAI\'s shape', async () => {
    const r = await greedy(PROMPT, 16);
    assert.match(r.id, /^cmpl-/);
    assert.equal(r.object, 'text_completion');
    assert.equal(r.model, 'stories');
    assert.equal(typeof r.created, 'number');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].index, 0);
    assert.ok(r.choices[0].text.length > 0);
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
    assert.equal(r.choices[0].logprobs, null);
    assert.equal(r.usage.prompt_tokens, 5);  // BOS + 4 pieces
    assert.ok(r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 16);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    assert.equal(typeof r.usage.prompt_tokens_details.cached_tokens, 'number');
  });

  it('greedy text equals herd run --temp 0', async () => {
    for (const [prompt, n] of [[PROMPT, 48], ['The little dog', 30]]) {
      const r = await greedy(prompt, n);
      const run = herd(['run', '-m', MODEL, '-p', prompt, '-n', String(n), '--temp', '0', '-t', '1']);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, `${prompt}${r.choices[0].text}\n`);
    }
  });

  it('streams the same text as the whole response, with usage last', async () => {
    const whole = await greedy(PROMPT, 40);
    const s = await streamText({ model: 'stories', prompt: PROMPT, max_tokens: 40, temperature: 0,
                                 stream_options: { include_usage: true } });
    assert.equal(s.text[0], whole.choices[0].text);
    assert.equal(s.finish[0], whole.choices[0].finish_reason);
    assert.ok(s.chunks.length > 2, 'the text came in one chunk');
    const last = s.chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.deepEqual(s.usage, whole.usage);
    for (const c of s.chunks.slice(0, -1)) {
      assert.equal(c.object, 'text_completion');
      assert.equal(c.id, s.chunks[0].id);
    }
  });

  it('the same seed gives the same text, another seed another', async () => {
    const ask = (seed) => client.completions.create({ model: 'stories', prompt: PROMPT, max_tokens: 40, temperature: 1,
                                                      seed });
    const [a, b, c] = await Promise.all([ask(1234), ask(1234), ask(99)]);
    assert.equal(a.choices[0].text, b.choices[0].text);
    assert.notEqual(a.choices[0].text, c.choices[0].text);
  });

  it('ends before a stop string', async () => {
    const full = (await greedy(PROMPT, 48)).choices[0].text;
    assert.ok(full.length > 20, full);
    const stop = full.slice(12, 16);
    const want = full.slice(0, full.indexOf(stop));
    const r = await greedy(PROMPT, 48, { stop: [stop, 'zzzz-never'] });
    assert.equal(r.choices[0].text, want);
    assert.equal(r.choices[0].finish_reason, 'stop');
    const s = await streamText({ model: 'stories', prompt: PROMPT, max_tokens: 48, temperature: 0, stop });
    assert.equal(s.text[0], want);
    assert.equal(s.finish[0], 'stop');
  });

  it('reports prompt tokens taken from the prefix cache', async () => {
    const long = 'Once upon a time there was a little girl named Lily. She liked to play in the park with her ' +
                 'friends. One day she found a big red ball under a tree and she was very happy. ';
    const prompt = long.repeat(3);
    const first = await greedy(prompt, 4);
    const second = await greedy(prompt, 4);
    assert.ok(first.usage.prompt_tokens > 64, `${first.usage.prompt_tokens}`);
    assert.equal(second.usage.prompt_tokens, first.usage.prompt_tokens);
    const cached = second.usage.prompt_tokens_details.cached_tokens;
    assert.ok(cached > 0 && cached < second.usage.prompt_tokens, `cached ${cached}`);
    assert.equal(second.choices[0].text, first.choices[0].text);
  });

  it('returns logprobs', async () => {
    const r = await greedy(PROMPT, 8, { logprobs: 3 });
    const lp = r.choices[0].logprobs;
    assert.equal(lp.tokens.length, r.usage.completion_tokens);
    assert.equal(lp.token_logprobs.length, lp.tokens.length);
    assert.equal(lp.top_logprobs.length, lp.tokens.length);
    assert.equal(lp.text_offset.length, lp.tokens.length);
    for (let i = 0; i < lp.tokens.length; ++i) {
      assert.ok(lp.token_logprobs[i] <= 0);
      const top = Object.values(lp.top_logprobs[i]);
      assert.ok(top.length >= 1 && top.length <= 3);
      // Greedy picks the most likely token.
      assert.ok(Math.abs(Math.max(...top) - lp.token_logprobs[i]) < 1e-4, JSON.stringify(lp.top_logprobs[i]));
    }
  });

  it('n = 2 gives two choices (choice i samples with seed + i), whole and streamed', async () => {
    const params = { model: 'stories', prompt: PROMPT, max_tokens: 40, temperature: 1 };
    const r = await client.completions.create({ ...params, n: 2, seed: 5 });
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
    assert.notEqual(r.choices[0].text, r.choices[1].text);
    const [five, six] = await Promise.all([client.completions.create({ ...params, seed: 5 }),
                                           client.completions.create({ ...params, seed: 6 })]);
    assert.equal(r.choices[0].text, five.choices[0].text);
    assert.equal(r.choices[1].text, six.choices[0].text);
    assert.equal(r.usage.completion_tokens, five.usage.completion_tokens + six.usage.completion_tokens);
    const s = await streamText({ ...params, n: 2, seed: 5 });
    assert.deepEqual(s.text, { 0: r.choices[0].text, 1: r.choices[1].text });
    assert.deepEqual(s.finish, { 0: r.choices[0].finish_reason, 1: r.choices[1].finish_reason });
  });

  it('serves 20 concurrent streams, each equal to the lone greedy text', async () => {
    const want = (await greedy(PROMPT, 32)).choices[0].text;
    const streams = await Promise.all(Array.from({ length: 20 }, () =>
      streamText({ model: 'stories', prompt: PROMPT, max_tokens: 32, temperature: 0 })));
    for (const s of streams) assert.equal(s.text[0], want);
  });

  it('answers errors in OpenAI\'s shape', async () => {
    await assert.rejects(greedy(PROMPT, 4, { temperature: 5 }), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.error?.param ?? e.param, 'temperature');
      return true;
    });
    await assert.rejects(client.completions.create({ model: 'gpt-4o', prompt: 'x', max_tokens: 1 }), (e) => {
      assert.equal(e.status, 404);
      assert.equal(e.code, 'model_not_found');
      return true;
    });
    await assert.rejects(greedy('word '.repeat(600), 4), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.code, 'context_length_exceeded');
      return true;
    });
    await assert.rejects(greedy([1, 2, 99999], 4), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.error?.param ?? e.param, 'prompt');
      return true;
    });
    expectError(assert, await post(`${server.baseURL}/completions`, '{"prompt": '), 400,
                { type: 'invalid_request_error', code: 'invalid_json' });
    expectError(assert, await post(`${server.baseURL}/completions`, { prompt: 'x', n: 0 }), 400, { param: 'n' });
    expectError(assert, await post(`${server.baseURL}/chat/completions`, { messages: [{ role: 'user', content: 'x' }] }),
                400, { code: 'chat_not_supported' });
    expectError(assert, await post(`${server.url}/v1/nope`, {}), 404);
    const wrong = await fetch(`${server.baseURL}/completions`);
    assert.equal(wrong.status, 405);
    // The server still serves.
    assert.ok((await greedy(PROMPT, 2)).choices[0].text.length > 0);
  });

  it('goes on after a client aborts mid-stream', async () => {
    const controller = new AbortController();
    const stream = await client.completions.create(
      { model: 'stories', prompt: PROMPT, max_tokens: 400, temperature: 1, stream: true, ignore_eos: true },
      { signal: controller.signal });
    let chunks = 0;
    try {
      for await (const _ of stream) {
        if (++chunks === 3) {
          controller.abort();
          break;
        }
      }
    } catch (e) {
      assert.equal(e.name, 'AbortError', String(e));  // the client may end the iteration or throw
    }
    assert.equal(chunks, 3);
    // The request was cancelled, not generated to its end.
    let cancelled = false;
    for (let i = 0; i < 100 && !cancelled; ++i) {
      const m = await (await fetch(`${server.url}/metrics`)).text();
      cancelled = /herd_requests_cancelled_total [1-9]/.test(m) && /herd_requests_running 0\n/.test(m);
      if (!cancelled) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(cancelled, 'the aborted request was not cancelled');
    const r = await greedy(PROMPT, 8);
    assert.ok(r.choices[0].text.length > 0);
  });

  it('tokenizes and detokenizes', async () => {
    const t = await post(`${server.url}/tokenize`, { content: PROMPT, add_special: true });
    assert.equal(t.status, 200);
    assert.equal(t.json.tokens[0], 1);  // BOS
    assert.equal(t.json.tokens.length, 5);
    const d = await post(`${server.url}/detokenize`, { tokens: t.json.tokens.slice(1) });
    assert.equal(d.status, 200);
    assert.equal(d.json.content.trim(), PROMPT);
    // Token ids of /tokenize as a prompt give the same text as the string.
    const a = await greedy(PROMPT, 16);
    const b = await greedy(t.json.tokens, 16);
    assert.equal(b.choices[0].text, a.choices[0].text);
  });

  it('exports Prometheus metrics', async () => {
    const m = await (await fetch(`${server.url}/metrics`)).text();
    for (const name of ['herd_http_requests_total{route="/v1/completions",status="200"}', 'herd_prompt_tokens_total',
                        'herd_generation_tokens_total', 'herd_time_to_first_token_seconds_bucket',
                        'herd_inter_token_latency_seconds_count', 'herd_kv_pages_used', 'herd_kv_pages_total',
                        'herd_requests_waiting', 'herd_requests_running', 'herd_prefix_cache_queries_total',
                        'herd_prefix_cache_hits_total']) {
      assert.ok(m.includes(name), `missing ${name}`);
    }
    const generated = Number(/herd_generation_tokens_total (\d+)/.exec(m)[1]);
    assert.ok(generated > 100, `${generated}`);
  });

  it('survives 64 concurrent clients x 3 rounds with stable memory', async () => {
    const rss = [];
    for (let round = 0; round < 3; ++round) {
      const results = await Promise.allSettled(Array.from({ length: 64 }, (_, i) => {
        const params = { model: 'stories', prompt: `${PROMPT} ${i}`, max_tokens: 12, temperature: 1, seed: i };
        return i % 2 ? streamText(params) : client.completions.create(params);
      }));
      for (const r of results) {
        if (r.status === 'fulfilled') continue;
        // A full queue is a proper answer; anything else is not.
        assert.equal(r.reason?.status, 503, String(r.reason));
      }
      assert.ok(results.filter((r) => r.status === 'fulfilled').length >= 32);
      rss.push(rssKiB(server.pid));
    }
    if (!SANITIZED) {  // a sanitizer's quarantine keeps freed memory on purpose
      assert.ok(rss[2] <= rss[0] * 1.1, `RSS grew from ${rss[0]} KiB to ${rss[2]} KiB`);
    }
  });
});
