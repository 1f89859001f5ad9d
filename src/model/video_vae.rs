//! Wan2.2 video VAE — reference `WanVAE_` and `Wan2_2_VAE` (Wan-Video/Wan2.2 `wan/modules/vae2_2.py`, as copied
//! into ernie-research/NAVA `nava_src/models/nava/modules/vae2_2.py` with its spatial tiling), NAVA.md §3.1, §3.4,
//! §7.1, §10.4. Keys have no prefix (`Wan2.2_VAE.pth`).
//!
//! Decoding un-normalises the 48-channel latent (`z · std + mean`), applies `conv2` (1×1×1) and runs the decoder
//! once per latent frame with the causal 2-frame cache of every convolution: the first chunk skips the temporal
//! upsample (1 frame), later chunks give 4, so F latent frames make 4(F − 1) + 1 frames. The head's 12 channels
//! are unpatchified 2×2 into RGB and clamped to [−1, 1]. Frames are handed out as each chunk finishes.
//!
//! Tiled decoding ([`tiling`]) decodes overlapping latent tiles independently and blends them on the host with
//! linear ramps, as the NAVA copy's `tiled_decode`; [`tiling::decode_peak_bytes`] computes the GPU memory a decode
//! needs, and [`tiling::Tiling::for_budget`] picks a tile that fits a budget.
//!
//! Encoding (image-to-video first frame) patchifies 2×2, runs the encoder on frame chunks [0:1], [1:5], [5:9], …,
//! applies `conv1`, keeps μ and normalises it `(μ − mean) / std`; [`image::resize_center_crop`] prepares an image
//! as the reference's `_resize_center_crop` (PIL Lanczos, then a centred crop).
//!
//! The convolutions run in f32 whatever weight format is asked for: f16/bf16 round the weights to that precision
//! (NAVA's pipeline runs the VAE in bf16), the quantised formats keep f32.

pub mod blocks;
pub mod image;
pub mod stacks;
pub mod tiling;

use serde::{Deserialize, Serialize};

use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::conv::{patchify, permute, unpatchify};
use crate::kernels::elementwise::{binary, binary_inplace, Binary};
use crate::kernels::gemm::WeightFormat;
use crate::weights::{check_keys, KeyTable, Scope, TensorSource};

use super::ModelError;
use blocks::{CausalConv, FeatCache, Trace};
use stacks::{Decoder, Encoder};
pub use tiling::{decode_peak_bytes, DecodeMemory, Tiling};

/// Per-channel latent means of `Wan2_2_VAE` (`scale[0]`).
pub const LATENT_MEAN: [f32; 48] = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891, 0.1570,
    -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502, -0.2055, -0.0322,
    0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520,
    0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
];

/// Per-channel latent standard deviations of `Wan2_2_VAE` (`scale[1]` is their reciprocal).
pub const LATENT_STD: [f32; 48] = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165,
    0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659, 0.7069, 0.5338, 0.4889, 0.4917,
    0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600,
    0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
];

/// Pixels per latent cell along each spatial axis (2×2 patchify × three ×2 stages).
pub const SPATIAL_FACTOR: usize = 16;
/// Pixel sizes must be multiples of this: an even latent for the DiT's 2×2 patches (NAVA.md §3.4).
pub const PIXEL_MULTIPLE: usize = 32;

/// `WanVAE_(...)` keyword arguments (reference names, `temperal` spelled as there).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct VaeConfig {
    pub dim: usize,
    pub dec_dim: usize,
    pub z_dim: usize,
    pub dim_mult: Vec<usize>,
    pub num_res_blocks: usize,
    #[serde(default)]
    pub attn_scales: Vec<f64>,
    pub temperal_downsample: Vec<bool>,
    #[serde(default)]
    pub dropout: f64,
}

impl VaeConfig {
    /// `Wan2_2_VAE(z_dim=48, c_dim=160)`: `WanVAE_(dim=160, dec_dim=256, dim_mult=[1,2,4,4], num_res_blocks=2,
    /// temperal_downsample=[False, True, True])`.
    pub fn wan22() -> Self {
        Self {
            dim: 160,
            dec_dim: 256,
            z_dim: 48,
            dim_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            attn_scales: vec![],
            temperal_downsample: vec![false, true, true],
            dropout: 0.0,
        }
    }

