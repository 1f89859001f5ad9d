//! One `double_blocks.0` and one `single_blocks.0` of the DiT at NAVA_6B width (3072, 24 heads, FFN 14336) with
//! seeded random weights under the real key names, run on the adapter and checked against a CPU f32/f64
//! computation of the same block written from NAVA.md §4.3/§4.4/§4.6. At this width the FFN weights
//! (3072 × 14336 × 4 B = 168 MiB) exceed one storage binding on lavapipe (128 MiB), so the GEMM's split of a
//! weight over bindings runs with real shapes, as do RoPE on a 3D grid + audio rows, joint and modality-masked
//! attention, and the per-segment modulation of image-to-video (a clean first frame at its own timestep).

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use nava::gpu::{Gpu, GpuOptions, GpuTensor};
use nava::kernels::attention::Segment as AttnSegment;
use nava::kernels::gemm::WeightFormat;
use nava::model::dit::{DitConfig, DoubleBlock, Modality, RopeLayout, Rows, Segment, SingleBlock, Time};
use nava::model::ModelError;
use nava::weights::{safetensors_to_vec, Blob, Checkpoint, Scope, TensorData, WeightDType};
use rand::{Rng, SeedableRng};

/// Largest error allowed relative to the largest |reference| value: f32 GEMMs over K up to 14336 with a
/// different summation order on each side. Lavapipe measures about 8e-7; the margin is for other adapters.
const TOL_REL: f32 = 2e-5;

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new_blocking(&GpuOptions::from_env()).expect("block tests need a GPU adapter"))
}

/// The two tests run one after the other: each holds about 3 GB of weights (host copies, checkpoint bytes,
/// device buffers) and both would only share the same two cores.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------------------------
// Random weights under the real key names.

/// Every tensor of one block: key (without the block prefix), shape and values.
struct Weights {
    prefix: String,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl Weights {
    /// Tensors of `prefix` (e.g. `double_blocks.0.`) in the NAVA_6B key table, with values of the scale a
    /// trained block has: linear weights U(-1,1)/√fan_in, biases and norm shifts 0.1·U, norm weights 1 + 0.2·U,
    /// modulation tables of standard deviation 1/√dim.
    fn random(c: &DitConfig, prefix: &str, seed: u64) -> Self {
        let tensors = c
            .key_table("")
            .into_iter()
            .filter_map(|(k, s)| k.strip_prefix(prefix).map(|k| (k.to_string(), s)))
            .enumerate()
            .map(|(i, (k, s))| {
                let n: usize = s.iter().product();
                // values = offset + scale · U(-1, 1)
                let (scale, offset) = if k.ends_with("modulation") {
                    ((3.0 / c.dim as f32).sqrt(), 0.0)
                } else if s.len() == 2 {
                    (1.0 / (s[1] as f32).sqrt(), 0.0)
                } else if k.ends_with("bias") {
                    (0.1, 0.0)
                } else {
                    (0.2, 1.0)
                };
                let mut v = uniform(seed.wrapping_mul(1000).wrapping_add(i as u64), n);
                v.iter_mut().for_each(|x| *x = offset + scale * *x);
                (k, s, v)
            })
            .collect();
        Self { prefix: prefix.to_string(), tensors }
    }

    fn get(&self, key: &str) -> &[f32] {
        &self.tensors.iter().find(|(k, _, _)| k == key).unwrap_or_else(|| panic!("no tensor {key}")).2
    }

    fn lin(&self, name: &str) -> Lin<'_> {
        let (_, s, w) = self
            .tensors
            .iter()
            .find(|(k, _, _)| *k == format!("{name}.weight"))
            .unwrap_or_else(|| panic!("no linear {name}"));
        Lin { w, b: self.get(&format!("{name}.bias")), n: s[0], k: s[1] }
    }

    /// The block as a safetensors file in memory, under its full key names.
    fn checkpoint(&self) -> Checkpoint {
        let names: Vec<String> = self.tensors.iter().map(|(k, _, _)| format!("{}{k}", self.prefix)).collect();
        let data: Vec<TensorData> = self
            .tensors
            .iter()
            .zip(&names)
            .map(|((_, s, v), name)| TensorData {
                name,
                dtype: WeightDType::F32,
                shape: s,
                bytes: bytemuck::cast_slice(v),
            })
            .collect();
        let bytes = safetensors_to_vec(&data, &[]).expect("in-memory safetensors");
        Checkpoint::from_blob("<random block>", Blob::from_vec(bytes)).expect("our own safetensors parses")
    }

