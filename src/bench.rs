//! Measurement routines behind `nava bench` and `benches/`: each builds seeded random inputs at the requested
//! size, warms up, times whole batches with a wait for the GPU, and reports throughput and peak GPU memory.

use std::time::Instant;

use crate::gpu::Gpu;
use crate::kernels::gemm::{gemm, Epilogue, Weight, WeightFormat};
use crate::kernels::KernelError;

#[derive(Clone, Debug)]
pub struct BenchResult {
    pub label: String,
    pub iters: u32,
    pub seconds_per_iter: f64,
    pub flops_per_iter: f64,
    pub peak_gpu_bytes: u64,
}

impl BenchResult {
    pub fn gflops(&self) -> f64 {
        self.flops_per_iter / self.seconds_per_iter / 1e9
    }
}

/// Deterministic values in [-1, 1) without a random-number dependency.
pub fn seeded(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Runs `f` until about `budget_s` seconds have passed (at least `min_iters` times) after one warm-up call.
pub fn time_loop(
    g: &Gpu,
    budget_s: f64,
    min_iters: u32,
    mut f: impl FnMut() -> Result<(), KernelError>,
) -> Result<(u32, f64), KernelError> {
    f()?;
    g.wait()?;
    let start = Instant::now();
    let mut iters = 0;
    while iters < min_iters || start.elapsed().as_secs_f64() < budget_s {
        f()?;
        iters += 1;
        g.wait()?;
    }
    Ok((iters, start.elapsed().as_secs_f64() / iters as f64))
}

/// `y = x·Wᵀ` at `m × n × k` with the weight in `format`.
pub fn gemm_bench(
    g: &Gpu,
    m: usize,
    n: usize,
    k: usize,
    format: WeightFormat,
    budget_s: f64,
) -> Result<BenchResult, KernelError> {
    check_buffer(g, "gemm x", m * k)?;
    check_buffer(g, "gemm weight (f32 before packing)", n * k)?;
    check_buffer(g, "gemm output", m * n)?;
    let x = g.upload_f32("bench x", &seeded(1, m * k), &[m, k])?;
    let w = Weight::from_f32(g, "bench w", format, n, k, &seeded(2, n * k))?;
    g.reset_peak_memory();
    let (iters, s) = time_loop(g, budget_s, 2, || gemm(g, &x, &w, Epilogue::default()).map(drop))?;
    Ok(BenchResult {
        label: format!("gemm {m}x{n}x{k} {} [{}]", format.name(), crate::kernels::gemm::variant_label(g, format)),
        iters,
        seconds_per_iter: s,
        flops_per_iter: 2.0 * m as f64 * n as f64 * k as f64,
        peak_gpu_bytes: g.memory().peak_bytes,
    })
}

/// The denoiser's GEMMs per pass (NAVA.md §10.1) as (name, m, n, k) for `tokens` rows per pass: video and audio
/// rows split as at 704×1280 (32,560 + 152 of 32,712), the text context's 512 rows.
pub fn dit_gemm_shapes(tokens: usize) -> Vec<(&'static str, usize, usize, usize)> {
    const FULL: usize = 32_712;
    let audio = (tokens * 152).div_ceil(FULL).max(1).min(tokens);
    let video = tokens - audio;
    let mut v = vec![
        ("video patch embed", video, 3072, 192),
        ("block Q/K/V/O (video)", video, 3072, 3072),
        ("block Q/K/V/O (audio)", audio, 3072, 3072),
        ("cross-attn K/V of the context", 512, 3072, 3072),
        ("FFN up", tokens, 14_336, 3072),
        ("FFN down", tokens, 3072, 14_336),
        ("video head", video, 192, 3072),
    ];
    v.retain(|s| s.1 > 0);
    v
}

/// Tokens per pass for [`dit_gemm_shapes`] so that one FFN GEMM takes about `seconds` on this adapter (measured
/// with a 512-row probe in f32), between 16 and the 32,712 of 704×1280 × 6 s, a multiple of 16.
pub fn dit_tokens_for(g: &Gpu, seconds: f64) -> Result<usize, KernelError> {
    let probe = gemm_bench(g, 512, 3072, 3072, WeightFormat::F32, 0.2)?;
    let per_token = 2.0 * 14_336.0 * 3072.0 / (probe.gflops() * 1e9);
    let t = (seconds.max(0.05) / per_token) as usize / 16 * 16;
    Ok(t.clamp(16, 32_712))
}

/// The GEMM of [`gemm_bench`] checked on up to `rows` rows of y (evenly spaced, first and last included) against
/// an f64 CPU product of the same inputs and the weights as stored: returns max |y − ref| / max |ref|.
pub fn gemm_check(
    g: &Gpu,
    m: usize,
    n: usize,
    k: usize,
    format: WeightFormat,
    rows: usize,
) -> Result<f64, KernelError> {
    use crate::kernels::gemm::PackedWeight;
    check_buffer(g, "gemm x", m * k)?;
    check_buffer(g, "gemm weight (f32 before packing)", n * k)?;
    check_buffer(g, "gemm output", m * n)?;
    let xs = seeded(1, m * k);
    let packed = PackedWeight::quantize(format, n, k, &seeded(2, n * k));
    let x = g.upload_f32("check x", &xs, &[m, k])?;
    let w = Weight::upload(g, "check w", &packed)?;
    let y = gemm(g, &x, &w, Epilogue::default())?;
    let wd = packed.dequantize();
    let picks = rows.clamp(1, m);
    let (mut err, mut top) = (0.0f64, 0.0f64);
    for i in 0..picks {
        let r = if picks == 1 { 0 } else { i * (m - 1) / (picks - 1) };
        let Some(row) = y.rows(r, 1) else { continue };
        let got = g.read_f32_blocking(&row)?;
        for (c, &v) in got.iter().enumerate() {
            let want: f64 = (0..k).map(|j| xs[r * k + j] as f64 * wd[c * k + j] as f64).sum();
            err = err.max((v as f64 - want).abs());
            top = top.max(want.abs());
        }
    }
    Ok(err / top.max(f64::MIN_POSITIVE))
}

/// Refuses a tensor over the adapter's largest buffer before its host values are made (a benchmark of an
/// impossible size fails fast with the limit, not after filling gigabytes of host memory).
fn check_buffer(g: &Gpu, what: &str, n_elems: usize) -> Result<(), KernelError> {
    let bytes = 4 * n_elems as u64;
    let limit = g.limits.max_buffer_size;
    if bytes > limit {
        return Err(crate::gpu::GpuError::BufferTooLarge { what: what.to_string(), bytes, limit }.into());
    }
    Ok(())
}

/// The Wan2.2 VAE decoder's causal 3×3×3 convolution (`CausalConv3d(c, c, 3, padding=1)`, as in its residual
/// blocks) on x `[c, frames, h, w]` with the causal zero frames, weights `[c, c, 3, 3, 3]`. The convolutions run
/// in f32 whatever the format (as the VAE loads them); f16/bf16 round the weights to that precision first.
pub fn conv3d_bench(
    g: &Gpu,
    channels: usize,
    [frames, h, w]: [usize; 3],
    format: WeightFormat,
    budget_s: f64,
) -> Result<BenchResult, KernelError> {
    use crate::kernels::conv::{causal_conv3d, Conv3dArgs};
    let c = channels;
    check_buffer(g, "conv3d input", c * frames * h * w)?;
    check_buffer(g, "conv3d output", c * frames * h * w)?;
    let round = |v: f32| match format {
        WeightFormat::F16 => half::f16::from_f32(v).to_f32(),
        WeightFormat::BF16 => half::bf16::from_f32(v).to_f32(),
        _ => v,
    };
    if !matches!(format, WeightFormat::F32 | WeightFormat::F16 | WeightFormat::BF16) {
        return Err(KernelError::Unsupported {
            op: "causal_conv3d",
            what: format!("weights in {}: the VAE's convolutions take f32, f16 or bf16 values", format.name()),
        });
    }
    let x = g.upload_f32("bench conv3d x", &seeded(7, c * frames * h * w), &[c, frames, h, w])?;
    let weight: Vec<f32> = seeded(8, c * c * 27).into_iter().map(|v| round(v * 0.05)).collect();
    let weight = g.upload_f32("bench conv3d weight", &weight, &[c, c, 3, 3, 3])?;
    let bias = g.upload_f32("bench conv3d bias", &seeded(9, c), &[c])?;
    let args = Conv3dArgs { bias: Some(&bias), padding: [1, 1, 1], stride: [1, 1], cache: None };
    g.reset_peak_memory();
    let (iters, s) = time_loop(g, budget_s, 1, || causal_conv3d(g, &x, &weight, &args).map(drop))?;
    Ok(BenchResult {
        label: format!("causal_conv3d c{c} {frames}x{h}x{w} {}", format.name()),
        iters,
        seconds_per_iter: s,
        // Output values × (multiply + add) × inputs per value (c · 27).
        flops_per_iter: 2.0 * (c * frames * h * w) as f64 * (c * 27) as f64,
        peak_gpu_bytes: g.memory().peak_bytes,
    })
}

/// `y = A·B` (or `A·Bᵀ` with `trans_b`) between two f32 activations at `m × n × k`: the product the VAE's
/// single-head attention runs (`kernels::matmul`).
pub fn matmul_bench(g: &Gpu, [m, n, k]: [usize; 3], trans_b: bool, budget_s: f64) -> Result<BenchResult, KernelError> {
    use crate::kernels::matmul::{matmul, MatmulArgs};
    check_buffer(g, "matmul a", m * k)?;
    check_buffer(g, "matmul b", k * n)?;
    check_buffer(g, "matmul output", m * n)?;
    let a = g.upload_f32("bench matmul a", &seeded(11, m * k), &[m, k])?;
    let b = g.upload_f32("bench matmul b", &seeded(12, k * n), &if trans_b { [n, k] } else { [k, n] })?;
    let args = MatmulArgs { trans_a: false, trans_b, alpha: 1.0 };
    g.reset_peak_memory();
    let (iters, s) = time_loop(g, budget_s, 2, || matmul(g, &a, &b, args).map(drop))?;
    Ok(BenchResult {
        label: format!(
            "matmul {m}x{n}x{k}{} [{}]",
            if trans_b { " (b transposed)" } else { "" },
            crate::kernels::matmul::variant_label(g, n, k, trans_b)
        ),
        iters,
        seconds_per_iter: s,
        flops_per_iter: 2.0 * m as f64 * n as f64 * k as f64,
        peak_gpu_bytes: g.memory().peak_bytes,
    })
}

/// Attention of q `[lq, heads, d]` over k, v `[lk, heads, d]`.
pub fn attention_bench(
    g: &Gpu,
    heads: usize,
    lq: usize,
    lk: usize,
    d: usize,
    half: bool,
    budget_s: f64,
) -> Result<BenchResult, KernelError> {
    use crate::kernels::attention::{attention, variant_label, AttentionOptions};
    let q = g.upload_f32("bench q", &seeded(3, lq * heads * d), &[lq, heads, d])?;
    let k = g.upload_f32("bench k", &seeded(4, lk * heads * d), &[lk, heads, d])?;
    let v = g.upload_f32("bench v", &seeded(5, lk * heads * d), &[lk, heads, d])?;
    g.reset_peak_memory();
    let opts = AttentionOptions { half, ..Default::default() };
    let (iters, s) = time_loop(g, budget_s, 2, || attention(g, &q, &k, &v, opts).map(drop))?;
    Ok(BenchResult {
        label: format!("attention h{heads} lq{lq} lk{lk} d{d} [{}]", variant_label(g, half, d)),
        iters,
        seconds_per_iter: s,
        flops_per_iter: 4.0 * (lq * lk * d * heads) as f64,
        peak_gpu_bytes: g.memory().peak_bytes,
    })
}

/// The attention of [`attention_bench`] checked on up to `rows` query rows of head 0 (evenly spaced, first and
/// last included) against an f64 CPU softmax attention: returns max |o − ref| / max |ref|.
pub fn attention_check(
    g: &Gpu,
    heads: usize,
    lq: usize,
    lk: usize,
    d: usize,
    half: bool,
    rows: usize,
) -> Result<f64, KernelError> {
    use crate::kernels::attention::{attention, AttentionOptions};
    let (qs, ks, vs) = (seeded(3, lq * heads * d), seeded(4, lk * heads * d), seeded(5, lk * heads * d));
    let q = g.upload_f32("check q", &qs, &[lq, heads, d])?;
    let k = g.upload_f32("check k", &ks, &[lk, heads, d])?;
    let v = g.upload_f32("check v", &vs, &[lk, heads, d])?;
    let o = attention(g, &q, &k, &v, AttentionOptions { half, ..Default::default() })?;
    let picks = rows.clamp(1, lq);
    let scale = 1.0 / (d as f64).sqrt();
    let (mut err, mut top) = (0.0f64, 0.0f64);
    for i in 0..picks {
        let r = if picks == 1 { 0 } else { i * (lq - 1) / (picks - 1) };
        let Some(row) = o.rows(r, 1) else { continue };
        let got = g.read_f32_blocking(&row)?;
        let qi = &qs[r * heads * d..r * heads * d + d];
        let s: Vec<f64> =
            (0..lk).map(|j| (0..d).map(|c| qi[c] as f64 * ks[j * heads * d + c] as f64).sum::<f64>() * scale).collect();
        let m = s.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let sum: f64 = e.iter().sum();
        for c in 0..d {
            let want = (0..lk).map(|j| e[j] * vs[j * heads * d + c] as f64).sum::<f64>() / sum;
            err = err.max((got[c] as f64 - want).abs());
            top = top.max(want.abs());
        }
    }
    Ok(err / top.max(f64::MIN_POSITIVE))
}

/// Which DiT block to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    Double,
    Single,
}

