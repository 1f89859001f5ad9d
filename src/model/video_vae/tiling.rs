//! Spatial tiling of the Wan2.2 VAE decode — the NAVA copy's `Wan2_2_VAE.tiled_decode` / `build_mask`
//! (vae2_2.py), NAVA.md §7.1 — and the GPU memory a decode needs.
//!
//! Tiles are latent windows of `tile` cells placed every `stride` cells (a window whose predecessor already
//! reaches the edge is skipped, as the reference's task loop does); each is decoded on its own, clamped, weighted
//! by a mask that ramps (k + 1)/border over `(tile − stride)·16` pixels at edges that meet another tile (the
//! minimum of the row and column ramps), summed on the host and divided by the summed weights, then clamped.
//!
//! [`decode_peak_bytes`] walks the allocations of one decode (weights, the latent, the chunk caches of every
//! causal convolution, and the largest set of intermediates alive at once) with the buffer pool's size classes;
//! it computes, it does not allocate. [`Tiling::for_budget`] picks the largest tile that fits a budget.

use crate::gpu::{Gpu, GpuTensor};

use super::stacks::{decoder_dims, temporal_up};
use super::{Frame, FrameSink, VaeConfig, VideoVae};
use crate::model::ModelError;

/// Latent tile size and stride (rows, columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiling {
    pub tile: [usize; 2],
    pub stride: [usize; 2],
}

impl Tiling {
    /// `inference_nava.py`'s default: tiles of 22×40 latent cells every 14×26.
    pub const CLI_DEFAULT: Tiling = Tiling { tile: [22, 40], stride: [14, 26] };
    /// `pipeline_nava.sample`'s default: 44×80 every 28×52.
    pub const PIPELINE_DEFAULT: Tiling = Tiling { tile: [44, 80], stride: [28, 52] };

    pub fn new(tile: [usize; 2], stride: [usize; 2]) -> Result<Self, ModelError> {
        if tile.contains(&0) || stride.contains(&0) || stride[0] > tile[0] || stride[1] > tile[1] {
            return Err(ModelError::Input {
                what: "VAE tiling".into(),
                problem: format!("tile {tile:?} with stride {stride:?}: need 1 ≤ stride ≤ tile on both axes"),
            });
        }
        Ok(Self { tile, stride })
    }

    /// The overlap ratio of the CLI default (8/22 of the rows, 14/40 of the columns) at another tile size.
    pub fn with_tile(tile: [usize; 2]) -> Self {
        let overlap = |t: usize, num: usize, den: usize| if t < 2 { 0 } else { (t * num / den).clamp(1, t - 1) };
        let (oh, ow) = (overlap(tile[0], 8, 22), overlap(tile[1], 14, 40));
        Self { tile, stride: [tile[0] - oh, tile[1] - ow] }
    }

    /// The reference's tile windows `(h0, h1, w0, w1)` over an `h × w` latent.
    pub fn tasks(&self, h: usize, w: usize) -> Vec<(usize, usize, usize, usize)> {
        let [sh, sw] = self.tile;
        let [th, tw] = self.stride;
        let mut tasks = Vec::new();
        for r in (0..h).step_by(th) {
            if r >= th && r - th + sh >= h {
                continue;
            }
            for c in (0..w).step_by(tw) {
                if c >= tw && c - tw + sw >= w {
                    continue;
                }
                tasks.push((r, (r + sh).min(h), c, (c + sw).min(w)));
            }
        }
        tasks
    }

