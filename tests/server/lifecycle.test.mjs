// herd serve's edges, end to end on stories260K: the API key (the openai client's AuthenticationError; /health
// stays open), a request body over --max-body-mib, SIGTERM draining a running stream (on the tiny Llama 4, slow
// enough to outlive the signal) to its end before exiting 0,
// and herd bench-serve against a server it starts itself (-m) and one given by --url.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { expectError, herd, loadOpenAI, post, sharedPath, startServer, testDir, tinyLlama4 } from './lib.mjs';

const OpenAI = loadOpenAI();
const MODEL = sharedPath('models/stories260K/stories260K.gguf');
const TOKENIZER = sharedPath('models/llama4-tokenizer/tokenizer.model');

describe('herd serve: lifecycle and limits', () => {
  it('requires the API key everywhere but /health', async () => {
    const keyFile = path.join(testDir(), 'api-key');
    fs.writeFileSync(keyFile, 'k-123\n');
    const server = await startServer(['-m', MODEL, '-t', '1', '--api-key-file', keyFile, '--max-body-mib', '1']);
    try {
      const bad = new OpenAI({ baseURL: server.baseURL, apiKey: 'wrong', maxRetries: 0 });
      await assert.rejects(bad.completions.create({ model: 'stories260K.gguf', prompt: 'x', max_tokens: 2 }), (e) => {
        assert.equal(e.status, 401);
        assert.equal(e.constructor.name, 'AuthenticationError');
        return true;
      });
      await assert.rejects(bad.models.list(), (e) => e.status === 401);
      expectError(assert, await post(`${server.baseURL}/completions`, { prompt: 'x' }), 401,
                  { code: 'invalid_api_key' });
      const good = new OpenAI({ baseURL: server.baseURL, apiKey: 'k-123', maxRetries: 0 });
      const r = await good.completions.create({ model: 'stories260K.gguf', prompt: 'Once', max_tokens: 4 });
      assert.equal(r.usage.completion_tokens > 0, true);
      assert.equal((await fetch(`${server.url}/health`)).status, 200);
      // 413 over --max-body-mib 1, in OpenAI's shape; the server goes on.
      const big = await post(`${server.baseURL}/completions`, { prompt: 'x'.repeat(2 << 20) },
                             { Authorization: 'Bearer k-123' });
      expectError(assert, big, 413, { code: 'request_too_large' });
      assert.equal((await good.models.list()).data[0].id, 'stories260K.gguf');
    } finally {
      assert.deepEqual(await server.stop(), { code: 0, signal: null });
    }
  });

  it('drains a running stream on SIGTERM, refuses new requests, exits 0', async () => {
    // The tiny Llama 4 generates about a hundred tokens/s here: the stream outlives the signal.
    const server = await startServer(['-m', tinyLlama4(), '--tokenizer', TOKENIZER, '-c', '1024', '-t', '1',
                                      '--drain-s', '60']);
    const client = new OpenAI({ baseURL: server.baseURL, apiKey: 'x', maxRetries: 0 });
    const stream = await client.completions.create({ model: 'tiny-llama4-q8_0.gguf', prompt: 'Hello', max_tokens: 300,
                                                     temperature: 0, ignore_eos: true, stream: true,
                                                     stream_options: { include_usage: true } });
    let usage = null;
    let chunks = 0;
    let refused = false;
    for await (const c of stream) {
      if (++chunks === 2) {
        server.proc.kill('SIGTERM');
        // Once /health says so, new work is refused while the stream drains.
        let health = 200;
        for (let i = 0; i < 200 && health === 200; ++i) {
          health = (await fetch(`${server.url}/health`)).status;
          if (health === 200) await new Promise((r) => setTimeout(r, 5));
        }
        assert.equal(health, 503);
        const r = await post(`${server.baseURL}/completions`, { prompt: 'x', max_tokens: 2 });
        expectError(assert, r, 503, { code: 'shutting_down' });
        assert.equal(r.headers.get('retry-after'), '1');
        refused = true;
      }
      if (c.usage) usage = c.usage;
    }
    assert.ok(refused);
    assert.ok(usage, 'the stream was cut before its usage chunk');
    assert.equal(usage.completion_tokens, 300);
    assert.deepEqual(await server.exit, { code: 0, signal: null });
    assert.ok(server.lines.some((l) => l.includes('SIGTERM: draining')), server.lines.join('\n'));
  });

  it('refuses a wrong command line (exit 1) and a bad model (exit 2, after listening)', async () => {
    for (const args of [['serve'], ['serve', '-m', MODEL, '--port', '70000'], ['serve', '-m', MODEL, '--kv-type', 'q4'],
                        ['serve', '-m', MODEL, '--api-key', 'a', '--api-key-file', 'b'],
                        ['serve', '-m', MODEL, '--parallel', '0'], ['serve', '-m', MODEL, '--alias', ' '],
                        ['serve', '-m', MODEL, '--max-body-mib', '0'], ['bench-serve', '--url', 'x', '-m', MODEL]]) {
      const r = herd(args);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^herd: error: /, args.join(' '));
    }
    // A taken port.
    const server = await startServer(['-m', MODEL, '-t', '1']);
    try {
      const port = new URL(server.url).port;
      const r = herd(['serve', '-m', MODEL, '--port', port]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /cannot listen on 127\.0\.0\.1:\d+/);
    } finally {
      await server.stop();
    }
    const bad = path.join(testDir(), 'not-a-model.gguf');
    fs.writeFileSync(bad, 'GGUF but not really');
    const r = herd(['serve', '-m', bad, '--port', '0']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /herd: listening on http:\/\/127\.0\.0\.1:\d+\n/);
    assert.match(r.stderr, /herd: error: .*not-a-model\.gguf/);
  });

  it('bench-serve starts a server with -m and reports vLLM\'s metrics', () => {
    const r = herd(['bench-serve', '-m', MODEL, '-t', '1', '-n', '12', '--concurrency', '4', '--prompt-tokens', '16',
                    '--output-tokens', '8', '--seed', '3', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.completed, 12);
    assert.equal(j.failed, 0);
    assert.equal(j.total_output_tokens, 12 * 8);  // ignore_eos: fixed output lengths
    assert.equal(j.total_input_tokens, 12 * 16);
    for (const k of ['request_throughput', 'output_throughput', 'total_token_throughput', 'mean_ttft_ms',
                     'median_ttft_ms', 'p99_ttft_ms', 'mean_tpot_ms', 'median_tpot_ms', 'p99_tpot_ms', 'mean_itl_ms',
                     'median_itl_ms', 'p99_itl_ms']) {
      // Gaps between chunks of a tiny model can be 0 when two chunks arrive in one read: >= 0 there.
      const positive = !k.includes('itl') && !k.includes('tpot');
      assert.ok(Number.isFinite(j[k]) && (positive ? j[k] > 0 : j[k] >= 0), `${k} = ${j[k]}`);
    }
    assert.ok(j.p99_ttft_ms >= j.median_ttft_ms);
  });

  it('bench-serve --url with Poisson arrivals and a prompts file prints the table', async () => {
    const server = await startServer(['-m', MODEL, '-t', '1']);
    try {
      const prompts = path.join(testDir(), 'prompts.txt');
      fs.writeFileSync(prompts, 'Once upon a time\nThe cat sat\n\nLily was happy\n');
      const r = herd(['bench-serve', '--url', server.url, '-n', '6', '--rate', '50', '--output-tokens', '5',
                      '--prompts-file', prompts]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Successful requests:\s+6\n/);
      assert.match(r.stdout, /Total generated tokens:\s+30\n/);
      for (const label of ['Request throughput (req/s):', 'Mean TTFT (ms):', 'P99 TPOT (ms):', 'Median ITL (ms):']) {
        assert.ok(r.stdout.includes(label), `${label} missing in\n${r.stdout}`);
      }
    } finally {
      assert.deepEqual(await server.stop(), { code: 0, signal: null });
    }
  });
});
