// Writes the converted-model directories the browser tests load: `ok/` (two shards, four arrays of known sums),
// `missing-shard/` (the second shard deleted), `corrupt-manifest/` (manifest.json cut off), and three whose
// second shard disagrees with manifest.json: `wrong-length/` (a byte longer), `missing-array/` (the manifest
// lists an array the shard lacks) and `wrong-dtype/` (the manifest says F16 for an F32 array).
// (The converted tiny model the generation test loads is written by `nava convert --tiny`, see run-tests.)
// Usage: node fixtures.mjs OUT_DIR
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';


// One safetensors file: u64 header length, JSON header padded with spaces to 8 bytes, then the data.
function safetensors(arrays) {
  const header = {};
  let offset = 0;
  for (const a of arrays) {
    header[a.name] = { dtype: a.dtype, shape: a.shape, data_offsets: [offset, offset + a.bytes.length] };
    offset += a.bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, Buffer.from(json), ...arrays.map((a) => a.bytes)]);
}

const f32 = (values) => Buffer.from(new Float32Array(values).buffer);
const n = 256 * 256;
const shards = [
  [
    // Several fetch chunks long, so that arrays straddle chunk boundaries.
    { name: 'a', dtype: 'F32', shape: [256, 256], bytes: f32(Array.from({ length: n }, (_, i) => ((i % 7) - 3) * 0.5)) },
    { name: 'b', dtype: 'F16', shape: [10], bytes: Buffer.from(new Uint16Array(10).fill(0x3c00).buffer) },
    { name: 'c', dtype: 'U32', shape: [3], bytes: Buffer.from(new Uint32Array([1, 2, 3]).buffer) },
  ],
  [{ name: 'd', dtype: 'F32', shape: [1000], bytes: f32(new Array(1000).fill(0.25)) }],
];
// Sums the tests expect back from the GPU.
export const SUMS = { a: (Array.from({ length: n }, (_, i) => ((i % 7) - 3) * 0.5)).reduce((s, v) => s + v, 0), b: 10, c: 6, d: 250 };

const files = shards.map((arrays, i) => ({ file: `tiny-test-0000${i + 1}.safetensors`, bytes: safetensors(arrays), arrays }));
const manifest = {
  format: 'nava-weights',
  version: 1,
  shard_limit_bytes: 1 << 20,
  models: [{
    name: 'tiny-test',
    source: 'fixtures.mjs',
    quant: 'none',
    config: {},
    shards: files.map((f) => ({ file: f.file, bytes: f.bytes.length, tensors: f.arrays.map((a) => a.name) })),
    tensors: files.flatMap((f, shard) => f.arrays.map((a) => ({
      name: a.name,
      shape: a.shape,
      source_dtype: a.dtype,
      stored: { dtype: a.dtype },
      bytes: a.bytes.length,
      parts: [{ shard, key: a.name, rows: [0, a.shape[0]] }],
    }))),
  }],
};

const out = import.meta.url === pathToFileURL(process.argv[1]).href && process.argv[2];
// The manifest with its model changed by `change(model, d)` (`d`: the entry of the second shard's array).
function changed(change) {
  const m = structuredClone(manifest);
  const model = m.models[0];
  change(model, model.tensors.find((t) => t.name === 'd'));
  return m;
}
const BROKEN = {
  'wrong-length': { manifest, shard: Buffer.concat([files[1].bytes, Buffer.from([0])]) },
  'missing-array': {
    manifest: changed((model, d) => {
      model.shards[1].tensors.push('e');
      model.tensors.push({ ...structuredClone(d), name: 'e', parts: [{ shard: 1, key: 'e', rows: [0, 1000] }] });
    }),
    shard: files[1].bytes,
  },
  'wrong-dtype': { manifest: changed((_, d) => Object.assign(d, { stored: { dtype: 'F16' }, bytes: 2000 })), shard: files[1].bytes },
};

if (out) {
  rmSync(out, { recursive: true, force: true });
  for (const dir of ['ok', 'missing-shard', 'corrupt-manifest']) {
    mkdirSync(join(out, dir), { recursive: true });
    const text = JSON.stringify(manifest, null, 1);
    writeFileSync(join(out, dir, 'manifest.json'), dir === 'corrupt-manifest' ? text.slice(0, text.length / 2) : text);
    files.forEach((f, i) => {
      if (!(dir === 'missing-shard' && i === 1)) writeFileSync(join(out, dir, f.file), f.bytes);
    });
  }
  for (const [dir, b] of Object.entries(BROKEN)) {
    mkdirSync(join(out, dir), { recursive: true });
    writeFileSync(join(out, dir, 'manifest.json'), JSON.stringify(b.manifest, null, 1));
    writeFileSync(join(out, dir, files[0].file), files[0].bytes);
    writeFileSync(join(out, dir, files[1].file), b.shard);
  }
}
