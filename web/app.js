// The demo page: reads the form, moves bytes (network, Cache API, chosen files) into the wasm engine, shows
// progress and plays the result. No model code here: everything that computes is in the `nava` library.
import init, { openEngine } from './pkg/nava_web.js';

const $ = (id) => document.getElementById(id);
const CACHE = 'nava-weights-v1';

// What the page is doing, for people (on the page) and for the browser tests (window.nava).
const state = (window.nava = { status: 'starting', error: null, warnings: [], model: null, result: null });
let engine = null;
let busy = null; // { abort: AbortController } while a load or a run is in progress

function show(kind, text) {
  const m = $('message');
  m.hidden = false;
  m.className = kind;
  m.textContent = text;
}

function fail(kind, text) {
  state.error = { kind, message: text };
  state.status = 'error';
  show('error', text);
}

function warn(kind, text) {
  state.warnings.push({ kind, message: text });
  show('warning', text);
}

// Errors from the engine carry a kind in `name`; JS errors get one from their type.
function kindOf(e) {
  if (e && e.name === 'AbortError') return 'cancelled';
  if (e && typeof e.name === 'string' && /^[a-z-]+$/.test(e.name)) return e.name;
  return 'internal';
}

function report(e) {
  const kind = kindOf(e);
  if (kind === 'cancelled') {
    state.status = 'cancelled';
    state.error = { kind, message: 'Cancelled' };
    show('info', 'Cancelled. The page is ready for another run.');
  } else {
    fail(kind, (e && e.message) || String(e));
  }
}

// ---- progress -------------------------------------------------------------------------------------------

const STAGES = {
  weights: 'Weights (per model, as each stage needs it)', text: 'Text encoder', voices: 'Reference voices', image: 'First frame',
  denoise: 'Denoising (steps)', video: 'Video decoder (frames)', audio: 'Audio decoder',
};

function stage(name, done, total) {
  let li = document.querySelector(`#stages li[data-stage="${name}"]`);
  if (!li) {
    li = document.createElement('li');
    li.dataset.stage = name;
    li.innerHTML = `<span></span><progress></progress><span class="count"></span>`;
    li.firstChild.textContent = STAGES[name] || name;
    $('stages').append(li);
  }
  const bar = li.querySelector('progress');
  bar.max = Math.max(total, 1);
  bar.value = Math.min(done, bar.max);
  li.querySelector('.count').textContent = total > 1e6 ? `${(done / 2 ** 20).toFixed(1)} / ${(total / 2 ** 20).toFixed(1)} MiB` : `${done} / ${total}`;
  li.classList.toggle('done', done >= total);
}

function resetStages() {
  $('stages').replaceChildren();
}

// ---- buttons ----------------------------------------------------------------------------------------------

function setBusy(b) {
  busy = b;
  $('generate').disabled = !!b || !engine;
  $('load').disabled = !!b || !engine;
  $('cancel').disabled = !b;
}

$('cancel').addEventListener('click', () => {
  if (!busy) return;
  engine.cancel();
  busy.abort.abort();
});

// ---- the adapter ------------------------------------------------------------------------------------------

