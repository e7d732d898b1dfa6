// Helpers of the herd serve end-to-end tests: the official openai client (installed into build/server-node by
// scripts/install-npm.sh), a `herd serve --port 0` child with its listening line and /health, `herd run` for
// reference outputs, the tiny Llama 4 model made by `herd bench --synthetic ... --save`, and the server's RSS.
// Environment (set by CMakeLists.txt): HERD_BINARY, HERD_DEFAULT_SHARED (or HERD_SHARED), HERD_NODE_MODULES,
// HERD_TEST_DIR, HERD_SANITIZED.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run these tests through ctest, which sets it)`);
  return v;
}

export const HERD = need('HERD_BINARY');
export const SANITIZED = process.env.HERD_SANITIZED === '1';

// The official openai package; fails loudly, naming the install script, when it is not installed.
export function loadOpenAI() {
  const modules = need('HERD_NODE_MODULES');
  if (!fs.existsSync(path.join(modules, 'openai', 'package.json'))) {
    throw new Error(`the npm package 'openai' is not installed in ${modules}: run scripts/install-npm.sh ` +
                    `(make npm; make test runs it)`);
  }
  const require = createRequire(path.join(modules, '..', 'package.json'));
  const mod = require('openai');
  return mod.OpenAI ?? mod.default ?? mod;
}

export function sharedPath(rel) {
  const shared = process.env.HERD_SHARED || need('HERD_DEFAULT_SHARED');
  const p = path.join(shared, rel);
  if (!fs.existsSync(p)) throw new Error(`shared test data missing: ${p} (expected ../shared or $HERD_SHARED)`);
  return p;
}

export function testDir() {
  const dir = need('HERD_TEST_DIR');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

// `herd args...`, synchronously.
export function herd(args) {
  const r = spawnSync(HERD, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

// A random-weight Llama 4 (2 layers, hidden 64, 4 experts) with the real Llama 4 vocabulary size, saved once as
// GGUF into the test directory; used with --tokenizer shared/models/llama4-tokenizer/tokenizer.model.
export function tinyLlama4() {
  const file = path.join(testDir(), 'tiny-llama4-q8_0.gguf');
  if (fs.existsSync(file)) return file;
  const r = herd(['bench', '--synthetic', 'custom', '--layers', '2', '--hidden', '64', '--heads', '4',
                  '--kv-heads', '2', '--experts', '4', '--top-k', '1', '--ffn', '64', '--ffn-dense', '128',
                  '--vocab', '202048', '--max-ctx', '4096', '--type', 'q8_0', '--seed', '7', '--save', file,
                  '-p', '4', '-n', '2', '-r', '1', '--probe-mib', '0', '-t', '2']);
  if (r.code !== 0) throw new Error(`herd bench --save failed (${r.code}): ${r.stderr}`);
  return file;
}

// `herd serve --port 0 ARGS` as a child process, once /health answers 200.
export async function startServer(args, { waitHealthy = true } = {}) {
  const proc = spawn(HERD, ['serve', '--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = [];
  const rl = readline.createInterface({ input: proc.stderr });
  let exited = null;
  const exit = new Promise((resolve) => proc.on('exit', (code, signal) => {
    exited = { code, signal };
    resolve(exited);
  }));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line in 60 s: ${lines.join('\n')}`)), 60000);
    rl.on('line', (line) => {
      lines.push(line);
      const m = /^herd: listening on (http:\/\/\S+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    exit.then((e) => {
      clearTimeout(timer);
      reject(new Error(`herd serve exited (${JSON.stringify(e)}) before listening:\n${lines.join('\n')}`));
    });
  });
  const server = {
    url,
    baseURL: `${url}/v1`,
    pid: proc.pid,
    proc,
    lines,
    exit,
    exited: () => exited,
    // SIGTERM; resolves to the exit {code, signal}.
    async stop(signal = 'SIGTERM') {
      if (!exited) proc.kill(signal);
      return exit;
    },
  };
  if (waitHealthy) {
    const deadline = Date.now() + 120000;
    for (;;) {
      if (exited) throw new Error(`herd serve exited while loading:\n${lines.join('\n')}`);
      try {
        const r = await fetch(`${url}/health`);
        if (r.status === 200) break;
        if (r.status !== 503) throw new Error(`/health answered ${r.status}`);
      } catch (e) {
        if (Date.now() > deadline) throw e;
      }
      if (Date.now() > deadline) throw new Error(`not healthy in 120 s:\n${lines.join('\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return server;
}

// VmRSS of a process in KiB.
export function rssKiB(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

// POST JSON (or raw text) with fetch; returns {status, headers, json, text}.
export async function post(url, body, headers = {}) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: r.status, headers: r.headers, json, text };
}

// Expects an OpenAI error body.
export function expectError(assert, r, status, { type, param, code } = {}) {
  assert.equal(r.status, status, r.text);
  assert.ok(r.json && r.json.error, `no error object in ${r.text}`);
  const e = r.json.error;
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0);
  for (const k of ['type', 'param', 'code']) assert.ok(k in e, `error.${k} missing in ${r.text}`);
  if (type !== undefined) assert.equal(e.type, type, r.text);
  if (param !== undefined) assert.equal(e.param, param, r.text);
  if (code !== undefined) assert.equal(e.code, code, r.text);
}

// Checks generated JSON texts with the independent validator of the structured-output tests
// (tests/tools/validate_json.py: Debian's python3-jsonschema, formats checked): records are {schema, text}, a null
// schema meaning any JSON object. Throws with the invalid ones.
export function validateJson(records) {
  const file = path.join(testDir(), `validate-${process.pid}-${Date.now()}.jsonl`);
  fs.writeFileSync(file, records.map((r, i) => JSON.stringify({ id: i, schema: r.schema, output: r.text })).join('\n'));
  const validator = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'tools', 'validate_json.py');
  const r = spawnSync('/usr/bin/python3', [validator, file], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`the validator failed (python3-jsonschema: scripts/install-deps.sh): ${r.stderr}`);
  }
  const summary = JSON.parse(r.stdout);
  if (summary.checked !== records.length || summary.invalid.length > 0) {
    throw new Error(`invalid JSON outputs: ${JSON.stringify(summary)}`);
  }
}

// A random-weight all-dense Llama 4 (Llama Guard 4's shape: no experts), saved once per seed as GGUF into the test
// directory; used with --guard-tokenizer shared/models/llama4-tokenizer/tokenizer.model. Such a guard gives the same
// verdict to almost every text: seed 7 flags them, seed 11 lets them pass.
export function tinyGuard(seed = 11) {
  const file = path.join(testDir(), `tiny-guard-${seed}.gguf`);
  if (fs.existsSync(file)) return file;
  const r = herd(['bench', '--synthetic', 'custom', '--dense', '--layers', '2', '--hidden', '64', '--heads', '4',
                  '--kv-heads', '2', '--ffn', '64', '--ffn-dense', '128', '--vocab', '202048', '--max-ctx', '4096',
                  '--type', 'q8_0', '--seed', String(seed), '--save', file, '-p', '4', '-n', '2', '-r', '1',
                  '--probe-mib', '0', '-t', '2']);
  if (r.code !== 0) throw new Error(`herd bench --save failed (${r.code}): ${r.stderr}`);
  return file;
}

// The content text and the finish_reason of choice 0 of a streamed chat completion (an openai client stream).
export async function collectChatStream(stream) {
  let text = '';
  let finish = null;
  for await (const chunk of stream) {
    if (chunk.choices.length === 0) continue;
    text += chunk.choices[0].delta.content ?? '';
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  return { text, finish };
}
