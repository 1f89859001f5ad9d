//! The building blocks of the Wan2.2 VAE — reference `vae2_2.py`: `CausalConv3d` with the chunk cache
//! (`feat_cache`, `CACHE_T` = 2), `RMS_norm`, `ResidualBlock`, `AttentionBlock`, `Resample`, `Up_ResidualBlock` /
//! `Down_ResidualBlock`, NAVA.md §7.1. The `Encoder3d` / `Decoder3d` stacks are in `stacks.rs`.
//!
//! Activations are `[C, T, H, W]` f32 (batch 1). A [`FeatCache`] holds one slot per cached convolution in call
//! order, as the reference's `feat_cache` list with its running `feat_idx`; a fresh one starts every decode/encode.

use crate::gpu::{DType, Gpu, GpuTensor};
use crate::kernels::conv::{
    avg_down3d, causal_conv3d, causal_conv3d_next_cache, conv2d_per_frame, dup_up3d, permute, upsample_nearest2x,
    Conv2dArgs, Conv3dArgs,
};
use crate::kernels::elementwise::{binary_inplace, copy_into, softmax_inplace, Binary};
use crate::kernels::matmul::{matmul, MatmulArgs};
use crate::kernels::norm::{channel_rms_norm, channel_rms_norm_silu};
use crate::weights::{KeyTable, Scope};

use super::Precision;
use crate::model::ModelError;

/// Frames a causal convolution keeps from one chunk for the next (`CACHE_T`).
pub const CACHE_T: usize = 2;

/// The trace callback: a name (`conv1`, `middle0`, `up2`, …) and the tensor.
pub type Trace<'a> = dyn FnMut(&str, &GpuTensor) + 'a;

/// One slot of the chunk cache.
enum Slot {
    /// Not called yet (the reference's `None`).
    Empty,
    /// `upsample3d` after its first call (the reference's `"Rep"`): the next call runs `time_conv` on zero padding.
    Rep,
    /// The last frames of the previous chunk.
    Frames(GpuTensor),
}

/// The reference's `feat_cache` list and `feat_idx` counter.
pub struct FeatCache {
    slots: Vec<Slot>,
    idx: usize,
}

impl FeatCache {
    pub fn new() -> Self {
        Self { slots: Vec::new(), idx: 0 }
    }

    /// Starts a chunk (`feat_idx = [0]`).
    pub fn rewind(&mut self) {
        self.idx = 0;
    }

    fn next(&mut self) -> &mut Slot {
        if self.idx == self.slots.len() {
            self.slots.push(Slot::Empty);
        }
        self.idx += 1;
        &mut self.slots[self.idx - 1]
    }

    /// GPU bytes held by the cache.
    pub fn len_bytes(&self) -> u64 {
        self.slots.iter().map(|s| if let Slot::Frames(t) = s { t.len_bytes() } else { 0 }).sum()
    }
}

impl Default for FeatCache {
    fn default() -> Self {
        Self::new()
    }
}

pub(super) fn add_key(t: &mut KeyTable, key: String, shape: &[usize]) {
    t.push((key, shape.to_vec()));
}

/// Loads an f32 tensor, rounded to the requested precision (the convolutions run in f32 whatever the format).
fn load(g: &Gpu, s: Scope, name: &str, shape: &[usize], p: Precision) -> Result<GpuTensor, ModelError> {
    let mut v = s.f32(name, shape)?;
    p.round(&mut v);
    Ok(g.upload_f32(&s.key(name), &v, shape)?)
}

/// `CausalConv3d(cin, cout, k, padding=p)` (`name.weight`, `name.bias`).
pub struct CausalConv {
    weight: GpuTensor,
    bias: GpuTensor,
    padding: [usize; 3],
}

impl CausalConv {
    pub fn keys(t: &mut KeyTable, name: &str, cout: usize, cin: usize, k: [usize; 3]) {
        add_key(t, format!("{name}.weight"), &[cout, cin, k[0], k[1], k[2]]);
        add_key(t, format!("{name}.bias"), &[cout]);
    }