async function start() {
  if (!('gpu' in navigator) || !navigator.gpu) {
    $('adapter-status').textContent = 'No WebGPU.';
    fail('no-webgpu', 'This browser does not offer WebGPU (navigator.gpu is missing). Use a recent Chromium, ' +
      'Chrome or Edge, or Firefox with dom.webgpu.enabled; the page must be served from https:// or 127.0.0.1.');
    return;
  }
  await init();
  try {
    engine = await openEngine();
  } catch (e) {
    $('adapter-status').textContent = 'No usable adapter.';
    report(e);
    return;
  }
  const a = engine.adapter;
  if (!a.name) {
    // Browsers leave the name empty; their GPUAdapterInfo describes the device instead.
    const info = await navigator.gpu.requestAdapter().then((x) => x && x.info).catch(() => null);
    a.name = info ? [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') : '';
    // Some browsers hide the adapter's identity.
    if (!a.name) a.name = a.deviceType === 'Cpu' ? 'a software WebGPU adapter' : 'a WebGPU adapter';
  }
  $('adapter-status').textContent = `${a.name} — ${a.deviceType}, ${a.backend}`;
  const rows = [
    ['driver', `${a.driver} ${a.driverInfo}`.trim() || '—'],
    ['shader-f16', a.shaderF16 ? 'yes' : 'no'],
    ['subgroups', a.subgroups ? 'yes (not used on the web)' : 'no'],
    ...Object.entries(a.limits).map(([k, v]) => [k, v >= 2 ** 20 ? `${v} (${(v / 2 ** 20).toFixed(0)} MiB)` : v]),
  ];
  const body = $('adapter-table').tBodies[0];
  for (const [k, v] of rows) {
    const tr = body.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = String(v);
  }
  $('adapter-table').hidden = false;
  state.adapter = a;
  state.canGenerate = typeof engine.generate === 'function';
  state.arraySum = (model, key) => engine.arraySum(model, key);
  state.status = 'ready';
  setBusy(null);
}

// ---- weights ----------------------------------------------------------------------------------------------

function source() {
  return document.querySelector('input[name=source]:checked').value;
}

// A converted directory as a reader of named files: `open(name)` gives {stream, cached}.
const urlRoot = (base) => new URL(base.endsWith('/') ? base : base + '/', location.href);

function urlDirectory(base, signal) {
  const root = urlRoot(base);
  const cache = 'caches' in self ? caches.open(CACHE).catch(() => null) : Promise.resolve(null);
  let caching = true;
  return {
    label: root.href,
    async text(name) {
      const r = await fetch(new URL(name, root), { signal, cache: 'no-store' });
      if (!r.ok) throw named('missing-manifest', `${new URL(name, root)}: HTTP ${r.status}. Is this the URL of a directory written by \`nava convert\`?`);
      return r.text();
    },
    async planCache(totalBytes) {
      if (!navigator.storage || !navigator.storage.estimate) return;
      const { quota = Infinity, usage = 0 } = await navigator.storage.estimate();
      if (quota - usage < totalBytes) {
        caching = false;
        warn('quota', `Not caching this model: it needs ${mib(totalBytes)}, and the browser's storage quota leaves ` +
          `${mib(quota - usage)} for this site. The model still loads; free site data to cache it.`);
      }
    },
    async open(name) {
      const url = new URL(name, root);
      const c = await cache;
      const hit = c && (await c.match(url));
      if (hit) return { stream: hit.body, cached: true };
      const r = await fetch(url, { signal, cache: 'no-store' });
      if (!r.ok) {
        throw named('missing-shard', `Shard ${name} is missing: ${url} answered HTTP ${r.status}. ` +
          'The model directory is incomplete: copy every file listed in manifest.json.');
      }
      if (!c || !caching || !r.body) return { stream: r.body, cached: false };
      const [mine, theirs] = r.body.tee();
      c.put(url, new Response(theirs, { headers: r.headers })).catch((e) => {
        caching = false;
        if (e && e.name === 'QuotaExceededError') {
          warn('quota', `Not cached: the browser's storage quota is exceeded (${e.message}). ` +
            'The model still loads from the network; free site data to cache it.');
        } else {
          warn('cache', `Not cached: ${e && e.message}. The model still loads from the network.`);
        }
      });
      return { stream: mine, cached: false };
    },
  };
}

function fileDirectory(files) {
  const byName = new Map();
  for (const f of files) byName.set(f.name, f);
  const get = (name, kind) => {
    const f = byName.get(name);
    if (!f) throw named(kind, `${name} is not in the chosen folder. Choose the directory written by \`nava convert\`, with every file listed in manifest.json.`);
    return f;
  };
  return {
    label: 'the chosen folder',
    text: (name) => get(name, 'missing-manifest').text(),
    planCache: async () => {},
    open: async (name) => ({ stream: get(name, 'missing-shard').stream(), cached: false }),
  };
}

function named(name, message) {
  const e = new Error(message);
  e.name = name;
  return e;
}

const mib = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;

// Streams every shard into GPU buffers: each chunk goes straight to the engine, which writes it into the GPU
// buffers of the arrays it belongs to (wasm memory never holds more than the chunk).
async function loadConverted(dir, signal) {
  const manifest = await dir.text('manifest.json');
  const shards = engine.beginModel(manifest, dir.label);
  const total = shards.reduce((n, s) => n + s.bytes, 0);
  await dir.planCache(total);
  let done = 0;
  stage('weights', 0, total);
  for (const s of shards) {
    const { stream } = await dir.open(s.file);
    engine.beginShard(s.model, s.file);
    const reader = stream.getReader();
    try {
      for (;;) {
        if (signal.aborted) throw named('cancelled', 'Cancelled');
        const { value, done: end } = await reader.read();
        if (end) break;
        engine.shardChunk(value);
        done += value.byteLength;
        stage('weights', done, total);
      }
    } finally {
      reader.releaseLock();
    }
    engine.endShard();
  }
  const summary = engine.endModel();
  $('model-status').textContent = `${summary.models.join(', ')}: ${summary.arrays} arrays, ${mib(summary.bytes)} on the GPU`;
  return summary;
}

async function loadModel(signal) {
  const kind = source();
  state.model = null;
  if (kind === 'tiny') {
    state.model = { kind: 'tiny' };
    $('model-status').textContent = 'built-in tiny model';
    return state.model;
  }
  const dir = kind === 'url' ? urlDirectory($('url').value.trim(), signal) : fileDirectory($('dir').files);
  if (kind === 'url' && !$('url').value.trim()) throw named('input', 'Enter the URL of a converted model directory.');
  if (kind === 'dir' && !$('dir').files.length) throw named('input', 'Choose a converted model directory.');
  const summary = await loadConverted(dir, signal);
  state.model = { kind, label: dir.label, ...summary };
  return state.model;
}

async function run(task) {
  const abort = new AbortController();
  setBusy({ abort });
  state.error = null;
  state.warnings = [];
  $('message').hidden = true;
  resetStages();
  try {
    await task(abort.signal);
  } catch (e) {
    report(e);
  } finally {
    setBusy(null);
  }
}

$('load').addEventListener('click', () => run(async (signal) => {
  state.status = 'loading';
  await loadModel(signal);
  state.status = 'loaded';
  if (!state.warnings.length) show('info', `Model ready: ${$('model-status').textContent}.`);
}));

// Another folder or URL is another model: the next Generate loads it.
for (const id of ['dir', 'url']) $(id).addEventListener('change', () => { state.model = null; });

// ---- generation -------------------------------------------------------------------------------------------

async function readRequest() {
  const [a, b] = $('aspect').value.split(':').map(Number);
  const short = Number($('size').value);
  // Sides are multiples of 32 pixels (the latent grid).
  const long = Math.max(32, Math.round((short * Math.max(a, b)) / Math.min(a, b) / 32) * 32);
  const [width, height] = a >= b ? [long, short] : [short, long];
  const image = $('image').files[0];
  return {
    prompt: $('prompt').value,
    negativePrompt: $('negative').value,
    width,
    height,
    seconds: Number($('duration').value),
    steps: Number($('steps').value),
    seed: Number($('seed').value),
    firstFrame: image ? await imagePixels(image) : null,
    voices: await Promise.all([...$('voices').files].map(voiceSamples)),
  };
}

// A reference voice decoded by the browser and mixed to mono; the engine resamples it to 16 kHz.
async function voiceSamples(file) {
  const ctx = new OfflineAudioContext(1, 1, 16000);
  let buf;
  try {
    buf = await ctx.decodeAudioData(await file.arrayBuffer());
  } catch (e) {
    throw named('input', `${file.name} is not audio this browser can decode (${e.message || e}); give a .wav file.`);
  }
  const samples = new Float32Array(buf.length);
  for (let c = 0; c < buf.numberOfChannels; c++) {
    const d = buf.getChannelData(c);
    for (let i = 0; i < d.length; i++) samples[i] += d[i] / buf.numberOfChannels;
  }
  return { rate: buf.sampleRate, samples };
}

// The first frame as RGBA pixels at its own size; the library scales and crops it.
async function imagePixels(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (e) {
    throw named('input', `${file.name} is not an image this browser can read (${e.message}).`);
  }
  const c = new OffscreenCanvas(bitmap.width, bitmap.height);
  const g = c.getContext('2d');
  g.drawImage(bitmap, 0, 0);
  return { width: bitmap.width, height: bitmap.height, rgba: g.getImageData(0, 0, bitmap.width, bitmap.height).data };
}

$('form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  run(async (signal) => {
    // A converted model loads once (Load model, or the first Generate) and stays in GPU memory for later runs.
    const kind = source();
    const same = state.model && state.model.kind === kind &&
      (kind !== 'url' || state.model.label === urlRoot($('url').value.trim()).href);
    if (!same) {
      state.status = 'loading';
      await loadModel(signal);
    }
    const request = { ...(await readRequest()), model: kind === 'tiny' ? 'tiny' : 'converted' };
    state.status = 'running';
    const frames = [];
    const t0 = performance.now();
    const out = await engine.generate(request, (ev) => {
      if (ev.type === 'stage') {
        // Each model's weights load just before its stage: once the stage runs, its load is complete.
        const w = document.querySelector('#stages li[data-stage=weights] progress');
        if (ev.stage !== 'weights' && w) w.value = w.max;
        stage(ev.stage, ev.done, ev.total);
      } else if (ev.type === 'warning') warn('generation', ev.message);
      else if (ev.type === 'frame') frames[ev.index] = new ImageData(ev.rgba, ev.width, ev.height);
    });
    showResult({ ...out, frames, seconds: (performance.now() - t0) / 1000 });
    state.status = 'done';
  });
});