    /// The largest tile (the CLI default's aspect and overlap ratio, or no tiling) whose decode of an `h × w` latent
    /// fits `budget_bytes` of GPU memory. `None` means the untiled decode fits.
    pub fn for_budget(
        config: &VaeConfig,
        [h, w]: [usize; 2],
        latent_frames: usize,
        budget_bytes: u64,
    ) -> Result<Option<Tiling>, ModelError> {
        if decode_peak_bytes(config, [h, w], latent_frames, None).total <= budget_bytes {
            return Ok(None);
        }
        // Shrink the tile area step by step, keeping its aspect, down to 2 latent cells a side (or the latent's).
        let smallest = [h.min(2), w.min(2)];
        let mut th = h;
        while th >= smallest[0] && th > 0 {
            let tw = (th * w).div_ceil(h).max(smallest[1]).min(w);
            let t = Tiling::with_tile([th, tw]);
            if decode_peak_bytes(config, [h, w], latent_frames, Some(&t)).total <= budget_bytes {
                return Ok(Some(t));
            }
            th = if th > 8 { th * 7 / 8 } else { th - 1 };
        }
        let need = decode_peak_bytes(config, [h, w], latent_frames, Some(&Tiling::with_tile(smallest))).total;
        Err(ModelError::Input {
            what: "GPU memory".into(),
            problem: format!(
                "decoding a {h}×{w} latent needs at least {:.2} GiB even in the smallest tiles; the budget is {:.2} \
                 GiB",
                need as f64 / GIB,
                budget_bytes as f64 / GIB
            ),
        })
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// `build_1d_mask`: ones, rising (k + 1)/border over the first `border` samples unless `left_bound`, falling over
/// the last `border` unless `right_bound` (the second ramp overwrites the first where they overlap).
pub fn mask_1d(len: usize, left_bound: bool, right_bound: bool, border: usize) -> Vec<f32> {
    let mut m = vec![1.0f32; len];
    let b = border.min(len);
    if border > 0 {
        if !left_bound {
            for (k, v) in m.iter_mut().take(b).enumerate() {
                *v = (k + 1) as f32 / border as f32;
            }
        }
        if !right_bound {
            for k in 0..b {
                m[len - 1 - k] = (k + 1) as f32 / border as f32;
            }
        }
    }
    m
}

/// Decodes tile after tile and blends them on the host (`Wan2_2_VAE.tiled_decode`).
pub(super) async fn decode_tiled(
    vae: &VideoVae,
    g: &Gpu,
    latents: &GpuTensor,
    tiling: &Tiling,
    on_frame: &mut FrameSink<'_>,
) -> Result<(), ModelError> {
    let [zc, f, h, w] = vae.check_latents(latents)?;
    let tiling = &Tiling::new(tiling.tile, tiling.stride)?; // the fields are public: check them here too
    let z = g.read_f32(latents).await?;
    let up = vae.config.spatial_factor();
    let (out_t, out_h, out_w) = (vae.pixel_frames(f), h * up, w * up);
    let plane = out_h * out_w;
    let mut values = vec![0.0f32; 3 * out_t * plane];
    let mut weight = vec![0.0f32; plane];
    let border = [(tiling.tile[0] - tiling.stride[0]) * up, (tiling.tile[1] - tiling.stride[1]) * up];
    for (h0, h1, w0, w1) in tiling.tasks(h, w) {
        let (th, tw) = (h1 - h0, w1 - w0);
        let mut tile = Vec::with_capacity(zc * f * th * tw);
        for cf in 0..zc * f {
            for r in h0..h1 {
                let row = (cf * h + r) * w;
                tile.extend_from_slice(&z[row + w0..row + w1]);
            }
        }
        let tile = g.upload_f32("vae latent tile", &tile, &[zc, f, th, tw])?;
        let (ph, pw) = (th * up, tw * up);
        let mh = mask_1d(ph, h0 == 0, h1 >= h, border[0]);
        let mw = mask_1d(pw, w0 == 0, w1 >= w, border[1]);
        let mask: Vec<f32> = (0..ph * pw).map(|i| mh[i / pw].min(mw[i % pw])).collect();
        for (i, &m) in mask.iter().enumerate() {
            weight[(h0 * up + i / pw) * out_w + w0 * up + i % pw] += m;
        }
        let mut dec = vae.chunk_decoder(g, &tile, None)?;
        while let Some((first, rgb)) = dec.next_chunk(g, None)? {
            let t = rgb.shape()[1];
            let v = g.read_f32(&rgb).await?;
            for c in 0..3 {
                for k in 0..t {
                    let src = &v[(c * t + k) * ph * pw..(c * t + k + 1) * ph * pw];
                    let dst = (c * out_t + first + k) * plane;
                    for (i, (&x, &m)) in src.iter().zip(&mask).enumerate() {
                        values[dst + (h0 * up + i / pw) * out_w + w0 * up + i % pw] += x.clamp(-1.0, 1.0) * m;
                    }
                }
            }
        }
    }
    for k in 0..out_t {
        let mut data = Vec::with_capacity(3 * plane);
        for c in 0..3 {
            let src = &values[(c * out_t + k) * plane..(c * out_t + k + 1) * plane];
            data.extend(src.iter().zip(&weight).map(|(&v, &wt)| (v / wt).clamp(-1.0, 1.0)));
        }
        on_frame(k, Frame { height: out_h, width: out_w, data })?;
    }
    Ok(())
}

/// The GPU memory of one decode, in bytes (pool size classes included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeMemory {
    /// Decoder, `conv2` and the normalisation constants, f32.
    pub weights: u64,
    /// The latent and its un-normalised, `conv2`-ed frame-major copies (of one tile when tiled).
    pub latents: u64,
    /// Every causal convolution's 2-frame chunk cache.
    pub caches: u64,
    /// The largest set of intermediates alive at once.
    pub working: u64,
    pub total: u64,
}

/// The buffer pool's size class of a request (`gpu::pool`): powers of two split in eight steps.
fn class(bytes: u64) -> u64 {
    let bytes = bytes.max(16).div_ceil(4) * 4;
    if bytes <= 1024 {
        return bytes.next_power_of_two();
    }
    let top = 63 - bytes.leading_zeros() as u64;
    let step = 1u64 << (top - 3);
    bytes.div_ceil(step) * step
}

/// f32 bytes of `[c, t, s]`, as a pooled allocation.
fn act(c: usize, t: usize, s: usize) -> u64 {
    class(4 * (c * t * s) as u64)
}

/// Peak GPU bytes of decoding an `h × w` latent of `latent_frames` frames with the decoder loaded alone (the
/// encoder, when loaded too, adds its weights), untiled or in `tiling`'s tiles. Frames go to the host per chunk,
/// so the frame count only enters through the latent.
pub fn decode_peak_bytes(
    config: &VaeConfig,
    [h, w]: [usize; 2],
    latent_frames: usize,
    tiling: Option<&Tiling>,
) -> DecodeMemory {
    let weights: u64 = config
        .key_table()
        .iter()
        .filter(|(k, _)| k.starts_with("decoder.") || k.starts_with("conv2."))
        .map(|(_, s)| class(4 * s.iter().product::<usize>() as u64))
        .sum::<u64>()
        + 4 * class(4 * config.z_dim as u64);
    let (th, tw) = match tiling {
        Some(t) => (t.tile[0].min(h), t.tile[1].min(w)),
        None => (h, w),
    };
    let z = config.z_dim;
    let f = latent_frames.max(1);
    // The caller's latent (and, tiled, the tile's copy) and conv2's frame-major output stay for the whole decode;
    // the un-normalised copy and conv2's output exist until the first submit.
    let whole = act(z, f, h * w);
    let tile = act(z, f, th * tw);
    let latents = whole + if tiling.is_some() { tile } else { 0 } + tile;
    let mut working = 2 * tile;

    // Launches keep their buffers alive until the next submit (once per block): each step below counts every
    // buffer it allocates plus the inputs alive across it; old caches are in `caches`, new ones in the step.
    let d = decoder_dims(config);
    let n = config.dim_mult.len();
    let s0 = th * tw;
    let cache = |c: usize, s: usize| act(c, 2, s);
    let mut caches = cache(z, s0);
    // Chunk 0 has no submit between conv1 and the first residual block.
    let conv1 = act(d[0], 1, s0) + cache(z, s0);
    let res_block = |caches: &mut u64, held: u64, cin: usize, cout: usize, t: usize, s: usize| -> u64 {
        *caches += cache(cin, s) + cache(cout, s);
        let x = act(cin, t, s);
        let h = if cin != cout { act(cout, t, s) } else { 0 };
        held + x + h + act(cin, t, s) + cache(cin, s) + 3 * act(cout, t, s) + cache(cout, s)
    };
    working = working.max(res_block(&mut caches, conv1, d[0], d[0], 1, s0));
    let c0 = d[0];
    // Attention: x, normed, qkv, scores, per-frame output, gathered output, projection.
    working = working.max(5 * act(c0, 1, s0) + act(3 * c0, 1, s0) + class(4 * (s0 * s0) as u64));
    working = working.max(res_block(&mut caches, 0, d[0], d[0], 1, s0));
    let (mut t, mut s) = (1usize, s0);
    for i in 0..n {
        let (cin, cout) = (d[i], d[i + 1]);
        let block_in = act(cin, t, s);
        let mut c = cin;
        for _ in 0..config.num_res_blocks + 1 {
            working = working.max(res_block(&mut caches, block_in, c, cout, t, s));
            c = cout;
        }
        if i != n - 1 {
            let y = act(cout, t, s);
            let mut step = block_in + y;
            let mut t2 = t;
            if temporal_up(config, i) {
                caches += cache(cout, s);
                // time_conv output (2C), its new cache, the interleaved copy.
                step += act(2 * cout, t, s) + cache(cout, s) + act(cout, 2 * t, s);
                t2 = 2 * t;
            }
            // nearest ×2 and the 3×3 convolution; then the DupUp3D shortcut beside the result.
            working = working.max(step + 2 * act(cout, t2, 4 * s));
            working = working.max(block_in + 2 * act(cout, t2, 4 * s));
            t = t2;
            s *= 4;
        }
    }
    // Head: RMS+SiLU, the 3³ convolution to 12 channels and its new cache, the 2×2 unpatchify, all in one step.
    let cl = d[n];
    caches += cache(cl, s);
    working = working.max(2 * act(cl, t, s) + cache(cl, s) + act(12, t, s) + act(3, t, 4 * s));
    let total = weights + latents + caches + working;
    DecodeMemory { weights, latents, caches, working, total }
}