    /// The built-in seeded demo model: the same architecture and 48 latent channels, widths 8 (decoder stages
    /// 32, 32, 32, 16, 8).
    pub fn tiny() -> Self {
        Self { dim: 8, dec_dim: 8, ..Self::wan22() }
    }

    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let c: Self = serde_json::from_str(text).map_err(|e| ModelError::Config(format!("VAE config JSON: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// Refuses configurations the reference could not build or this port does not run.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.dim == 0 || self.dec_dim == 0 || self.z_dim == 0 || self.dim_mult.len() < 2 {
            return bad("dim, dec_dim and z_dim must be positive, dim_mult at least two stages".into());
        }
        if self.dim_mult.contains(&0) {
            return bad(format!("dim_mult {:?} has a zero", self.dim_mult));
        }
        // DupUp3D needs each up block's input width to be a multiple of its output width, AvgDown3D the reverse.
        let d = stacks::decoder_dims(self);
        let e = stacks::encoder_dims(self);
        if d.windows(2).any(|p| p[0] % p[1] != 0) || e.windows(2).any(|p| p[1] % p[0] != 0) {
            return bad(format!("dim_mult {:?} must grow by whole factors (DupUp3D / AvgDown3D)", self.dim_mult));
        }
        if !self.attn_scales.is_empty() {
            return bad("attn_scales must be empty (Wan2.2 has no attention outside the middle blocks)".into());
        }
        Ok(())
    }

    /// Spatial ×2 stages of the decoder (`len(dim_mult) − 1`), times the 2×2 patch.
    pub fn spatial_factor(&self) -> usize {
        2 << (self.dim_mult.len() - 1)
    }

    /// Every key with its shape, in the reference's module order (encoder, conv1, conv2, decoder).
    pub fn key_table(&self) -> KeyTable {
        let mut t = KeyTable::new();
        Encoder::keys(&mut t, self);
        CausalConv::keys(&mut t, "conv1", 2 * self.z_dim, 2 * self.z_dim, [1; 3]);
        CausalConv::keys(&mut t, "conv2", self.z_dim, self.z_dim, [1; 3]);
        Decoder::keys(&mut t, self);
        t
    }
}

/// How the f32 convolution weights are rounded at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    F16,
    BF16,
}

impl Precision {
    pub fn of(format: WeightFormat) -> Self {
        match format {
            WeightFormat::F16 => Self::F16,
            WeightFormat::BF16 => Self::BF16,
            _ => Self::F32,
        }
    }

    fn round(self, v: &mut [f32]) {
        match self {
            Self::F32 => {}
            Self::F16 => v.iter_mut().for_each(|x| *x = half::f16::from_f32(*x).to_f32()),
            Self::BF16 => v.iter_mut().for_each(|x| *x = half::bf16::from_f32(*x).to_f32()),
        }
    }
}

/// Which halves to load: decoding needs only the decoder, image-to-video only the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaeParts {
    pub encoder: bool,
    pub decoder: bool,
}

impl VaeParts {
    pub const BOTH: Self = Self { encoder: true, decoder: true };
    pub const DECODER: Self = Self { encoder: false, decoder: true };
    pub const ENCODER: Self = Self { encoder: true, decoder: false };
}

/// One decoded frame: RGB `[3, height, width]` in [−1, 1], on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

/// The consumer of decoded frames: frame index and frame; an error stops the decode.
pub type FrameSink<'a> = dyn FnMut(usize, Frame) -> Result<(), ModelError> + 'a;

/// The Wan2.2 VAE with its weights on the GPU.
pub struct VideoVae {
    pub config: VaeConfig,
    encoder: Option<(Encoder, CausalConv)>,
    decoder: Option<(Decoder, CausalConv)>,
    /// `[z, 1]` per-channel rows for the (un)normalisation.
    mean: GpuTensor,
    neg_mean: GpuTensor,
    std: GpuTensor,
    inv_std: GpuTensor,
}

const HINT: &str = "is this the Wan2.2 VAE (Wan2.2_VAE.pth)? The Wan2.1 VAE (16 latent channels) and other models' \
                    files have other keys";

fn input_err(what: &str, problem: String) -> ModelError {
    ModelError::Input { what: what.to_string(), problem }
}

