// herd serve end to end with images, through the official openai client: a tiny random-weight Llama 4 (hidden 64,
// the real Llama 4 vocabulary and tokenizer) with the vision tower of shared/fixtures/llama4-tiny-vision as a
// projector GGUF (`herd convert --mmproj-out`). An image_url part with a data: URL gives the reply `herd run --image`
// gives for the same message; streaming gives the same text; the same image again is served from the prefix cache
// and another image is not; remote URLs, other encodings and broken images are refused with a 400 naming the part,
// and the server goes on serving.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { herd, loadOpenAI, sharedPath, startServer, testDir, tinyLlama4 } from './lib.mjs';

const OpenAI = loadOpenAI();
const TOKENIZER = sharedPath('models/llama4-tokenizer/tokenizer.model');
const FIXTURE = sharedPath('fixtures/llama4-tiny-vision');
const MODEL = tinyLlama4();
const IMAGE_A = path.join(FIXTURE, 'image_a_80x40.png');
const IMAGE_B = path.join(FIXTURE, 'image_b_48x48.png');
const QUESTION = 'What is in this picture?';

// The fixture's vision tower as a projector GGUF (its text half is written beside it and not used).
function mmproj() {
  const dir = testDir();
  const file = path.join(dir, 'tiny-vision-mmproj.gguf');
  if (fs.existsSync(file)) return file;
  const r = herd(['convert', FIXTURE, '-o', path.join(dir, 'tiny-vision-text.gguf'), '--mmproj-out', file, '-q']);
  if (r.code !== 0) throw new Error(`herd convert --mmproj-out failed (${r.code}): ${r.stderr}`);
  return file;
}
const MMPROJ = mmproj();

function dataUrl(file) {
  const bytes = Buffer.isBuffer(file) ? file : fs.readFileSync(file);
  return `data:image/png;base64,${bytes.toString('base64')}`;
}

// A PNG of width x height RGB pixels from pixel(x, y) -> [r, g, b] (8-bit, no filter).
function makePng(width, height, pixel) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; ++k) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);  // 8-bit RGB
  const raw = Buffer.alloc(height * (1 + 3 * width));
  for (let y = 0; y < height; ++y) {
    for (let x = 0; x < width; ++x) raw.set(pixel(x, y), y * (1 + 3 * width) + 1 + 3 * x);
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr),
                        chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

function imageMessage(file, text = QUESTION) {
  return [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(file) } }, { type: 'text', text }] }];
}

let server;
let client;