    pub fn load(
        g: &Gpu,
        s: Scope,
        name: &str,
        [cout, cin]: [usize; 2],
        k: [usize; 3],
        p: Precision,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            weight: load(g, s, &format!("{name}.weight"), &[cout, cin, k[0], k[1], k[2]], p)?,
            bias: load(g, s, &format!("{name}.bias"), &[cout], p)?,
            padding: [k[0] / 2, k[1] / 2, k[2] / 2],
        })
    }

    /// Without a cache: time zero-padded (2·pt, 0).
    pub fn forward(&self, g: &Gpu, x: &GpuTensor, cache: Option<&GpuTensor>) -> Result<GpuTensor, ModelError> {
        let args = Conv3dArgs { bias: Some(&self.bias), padding: self.padding, stride: [1, 1], cache };
        Ok(causal_conv3d(g, x, &self.weight, &args)?)
    }

    /// The reference's cached call: convolve with the slot's frames, then keep the last `CACHE_T` frames of
    /// `cat(old cache, x)` for the next chunk.
    pub fn forward_cached(&self, g: &Gpu, x: &GpuTensor, fc: &mut FeatCache) -> Result<GpuTensor, ModelError> {
        let slot = fc.next();
        let old = match std::mem::replace(slot, Slot::Empty) {
            Slot::Frames(t) => Some(t),
            _ => None,
        };
        let y = self.forward(g, x, old.as_ref())?;
        *slot = Slot::Frames(causal_conv3d_next_cache(g, old.as_ref(), x, CACHE_T)?);
        Ok(y)
    }
}

/// `RMS_norm(dim)`: `gamma` `[C, 1, 1, 1]` (`[C, 1, 1]` with `images=True`).
pub struct RmsNorm {
    gamma: GpuTensor,
}

impl RmsNorm {
    pub fn keys(t: &mut KeyTable, name: &str, c: usize, images: bool) {
        let shape: Vec<usize> = if images { vec![c, 1, 1] } else { vec![c, 1, 1, 1] };
        add_key(t, format!("{name}.gamma"), &shape);
    }

    pub fn load(g: &Gpu, s: Scope, name: &str, c: usize, images: bool, p: Precision) -> Result<Self, ModelError> {
        let shape: &[usize] = if images { &[c, 1, 1] } else { &[c, 1, 1, 1] };
        let gamma = load(g, s, &format!("{name}.gamma"), shape, p)?;
        Ok(Self { gamma: gamma.reshape(&[c]).expect("c values") })
    }

    /// Over the channels of `[C, T, H, W]`, optionally followed by SiLU.
    pub fn forward(&self, g: &Gpu, x: &GpuTensor, silu: bool) -> Result<GpuTensor, ModelError> {
        let s = x.shape().to_vec();
        let flat = x.reshape(&[s[0], s[1..].iter().product()]).expect("same element count");
        let y = if silu {
            channel_rms_norm_silu(g, &flat, &self.gamma, None)?
        } else {
            channel_rms_norm(g, &flat, &self.gamma, None)?
        };
        Ok(y.reshape(&s).expect("same element count"))
    }
}

/// `ResidualBlock(in, out)`: `residual.{0: RMS, 2: CConv 3³, 3: RMS, 6: CConv 3³}` plus `shortcut` (1³) when the
/// width changes.
pub struct ResidualBlock {
    norm0: RmsNorm,
    conv2: CausalConv,
    norm3: RmsNorm,
    conv6: CausalConv,
    shortcut: Option<CausalConv>,
}

impl ResidualBlock {
    pub fn keys(t: &mut KeyTable, name: &str, cin: usize, cout: usize) {
        RmsNorm::keys(t, &format!("{name}.residual.0"), cin, false);
        CausalConv::keys(t, &format!("{name}.residual.2"), cout, cin, [3; 3]);
        RmsNorm::keys(t, &format!("{name}.residual.3"), cout, false);
        CausalConv::keys(t, &format!("{name}.residual.6"), cout, cout, [3; 3]);
        if cin != cout {
            CausalConv::keys(t, &format!("{name}.shortcut"), cout, cin, [1; 3]);
        }
    }