impl VideoVae {
    /// Checks the file against the config's key table (every missing, unexpected or mis-shaped key in one error),
    /// then loads both halves.
    pub fn load(g: &Gpu, src: &dyn TensorSource, config: VaeConfig, format: WeightFormat) -> Result<Self, ModelError> {
        Self::load_parts(g, src, config, format, VaeParts::BOTH)
    }

    /// [`VideoVae::load`] of the encoder, the decoder or both (the file must still be a whole Wan2.2 VAE).
    pub fn load_parts(
        g: &Gpu,
        src: &dyn TensorSource,
        config: VaeConfig,
        format: WeightFormat,
        parts: VaeParts,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        check_keys(src, &config.key_table(), HINT)?;
        let p = Precision::of(format);
        let root = Scope::root(src, "");
        let z = config.z_dim;
        let encoder = if parts.encoder {
            Some((Encoder::load(g, root, &config, p)?, CausalConv::load(g, root, "conv1", [2 * z, 2 * z], [1; 3], p)?))
        } else {
            None
        };
        let decoder = if parts.decoder {
            Some((Decoder::load(g, root, &config, p)?, CausalConv::load(g, root, "conv2", [z, z], [1; 3], p)?))
        } else {
            None
        };
        let (mean, std) = Self::constants(z);
        let up = |name: &str, v: Vec<f32>| g.upload_f32(name, &v, &[z, 1]);
        // The reference keeps 1/std and divides by it when decoding: z / (1/std) + mean.
        let inv: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
        let std_back: Vec<f32> = inv.iter().map(|i| 1.0 / i).collect();
        Ok(Self {
            neg_mean: up("vae -mean", mean.iter().map(|m| -m).collect())?,
            mean: up("vae mean", mean)?,
            std: up("vae std", std_back)?,
            inv_std: up("vae 1/std", inv)?,
            encoder,
            decoder,
            config,
        })
    }

    /// The 48 hard-coded statistics (a z_dim other than 48 uses mean 0, std 1).
    fn constants(z: usize) -> (Vec<f32>, Vec<f32>) {
        if z == LATENT_MEAN.len() {
            (LATENT_MEAN.to_vec(), LATENT_STD.to_vec())
        } else {
            (vec![0.0; z], vec![1.0; z])
        }
    }

    /// Pixel frames decoded from `latent_frames` latent frames: 4(F − 1) + 1.
    pub fn pixel_frames(&self, latent_frames: usize) -> usize {
        let ft = 1 << self.config.temperal_downsample.iter().filter(|&&t| t).count();
        ft * latent_frames.saturating_sub(1) + 1
    }

    fn check_latents(&self, z: &GpuTensor) -> Result<[usize; 4], ModelError> {
        let zd = self.config.z_dim;
        let dims: [usize; 4] = match z.shape() {
            [c, f, h, w] => [*c, *f, *h, *w],
            [1, c, f, h, w] => [*c, *f, *h, *w],
            s => {
                return Err(input_err(
                    "latents",
                    format!(
                        "have shape {s:?}; the VAE decodes [{zd}, F, h, w] (channels, latent frames, rows, columns)"
                    ),
                ))
            }
        };
        if dims[0] != zd {
            return Err(input_err(
                "latents",
                format!(
                    "have {} channels (shape {:?}); the Wan2.2 VAE decodes {zd}-channel latents [{zd}, F, h, w] — \
                     a [F, h, w, {zd}] (channels-last) latent must be permuted first",
                    dims[0],
                    z.shape()
                ),
            ));
        }
        if dims[1..].contains(&0) {
            return Err(input_err("latents", format!("shape {:?} has an empty dimension", z.shape())));
        }
        Ok(dims)
    }

    fn decoder(&self) -> Result<&(Decoder, CausalConv), ModelError> {
        self.decoder.as_ref().ok_or_else(|| input_err("video VAE", "the decoder was not loaded (VaeParts)".into()))
    }

    fn encoder(&self) -> Result<&(Encoder, CausalConv), ModelError> {
        self.encoder.as_ref().ok_or_else(|| input_err("video VAE", "the encoder was not loaded (VaeParts)".into()))
    }

