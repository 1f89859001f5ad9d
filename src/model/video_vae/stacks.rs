//! The `Encoder3d` and `Decoder3d` stacks of the Wan2.2 VAE — reference `vae2_2.py`, NAVA.md §7.1: widths from
//! `dim`/`dec_dim` and `dim_mult`, one call per chunk with the shared [`FeatCache`], traces per stage.

use crate::gpu::{Gpu, GpuTensor};
use crate::weights::{KeyTable, Scope};

use super::blocks::{AttentionBlock, CausalConv, DownBlock, FeatCache, ResidualBlock, RmsNorm, Trace, UpBlock};
use super::{Precision, VaeConfig};
use crate::model::ModelError;

/// Channel widths of the decoder stages: `dec_dim · [dim_mult[-1]] + dim_mult[::-1]`.
pub fn decoder_dims(c: &VaeConfig) -> Vec<usize> {
    let last = *c.dim_mult.last().expect("validated: dim_mult is not empty");
    std::iter::once(last).chain(c.dim_mult.iter().rev().copied()).map(|u| c.dec_dim * u).collect()
}

/// Channel widths of the encoder stages: `dim · [1] + dim_mult`.
pub fn encoder_dims(c: &VaeConfig) -> Vec<usize> {
    std::iter::once(1).chain(c.dim_mult.iter().copied()).map(|u| c.dim * u).collect()
}

/// The decoder's temporal-upsample flags (`temperal_downsample[::-1]`), per up block.
pub fn temporal_up(c: &VaeConfig, i: usize) -> bool {
    c.temperal_downsample.iter().rev().nth(i).copied().unwrap_or(false)
}

/// `Decoder3d` (`decoder.`): conv1 (z → dims[0]), middle (res, attention, res), up blocks, head (RMS, SiLU,
/// CConv 3³ → 12 = 3 colours × 2×2 patch).
pub struct Decoder {
    conv1: CausalConv,
    middle: (ResidualBlock, AttentionBlock, ResidualBlock),
    upsamples: Vec<UpBlock>,
    head_norm: RmsNorm,
    head_conv: CausalConv,
}

impl Decoder {
    pub fn keys(t: &mut KeyTable, c: &VaeConfig) {
        let d = decoder_dims(c);
        CausalConv::keys(t, "decoder.conv1", d[0], c.z_dim, [3; 3]);
        ResidualBlock::keys(t, "decoder.middle.0", d[0], d[0]);
        AttentionBlock::keys(t, "decoder.middle.1", d[0]);
        ResidualBlock::keys(t, "decoder.middle.2", d[0], d[0]);
        let n = c.dim_mult.len();
        for i in 0..n {
            let name = format!("decoder.upsamples.{i}");
            UpBlock::keys(t, &name, d[i], d[i + 1], c.num_res_blocks + 1, i != n - 1, temporal_up(c, i));
        }
        RmsNorm::keys(t, "decoder.head.0", d[n], false);
        CausalConv::keys(t, "decoder.head.2", 12, d[n], [3; 3]);
    }

    pub fn load(g: &Gpu, root: Scope, c: &VaeConfig, p: Precision) -> Result<Self, ModelError> {
        let d = decoder_dims(c);
        let s = root.scope("decoder");
        let s = s.get();
        let mid = s.scope("middle");
        let mid = mid.get();
        let ups = s.scope("upsamples");
        let ups = ups.get();
        let n = c.dim_mult.len();
        let upsamples = (0..n)
            .map(|i| {
                let (cin, cout, r) = (d[i], d[i + 1], c.num_res_blocks + 1);
                UpBlock::load(g, ups.at(i).get(), cin, cout, r, i != n - 1, temporal_up(c, i), p)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            conv1: CausalConv::load(g, s, "conv1", [d[0], c.z_dim], [3; 3], p)?,
            middle: (
                ResidualBlock::load(g, mid.at(0).get(), d[0], d[0], p)?,
                AttentionBlock::load(g, mid.at(1).get(), d[0], p)?,
                ResidualBlock::load(g, mid.at(2).get(), d[0], d[0], p)?,
            ),
            upsamples,
            head_norm: RmsNorm::load(g, s, "head.0", d[n], false, p)?,
            head_conv: CausalConv::load(g, s, "head.2", [12, d[n]], [3; 3], p)?,
        })
    }