    pub fn load(g: &Gpu, s: Scope, cin: usize, cout: usize, p: Precision) -> Result<Self, ModelError> {
        Ok(Self {
            norm0: RmsNorm::load(g, s, "residual.0", cin, false, p)?,
            conv2: CausalConv::load(g, s, "residual.2", [cout, cin], [3; 3], p)?,
            norm3: RmsNorm::load(g, s, "residual.3", cout, false, p)?,
            conv6: CausalConv::load(g, s, "residual.6", [cout, cout], [3; 3], p)?,
            shortcut: if cin != cout {
                Some(CausalConv::load(g, s, "shortcut", [cout, cin], [1; 3], p)?)
            } else {
                None
            },
        })
    }

    pub fn forward(&self, g: &Gpu, x: &GpuTensor, fc: &mut FeatCache) -> Result<GpuTensor, ModelError> {
        let h = match &self.shortcut {
            Some(sc) => sc.forward(g, x, None)?,
            None => x.clone(),
        };
        let a = self.norm0.forward(g, x, true)?;
        let y = self.conv2.forward_cached(g, &a, fc)?;
        drop(a);
        let b = self.norm3.forward(g, &y, true)?;
        drop(y);
        let y = self.conv6.forward_cached(g, &b, fc)?;
        binary_inplace(g, &y, &h, Binary::Add)?;
        // Recorded launches keep their buffers alive: submit per block so that intermediates return to the pool.
        g.flush()?;
        Ok(y)
    }
}

/// `AttentionBlock(dim)`: single-head self-attention over the H·W positions of each frame; `norm` (RMS, images),
/// `to_qkv` and `proj` (1×1 Conv2d).
pub struct AttentionBlock {
    norm: RmsNorm,
    to_qkv_w: GpuTensor,
    to_qkv_b: GpuTensor,
    proj_w: GpuTensor,
    proj_b: GpuTensor,
    dim: usize,
}

impl AttentionBlock {
    pub fn keys(t: &mut KeyTable, name: &str, c: usize) {
        RmsNorm::keys(t, &format!("{name}.norm"), c, true);
        add_key(t, format!("{name}.to_qkv.weight"), &[3 * c, c, 1, 1]);
        add_key(t, format!("{name}.to_qkv.bias"), &[3 * c]);
        add_key(t, format!("{name}.proj.weight"), &[c, c, 1, 1]);
        add_key(t, format!("{name}.proj.bias"), &[c]);
    }

    pub fn load(g: &Gpu, s: Scope, c: usize, p: Precision) -> Result<Self, ModelError> {
        Ok(Self {
            norm: RmsNorm::load(g, s, "norm", c, true, p)?,
            to_qkv_w: load(g, s, "to_qkv.weight", &[3 * c, c, 1, 1], p)?,
            to_qkv_b: load(g, s, "to_qkv.bias", &[3 * c], p)?,
            proj_w: load(g, s, "proj.weight", &[c, c, 1, 1], p)?,
            proj_b: load(g, s, "proj.bias", &[c], p)?,
            dim: c,
        })
    }