    /// Starts `WanVAE_.decode` of normalised latents `[z, F, h, w]` (or `[1, z, F, h, w]`): un-normalises them and
    /// applies `conv2`; [`ChunkDecoder::next_chunk`] then decodes one latent frame per call. `trace` receives
    /// `dec.z_denorm` and `dec.conv2`.
    pub fn chunk_decoder<'v>(
        &'v self,
        g: &Gpu,
        latents: &GpuTensor,
        mut trace: Option<&mut Trace>,
    ) -> Result<ChunkDecoder<'v>, ModelError> {
        let [zc, f, h, w] = self.check_latents(latents)?;
        let (decoder, conv2) = self.decoder()?;
        let z = latents.reshape(&[zc, f * h * w]).expect("same element count");
        let zd = binary(g, &z, &self.std, Binary::Mul)?;
        binary_inplace(g, &zd, &self.mean, Binary::Add)?;
        let zd = zd.reshape(&[zc, f, h, w]).expect("same element count");
        if let Some(t) = trace.as_mut() {
            t("dec.z_denorm", &zd);
        }
        let x = conv2.forward(g, &zd, None)?;
        drop(zd);
        if let Some(t) = trace.as_mut() {
            t("dec.conv2", &x);
        }
        // Frame-major so that each latent frame is a row view.
        let frames = if f == 1 {
            x
        } else {
            let p = permute(g, &x, &[1, 0, 2, 3])?;
            drop(x);
            p
        };
        g.flush()?;
        Ok(ChunkDecoder { decoder, frames, dims: [zc, f, h, w], cache: FeatCache::new(), next: 0, first_pixel: 0 })
    }

    /// `WanVAE_.decode` without the clamp, chunk by chunk: each chunk's `[3, T_i, 16h, 16w]` goes to `on_chunk`
    /// (first pixel frame, tensor) on the GPU as soon as it is recorded; traces as [`ChunkDecoder`].
    pub fn decode_chunks(
        &self,
        g: &Gpu,
        latents: &GpuTensor,
        on_chunk: &mut dyn FnMut(usize, GpuTensor) -> Result<(), ModelError>,
        mut trace: Option<&mut Trace>,
    ) -> Result<(), ModelError> {
        let mut dec = self.chunk_decoder(g, latents, trace.as_deref_mut())?;
        while let Some((first, rgb)) = dec.next_chunk(g, trace.as_deref_mut())? {
            on_chunk(first, rgb)?;
        }
        Ok(())
    }

    /// Decodes normalised latents `[48, F, h, w]` (or `[1, 48, F, h, w]`) to 4(F − 1) + 1 RGB frames in [−1, 1],
    /// handing each to `on_frame` (index, frame) as soon as its chunk is decoded. With `tiling`, tiles are decoded
    /// one after another and blended on the host, so frames come out after the last tile.
    pub async fn decode_async(
        &self,
        g: &Gpu,
        latents: &GpuTensor,
        tiling: Option<&Tiling>,
        on_frame: &mut FrameSink<'_>,
    ) -> Result<(), ModelError> {
        if let Some(t) = tiling {
            return tiling::decode_tiled(self, g, latents, t, on_frame).await;
        }
        let mut dec = self.chunk_decoder(g, latents, None)?;
        while let Some((first, rgb)) = dec.next_chunk(g, None)? {
            for (k, frame) in frames_of(g, &rgb, true).await?.into_iter().enumerate() {
                on_frame(first + k, frame)?;
            }
        }
        Ok(())
    }

    /// [`VideoVae::decode_async`] collecting every frame.
    pub async fn decode_all_async(
        &self,
        g: &Gpu,
        latents: &GpuTensor,
        tiling: Option<&Tiling>,
    ) -> Result<Vec<Frame>, ModelError> {
        let mut frames = Vec::new();
        self.decode_async(g, latents, tiling, &mut |_, f| {
            frames.push(f);
            Ok(())
        })
        .await?;
        Ok(frames)
    }

    /// [`VideoVae::decode_async`], blocking (native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn decode(
        &self,
        g: &Gpu,
        latents: &GpuTensor,
        tiling: Option<&Tiling>,
        on_frame: &mut FrameSink<'_>,
    ) -> Result<(), ModelError> {
        crate::gpu::block_on(self.decode_async(g, latents, tiling, on_frame))
    }

    /// [`VideoVae::decode_all_async`], blocking (native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn decode_all(&self, g: &Gpu, latents: &GpuTensor, tiling: Option<&Tiling>) -> Result<Vec<Frame>, ModelError> {
        crate::gpu::block_on(self.decode_all_async(g, latents, tiling))
    }

    /// `WanVAE_.encode`: video `[3, T, H, W]` in [−1, 1] (T = 1 + 4k, H and W multiples of 32) → normalised μ
    /// `[z, 1 + k, H/16, W/16]`. `trace` receives `enc.<stage>.chunk<i>` and `enc.mu_logvar`.
    pub fn encode(&self, g: &Gpu, video: &GpuTensor, mut trace: Option<&mut Trace>) -> Result<GpuTensor, ModelError> {
        let (encoder, conv1) = self.encoder()?;
        let [c, t, h, w]: [usize; 4] = match video.shape() {
            [c, t, h, w] => [*c, *t, *h, *w],
            [1, c, t, h, w] => [*c, *t, *h, *w],
            s => return Err(input_err("video", format!("has shape {s:?}; the encoder takes [3, T, H, W]"))),
        };
        if c != 3 {
            return Err(input_err(
                "video",
                format!("has {c} channels (shape {:?}); expected RGB [3, T, H, W]", video.shape()),
            ));
        }
        check_pixel_size(h, w)?;
        let ft = 1 << self.config.temperal_downsample.iter().filter(|&&t| t).count();
        if t == 0 || (t - 1) % ft != 0 {
            return Err(input_err("video", format!("has {t} frames; the encoder takes 1 + {ft}·k frames")));
        }
        let x = patchify(g, &video.reshape(&[3, t, h, w]).expect("same element count"), 2)?;
        let xt = if t == 1 { x } else { permute(g, &x, &[1, 0, 2, 3])? };
        let (hp, wp) = (h / 2, w / 2);
        let mut fc = FeatCache::new();
        let mut outs = Vec::new();
        for i in 0..1 + (t - 1) / ft {
            let (start, n) = if i == 0 { (0, 1) } else { (1 + ft * (i - 1), ft) };
            let chunk = if t == 1 {
                xt.clone()
            } else {
                let frames = xt.rows(start, n).expect("frames in range");
                if n == 1 {
                    frames.reshape(&[12, 1, hp, wp]).expect("one frame")
                } else {
                    permute(g, &frames, &[1, 0, 2, 3])?
                }
            };
            let mut chunk_trace = |name: &str, tt: &GpuTensor| {
                if let Some(f) = trace.as_mut() {
                    f(&format!("enc.{name}.chunk{i}"), tt);
                }
            };
            outs.push(encoder.forward(g, &chunk, &mut fc, &mut Some(&mut chunk_trace))?);
        }
        drop(fc);
        let out = concat_frames(g, &outs)?;
        drop(outs);
        let ml = conv1.forward(g, &out, None)?;
        if let Some(f) = trace.as_mut() {
            f("enc.mu_logvar", &ml);
        }
        let z = self.config.z_dim;
        let [_, tl, hl, wl]: [usize; 4] = ml.shape().try_into().expect("[2z, T, h, w]");
        let mu = ml.rows(0, z).expect("z of 2z channels").reshape(&[z, tl * hl * wl]).expect("same element count");
        let y = binary(g, &mu, &self.neg_mean, Binary::Add)?;
        binary_inplace(g, &y, &self.inv_std, Binary::Mul)?;
        Ok(y.reshape(&[z, tl, hl, wl]).expect("same element count"))
    }

    /// The image-to-video latent of one image `[3, H, W]` in [−1, 1] (already resized and cropped, see
    /// [`image::resize_center_crop`]): normalised μ `[z, 1, H/16, W/16]`.
    pub fn encode_image(&self, g: &Gpu, image: &GpuTensor) -> Result<GpuTensor, ModelError> {
        let s = image.shape();
        let [c, h, w] = match s {
            [c, h, w] => [*c, *h, *w],
            [1, c, h, w] => [*c, *h, *w],
            _ => return Err(input_err("image", format!("has shape {s:?}; expected RGB [3, H, W]"))),
        };
        if c != 3 {
            return Err(input_err("image", format!("has {c} channels (shape {s:?}); expected RGB [3, H, W]")));
        }
        self.encode(g, &image.reshape(&[3, 1, h, w]).expect("same element count"), None)
    }
}

