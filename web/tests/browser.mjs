// End-to-end tests of the demo page in a headless browser: the adapter, weights streamed from a URL into GPU
// buffers (sums read back), the tiny model generating video + audio and its recording, a converted model
// streamed from a URL generating the same way, and each bad input's on-page message with the page still usable
// afterwards.
// Usage: node browser.mjs chromium|firefox BASE_URL
import { SUMS } from './fixtures.mjs';
import { launch, until } from './launch.mjs';

const [name, base] = process.argv.slice(2);
const results = [];

class Skip extends Error {}

async function test(title, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push({ title, ok: true });
    console.log(`ok   ${title} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    if (e instanceof Skip) {
      results.push({ title, skipped: true });
      console.log(`skip ${title}: ${e.message}`);
      return;
    }
    results.push({ title, ok: false });
    console.log(`FAIL ${title}: ${e.message}`);
  }
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

const browser = await launch(name);
const version = await browser.version();

// A fresh page on the demo, with `setup` run before any of its scripts; waits until it has settled.
async function open(setup) {
  const page = await browser.newPage();
  page.on('console', (m) => m.type() === 'error' && console.log(`  [console] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`  [pageerror] ${e.message}`));
  if (setup) await page.evaluateOnNewDocument(setup);
  await page.goto(base, { waitUntil: 'load' });
  await until(page, () => window.nava && window.nava.status !== 'starting', 120_000, 'the page to start');
  return page;
}

// The generation tests need the library's generate API in the engine; builds without it skip them, saying so.
async function needGenerate() {
  if (!(await page.evaluate(() => nava.canGenerate))) throw new Skip('this build has no generation (engine.generate is missing)');
}

const state = (page) => page.evaluate(() => ({ status: nava.status, error: nava.error, warnings: nava.warnings, model: nava.model }));
const message = (page) => page.evaluate(() => document.getElementById('message').textContent);

async function loadUrl(page, dir, { cancel = false } = {}) {
  await page.evaluate((url, cancel) => {
    document.querySelector('input[name=source][value=url]').checked = true;
    document.getElementById('url').value = url;
    document.getElementById('load').click();
    if (cancel) document.getElementById('cancel').click();
  }, new URL(`test-fixtures/${dir}/`, base).href, cancel);
  await until(page, () => !['loading', 'ready'].includes(nava.status) && document.getElementById('cancel').disabled, 120_000, 'the load to end');
  return state(page);
}

async function usable(page) {
  const s = await loadUrl(page, 'ok');
  check(s.status === 'loaded', `the page did not recover: status ${s.status}, ${JSON.stringify(s.error)}`);
}

console.log(`# ${name} (${version})`);
const page = await open();
const adapter = await page.evaluate(() => nava.adapter);
const started = await state(page);

await test('adapter found and large enough', async () => {
  check(started.status === 'ready', `page status ${started.status}: ${JSON.stringify(started.error)}`);
  console.log(`  adapter: ${adapter.name} (${adapter.backend}, ${adapter.deviceType}), f16 ${adapter.shaderF16}, ` +
    `binding ${adapter.limits.maxStorageBufferBindingSize} B`);
  const shown = await page.evaluate(() => document.getElementById('adapter-table').innerText);
  check(shown.includes('maxStorageBufferBindingSize'), 'limits are not shown on the page');
});

await test('weights stream from a URL into GPU buffers', async () => {
  const s = await loadUrl(page, 'ok');
  check(s.status === 'loaded', `status ${s.status}: ${JSON.stringify(s.error)}`);
  check(s.model.arrays === 4, `${s.model.arrays} arrays on the GPU, expected 4`);
  for (const [key, want] of Object.entries(SUMS)) {
    const got = await page.evaluate((k) => nava.arraySum('tiny-test', k), key);
    check(got === want, `sum of ${key} read back from the GPU is ${got}, expected ${want}`);
  }
  const cached = await until(page, async () => {
    const keys = await (await caches.open('nava-weights-v1')).keys();
    return keys.length >= 2 && keys.length;
  }, 20_000, 'the shards to be cached');
  check(cached === 2, `${cached} cached shards, expected 2`);
  const again = await loadUrl(page, 'ok');
  check(again.status === 'loaded', `reload from the cache: ${JSON.stringify(again.error)}`);
});