before(async () => {
  server = await startServer(['-m', MODEL, '--tokenizer', TOKENIZER, '--mmproj', MMPROJ, '-c', '1024',
                              '--parallel', '4', '-t', '2', '--alias', 'tiny-vision', '--max-tiles', '4']);
  client = new OpenAI({ baseURL: server.baseURL, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
});

after(async () => {
  const e = await server.stop();
  assert.deepEqual(e, { code: 0, signal: null }, server.lines.join('\n'));
});

async function ask(messages, extra = {}) {
  return client.chat.completions.create({ model: 'tiny-vision', messages, max_tokens: 12, temperature: 0, ...extra });
}

async function expect400(messages, param, code) {
  await assert.rejects(ask(messages), (e) => {
    assert.equal(e.status, 400, String(e));
    assert.equal(e.param, param, String(e));
    if (code !== undefined) assert.equal(e.code, code, String(e));
    return true;
  });
}

describe('herd serve: images in chat messages', () => {
  it('says at startup that it takes images', () => {
    assert.ok(server.lines.some((l) => l.includes('images (up to 4 tiles each)')), server.lines.join('\n'));
  });

  it('answers an image as herd run --image does', async () => {
    const r = await ask(imageMessage(IMAGE_A));
    const reply = r.choices[0].message.content;
    // image_a: 1x2 tiles + the global view of the fixture's 48-pixel tiles, 9 patches each, 5 framing tokens.
    const text = herd(['run', '-m', MODEL, '--tokenizer', TOKENIZER, '--mmproj', MMPROJ, '--image', IMAGE_A,
                       '--max-tiles', '4', '-p', QUESTION, '-n', '12', '--temp', '0', '-t', '1']);
    assert.equal(text.code, 0, text.stderr);
    assert.ok(text.stdout.endsWith(`${reply}\n`), `herd run: ${JSON.stringify(text.stdout)}, server: ${JSON.stringify(reply)}`);
    const plain = await ask([{ role: 'user', content: QUESTION }]);
    assert.equal(r.usage.prompt_tokens, plain.usage.prompt_tokens + 27 + 5);
  });

  it('streams the same text', async () => {
    const whole = await ask(imageMessage(IMAGE_B));
    const stream = await ask(imageMessage(IMAGE_B), { stream: true });
    let text = '';
    for await (const c of stream) for (const ch of c.choices) text += ch.delta.content ?? '';
    assert.equal(text, whole.choices[0].message.content);
  });

  it('keeps images in the prefix cache by their pixels', async () => {
    const long = 'Describe the colours, the shapes and the light of this picture in a few careful words.';
    const first = await ask(imageMessage(IMAGE_A, long));
    const again = await ask(imageMessage(IMAGE_A, long));
    assert.equal(again.choices[0].message.content, first.choices[0].message.content);
    assert.ok(again.usage.prompt_tokens_details.cached_tokens > 32, JSON.stringify(again.usage));
    // Another picture of image_a's size has image_a's token layout: only its pixels tell them apart, and none of
    // its pages from the image on may come from the cache (the first page holds the image's first positions).
    const other = await ask(imageMessage(makePng(80, 40, (x, y) => [x * 3, y * 6, (x * y) & 255]), long));
    assert.equal(other.usage.prompt_tokens, first.usage.prompt_tokens);
    assert.equal(other.usage.prompt_tokens_details.cached_tokens, 0, JSON.stringify(other.usage));
  });

  it('takes several images, each where its part stands', async () => {
    const r = await ask([{ role: 'user', content: [
      { type: 'text', text: 'Compare' }, { type: 'image_url', image_url: { url: dataUrl(IMAGE_A) } },
      { type: 'text', text: 'with' }, { type: 'image_url', image_url: { url: dataUrl(IMAGE_B) } }] }]);
    const text = herd(['run', '-m', MODEL, '--tokenizer', TOKENIZER, '--mmproj', MMPROJ, '--image', IMAGE_A,
                       '--image', IMAGE_B, '--max-tiles', '4', '-p', 'Compare<__media__>with<__media__>', '-n', '12',
                       '--temp', '0', '-t', '1']);
    assert.equal(text.code, 0, text.stderr);
    assert.ok(text.stdout.endsWith(`${r.choices[0].message.content}\n`), text.stdout);
  });

  it('refuses remote URLs, other encodings and broken images, and goes on serving', async () => {
    const part = (url) => [{ role: 'user', content: [{ type: 'text', text: 'x' }, { type: 'image_url', image_url: { url } }] }];
    const param = 'messages[0].content[1].image_url.url';
    await expect400(part('https://example.com/cat.png'), param, 'image_url_not_supported');
    await expect400(part('data:image/png,rawbytes'), param);
    await expect400(part('data:image/png;base64,not base64!'), param);
    const png = fs.readFileSync(IMAGE_A);
    await expect400(part(`data:image/png;base64,${png.subarray(0, png.length >> 1).toString('base64')}`), param,
                    'invalid_image');
    await expect400(part(`data:image/gif;base64,${Buffer.from('GIF89a....').toString('base64')}`), param,
                    'invalid_image');
    const ok = await ask(imageMessage(IMAGE_B));
    assert.equal(typeof ok.choices[0].message.content, 'string');
  });
});