    pub fn forward(&self, g: &Gpu, x: &GpuTensor) -> Result<GpuTensor, ModelError> {
        let c = self.dim;
        let [_, t, h, w]: [usize; 4] = x.shape().try_into().expect("[C, T, H, W]");
        let l = h * w;
        let xn = self.norm.forward(g, x, false)?;
        let qkv_args = Conv2dArgs { bias: Some(&self.to_qkv_b), ..Default::default() };
        let qkv = conv2d_per_frame(g, &xn, &self.to_qkv_w, &qkv_args)?;
        drop(xn);
        // Frame-major [T, 3C, L] so that q, k, v of one frame are row views.
        let qkv =
            if t == 1 { qkv.reshape(&[1, 3 * c, l]) } else { permute(g, &qkv, &[1, 0, 2, 3])?.reshape(&[t, 3 * c, l]) }
                .expect("same element count");
        let out = g.alloc("vae attention output", &[t, c, l], DType::F32)?;
        let scale = 1.0 / (c as f32).sqrt();
        for f in 0..t {
            let frame = qkv.rows(f, 1).expect("f < T").reshape(&[3 * c, l]).expect("one frame");
            let (q, k, v) = (frame.rows(0, c), frame.rows(c, c), frame.rows(2 * c, c));
            let (q, k, v) = (q.expect("C rows"), k.expect("C rows"), v.expect("C rows"));
            // scores[i, j] = q[:, i]·k[:, j] / √C; o[c, i] = Σ_j v[c, j] · softmax(scores)[i, j].
            let scores = matmul(g, &q, &k, MatmulArgs { trans_a: true, trans_b: false, alpha: scale })?;
            softmax_inplace(g, &scores)?;
            let o = matmul(g, &v, &scores, MatmulArgs { trans_a: false, trans_b: true, alpha: 1.0 })?;
            copy_into(g, &o, &out.rows(f, 1).expect("f < T").reshape(&[c, l]).expect("one frame"))?;
        }
        let out =
            if t == 1 { out.reshape(&[c, 1, h, w]) } else { permute(g, &out, &[1, 0, 2])?.reshape(&[c, t, h, w]) }
                .expect("same element count");
        let proj_args = Conv2dArgs { bias: Some(&self.proj_b), ..Default::default() };
        let y = conv2d_per_frame(g, &out, &self.proj_w, &proj_args)?;
        binary_inplace(g, &y, x, Binary::Add)?;
        g.flush()?;
        Ok(y)
    }
}

/// `Resample(dim, mode)`: `resample.1` (Conv2d 3×3) after nearest ×2 (`upsample2d`/`upsample3d`) or before it,
/// stride 2 on `ZeroPad2d((0, 1, 0, 1))` (`downsample2d`/`downsample3d`); `time_conv` for the 3-D modes.
pub struct Resample {
    conv_w: GpuTensor,
    conv_b: GpuTensor,
    time_conv: Option<CausalConv>,
    up: bool,
    dim: usize,
}

impl Resample {
    pub fn keys(t: &mut KeyTable, name: &str, c: usize, up: bool, temporal: bool) {
        add_key(t, format!("{name}.resample.1.weight"), &[c, c, 3, 3]);
        add_key(t, format!("{name}.resample.1.bias"), &[c]);
        if temporal {
            CausalConv::keys(t, &format!("{name}.time_conv"), if up { 2 * c } else { c }, c, [3, 1, 1]);
        }
    }

    pub fn load(g: &Gpu, s: Scope, c: usize, up: bool, temporal: bool, p: Precision) -> Result<Self, ModelError> {
        let time_conv = if temporal {
            let cout = if up { 2 * c } else { c };
            let mut tc = CausalConv::load(g, s, "time_conv", [cout, c], [3, 1, 1], p)?;
            if !up {
                tc.padding = [0; 3]; // `downsample3d`: stride 2 in time, no padding
            }
            Some(tc)
        } else {
            None
        };
        Ok(Self {
            conv_w: load(g, s, "resample.1.weight", &[c, c, 3, 3], p)?,
            conv_b: load(g, s, "resample.1.bias", &[c], p)?,
            time_conv,
            up,
            dim: c,
        })
    }

    pub fn forward(&self, g: &Gpu, x: &GpuTensor, fc: &mut FeatCache) -> Result<GpuTensor, ModelError> {
        if self.up {
            let x = match &self.time_conv {
                Some(tc) => self.time_upsample(g, tc, x, fc)?,
                None => x.clone(),
            };
            let u = upsample_nearest2x(g, &x)?;
            drop(x);
            let args = Conv2dArgs { bias: Some(&self.conv_b), padding: [1; 4], ..Default::default() };
            let y = conv2d_per_frame(g, &u, &self.conv_w, &args)?;
            g.flush()?;
            Ok(y)
        } else {
            let args =
                Conv2dArgs { bias: Some(&self.conv_b), padding: [0, 1, 0, 1], stride: [2, 2], ..Default::default() };
            let y = conv2d_per_frame(g, x, &self.conv_w, &args)?;
            match &self.time_conv {
                Some(tc) => self.time_downsample(g, tc, y, fc),
                None => Ok(y),
            }
        }
    }