/// One DiT block at the width of `config` (NAVA_6B by default) with seeded weights in `format`, over `tokens`
/// rows (video ≈ 99.5 % as a grid of 80-token rows, audio the rest, as at 720p) and a `text_len` context whose
/// keys and values are projected once outside the timed loop, as in generation.
pub fn block_bench(
    g: &Gpu,
    config: &crate::model::dit::DitConfig,
    kind: BlockKind,
    tokens: usize,
    format: WeightFormat,
    budget_s: f64,
) -> Result<BenchResult, crate::model::ModelError> {
    use crate::model::dit::{DoubleBlock, Modality, RopeLayout, Rows, Segment, SingleBlock, Time};
    use crate::weights::{Scope, SeededSource};
    let c = config;
    let d = c.dim;
    let prefix = match kind {
        BlockKind::Double => "double_blocks.0.",
        BlockKind::Single => "single_blocks.0.",
    };
    let table: crate::weights::KeyTable = c.key_table("").into_iter().filter(|(k, _)| k.starts_with(prefix)).collect();
    let src = SeededSource::new("seeded block", &table, 7);
    let scope = Scope::root(&src, prefix);
    // Video rows as whole rows of 80 tokens (a 1280-pixel-wide latent), so that every position stays inside the
    // 1024-entry RoPE tables; what does not fill a row joins the audio rows (about 0.5 % of them, as at 720p).
    const ROW: usize = 80;
    let avail = tokens.saturating_sub((tokens / 200).max(1)).max(1);
    let frames = avail.div_ceil(crate::kernels::rope::MAX_POSITIONS * ROW).max(1);
    let grid = match avail / (frames * ROW) {
        0 => [1, 1, avail],
        h => [frames, h, ROW],
    };
    let video: usize = grid.iter().product();
    let audio = tokens.saturating_sub(video).max(1);
    let rows = Rows {
        grid,
        video,
        audio,
        segments: vec![
            Segment { rows: 0..video, modality: Modality::Video, t_index: 0 },
            Segment { rows: video..video + audio, modality: Modality::Audio, t_index: 0 },
        ],
        copies: 1,
    };
    let l = rows.total();
    let time =
        Time { e: g.upload_f32("e", &seeded(8, d), &[1, d])?, e0: g.upload_f32("e0", &seeded(9, 6 * d), &[1, 6 * d])? };
    let rope = RopeLayout::new(g, c, &rows)?;
    let x = g.upload_f32("x", &seeded(10, l * d), &[l, d])?;
    let ctx = g.upload_f32("context", &seeded(11, c.text_len * d), &[c.text_len, d])?;
    let (heads, eps) = (c.num_heads, c.eps as f32);
    let weights_before = g.memory().live_bytes;
    let (iters, s) = match kind {
        BlockKind::Double => {
            let b = DoubleBlock::load(g, scope, c, format)?;
            let kv = b.cross_kv(g, &ctx, heads, eps)?;
            g.reset_peak_memory();
            time_loop(g, budget_s, 1, || {
                b.forward(g, c, &x, &rows, &time, &[&kv], &rope, None)
                    .map_err(|e| KernelError::Unsupported { op: "block bench", what: e.to_string() })
            })?
        }
        BlockKind::Single => {
            let b = SingleBlock::load(g, scope, c, format)?;
            let kv = b.cross_kv(g, &ctx, heads, eps)?;
            g.reset_peak_memory();
            time_loop(g, budget_s, 1, || {
                b.forward(g, c, &x, &rows, &time, &[&kv], &rope, None)
                    .map_err(|e| KernelError::Unsupported { op: "block bench", what: e.to_string() })
            })?
        }
    };
    let _ = weights_before;
    let (lf, df) = (l as f64, d as f64);
    let linear = 2.0 * lf * (6.0 * df * df + 2.0 * df * c.ffn_dim as f64);
    let attn = 4.0 * lf * lf * df + 4.0 * lf * c.text_len as f64 * df;
    Ok(BenchResult {
        label: format!("{kind:?} block d{d} L{l} {}", format.name()),
        iters,
        seconds_per_iter: s,
        flops_per_iter: linear + attn,
        peak_gpu_bytes: g.memory().peak_bytes,
    })
}