    fn bytes(&self) -> usize {
        self.tensors.iter().map(|(_, _, v)| 4 * v.len()).sum()
    }
}

/// Seeded uniform values in [-1, 1).
fn uniform(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// CPU reference, from the formulas of NAVA.md §4.3 (double), §4.4 (single), §4.6 (RoPE).

/// `nn.Linear`: weight `[n, k]`, bias `[n]`.
struct Lin<'a> {
    w: &'a [f32],
    b: &'a [f32],
    n: usize,
    k: usize,
}

impl Lin<'_> {
    /// `x[m, k] · Wᵀ + b` → `[m, n]`.
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let m = x.len() / self.k;
        assert_eq!(m * self.k, x.len());
        let mut y = matmul_t(x, m, self.w, self.n, self.k);
        for row in y.chunks_exact_mut(self.n) {
            for (v, b) in row.iter_mut().zip(self.b) {
                *v += b;
            }
        }
        y
    }
}

/// `x[m, k] · w[n, k]ᵀ` on two threads (each takes half of the output columns, i.e. of the weight rows).
fn matmul_t(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    let threads = std::thread::available_parallelism().map_or(2, |p| p.get()).clamp(1, 4);
    let per = n.div_ceil(threads).div_ceil(4) * 4;
    let parts: Vec<(usize, usize, Vec<f32>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(per)
            .map(|j0| {
                let j1 = (j0 + per).min(n);
                s.spawn(move || (j0, j1, matmul_cols(x, m, w, k, j0, j1)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("matmul thread")).collect()
    });
    let mut y = vec![0f32; m * n];
    for (j0, j1, part) in parts {
        let nc = j1 - j0;
        for i in 0..m {
            y[i * n + j0..i * n + j1].copy_from_slice(&part[i * nc..(i + 1) * nc]);
        }
    }
    y
}

/// Columns `j0..j1` of `x · wᵀ`, `[m, j1 - j0]`. Blocked so that it runs fast without autovectorisation: k in
/// chunks whose x panel stays in cache, 4 × 4 output tiles accumulated in registers over contiguous k.
fn matmul_cols(x: &[f32], m: usize, w: &[f32], k: usize, j0: usize, j1: usize) -> Vec<f32> {
    const KC: usize = 512;
    let nc = j1 - j0;
    let mut y = vec![0f32; m * nc];
    for k0 in (0..k).step_by(KC) {
        let k1 = (k0 + KC).min(k);
        for jb in (j0..j1).step_by(4) {
            // Rows past the end repeat the last one; their results are dropped.
            let wr: [&[f32]; 4] = std::array::from_fn(|t| {
                let j = (jb + t).min(j1 - 1);
                &w[j * k + k0..j * k + k1]
            });
            for ib in (0..m).step_by(4) {
                let xr: [&[f32]; 4] = std::array::from_fn(|t| {
                    let i = (ib + t).min(m - 1);
                    &x[i * k + k0..i * k + k1]
                });
                let acc = tile4x4(xr, wr);
                for (a, row) in acc.iter().enumerate().take(m - ib) {
                    for (b, v) in row.iter().enumerate().take(j1 - jb) {
                        y[(ib + a) * nc + jb - j0 + b] += v;
                    }
                }
            }
        }
    }
    y
}

/// `acc[a][b] = Σ_t x[a][t] · w[b][t]`.
fn tile4x4(x: [&[f32]; 4], w: [&[f32]; 4]) -> [[f32; 4]; 4] {
    let n = x[0].len();
    let (x0, x1, x2, x3) = (&x[0][..n], &x[1][..n], &x[2][..n], &x[3][..n]);
    let (w0, w1, w2, w3) = (&w[0][..n], &w[1][..n], &w[2][..n], &w[3][..n]);
    let mut acc = [[0f32; 4]; 4];
    for t in 0..n {
        let xv = [x0[t], x1[t], x2[t], x3[t]];
        let wv = [w0[t], w1[t], w2[t], w3[t]];
        for a in 0..4 {
            for b in 0..4 {
                acc[a][b] += xv[a] * wv[b];
            }
        }
    }
    acc
}

/// `(x - mean) / √(var + eps)` per row of width `d`, statistics in f64.
fn layer_norm(x: &[f32], d: usize, eps: f64) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let r = 1.0 / (var + eps).sqrt();
        for (o, &v) in yr.iter_mut().zip(xr) {
            *o = ((v as f64 - mean) * r) as f32;
        }
    }
    y
}