/// A decode in progress: the `conv2`-ed latent frames and the chunk cache (see [`VideoVae::chunk_decoder`]).
pub struct ChunkDecoder<'v> {
    decoder: &'v Decoder,
    /// `[F, z, h, w]` (`[z, 1, h, w]` for one frame).
    frames: GpuTensor,
    dims: [usize; 4],
    cache: FeatCache,
    next: usize,
    first_pixel: usize,
}

impl ChunkDecoder<'_> {
    /// Records the decoder on the next latent frame (the first skips the temporal upsample) and returns its first
    /// pixel frame and `[3, T_i, 16h, 16w]`, unclamped; `None` after the last. Nothing is read back, so this runs
    /// the same natively and in the browser. `trace` receives `dec.<stage>.chunk<i>`.
    pub fn next_chunk(
        &mut self,
        g: &Gpu,
        mut trace: Option<&mut Trace>,
    ) -> Result<Option<(usize, GpuTensor)>, ModelError> {
        let [zc, f, h, w] = self.dims;
        let i = self.next;
        if i >= f {
            return Ok(None);
        }
        let xi = if f == 1 {
            self.frames.clone()
        } else {
            self.frames.rows(i, 1).expect("i < F").reshape(&[zc, 1, h, w]).expect("one frame")
        };
        let mut chunk_trace = |name: &str, t: &GpuTensor| {
            if let Some(f) = trace.as_mut() {
                f(&format!("dec.{name}.chunk{i}"), t);
            }
        };
        let out = self.decoder.forward(g, &xi, &mut self.cache, i == 0, &mut Some(&mut chunk_trace))?;
        let rgb = unpatchify(g, &out, 2)?;
        let first = self.first_pixel;
        self.first_pixel += rgb.shape()[1];
        self.next += 1;
        Ok(Some((first, rgb)))
    }
}