await test('a clip plays and records as WebM with its audio', async () => {
  const r = await page.evaluate(() => {
    const [w, h, fps, rate] = [32, 32, 24, 48000];
    const frames = Array.from({ length: fps }, (_, i) => {
      const d = new Uint8ClampedArray(w * h * 4);
      for (let p = 0; p < w * h; p++) d.set([(p % w) * 8, i * 10, 255 - i * 10, 255], 4 * p);
      return new ImageData(d, w, h);
    });
    const tone = (f) => Float32Array.from({ length: rate }, (_, i) => 0.5 * Math.sin((2 * Math.PI * f * i) / rate));
    nava.present({ fps, frames, sampleRate: rate, left: tone(440), right: tone(660) });
    return nava.result;
  });
  check(r.frames === 24 && r.distinctFrames === 24 && r.audioSamples === 48000, `shown: ${JSON.stringify(r)}`);
  const file = await page.evaluate(() => nava.recordResult());
  console.log(`  recording: ${JSON.stringify(file)}`);
  check(file.bytes > 0 && file.width === 32 && file.height === 32, 'the recording has no picture of the right size');
  check(file.duration > 0.5 && file.duration < 5, `recording lasts ${file.duration} s, expected about 1 s`);
  check(file.audio && file.audio.samples > 0 && file.audio.peak > 0.05, `the recording has no audio: ${JSON.stringify(file.audio)}`);
});

await test('tiny model generates video with audio, and the recording plays', async () => {
  await needGenerate();
  await page.evaluate(() => {
    document.querySelector('input[name=source][value=tiny]').checked = true;
    Object.assign(document.getElementById('aspect'), { value: '1:1' });
    Object.assign(document.getElementById('size'), { value: '32' });
    Object.assign(document.getElementById('duration'), { value: '0.5' });
    Object.assign(document.getElementById('steps'), { value: '2' });
    document.getElementById('generate').click();
  });
  await until(page, () => ['done', 'error', 'cancelled'].includes(nava.status), 540_000, 'generation');
  const s = await state(page);
  check(s.status === 'done', `status ${s.status}: ${JSON.stringify(s.error)}`);
  const r = await page.evaluate(() => nava.result);
  console.log(`  result: ${JSON.stringify(r)}`);
  check(r.frames === 13 && r.width === 32 && r.height === 32, `${r.frames} frames of ${r.width}×${r.height}, expected 13 of 32×32`);
  check(r.constantFrames === 0 && r.distinctFrames >= 2, `frames are constant or all alike: ${JSON.stringify(r)}`);
  check(r.audioSamples > 0 && r.audioPeak > 0, `no audio: ${JSON.stringify(r)}`);
  const expected = r.frames / r.fps;
  check(Math.abs(r.audioSamples / r.sampleRate - expected) < 0.25, `audio lasts ${r.audioSamples / r.sampleRate} s, video ${expected} s`);
  const file = await page.evaluate(() => nava.recordResult());
  console.log(`  recording: ${JSON.stringify(file)}`);
  check(file.bytes > 0 && file.width === r.width && file.height === r.height, 'the recording has no picture of the right size');
  // A loaded machine slows the recorder's clock; the bounds catch an empty or runaway file.
  check(file.duration > 0.5 * expected && file.duration < 4 * expected + 1, `recording lasts ${file.duration} s, expected about ${expected} s`);
  check(file.audio && file.audio.samples > 0, `the recording has no audio track: ${JSON.stringify(file.audio)}`);
});

await test('a converted tiny model from a URL generates video with audio', async () => {
  await needGenerate();
  // `nava convert --tiny` wrote it (run-tests): every model of NAVA at tiny widths, q8, arrays split across shards.
  const url = new URL('test-fixtures/tiny-q8/', base).href;
  await page.evaluate((url) => {
    document.querySelector('input[name=source][value=url]').checked = true;
    document.getElementById('url').value = url;
    Object.assign(document.getElementById('aspect'), { value: '1:1' });
    Object.assign(document.getElementById('size'), { value: '32' });
    Object.assign(document.getElementById('duration'), { value: '0.5' });
    Object.assign(document.getElementById('steps'), { value: '2' });
    document.getElementById('generate').click();
  }, url);
  await until(page, () => ['done', 'error', 'cancelled'].includes(nava.status), 540_000, 'generation');
  const s = await state(page);
  check(s.status === 'done', `status ${s.status}: ${JSON.stringify(s.error)}`);
  check(s.model && s.model.kind === 'url' && s.model.models.includes('nava-dit'), `model: ${JSON.stringify(s.model)}`);
  const r = await page.evaluate(() => nava.result);
  console.log(`  model: ${s.model.arrays} arrays, ${s.model.bytes} bytes on the GPU; result: ${JSON.stringify(r)}`);
  check(r.frames === 13 && r.width === 32 && r.height === 32, `${r.frames} frames of ${r.width}×${r.height}, expected 13 of 32×32`);
  check(r.constantFrames === 0 && r.distinctFrames >= 2, `frames are constant or all alike: ${JSON.stringify(r)}`);
  check(r.audioSamples > 0 && r.audioPeak > 0, `no audio: ${JSON.stringify(r)}`);
  const expected = r.frames / r.fps;
  check(Math.abs(r.audioSamples / r.sampleRate - expected) < 0.25, `audio lasts ${r.audioSamples / r.sampleRate} s, video ${expected} s`);
});