// ---- the result -------------------------------------------------------------------------------------------

let result = null;

// Shows a finished clip: `{fps, frames: ImageData[], sampleRate, left, right, seconds}` (also the tests' way to
// check playback and recording apart from generation).
state.present = (r) => showResult({ seconds: 0, ...r });

function showResult(r) {
  result = r;
  const [first] = r.frames;
  const canvas = $('screen');
  canvas.width = first.width;
  canvas.height = first.height;
  canvas.getContext('2d').putImageData(first, 0, 0);
  const audioSeconds = r.left.length / r.sampleRate;
  $('result-info').textContent = `${r.frames.length} frames at ${r.fps} fps (${(r.frames.length / r.fps).toFixed(2)} s), ` +
    `${first.width}×${first.height}; stereo audio ${audioSeconds.toFixed(2)} s at ${r.sampleRate} Hz; made in ${r.seconds.toFixed(1)} s.`;
  $('result').hidden = false;
  state.result = {
    fps: r.fps,
    width: first.width,
    height: first.height,
    frames: r.frames.length,
    distinctFrames: new Set(r.frames.map(frameHash)).size,
    constantFrames: r.frames.filter(isConstant).length,
    sampleRate: r.sampleRate,
    audioSamples: r.left.length,
    audioPeak: Math.max(peak(r.left), peak(r.right)),
  };
}