/// `x / √(mean(x²) + eps) · w` per row, over the whole width (not per head).
fn rms_norm(x: &mut [f32], w: &[f32], eps: f64) {
    let d = w.len();
    for xr in x.chunks_exact_mut(d) {
        let ms = xr.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / d as f64;
        let r = 1.0 / (ms + eps).sqrt();
        for (v, &g) in xr.iter_mut().zip(w) {
            *v = (*v as f64 * r * g as f64) as f32;
        }
    }
}

fn gelu_tanh(x: f32) -> f32 {
    let x = x as f64;
    let c = (2.0 / std::f64::consts::PI).sqrt();
    (0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())) as f32
}

/// Angles of every row and rotation pair (§4.6): video pairs split 22/21/21 over (frame, row, column) with
/// ω_i = 10000^(-2i / (2·pairs of the group)); audio rows rotate the first group at position p with ω_i · scale
/// and leave the rest unrotated.
fn rope_angles(grid: [usize; 3], audio: usize, head_dim: usize, audio_scale: f64) -> Vec<Vec<f64>> {
    let c = head_dim / 2;
    let groups = [c - 2 * (c / 3), c / 3, c / 3];
    let omegas = |n: usize| -> Vec<f64> { (0..n).map(|i| 10000f64.powf(-((2 * i) as f64) / (2 * n) as f64)).collect() };
    let [f, h, w] = grid;
    let mut rows = Vec::new();
    for r in 0..f * h * w {
        let pos = [r / (h * w), (r / w) % h, r % w];
        let mut a = Vec::with_capacity(c);
        for (gi, &n) in groups.iter().enumerate() {
            a.extend(omegas(n).iter().map(|o| pos[gi] as f64 * o));
        }
        rows.push(a);
    }
    for p in 0..audio {
        let mut a: Vec<f64> = omegas(groups[0]).iter().map(|o| p as f64 * o * audio_scale).collect();
        a.resize(c, 0.0);
        rows.push(a);
    }
    rows
}

/// Rotates adjacent pairs `(x[2i], x[2i+1])` of every head of `x[L, heads·head_dim]`.
fn rope(x: &mut [f32], angles: &[Vec<f64>], head_dim: usize) {
    let d = x.len() / angles.len();
    for (xr, ang) in x.chunks_exact_mut(d).zip(angles) {
        for head in xr.chunks_exact_mut(head_dim) {
            for (p, &th) in ang.iter().enumerate() {
                let (a, b) = (head[2 * p] as f64, head[2 * p + 1] as f64);
                let (s, c) = th.sin_cos();
                head[2 * p] = (a * c - b * s) as f32;
                head[2 * p + 1] = (a * s + b * c) as f32;
            }
        }
    }
}

/// Softmax attention with scale 1/√head_dim, scores and sums in f64: query rows `qr` of `q` attend key rows `kr`
/// of `k`/`v`; every row is `heads · head_dim = d` wide. Returns `[qr.len(), d]`.
fn attend(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d: usize,
    heads: usize,
    qr: std::ops::Range<usize>,
    kr: std::ops::Range<usize>,
) -> Vec<f32> {
    let hd = d / heads;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut out = vec![0f32; qr.len() * d];
    let mut s = vec![0f64; kr.len()];
    for (oi, i) in qr.enumerate() {
        for h in 0..heads {
            let qh = &q[i * d + h * hd..i * d + (h + 1) * hd];
            for (sj, j) in s.iter_mut().zip(kr.clone()) {
                let kh = &k[j * d + h * hd..j * d + (h + 1) * hd];
                *sj = qh.iter().zip(kh).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale;
            }
            let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let mut acc = vec![0f64; hd];
            let mut total = 0.0;
            for (&sj, j) in s.iter().zip(kr.clone()) {
                let p = (sj - max).exp();
                total += p;
                for (a, &vv) in acc.iter_mut().zip(&v[j * d + h * hd..j * d + (h + 1) * hd]) {
                    *a += p * vv as f64;
                }
            }
            for (o, a) in out[oi * d + h * hd..oi * d + (h + 1) * hd].iter_mut().zip(&acc) {
                *o = (a / total) as f32;
            }
        }
    }
    out
}