await test('Cancel in the middle of a step', async () => {
  await needGenerate();
  // Cancel is pressed from the page itself as soon as the first denoising step is reported, so the press lands
  // while the second step runs however fast the adapter is.
  await page.evaluate(() => {
    document.querySelector('input[name=source][value=tiny]').checked = true;
    Object.assign(document.getElementById('size'), { value: '64' });
    Object.assign(document.getElementById('steps'), { value: '40' });
    window.cancelledAt = null;
    const watch = new MutationObserver(() => {
      const count = document.querySelector('#stages li[data-stage=denoise] .count');
      if (count && /^[1-9]/.test(count.textContent) && !window.cancelledAt) {
        window.cancelledAt = count.textContent;
        document.getElementById('cancel').click();
        watch.disconnect();
      }
    });
    watch.observe(document.getElementById('stages'), { subtree: true, childList: true, characterData: true });
    document.getElementById('generate').click();
  });
  await until(page, () => !['loading', 'running'].includes(nava.status), 300_000, 'the run to stop');
  const s = await state(page);
  check(s.status === 'cancelled', `status ${s.status}: ${JSON.stringify(s.error)}`);
  check((await message(page)).includes('Cancelled'), 'no message says it was cancelled');
  const [at, after] = await page.evaluate(() => [window.cancelledAt, document.querySelector('#stages li[data-stage=denoise] .count').textContent]);
  console.log(`  Cancel pressed at denoising step ${at}; stopped at ${after}`);
  check(!/^(\d+) \/ \1$/.test(after), `denoising finished (${after}) before Cancel took effect`);
  await usable(page);
});

await test('Cancel while weights stream', async () => {
  const s = await loadUrl(page, 'ok', { cancel: true });
  check(s.status === 'cancelled', `status ${s.status}: ${JSON.stringify(s.error)}`);
  check((await message(page)).includes('Cancelled'), 'no message says it was cancelled');
  await usable(page);
});

await test('a missing shard', async () => {
  const s = await loadUrl(page, 'missing-shard');
  check(s.status === 'error' && s.error.kind === 'missing-shard', `got ${JSON.stringify(s.error)}`);
  const m = await message(page);
  check(m.includes('tiny-test-00002.safetensors') && m.includes('404'), `message: ${m}`);
  await usable(page);
});

for (const [dir, needle] of [
  ['wrong-length', 'longer than written'],
  ['missing-array', '`e` that manifest.json lists is not in the shard'],
  ['wrong-dtype', 'manifest.json expects F16'],
]) {
  await test(`a shard that disagrees with its manifest: ${dir}`, async () => {
    const s = await loadUrl(page, dir);
    check(s.status === 'error' && s.error.kind === 'shard', `got ${JSON.stringify(s.error)}`);
    const m = await message(page);
    check(m.includes('tiny-test-00002.safetensors') && m.includes(needle), `message: ${m}`);
    await usable(page);
  });
}

await test('a corrupt manifest', async () => {
  const s = await loadUrl(page, 'corrupt-manifest');
  check(s.status === 'error' && s.error.kind === 'manifest', `got ${JSON.stringify(s.error)}`);
  check((await message(page)).includes('manifest.json'), 'the message does not name manifest.json');
  await usable(page);
});
await page.close();

await test('a quota error while caching', async () => {
  const p = await open(() => {
    Cache.prototype.put = () => Promise.reject(new DOMException('the quota is used up', 'QuotaExceededError'));
  });
  await p.evaluate(() => caches.delete('nava-weights-v1'));
  const s = await loadUrl(p, 'ok');
  check(s.status === 'loaded', `the model should still load: ${JSON.stringify(s.error)}`);
  check(s.warnings.some((w) => w.kind === 'quota'), `no quota warning: ${JSON.stringify(s.warnings)}`);
  check((await message(p)).includes('quota'), 'the page does not say quota');
  await p.close();
});

await test('no WebGPU', async () => {
  const p = await open(() => {
    delete Navigator.prototype.gpu;
  });
  const s = await state(p);
  check(s.status === 'error' && s.error.kind === 'no-webgpu', `got ${JSON.stringify(s)}`);
  check((await message(p)).includes('WebGPU'), 'the message does not say WebGPU');
  check(await p.evaluate(() => document.getElementById('generate').disabled), 'Generate should stay off');
  await p.close();
});

await test('an adapter too small', async () => {
  const p = await open(() => {
    Object.defineProperty(GPUSupportedLimits.prototype, 'maxStorageBuffersPerShaderStage', { get: () => 2 });
  });
  const s = await state(p);
  check(s.status === 'error' && s.error.kind === 'adapter-too-small', `got ${JSON.stringify(s)}`);
  const m = await message(p);
  check(m.includes('maxStorageBuffersPerShaderStage is 2'), `message: ${m}`);
  await p.close();
});

await browser.close();
const failed = results.filter((r) => !r.ok && !r.skipped).length;
const skipped = results.filter((r) => r.skipped).length;
console.log(`${name}: ${results.length - failed - skipped} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed ? 1 : 0);