    /// `upsample3d`'s `time_conv` (C → 2C, (3, 1, 1)) with the `"Rep"` protocol, its two halves interleaved into
    /// twice the frames. A `"Rep"` slot convolves over zero padding; caching `[0, x]` there, as the reference
    /// does, is the same as caching `[x]`, which the convolution pads with one zero frame.
    fn time_upsample(
        &self,
        g: &Gpu,
        tc: &CausalConv,
        x: &GpuTensor,
        fc: &mut FeatCache,
    ) -> Result<GpuTensor, ModelError> {
        let slot = fc.next();
        let old = match std::mem::replace(slot, Slot::Empty) {
            Slot::Empty => {
                *slot = Slot::Rep;
                return Ok(x.clone());
            }
            Slot::Rep => None,
            Slot::Frames(t) => Some(t),
        };
        let y = tc.forward(g, x, old.as_ref())?;
        *slot = Slot::Frames(causal_conv3d_next_cache(g, old.as_ref(), x, CACHE_T)?);
        let [_, t, h, w]: [usize; 4] = x.shape().try_into().expect("[C, T, H, W]");
        let c = self.dim;
        // [2, C, T, HW] → [C, T, 2, HW]: frame 2t + j holds half j at input frame t.
        let y = y.reshape(&[2, c, t, h * w]).expect("2C channels");
        Ok(permute(g, &y, &[1, 2, 0, 3])?.reshape(&[c, 2 * t, h, w]).expect("same element count"))
    }

    /// `downsample3d`'s `time_conv` ((3, 1, 1), stride 2 in time, no padding): the first chunk only keeps its
    /// last frame; later chunks convolve `cat(previous last frame, x)` and keep every second output frame.
    fn time_downsample(
        &self,
        g: &Gpu,
        tc: &CausalConv,
        x: GpuTensor,
        fc: &mut FeatCache,
    ) -> Result<GpuTensor, ModelError> {
        let slot = fc.next();
        let old = match std::mem::replace(slot, Slot::Empty) {
            Slot::Frames(t) => t,
            _ => {
                *slot = Slot::Frames(causal_conv3d_next_cache(g, None, &x, 1)?);
                return Ok(x);
            }
        };
        let t = x.shape()[1];
        *slot = Slot::Frames(causal_conv3d_next_cache(g, None, &x, 1)?);
        let cat = causal_conv3d_next_cache(g, Some(&old), &x, t + 1)?;
        drop(x);
        // Stride-1 convolution (no padding: a cache-less call pads 2·0 frames), then frames 0, 2, 4, ….
        let y = tc.forward(g, &cat, None)?;
        let [c, t1, h, w]: [usize; 4] = y.shape().try_into().expect("[C, T, H, W]");
        let keep = t1.div_ceil(2);
        if t1 == 1 {
            return Ok(y);
        }
        let tm = permute(g, &y, &[1, 0, 2, 3])?;
        let out = g.alloc("time downsample", &[keep, c, h, w], DType::F32)?;
        for i in 0..keep {
            copy_into(g, &tm.rows(2 * i, 1).expect("frame in range"), &out.rows(i, 1).expect("i < keep"))?;
        }
        Ok(permute(g, &out, &[1, 0, 2, 3])?)
    }
}

/// `Up_ResidualBlock`: `upsamples.{0..=num_res_blocks}` residual blocks, then `upsamples.{n}` a `Resample` when
/// `up_flag`, plus the `DupUp3D` shortcut.
pub struct UpBlock {
    blocks: Vec<ResidualBlock>,
    resample: Option<Resample>,
    out_dim: usize,
    temporal: bool,
}