    /// One chunk (one latent frame `[z, 1, h, w]`) → `[12, 1 or 4, 8h, 8w]`; traces `conv1`, `middle0..2`, `up{i}`.
    pub fn forward(
        &self,
        g: &Gpu,
        x: &GpuTensor,
        fc: &mut FeatCache,
        first_chunk: bool,
        trace: &mut Option<&mut Trace>,
    ) -> Result<GpuTensor, ModelError> {
        let mut emit = |name: &str, t: &GpuTensor| {
            if let Some(f) = trace.as_mut() {
                f(name, t);
            }
        };
        fc.rewind();
        let x = self.conv1.forward_cached(g, x, fc)?;
        emit("conv1", &x);
        let x = self.middle.0.forward(g, &x, fc)?;
        emit("middle0", &x);
        let x = self.middle.1.forward(g, &x)?;
        emit("middle1", &x);
        let mut x = self.middle.2.forward(g, &x, fc)?;
        emit("middle2", &x);
        for (i, up) in self.upsamples.iter().enumerate() {
            x = up.forward(g, &x, fc, first_chunk)?;
            emit(&format!("up{i}"), &x);
        }
        let h = self.head_norm.forward(g, &x, true)?;
        drop(x);
        self.head_conv.forward_cached(g, &h, fc)
    }
}

/// `Encoder3d` (`encoder.`): conv1 (12 → dims[0]), down blocks, middle, head (→ 2·z_dim).
pub struct Encoder {
    conv1: CausalConv,
    downsamples: Vec<DownBlock>,
    middle: (ResidualBlock, AttentionBlock, ResidualBlock),
    head_norm: RmsNorm,
    head_conv: CausalConv,
}

impl Encoder {
    pub fn keys(t: &mut KeyTable, c: &VaeConfig) {
        let d = encoder_dims(c);
        let n = c.dim_mult.len();
        CausalConv::keys(t, "encoder.conv1", d[0], 12, [3; 3]);
        for i in 0..n {
            let temporal = c.temperal_downsample.get(i).copied().unwrap_or(false);
            DownBlock::keys(
                t,
                &format!("encoder.downsamples.{i}"),
                d[i],
                d[i + 1],
                c.num_res_blocks,
                i != n - 1,
                temporal,
            );
        }
        ResidualBlock::keys(t, "encoder.middle.0", d[n], d[n]);
        AttentionBlock::keys(t, "encoder.middle.1", d[n]);
        ResidualBlock::keys(t, "encoder.middle.2", d[n], d[n]);
        RmsNorm::keys(t, "encoder.head.0", d[n], false);
        CausalConv::keys(t, "encoder.head.2", 2 * c.z_dim, d[n], [3; 3]);
    }

    pub fn load(g: &Gpu, root: Scope, c: &VaeConfig, p: Precision) -> Result<Self, ModelError> {
        let d = encoder_dims(c);
        let n = c.dim_mult.len();
        let s = root.scope("encoder");
        let s = s.get();
        let mid = s.scope("middle");
        let mid = mid.get();
        let ds = s.scope("downsamples");
        let ds = ds.get();
        let downsamples = (0..n)
            .map(|i| {
                let temporal = c.temperal_downsample.get(i).copied().unwrap_or(false);
                DownBlock::load(g, ds.at(i).get(), d[i], d[i + 1], c.num_res_blocks, i != n - 1, temporal, p)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            conv1: CausalConv::load(g, s, "conv1", [d[0], 12], [3; 3], p)?,
            downsamples,
            middle: (
                ResidualBlock::load(g, mid.at(0).get(), d[n], d[n], p)?,
                AttentionBlock::load(g, mid.at(1).get(), d[n], p)?,
                ResidualBlock::load(g, mid.at(2).get(), d[n], d[n], p)?,
            ),
            head_norm: RmsNorm::load(g, s, "head.0", d[n], false, p)?,
            head_conv: CausalConv::load(g, s, "head.2", [2 * c.z_dim, d[n]], [3; 3], p)?,
        })
    }

    /// One chunk of patchified frames `[12, T, H/2, W/2]` → `[2·z, T', H/16, W/16]`; traces `conv1`, `down{i}`,
    /// `middle2`, `head`.
    pub fn forward(
        &self,
        g: &Gpu,
        x: &GpuTensor,
        fc: &mut FeatCache,
        trace: &mut Option<&mut Trace>,
    ) -> Result<GpuTensor, ModelError> {
        let mut emit = |name: &str, t: &GpuTensor| {
            if let Some(f) = trace.as_mut() {
                f(name, t);
            }
        };
        fc.rewind();
        let mut x = self.conv1.forward_cached(g, x, fc)?;
        emit("conv1", &x);
        for (i, down) in self.downsamples.iter().enumerate() {
            x = down.forward(g, &x, fc)?;
            emit(&format!("down{i}"), &x);
        }
        let x = self.middle.0.forward(g, &x, fc)?;
        let x = self.middle.1.forward(g, &x)?;
        let x = self.middle.2.forward(g, &x, fc)?;
        emit("middle2", &x);
        let h = self.head_norm.forward(g, &x, true)?;
        drop(x);
        let y = self.head_conv.forward_cached(g, &h, fc)?;
        emit("head", &y);
        Ok(y)
    }
}