function frameHash(f) {
  let h = 2166136261;
  for (let i = 0; i < f.data.length; i += 7) h = Math.imul(h ^ f.data[i], 16777619);
  return h >>> 0;
}

function isConstant(f) {
  for (let i = 4; i < f.data.length; i++) if (f.data[i] !== f.data[i % 4]) return false;
  return true;
}

function peak(a) {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

// Plays frames on the canvas against the audio clock, so picture and sound stay together; with `dest` the sound
// also goes to a MediaStream (the recorder's input). Resolves to {stream, done} once playback has started.
async function play(r, dest) {
  const ctx = new AudioContext({ sampleRate: r.sampleRate });
  const buf = ctx.createBuffer(2, r.left.length, r.sampleRate);
  buf.copyToChannel(r.left, 0);
  buf.copyToChannel(r.right, 1);
  const src = ctx.createBufferSource();
  src.buffer = buf;
  src.connect(ctx.destination);
  let stream = null;
  if (dest) {
    const d = ctx.createMediaStreamDestination();
    src.connect(d);
    stream = d.stream;
  }
  // The audio clock starts when the sound device opens; without one it may never run, and the picture then
  // follows the wall clock.
  await Promise.race([ctx.resume(), new Promise((ok) => setTimeout(ok, 3000))]);
  const startAt = ctx.currentTime + 0.1;
  src.start(startAt);
  const wallStart = performance.now() + 100;
  const now = () => (ctx.state === 'running' ? ctx.currentTime - startAt : (performance.now() - wallStart) / 1000);
  const g = $('screen').getContext('2d');
  const seconds = Math.max(r.frames.length / r.fps, r.left.length / r.sampleRate);
  return {
    stream,
    done: new Promise((resolve) => {
      let last = -1;
      const tick = () => {
        const t = now();
        const i = Math.min(r.frames.length - 1, Math.max(0, Math.floor(t * r.fps)));
        if (i !== last) {
          g.putImageData(r.frames[i], 0, 0);
          last = i;
        }
        if (t < seconds) requestAnimationFrame(tick);
        else ctx.close().then(resolve, resolve);
      };
      tick();
    }),
  };
}

$('play').addEventListener('click', () => result && play(result).then((p) => p.done).catch(report));

// Records one playback (canvas + audio) with MediaRecorder: a WebM any browser plays.
async function record(r) {
  const canvas = $('screen');
  const video = canvas.captureStream(r.fps);
  const p = await play(r, true);
  const tracks = [...video.getVideoTracks(), ...p.stream.getAudioTracks()];
  const type = ['video/webm;codecs=vp8,opus', 'video/webm', 'video/mp4'].find((t) => MediaRecorder.isTypeSupported(t));
  const rec = new MediaRecorder(new MediaStream(tracks), type ? { mimeType: type } : undefined);
  const parts = [];
  rec.ondataavailable = (e) => e.data.size && parts.push(e.data);
  const stopped = new Promise((resolve) => (rec.onstop = resolve));
  rec.start(100);
  await p.done;
  rec.stop();
  await stopped;
  tracks.forEach((t) => t.stop());
  return new Blob(parts, { type: rec.mimeType || type || 'video/webm' });
}

$('download').addEventListener('click', async () => {
  if (!result) return;
  $('download').disabled = true;
  try {
    const blob = await record(result);
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `nava-${$('seed').value}.${blob.type.includes('mp4') ? 'mp4' : 'webm'}`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  } catch (e) {
    report(e);
  } finally {
    $('download').disabled = false;
  }
});

// For the browser tests: record the result and measure the file the way a player sees it.
state.recordResult = async () => {
  const blob = await record(result);
  const url = URL.createObjectURL(blob);
  const v = document.createElement('video');
  v.muted = true;
  v.src = url;
  await new Promise((ok, bad) => { v.onloadedmetadata = ok; v.onerror = () => bad(new Error('the recording does not load')); });
  if (!Number.isFinite(v.duration)) {
    // MediaRecorder's WebM has no duration in its header; seeking to the end makes the player find it.
    await new Promise((ok) => { v.ondurationchange = () => Number.isFinite(v.duration) && ok(); v.currentTime = 1e6; setTimeout(ok, 3000); });
  }
  let audio = null;
  try {
    const ctx = new OfflineAudioContext(2, 1, 48000);
    const decoded = await ctx.decodeAudioData(await blob.arrayBuffer());
    audio = { samples: decoded.length, channels: decoded.numberOfChannels, peak: peak(decoded.getChannelData(0)) };
  } catch (e) {
    audio = { error: String(e) };
  }
  URL.revokeObjectURL(url);
  return { type: blob.type, bytes: blob.size, duration: v.duration, width: v.videoWidth, height: v.videoHeight, audio };
};

start().catch(report);