impl UpBlock {
    pub fn keys(t: &mut KeyTable, name: &str, cin: usize, cout: usize, n: usize, up: bool, temporal: bool) {
        let mut c = cin;
        for j in 0..n {
            ResidualBlock::keys(t, &format!("{name}.upsamples.{j}"), c, cout);
            c = cout;
        }
        if up {
            Resample::keys(t, &format!("{name}.upsamples.{n}"), cout, true, temporal);
        }
    }

    #[allow(clippy::too_many_arguments)] // the reference constructor's arguments
    pub fn load(
        g: &Gpu,
        s: Scope,
        cin: usize,
        cout: usize,
        n: usize,
        up: bool,
        temporal: bool,
        p: Precision,
    ) -> Result<Self, ModelError> {
        let ups = s.scope("upsamples");
        let ups = ups.get();
        let mut blocks = Vec::new();
        let mut c = cin;
        for j in 0..n {
            blocks.push(ResidualBlock::load(g, ups.at(j).get(), c, cout, p)?);
            c = cout;
        }
        let resample = if up { Some(Resample::load(g, ups.at(n).get(), cout, true, temporal, p)?) } else { None };
        Ok(Self { blocks, resample, out_dim: cout, temporal })
    }

    pub fn forward(
        &self,
        g: &Gpu,
        x: &GpuTensor,
        fc: &mut FeatCache,
        first_chunk: bool,
    ) -> Result<GpuTensor, ModelError> {
        let mut y = x.clone();
        for b in &self.blocks {
            y = b.forward(g, &y, fc)?;
        }
        if let Some(r) = &self.resample {
            y = r.forward(g, &y, fc)?;
            let ft = if self.temporal { 2 } else { 1 };
            let shortcut = dup_up3d(g, x, self.out_dim, ft, 2, first_chunk)?;
            binary_inplace(g, &y, &shortcut, Binary::Add)?;
            g.flush()?;
        }
        Ok(y)
    }
}

/// `Down_ResidualBlock`: `downsamples.{0..num_res_blocks}` residual blocks, then a `Resample` when `down_flag`,
/// plus the `AvgDown3D` shortcut.
pub struct DownBlock {
    blocks: Vec<ResidualBlock>,
    resample: Option<Resample>,
    out_dim: usize,
    temporal: bool,
}

impl DownBlock {
    pub fn keys(t: &mut KeyTable, name: &str, cin: usize, cout: usize, n: usize, down: bool, temporal: bool) {
        let mut c = cin;
        for j in 0..n {
            ResidualBlock::keys(t, &format!("{name}.downsamples.{j}"), c, cout);
            c = cout;
        }
        if down {
            Resample::keys(t, &format!("{name}.downsamples.{n}"), cout, false, temporal);
        }
    }

    #[allow(clippy::too_many_arguments)] // the reference constructor's arguments
    pub fn load(
        g: &Gpu,
        s: Scope,
        cin: usize,
        cout: usize,
        n: usize,
        down: bool,
        temporal: bool,
        p: Precision,
    ) -> Result<Self, ModelError> {
        let ds = s.scope("downsamples");
        let ds = ds.get();
        let mut blocks = Vec::new();
        let mut c = cin;
        for j in 0..n {
            blocks.push(ResidualBlock::load(g, ds.at(j).get(), c, cout, p)?);
            c = cout;
        }
        let resample = if down { Some(Resample::load(g, ds.at(n).get(), cout, false, temporal, p)?) } else { None };
        Ok(Self { blocks, resample, out_dim: cout, temporal: temporal && down })
    }

    pub fn forward(&self, g: &Gpu, x: &GpuTensor, fc: &mut FeatCache) -> Result<GpuTensor, ModelError> {
        let mut y = x.clone();
        for b in &self.blocks {
            y = b.forward(g, &y, fc)?;
        }
        let fs = if let Some(r) = &self.resample {
            y = r.forward(g, &y, fc)?;
            2
        } else {
            1
        };
        let ft = if self.temporal { 2 } else { 1 };
        let shortcut = avg_down3d(g, x, self.out_dim, ft, fs)?;
        binary_inplace(g, &y, &shortcut, Binary::Add)?;
        Ok(y)
    }
}