/// q, k, v, o and the RMS norms of q and k, of one modality (or shared).
struct RefAttn<'a> {
    q: Lin<'a>,
    k: Lin<'a>,
    v: Lin<'a>,
    o: Lin<'a>,
    norm_q: &'a [f32],
    norm_k: &'a [f32],
}

impl<'a> RefAttn<'a> {
    fn new(w: &'a Weights, scope: &str, sfx: &str) -> Self {
        Self {
            q: w.lin(&format!("{scope}.q{sfx}")),
            k: w.lin(&format!("{scope}.k{sfx}")),
            v: w.lin(&format!("{scope}.v{sfx}")),
            o: w.lin(&format!("{scope}.o{sfx}")),
            norm_q: w.get(&format!("{scope}.norm_q{sfx}.weight")),
            norm_k: w.get(&format!("{scope}.norm_k{sfx}.weight")),
        }
    }

    /// `RMS(x·Wqᵀ + bq)`.
    fn query(&self, x: &[f32], eps: f64) -> Vec<f32> {
        let mut q = self.q.apply(x);
        rms_norm(&mut q, self.norm_q, eps);
        q
    }

    /// `RMS(x·Wkᵀ + bk)`, `x·Wvᵀ + bv`.
    fn key_value(&self, x: &[f32], eps: f64) -> (Vec<f32>, Vec<f32>) {
        let mut k = self.k.apply(x);
        rms_norm(&mut k, self.norm_k, eps);
        (k, self.v.apply(x))
    }
}

/// One block for the reference: `[video, audio]` sets of attention weights and modulation tables (double), or
/// one shared set (single).
struct RefBlock<'a> {
    self_attn: Vec<RefAttn<'a>>,
    cross_attn: Vec<RefAttn<'a>>,
    norm3: (&'a [f32], &'a [f32]),
    ffn: [Lin<'a>; 2],
    modulation: Vec<&'a [f32]>,
}

impl<'a> RefBlock<'a> {
    fn new(w: &'a Weights, double: bool) -> Self {
        let sfx: &[&str] = if double { &["", "_audio"] } else { &[""] };
        Self {
            self_attn: sfx.iter().map(|s| RefAttn::new(w, "self_attn", s)).collect(),
            cross_attn: sfx.iter().map(|s| RefAttn::new(w, "cross_attn", s)).collect(),
            norm3: (w.get("norm3.weight"), w.get("norm3.bias")),
            ffn: [w.lin("ffn.0"), w.lin("ffn.2")],
            modulation: ["modulation.modulation", "modulation_audio.modulation"][..sfx.len()]
                .iter()
                .map(|k| w.get(k))
                .collect(),
        }
    }

    /// Which weight set rows of modality `m` use.
    fn set(&self, m: Modality) -> usize {
        match m {
            Modality::Audio if self.self_attn.len() == 2 => 1,
            _ => 0,
        }
    }