/// The pipeline's channels-last latent `[F, h, w, z]` (the reference adapter's `z_thwc`) as the decoder's
/// `[z, F, h, w]`.
pub fn latents_from_thwc(g: &Gpu, z: &GpuTensor) -> Result<GpuTensor, ModelError> {
    if z.shape().len() != 4 {
        return Err(input_err("latents", format!("have shape {:?}; expected [F, h, w, channels]", z.shape())));
    }
    Ok(permute(g, z, &[3, 0, 1, 2])?)
}

/// Pixel sizes the VAE and the DiT accept: multiples of 32, at least 32.
pub fn check_pixel_size(h: usize, w: usize) -> Result<(), ModelError> {
    if h == 0 || w == 0 || !h.is_multiple_of(PIXEL_MULTIPLE) || !w.is_multiple_of(PIXEL_MULTIPLE) {
        return Err(input_err(
            "video size",
            format!(
                "{w}×{h} pixels: width and height must be positive multiples of {PIXEL_MULTIPLE} (the latent is 16× \
                 smaller and must be even), e.g. 1280×704"
            ),
        ));
    }
    Ok(())
}

/// `torch.cat(chunks, dim=2)` of `[C, T_i, H, W]` tensors.
fn concat_frames(g: &Gpu, chunks: &[GpuTensor]) -> Result<GpuTensor, ModelError> {
    use crate::kernels::conv::causal_conv3d_next_cache;
    let mut out = chunks[0].clone();
    for c in &chunks[1..] {
        let n = out.shape()[1] + c.shape()[1];
        out = causal_conv3d_next_cache(g, Some(&out), c, n)?;
    }
    Ok(out)
}

/// The frames of `[3, T, H, W]` on the host, clamped to [−1, 1] when `clamp`.
pub async fn frames_of(g: &Gpu, rgb: &GpuTensor, clamp: bool) -> Result<Vec<Frame>, ModelError> {
    let [c, t, h, w]: [usize; 4] =
        rgb.shape().try_into().map_err(|_| input_err("frames", "not [3, T, H, W]".into()))?;
    let v = g.read_f32(rgb).await?;
    let hw = h * w;
    Ok((0..t)
        .map(|k| {
            let mut data = Vec::with_capacity(c * hw);
            for ch in 0..c {
                let plane = &v[(ch * t + k) * hw..(ch * t + k + 1) * hw];
                if clamp {
                    data.extend(plane.iter().map(|x| x.clamp(-1.0, 1.0)));
                } else {
                    data.extend_from_slice(plane);
                }
            }
            Frame { height: h, width: w, data }
        })
        .collect())
}