    /// The block's output `x` for each attention mode in `masked` (false: joint; true: video attends video only
    /// and audio audio only). The steps before the attention are shared by the modes.
    fn forward(
        &self,
        c: &DitConfig,
        x: &[f32],
        rows: &Rows,
        e0: &[f32],
        ctx: &[f32],
        masked: &[bool],
    ) -> Vec<Vec<f32>> {
        let (d, l, heads, eps) = (c.dim, rows.total(), c.num_heads, c.eps);
        // (shift, scale, gate) of the attention, then of the FFN: table + e0 of the segment's timestep.
        let mods: Vec<Vec<f32>> = rows
            .segments
            .iter()
            .map(|s| {
                let e = &e0[s.t_index * 6 * d..(s.t_index + 1) * 6 * d];
                self.modulation[self.set(s.modality)].iter().zip(e).map(|(a, b)| a + b).collect()
            })
            .collect();
        // LN(x)·(1 + scale) + shift with chunks (j, j + 1) of each segment's modulation.
        let modulate = |x: &[f32], j: usize| -> Vec<f32> {
            let mut h = layer_norm(x, d, eps);
            for (s, m) in rows.segments.iter().zip(&mods) {
                for r in s.rows.clone() {
                    for i in 0..d {
                        h[r * d + i] = h[r * d + i] * (1.0 + m[(j + 1) * d + i]) + m[j * d + i];
                    }
                }
            }
            h
        };
        // x[rows of s] += y[rows of s] ⊙ gate chunk j of s.
        let gated_add = |x: &mut [f32], y: &[f32], j: usize| {
            for (s, m) in rows.segments.iter().zip(&mods) {
                for r in s.rows.clone() {
                    for i in 0..d {
                        x[r * d + i] += y[r * d + i] * m[j * d + i];
                    }
                }
            }
        };
        let h = modulate(x, 0);
        let (mut q, mut k, mut v) = (vec![0f32; l * d], vec![0f32; l * d], vec![0f32; l * d]);
        for m in [Modality::Video, Modality::Audio] {
            let r = rows.range(m);
            let a = &self.self_attn[self.set(m)];
            let hr = &h[r.start * d..r.end * d];
            let (km, vm) = a.key_value(hr, eps);
            q[r.start * d..r.end * d].copy_from_slice(&a.query(hr, eps));
            k[r.start * d..r.end * d].copy_from_slice(&km);
            v[r.start * d..r.end * d].copy_from_slice(&vm);
        }
        let angles = rope_angles(rows.grid, rows.audio, c.head_dim(), c.temporal_rope_scaling_factor);
        rope(&mut q, &angles, c.head_dim());
        rope(&mut k, &angles, c.head_dim());
        let n_ctx = ctx.len() / d;
        let cross_kv: Vec<(Vec<f32>, Vec<f32>)> = self.cross_attn.iter().map(|a| a.key_value(ctx, eps)).collect();

        masked
            .iter()
            .map(|&masked| {
                // Blocks of rows that attend only each other.
                let parts: Vec<std::ops::Range<usize>> = if masked {
                    vec![rows.range(Modality::Video), rows.range(Modality::Audio)]
                } else {
                    std::iter::once(0..l).collect()
                };
                let mut o = vec![0f32; l * d];
                for r in parts {
                    let part = attend(&q, &k, &v, d, heads, r.clone(), r.clone());
                    o[r.start * d..r.end * d].copy_from_slice(&part);
                }
                let mut x = x.to_vec();
                let mut y = vec![0f32; l * d];
                for m in [Modality::Video, Modality::Audio] {
                    let r = rows.range(m);
                    let ym = self.self_attn[self.set(m)].o.apply(&o[r.start * d..r.end * d]);
                    y[r.start * d..r.end * d].copy_from_slice(&ym);
                }
                gated_add(&mut x, &y, 2);
                // Text cross-attention on the affine norm3 of x: no RoPE, no gate.
                let mut n = layer_norm(&x, d, eps);
                for row in n.chunks_exact_mut(d) {
                    for ((v, w), b) in row.iter_mut().zip(self.norm3.0).zip(self.norm3.1) {
                        *v = *v * w + b;
                    }
                }
                for m in [Modality::Video, Modality::Audio] {
                    let r = rows.range(m);
                    let a = &self.cross_attn[self.set(m)];
                    let (ck, cv) = &cross_kv[self.set(m)];
                    let qm = a.query(&n[r.start * d..r.end * d], eps);
                    let om = attend(&qm, ck, cv, d, heads, 0..r.len(), 0..n_ctx);
                    for (xv, yv) in x[r.start * d..r.end * d].iter_mut().zip(a.o.apply(&om)) {
                        *xv += yv;
                    }
                }
                let mut f = self.ffn[0].apply(&modulate(&x, 3));
                f.iter_mut().for_each(|v| *v = gelu_tanh(*v));
                gated_add(&mut x, &self.ffn[1].apply(&f), 5);
                x
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The cases.

/// Seeded inputs of one block call.
struct Inputs {
    /// `[L, dim]`.
    x: Vec<f32>,
    /// `[timesteps, 6·dim]`.
    e0: Vec<f32>,
    /// `[ctx_rows, dim]`.
    ctx: Vec<f32>,
}

impl Inputs {
    fn new(c: &DitConfig, rows: &Rows, ctx_rows: usize, seed: u64) -> Self {
        let steps = rows.segments.iter().map(|s| s.t_index + 1).max().unwrap_or(1);
        Self {
            x: uniform(seed, rows.total() * c.dim),
            e0: uniform(seed + 1, steps * 6 * c.dim).iter().map(|v| 0.5 * v).collect(),
            ctx: uniform(seed + 2, ctx_rows * c.dim),
        }
    }

    fn time(&self, g: &Gpu, c: &DitConfig) -> Time {
        let steps = self.e0.len() / (6 * c.dim);
        Time {
            // The blocks read only e0; e is the heads'.
            e: g.upload_f32("e", &vec![0.0; steps * c.dim], &[steps, c.dim]).unwrap(),
            e0: g.upload_f32("e0", &self.e0, &[steps, 6 * c.dim]).unwrap(),
        }
    }
}

/// Text-to-video rows: every video row and every audio row at timestep 0.
fn t2v_rows(grid: [usize; 3], audio: usize) -> Rows {
    let video = grid.iter().product();
    Rows {
        grid,
        video,
        audio,
        segments: vec![
            Segment { rows: 0..video, modality: Modality::Video, t_index: 0 },
            Segment { rows: video..video + audio, modality: Modality::Audio, t_index: 0 },
        ],
        copies: 1,
    }
}

/// Image-to-video rows: the first latent frame at timestep 1 (t = 0, clean), the rest at timestep 0.
fn i2v_rows(grid: [usize; 3], audio: usize) -> Rows {
    let video = grid.iter().product();
    let frame = grid[1] * grid[2];
    Rows {
        grid,
        video,
        audio,
        segments: vec![
            Segment { rows: 0..frame, modality: Modality::Video, t_index: 1 },
            Segment { rows: frame..video, modality: Modality::Video, t_index: 0 },
            Segment { rows: video..video + audio, modality: Modality::Audio, t_index: 0 },
        ],
        copies: 1,
    }
}

/// The FFN weights must not fit one storage binding, so the blocks exercise the GEMM's weight split. Asserted on
/// lavapipe (128 MiB bindings), the adapter these tests are made for; an adapter with larger bindings still runs
/// the comparison, without the split.
fn check_split_is_exercised(g: &Gpu, c: &DitConfig) {
    let ffn_bytes = (c.ffn_dim * c.dim * 4) as u64;
    let split = ffn_bytes > g.max_binding();
    println!(
        "adapter {} ({}): max_storage_buffer_binding_size {} MiB; FFN weight {} MiB: {}",
        g.adapter.name,
        g.adapter.backend,
        g.max_binding() >> 20,
        ffn_bytes >> 20,
        if split { "split over bindings" } else { "fits one binding, the split is NOT exercised here" }
    );
    if g.adapter.name.contains("llvmpipe") {
        assert!(split, "the FFN weight fits one binding on lavapipe: the split is not tested");
    }
}

/// Runs `forward` on a fresh upload of `x` and reads the result.
fn run_gpu(g: &Gpu, x: &[f32], d: usize, forward: impl Fn(&GpuTensor) -> Result<(), ModelError>) -> Vec<f32> {
    let t = g.upload_f32("x", x, &[x.len() / d, d]).unwrap();
    forward(&t).unwrap();
    g.read_f32_blocking(&t).unwrap()
}

/// Prints and checks the largest error relative to the largest |reference|; returns it.
fn compare(what: &str, got: &[f32], want: &[f32], x: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (mut abs, mut at) = (0f32, 0);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs();
        if e > abs || e.is_nan() {
            (abs, at) = (if e.is_nan() { f32::INFINITY } else { e }, i);
        }
    }
    let change = x.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let rel = abs / scale;
    println!(
        "{what}: max |ref| {scale:.3}, max |ref - x_in| {change:.3}, max abs err {abs:.3e} (element {at}), \
         max rel err {rel:.3e} (tolerance {TOL_REL:.0e})"
    );
    assert!(change > 0.1, "{what}: the block barely changed x");
    assert!(rel <= TOL_REL, "{what}: element {at} is {} but the reference says {}", got[at], want[at]);
    rel
}

/// The masked pass must change the result by far more than the tolerance, or comparing it proves nothing.
fn check_modes_differ(what: &str, joint: &[f32], masked: &[f32]) {
    let scale = joint.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = joint.iter().zip(masked).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    println!("{what}: joint and masked references differ by {diff:.3e} relative");
    assert!(diff > 100.0 * TOL_REL, "{what}: masking the modalities hardly changes the block");
}

fn masked_segments(rows: &Rows) -> [AttnSegment; 2] {
    [AttnSegment::new(0, rows.video, 0, rows.video), AttnSegment::new(rows.video, rows.audio, rows.video, rows.audio)]
}

/// 2 latent frames of 8 × 10 tokens = 160 video rows, 27 audio rows (L = 187, not a multiple of any tile), 37
/// context rows.
const GRID: [usize; 3] = [2, 8, 10];
const AUDIO: usize = 27;
const CTX: usize = 37;

#[test]
fn double_block_at_nava_6b_width_matches_cpu_joint_and_masked() {
    let _s = serial();
    let g = gpu();
    let c = DitConfig::nava_6b();
    check_split_is_exercised(g, &c);
    let t = Instant::now();
    let w = Weights::random(&c, "double_blocks.0.", 1);
    let block = {
        let ck = w.checkpoint();
        DoubleBlock::load(g, Scope::root(&ck, "").scope("double_blocks").get().at(0).get(), &c, WeightFormat::F32)
            .unwrap()
    };
    println!("double block: {} MiB of f32 weights made and loaded in {:.1?}", w.bytes() >> 20, t.elapsed());

    let rows = t2v_rows(GRID, AUDIO);
    let inp = Inputs::new(&c, &rows, CTX, 10);
    let t = Instant::now();
    let time = inp.time(g, &c);
    let ctx = g.upload_f32("ctx", &inp.ctx, &[CTX, c.dim]).unwrap();
    let kv = block.cross_kv(g, &ctx, c.num_heads, c.eps as f32).unwrap();
    let rope = RopeLayout::new(g, &c, &rows).unwrap();
    let segs = masked_segments(&rows);
    let modes = [false, true];
    let got: Vec<Vec<f32>> = modes
        .iter()
        .map(|&m| {
            run_gpu(g, &inp.x, c.dim, |x| block.forward(g, &c, x, &rows, &time, &[&kv], &rope, m.then_some(&segs[..])))
        })
        .collect();
    println!("double block: {} rows, 2 forwards on the adapter in {:.1?}", rows.total(), t.elapsed());
    drop(block);

    let t = Instant::now();
    let want = RefBlock::new(&w, true).forward(&c, &inp.x, &rows, &inp.e0, &inp.ctx, &modes);
    println!("double block: CPU reference in {:.1?}", t.elapsed());
    compare("double block, joint attention", &got[0], &want[0], &inp.x);
    compare("double block, modality-masked attention", &got[1], &want[1], &inp.x);
    check_modes_differ("double block", &want[0], &want[1]);
    g.trim();
}

#[test]
fn single_block_at_nava_6b_width_matches_cpu_i2v_joint_and_masked() {
    let _s = serial();
    let g = gpu();
    let c = DitConfig::nava_6b();
    check_split_is_exercised(g, &c);
    let t = Instant::now();
    let w = Weights::random(&c, "single_blocks.0.", 2);
    let block = {
        let ck = w.checkpoint();
        SingleBlock::load(g, Scope::root(&ck, "").scope("single_blocks").get().at(0).get(), &c, WeightFormat::F32)
            .unwrap()
    };
    println!("single block: {} MiB of f32 weights made and loaded in {:.1?}", w.bytes() >> 20, t.elapsed());

    let rows = i2v_rows(GRID, AUDIO);
    let inp = Inputs::new(&c, &rows, CTX, 20);
    let t = Instant::now();
    let time = inp.time(g, &c);
    let ctx = g.upload_f32("ctx", &inp.ctx, &[CTX, c.dim]).unwrap();
    let kv = block.cross_kv(g, &ctx, c.num_heads, c.eps as f32).unwrap();
    let rope = RopeLayout::new(g, &c, &rows).unwrap();
    let segs = masked_segments(&rows);
    let modes = [false, true];
    let got: Vec<Vec<f32>> = modes
        .iter()
        .map(|&m| {
            run_gpu(g, &inp.x, c.dim, |x| block.forward(g, &c, x, &rows, &time, &[&kv], &rope, m.then_some(&segs[..])))
        })
        .collect();
    println!("single block: {} rows, 2 forwards on the adapter in {:.1?}", rows.total(), t.elapsed());
    drop(block);

    let t = Instant::now();
    let want = RefBlock::new(&w, false).forward(&c, &inp.x, &rows, &inp.e0, &inp.ctx, &modes);
    println!("single block: CPU reference in {:.1?}", t.elapsed());
    compare("single block (I2V timesteps), joint attention", &got[0], &want[0], &inp.x);
    compare("single block (I2V timesteps), modality-masked attention", &got[1], &want[1], &inp.x);
    check_modes_differ("single block", &want[0], &want[1]);
    g.trim();
}
