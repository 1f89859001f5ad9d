//! ReDimNet speaker encoder — reference `ReDimNetWrap` / `ReDimNet` (IDRnD/ReDimNet `redimnet/model.py`, with
//! `layers/features.py` `MelBanks`, `layers/convnext.py`, `layers/attention.py`, `layers/redim_structural.py`,
//! `layers/poolings.py` `ASTP`), as NAVA loads it (`torch.hub` `M` / `ft_mix` / `vb2+vox2+cnc`), NAVA.md §5.2.
//! Keys are the `.pt` file's `state_dict` names (`backbone.stage0.3.conv_block.dwconvs.0.weight`, `spec.…`,
//! `pool.…`, `bn.…`, `linear.…`).
//!
//! Layout: the reference's 2-D maps are `[c, f, t]` and its 1-D sequences `[c·f, t]` with channel index `f·c + c`
//! (`to1d`). Here both are time-major and channels-last, `[t, f, c]`, so `to1d`/`to2d` are free reshapes to and
//! from `[t, f·c]`, 1×1 convolutions and the `(stride, 1)` frequency-pooling convolutions are GEMMs over rows, and
//! LayerNorms over channels are row norms. 2-D kernels are transposed to `[.., kt, kf]` at load.
//!
//! GPU: stem, ConvNeXt-like blocks (grouped 3×3 with BatchNorm folded in, exact GELU; 1×1 GEMM residual), the 1-D
//! attention blocks (GEMMs, flash attention, LayerNorms, the 59-tap positional convolution), the stage weighting
//! and ASTP. Host: the feature front end (f64 FFT, [`features`]), the final BatchNorm1d and Linear on the pooled
//! `[2·C·F]` vector (under 0.5 M multiply-adds) in f64.

mod features;
mod wav;

use serde::{Deserialize, Serialize};

pub use features::{mel_filterbank, Features, MelBanks, N_FFT, WIN_LENGTH};
pub use wav::{read_voice, resample, MAX_SECONDS, MIN_SECONDS, SAMPLE_RATE, SILENCE_PEAK};

use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::attention::{attention, AttentionOptions, MAX_HEAD_DIM};
use crate::kernels::attentive_stats::{attentive_stats, tanh};
use crate::kernels::conv2d_cl::{conv2d_cl, ConvAct};
use crate::kernels::elementwise::{binary, binary_inplace, Binary};
use crate::kernels::gemm::{Act, Weight, WeightFormat};
use crate::kernels::norm::layer_norm_into;
use crate::weights::{check_keys, KeyTable, PickleValue, Scope, TensorInfo, TensorSource, TensorView, WeightError};

use super::dit::Trace;
use super::layers::{LayerNorm, Linear};
use super::ModelError;

/// `TransformerEncoderLayer(n_head=4)` in `TimeContextBlock1d`.
pub const N_HEAD: usize = 4;
/// `LayerNorm(eps=1e-6)` of the stem, the 1-D blocks and the transformer.
pub const LN_EPS: f32 = 1e-6;
/// PyTorch's BatchNorm default, used by the ConvNeXt blocks and the embedding head.
pub const BN_EPS: f64 = 1e-5;
/// `PosEncConv(ks=59)`.
pub const POS_KERNEL: usize = 59;
/// ASTP's `bottleneck_dim`.
pub const ASTP_BOTTLENECK: usize = 128;

/// One `stages_setup` entry: `(stride, num_blocks, conv_exp, kernel_sizes, att_block_red)`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct StageSetup(pub usize, pub usize, pub usize, pub Vec<Vec<usize>>, pub Option<usize>);

impl StageSetup {
    pub fn stride(&self) -> usize {
        self.0
    }
    pub fn num_blocks(&self) -> usize {
        self.1
    }
    /// The 1-D block's width is `C·F / att_block_red`; `None` means no 1-D block in the stage.
    pub fn att_block_red(&self) -> Option<usize> {
        self.4
    }
}

/// `ReDimNetWrap(**model_config)`: the keyword arguments as the `.pt` file's `model_config` (and the oracle's
/// `meta.json`) spell them; absent ones take the constructor defaults (the "M version").
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct RedimConfig {
    /// Mel bins (the 2-D map's frequency size).
    #[serde(rename = "F")]
    pub f: usize,
    /// Stem channels.
    #[serde(rename = "C")]
    pub c: usize,
    pub block_1d_type: String,
    pub block_2d_type: String,
    pub stages_setup: Vec<StageSetup>,
    pub group_divisor: usize,
    pub out_channels: Option<usize>,
    pub embed_dim: usize,
    pub hop_length: usize,
    pub pooling_func: String,
    pub feat_type: String,
    pub global_context_att: bool,
    pub emb_bn: bool,
    pub num_classes: Option<usize>,
    pub tf_optimized_arch: bool,
}

impl Default for RedimConfig {
    fn default() -> Self {
        Self::redimnet_m()
    }
}

impl RedimConfig {
    /// ReDimNet-M, the `ReDimNetWrap` defaults: F 72, C 16, six stages, 192-d embedding (4.23 M parameters).
    pub fn redimnet_m() -> Self {
        let s = |stride, blocks, red| StageSetup(stride, blocks, 1, vec![vec![3, 3]], Some(red));
        Self {
            f: 72,
            c: 16,
            block_1d_type: "att".into(),
            block_2d_type: "convnext_like".into(),
            stages_setup: vec![s(1, 2, 12), s(2, 2, 12), s(1, 3, 12), s(2, 4, 8), s(1, 4, 8), s(2, 4, 4)],
            group_divisor: 4,
            out_channels: None,
            embed_dim: 192,
            hop_length: 160,
            pooling_func: "ASTP".into(),
            feat_type: "pt".into(),
            global_context_att: false,
            emb_bn: false,
            num_classes: None,
            tf_optimized_arch: false,
        }
    }

    /// The same architecture at a small width for the seeded demo model: 24 mel bins, 4 stem channels, three
    /// stages, still a 192-d embedding (the DiT's speaker token takes 192 values).
    pub fn tiny() -> Self {
        let s = |stride, blocks| StageSetup(stride, blocks, 1, vec![vec![3, 3]], Some(4));
        Self { f: 24, c: 4, stages_setup: vec![s(1, 1), s(2, 1), s(2, 2)], group_divisor: 2, ..Self::redimnet_m() }
    }

    /// The configuration stored in a `.pt` checkpoint's `model_config` dict.
    pub fn from_pickle(v: &PickleValue) -> Result<Self, ModelError> {
        let json = pickle_to_json(v).map_err(|e| ModelError::Config(format!("model_config: {e}")))?;
        let c: Self = serde_json::from_value(json).map_err(|e| ModelError::Config(format!("model_config: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// Channels of the 1-D sequences, `C·F`.
    pub fn width(&self) -> usize {
        self.c * self.f
    }

    /// Refuses the options this port does not implement, naming each.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.f == 0 || self.c == 0 || self.embed_dim == 0 || self.hop_length == 0 || self.stages_setup.is_empty() {
            return bad("F, C, embed_dim, hop_length and stages_setup must be positive / non-empty".into());
        }
        let unsupported = [
            (self.block_1d_type != "att", format!("block_1d_type `{}` (only `att`)", self.block_1d_type)),
            (
                !matches!(self.block_2d_type.as_str(), "convnext_like" | "convnext_like_relu"),
                format!("block_2d_type `{}` (only `convnext_like`, `convnext_like_relu`)", self.block_2d_type),
            ),
            (self.pooling_func != "ASTP", format!("pooling_func `{}` (only `ASTP`)", self.pooling_func)),
            (
                !matches!(self.feat_type.as_str(), "pt" | "pt_mel"),
                format!("feat_type `{}` (only `pt`)", self.feat_type),
            ),
            (self.out_channels.is_some(), "out_channels (the `mfa` projection)".into()),
            (self.global_context_att, "global_context_att".into()),
            (self.emb_bn, "emb_bn".into()),
            (self.tf_optimized_arch, "tf_optimized_arch".into()),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(on, _)| *on) {
            return bad(format!("this ReDimNet port does not implement {what}"));
        }
        let (mut c, mut f) = (self.c, self.f);
        for (i, s) in self.stages_setup.iter().enumerate() {
            if !matches!(s.stride(), 1..=3) || !f.is_multiple_of(s.stride()) {
                return bad(format!("stage {i}: stride {} must be 1, 2 or 3 and divide F = {f}", s.stride()));
            }
            if s.2 != 1 {
                return bad(format!("stage {i}: conv_exp {} (only 1 is implemented)", s.2));
            }
            c *= s.stride();
            f /= s.stride();
            if self.group_divisor == 0 || !c.is_multiple_of(self.group_divisor) {
                return bad(format!("stage {i}: {c} channels do not split into groups of {}", self.group_divisor));
            }
            if let Some(red) = s.att_block_red() {
                let h = self.width().checked_div(red).unwrap_or(0);
                if h == 0 || !h.is_multiple_of(N_HEAD) || h / N_HEAD > MAX_HEAD_DIM {
                    return bad(format!(
                        "stage {i}: attention width C·F/{red} = {h} must split into {N_HEAD} heads of at most \
                         {MAX_HEAD_DIM}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every key of `ReDimNetWrap(**self).state_dict()` with its shape, in module order.
    pub fn key_table(&self) -> KeyTable {
        let mut t: KeyTable = Vec::new();
        let mut add = |k: String, s: &[usize]| t.push((k, s.to_vec()));
        let (cf, mut c) = (self.width(), self.c);
        let bn = |add: &mut dyn FnMut(String, &[usize]), p: &str, n: usize| {
            for k in ["weight", "bias", "running_mean", "running_var"] {
                add(format!("{p}.{k}"), &[n]);
            }
            add(format!("{p}.num_batches_tracked"), &[]);
        };
        add("backbone.stem.0.weight".into(), &[c, 1, 3, 3]);
        add("backbone.stem.0.bias".into(), &[c]);
        add("backbone.stem.1.weight".into(), &[c]);
        add("backbone.stem.1.bias".into(), &[c]);
        for (i, s) in self.stages_setup.iter().enumerate() {
            let p = format!("backbone.stage{i}");
            let n = i + 1;
            add(format!("{p}.0.w"), &[1, n, if n > 1 { cf } else { 1 }, 1]);
            let stride = s.stride();
            add(format!("{p}.2.weight"), &[stride * c, c, stride, 1]);
            add(format!("{p}.2.bias"), &[stride * c]);
            c *= stride;
            let gdiv = self.group_divisor;
            for b in 0..s.num_blocks() {
                let q = format!("{p}.{}.conv_block", 3 + b);
                add(format!("{q}.dwconvs.0.weight"), &[c, gdiv, 3, 3]);
                add(format!("{q}.dwconvs.0.bias"), &[c]);
                bn(&mut add, &format!("{q}.norm"), c);
                add(format!("{q}.pwconv1.weight"), &[c, c, 1, 1]);
                add(format!("{q}.pwconv1.bias"), &[c]);
            }
            if let Some(red) = s.att_block_red() {
                let h = cf / red;
                let q = format!("{p}.{}", 4 + s.num_blocks());
                add(format!("{q}.red_dim_conv.0.weight"), &[h, cf, 1]);
                add(format!("{q}.red_dim_conv.0.bias"), &[h]);
                add(format!("{q}.red_dim_conv.1.weight"), &[h]);
                add(format!("{q}.red_dim_conv.1.bias"), &[h]);
                add(format!("{q}.tcm.0.conv.weight"), &[h, 1, POS_KERNEL]);
                add(format!("{q}.tcm.0.conv.bias"), &[h]);
                add(format!("{q}.tcm.0.norm.weight"), &[h]);
                add(format!("{q}.tcm.0.norm.bias"), &[h]);
                for proj in ["k_proj", "v_proj", "q_proj", "out_proj"] {
                    add(format!("{q}.tcm.1.attention.{proj}.weight"), &[h, h]);
                    add(format!("{q}.tcm.1.attention.{proj}.bias"), &[h]);
                }
                add(format!("{q}.tcm.1.layer_norm.weight"), &[h]);
                add(format!("{q}.tcm.1.layer_norm.bias"), &[h]);
                add(format!("{q}.tcm.1.feed_forward.intermediate_dense.weight"), &[2 * h, h]);
                add(format!("{q}.tcm.1.feed_forward.intermediate_dense.bias"), &[2 * h]);
                add(format!("{q}.tcm.1.feed_forward.output_dense.weight"), &[h, 2 * h]);
                add(format!("{q}.tcm.1.feed_forward.output_dense.bias"), &[h]);
                add(format!("{q}.tcm.1.final_layer_norm.weight"), &[h]);
                add(format!("{q}.tcm.1.final_layer_norm.bias"), &[h]);
                add(format!("{q}.exp_dim_conv.weight"), &[cf, h, 1]);
                add(format!("{q}.exp_dim_conv.bias"), &[cf]);
            }
        }
        add("backbone.fin_wght1d.w".into(), &[1, self.stages_setup.len() + 1, cf, 1]);
        add("spec.torchfbank.1.flipped_filter".into(), &[1, 1, 2]);
        add("spec.torchfbank.2.spectrogram.window".into(), &[WIN_LENGTH]);
        add("spec.torchfbank.2.mel_scale.fb".into(), &[N_FFT / 2 + 1, self.f]);
        add("pool.linear1.weight".into(), &[ASTP_BOTTLENECK, cf, 1]);
        add("pool.linear1.bias".into(), &[ASTP_BOTTLENECK]);
        add("pool.linear2.weight".into(), &[cf, ASTP_BOTTLENECK, 1]);
        add("pool.linear2.bias".into(), &[cf]);
        bn(&mut add, "bn", 2 * cf);
        add("linear.weight".into(), &[self.embed_dim, 2 * cf]);
        add("linear.bias".into(), &[self.embed_dim]);
        t
    }
}

/// A pickled config value as JSON (tuples become arrays); tensors and bytes are refused.
pub fn pickle_to_json(v: &PickleValue) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match v {
        PickleValue::None => Value::Null,
        PickleValue::Bool(b) => Value::Bool(*b),
        PickleValue::Int(i) => Value::from(*i),
        PickleValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        PickleValue::Str(s) => Value::String(s.clone()),
        PickleValue::List(items) | PickleValue::Tuple(items) => {
            Value::Array(items.iter().map(pickle_to_json).collect::<Result<_, _>>()?)
        }
        PickleValue::Dict(items) => {
            let mut m = serde_json::Map::new();
            for (k, v) in items {
                let k = k.as_str().ok_or("a dict key that is not a string")?;
                m.insert(k.to_string(), pickle_to_json(v)?);
            }
            Value::Object(m)
        }
        PickleValue::Bytes(_) | PickleValue::Tensor(_) => {
            return Err("a tensor or bytes where a value was expected".into())
        }
    })
}

/// Softmax over the `N` inputs of a `weigth1d` `w` `[1, N, C', 1]`, per channel, expanded to `width` channels
/// (`C' = 1` broadcasts): `N` rows of `width` weights.
fn softmax_weights(w: &[f32], n: usize, width: usize) -> Vec<Vec<f32>> {
    let per = w.len() / n.max(1);
    let mut out = vec![vec![0.0f32; width]; n];
    for ch in 0..width {
        let src = if per == 1 { 0 } else { ch };
        let vals: Vec<f64> = (0..n).map(|i| w[i * per + src] as f64).collect();
        let m = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = vals.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        for (row, ei) in out.iter_mut().zip(&e) {
            row[ch] = (ei / s) as f32;
        }
    }
    out
}

/// `weigth1d`: the softmax-weighted sum of earlier outputs, one weight row `[C·F]` per input.
struct Weight1d {
    rows: Vec<GpuTensor>,
}

impl Weight1d {
    fn load(g: &Gpu, w: Scope, n: usize, width: usize) -> Result<Self, ModelError> {
        let per = if n > 1 { width } else { 1 };
        let raw = w.f32("w", &[1, n, per, 1])?;
        let rows = softmax_weights(&raw, n, width)
            .iter()
            .map(|r| g.upload_f32(&w.key("w"), r, &[width]))
            .collect::<Result<_, _>>()?;
        Ok(Self { rows })
    }

    fn forward(&self, g: &Gpu, xs: &[GpuTensor]) -> Result<GpuTensor, ModelError> {
        let acc = binary(g, &xs[0], &self.rows[0], Binary::Mul)?;
        for (x, w) in xs.iter().zip(&self.rows).skip(1) {
            let t = binary(g, x, w, Binary::Mul)?;
            binary_inplace(g, &acc, &t, Binary::Add)?;
        }
        Ok(acc)
    }
}

/// A PyTorch 2-D kernel `[o, i, kf, kt]` as `[o, i, kt, kf]` (time-major data).
fn swap_kernel_axes(w: &[f32], o: usize, i: usize, kf: usize, kt: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; w.len()];
    for oi in 0..o * i {
        for a in 0..kf {
            for b in 0..kt {
                out[(oi * kt + b) * kf + a] = w[(oi * kf + a) * kt + b];
            }
        }
    }
    out
}

/// `stageN.{3+b}.conv_block`: `ConvNeXtLikeBlock(dim=2, kernel_sizes=[(3,3)])`,
/// `x + pwconv1(act(norm(dwconv(x))))` with the BatchNorm folded into the grouped convolution.
struct ConvNeXtBlock {
    dw_weight: GpuTensor,
    dw_bias: GpuTensor,
    groups: usize,
    act: ConvAct,
    pwconv1: Linear,
}

impl ConvNeXtBlock {
    fn load(g: &Gpu, w: Scope, c: usize, gdiv: usize, act: ConvAct, format: WeightFormat) -> Result<Self, ModelError> {
        let dw = w.f32("dwconvs.0.weight", &[c, gdiv, 3, 3])?;
        let db = w.f32("dwconvs.0.bias", &[c])?;
        let gamma = w.f32("norm.weight", &[c])?;
        let beta = w.f32("norm.bias", &[c])?;
        let mean = w.f32("norm.running_mean", &[c])?;
        let var = w.f32("norm.running_var", &[c])?;
        let mut weight = swap_kernel_axes(&dw, c, gdiv, 3, 3);
        let mut bias = vec![0.0f32; c];
        for o in 0..c {
            let s = gamma[o] as f64 / (var[o] as f64 + BN_EPS).sqrt();
            for v in &mut weight[o * gdiv * 9..(o + 1) * gdiv * 9] {
                *v = (*v as f64 * s) as f32;
            }
            bias[o] = ((db[o] as f64 - mean[o] as f64) * s + beta[o] as f64) as f32;
        }
        Ok(Self {
            dw_weight: g.upload_f32(&w.key("dwconvs.0.weight"), &weight, &[c, gdiv, 3, 3])?,
            dw_bias: g.upload_f32(&w.key("dwconvs.0.bias"), &bias, &[c])?,
            groups: c / gdiv,
            act,
            pwconv1: Linear::load_shaped(g, w, "pwconv1", &[c, c, 1, 1], format)?,
        })
    }

    /// `x` `[t, f, c]`, updated in place.
    fn forward(&self, g: &Gpu, x: &GpuTensor) -> Result<(), ModelError> {
        let h = conv2d_cl(g, x, &self.dw_weight, &self.dw_bias, self.groups, self.act)?;
        let [t, f, c] = [x.shape()[0], x.shape()[1], x.shape()[2]];
        let rows = |v: &GpuTensor| v.reshape(&[t * f, c]).expect("same element count");
        self.pwconv1.add_into(g, &rows(&h), &rows(x))
    }
}

/// A square linear whose `N_HEAD` heads are zero-padded to a head dim the attention kernel takes (a multiple of
/// 4): rows of q/k/v, columns of the output projection. Padding adds exact zeros to every dot product.
fn head_padded(w: &[f32], b: &[f32], h: usize, hd: usize, hd_pad: usize, rows: bool) -> (Vec<f32>, Vec<f32>) {
    if hd == hd_pad {
        return (w.to_vec(), b.to_vec());
    }
    let hp = N_HEAD * hd_pad;
    let map = |i: usize| (i / hd) * hd_pad + i % hd;
    if rows {
        let mut pw = vec![0.0f32; hp * h];
        let mut pb = vec![0.0f32; hp];
        for r in 0..h {
            pw[map(r) * h..(map(r) + 1) * h].copy_from_slice(&w[r * h..(r + 1) * h]);
            pb[map(r)] = b[r];
        }
        (pw, pb)
    } else {
        let mut pw = vec![0.0f32; h * hp];
        for r in 0..h {
            for col in 0..h {
                pw[r * hp + map(col)] = w[r * h + col];
            }
        }
        (pw, b.to_vec())
    }
}

/// `tcm.1`: `TransformerEncoderLayer` (post-norm; 4 heads; FFN 2h with GELU-tanh).
struct TransformerLayer {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    layer_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    final_layer_norm: LayerNorm,
    head_dim: usize,
    head_dim_padded: usize,
}

impl TransformerLayer {
    fn load(g: &Gpu, w: Scope, h: usize, format: WeightFormat) -> Result<Self, ModelError> {
        let hd = h / N_HEAD;
        let hd_pad = hd.next_multiple_of(4);
        let att = w.scope("attention");
        let att = att.get();
        let proj = |name: &str, rows: bool| -> Result<Linear, ModelError> {
            let weight = att.f32(&format!("{name}.weight"), &[h, h])?;
            let bias = att.f32(&format!("{name}.bias"), &[h])?;
            let (pw, pb) = head_padded(&weight, &bias, h, hd, hd_pad, rows);
            let (n, k) = if rows { (pb.len(), h) } else { (h, pw.len() / h) };
            Ok(Linear {
                w: Weight::from_f32(g, &att.key(name), format, n, k, &pw)?,
                b: Some(g.upload_f32(&att.key(&format!("{name}.bias")), &pb, &[n])?),
            })
        };
        let ff = w.scope("feed_forward");
        let ff = ff.get();
        Ok(Self {
            q: proj("q_proj", true)?,
            k: proj("k_proj", true)?,
            v: proj("v_proj", true)?,
            out: proj("out_proj", false)?,
            layer_norm: LayerNorm::load(g, w, "layer_norm", h, LN_EPS)?,
            intermediate: Linear::load(g, ff, "intermediate_dense", 2 * h, h, format)?,
            output: Linear::load(g, ff, "output_dense", h, 2 * h, format)?,
            final_layer_norm: LayerNorm::load(g, w, "final_layer_norm", h, LN_EPS)?,
            head_dim: hd,
            head_dim_padded: hd_pad,
        })
    }

    /// `x` `[t, h]`, updated in place.
    fn forward(&self, g: &Gpu, x: &GpuTensor) -> Result<(), ModelError> {
        let t = x.shape()[0];
        let split = |v: GpuTensor| v.reshape(&[t, N_HEAD, self.head_dim_padded]).expect("heads · padded dim");
        let q = split(self.q.forward(g, x, Act::None)?);
        let k = split(self.k.forward(g, x, Act::None)?);
        let v = split(self.v.forward(g, x, Act::None)?);
        let scale = Some(1.0 / (self.head_dim as f32).sqrt());
        let o = attention(g, &q, &k, &v, AttentionOptions { scale, ..Default::default() })?;
        self.out.add_into(g, &o.reshape(&[t, N_HEAD * self.head_dim_padded]).expect("same count"), x)?;
        norm_inplace(g, x, &self.layer_norm)?;
        let hidden = self.intermediate.forward(g, x, Act::GeluTanh)?;
        self.output.add_into(g, &hidden, x)?;
        norm_inplace(g, x, &self.final_layer_norm)
    }
}

fn norm_inplace(g: &Gpu, x: &GpuTensor, ln: &LayerNorm) -> Result<(), ModelError> {
    let rows = x.numel() / x.shape().last().copied().unwrap_or(1).max(1);
    Ok(layer_norm_into(g, x, x, 0..rows, Some(&ln.weight), Some(&ln.bias), ln.eps, None)?)
}

/// `stageN.{4+blocks}`: `TimeContextBlock1d(C·F, h, block_type='att')`:
/// `x + exp_dim_conv(tcm(red_dim_conv(x)))`, `tcm` = `PosEncConv` then the transformer layer.
struct TimeContextBlock {
    red_dim_conv: Linear,
    red_norm: LayerNorm,
    pos_conv_weight: GpuTensor,
    pos_conv_bias: GpuTensor,
    pos_norm: LayerNorm,
    transformer: TransformerLayer,
    exp_dim_conv: Linear,
    h: usize,
}

impl TimeContextBlock {
    fn load(g: &Gpu, w: Scope, cf: usize, h: usize, format: WeightFormat) -> Result<Self, ModelError> {
        let tcm = w.scope("tcm");
        let tcm = tcm.get();
        let pos = tcm.scope("0");
        let pos = pos.get();
        let tr = tcm.scope("1");
        Ok(Self {
            red_dim_conv: Linear::load_shaped(g, w, "red_dim_conv.0", &[h, cf, 1], format)?,
            red_norm: LayerNorm::load(g, w, "red_dim_conv.1", h, LN_EPS)?,
            // [h, 1, 59] is [Cout, 1, kt, kf = 1] for time-major data.
            pos_conv_weight: pos
                .tensor(g, "conv.weight", &[h, 1, POS_KERNEL])?
                .reshape(&[h, 1, POS_KERNEL, 1])
                .expect("same count"),
            pos_conv_bias: pos.tensor(g, "conv.bias", &[h])?,
            pos_norm: LayerNorm::load(g, pos, "norm", h, LN_EPS)?,
            transformer: TransformerLayer::load(g, tr.get(), h, format)?,
            exp_dim_conv: Linear::load_shaped(g, w, "exp_dim_conv", &[cf, h, 1], format)?,
            h,
        })
    }

    /// `x` `[t, C·F]`, updated in place.
    fn forward(&self, g: &Gpu, x: &GpuTensor) -> Result<(), ModelError> {
        let t = x.shape()[0];
        let h = self.red_dim_conv.forward(g, x, Act::None)?;
        norm_inplace(g, &h, &self.red_norm)?;
        let plane = h.reshape(&[t, 1, self.h]).expect("same count");
        let p = conv2d_cl(g, &plane, &self.pos_conv_weight, &self.pos_conv_bias, self.h, ConvAct::None)?;
        let p = p.reshape(&[t, self.h]).expect("same count");
        norm_inplace(g, &p, &self.pos_norm)?;
        binary_inplace(g, &h, &p, Binary::Add)?;
        self.transformer.forward(g, &h)?;
        self.exp_dim_conv.add_into(g, &h, x)
    }
}

/// `backbone.stage{i}`: weighting of all earlier outputs, `to2d`, the `(stride, 1)` frequency-pooling
/// convolution, the 2-D blocks, `to1d` and the optional 1-D block.
struct Stage {
    weights: Weight1d,
    /// `.2`: `Conv2d(c, stride·c, (stride, 1), stride=(stride, 1))` as a GEMM over `stride` adjacent frequency rows.
    pool: Linear,
    blocks: Vec<ConvNeXtBlock>,
    block_1d: Option<TimeContextBlock>,
    /// Channels and frequency size after the stage's stride.
    c: usize,
    f: usize,
}

impl Stage {
    fn forward(&self, g: &Gpu, outs: &[GpuTensor]) -> Result<GpuTensor, ModelError> {
        let t = outs[0].shape()[0];
        let x = self.weights.forward(g, outs)?;
        // [t, f_in, c_in] rows of `stride` frequency bins are contiguous: [t·f_out, stride·c_in].
        let rows = x.reshape(&[t * self.f, x.numel() / (t * self.f)]).expect("stride divides F");
        let y = self.pool.forward(g, &rows, Act::None)?.reshape(&[t, self.f, self.c]).expect("same count");
        for b in &self.blocks {
            b.forward(g, &y)?;
        }
        let y = y.reshape(&[t, self.f * self.c]).expect("to1d");
        if let Some(b) = &self.block_1d {
            b.forward(g, &y)?;
        }
        Ok(y)
    }
}

/// The ReDimNet speaker encoder with its weights on the GPU (backbone, pooling) and host (front end, head).
pub struct SpeakerEncoder {
    pub config: RedimConfig,
    mel: MelBanks,
    stem_weight: GpuTensor,
    stem_bias: GpuTensor,
    stem_norm: LayerNorm,
    stages: Vec<Stage>,
    fin_wght1d: Weight1d,
    pool_linear1: Linear,
    pool_linear2: Linear,
    /// `bn` folded to `y = x·scale + shift` on the host (eval mode).
    bn_scale: Vec<f64>,
    bn_shift: Vec<f64>,
    /// `linear` `[embed_dim, 2·C·F]` and its bias, host f32.
    linear_weight: Vec<f32>,
    linear_bias: Vec<f32>,
}

impl SpeakerEncoder {
    /// Checks the file against the config's key table, then loads. `src` holds the `state_dict` keys (open a `.pt`
    /// with `KnownModel::Redimnet.open`, or use [`SpeakerEncoder::open`]).
    pub fn load(
        g: &Gpu,
        src: &dyn TensorSource,
        config: RedimConfig,
        format: WeightFormat,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        check_keys(
            src,
            &config.key_table(),
            "is this a ReDimNet checkpoint (M-vb2+vox2+cnc-ft_mix.pt) built with this model_config?",
        )?;
        let c = &config;
        let w = Scope::root(src, "");
        let spec = w.scope("spec");
        let mel = MelBanks::load(spec.get(), c.f, c.hop_length)?;
        let bb = w.scope("backbone");
        let bb = bb.get();
        let stem_w = bb.f32("stem.0.weight", &[c.c, 1, 3, 3])?;
        let stem_weight =
            g.upload_f32("backbone.stem.0.weight", &swap_kernel_axes(&stem_w, c.c, 1, 3, 3), &[c.c, 1, 3, 3])?;
        let act = if c.block_2d_type == "convnext_like_relu" { ConvAct::Relu } else { ConvAct::Gelu };
        let (cf, mut ch, mut f) = (c.width(), c.c, c.f);
        let mut stages = Vec::new();
        for (i, s) in c.stages_setup.iter().enumerate() {
            let sc = bb.scope(&format!("stage{i}"));
            let sc = sc.get();
            let stride = s.stride();
            let pool_w = sc.f32("2.weight", &[stride * ch, ch, stride, 1])?;
            // [o, c, s, 1] → [o, s·c + c]: the GEMM reads `stride` frequency rows of `c` channels each.
            let mut pw = vec![0.0f32; pool_w.len()];
            for o in 0..stride * ch {
                for ci in 0..ch {
                    for k in 0..stride {
                        pw[o * stride * ch + k * ch + ci] = pool_w[(o * ch + ci) * stride + k];
                    }
                }
            }
            let pool = Linear {
                w: Weight::from_f32(g, &sc.key("2.weight"), format, stride * ch, stride * ch, &pw)?,
                b: Some(sc.tensor(g, "2.bias", &[stride * ch])?),
            };
            ch *= stride;
            f /= stride;
            let blocks = (0..s.num_blocks())
                .map(|b| {
                    let q = sc.scope(&format!("{}.conv_block", 3 + b));
                    ConvNeXtBlock::load(g, q.get(), ch, c.group_divisor, act, format)
                })
                .collect::<Result<_, _>>()?;
            let block_1d = match s.att_block_red() {
                Some(red) => {
                    let q = sc.scope(&format!("{}", 4 + s.num_blocks()));
                    Some(TimeContextBlock::load(g, q.get(), cf, cf / red, format)?)
                }
                None => None,
            };
            let weights = Weight1d::load(g, sc.scope("0").get(), i + 1, cf)?;
            stages.push(Stage { weights, pool, blocks, block_1d, c: ch, f });
        }
        let pool = w.scope("pool");
        let pool = pool.get();
        let n2 = 2 * cf;
        let gamma = w.f32("bn.weight", &[n2])?;
        let beta = w.f32("bn.bias", &[n2])?;
        let mean = w.f32("bn.running_mean", &[n2])?;
        let var = w.f32("bn.running_var", &[n2])?;
        let bn_scale: Vec<f64> = (0..n2).map(|i| gamma[i] as f64 / (var[i] as f64 + BN_EPS).sqrt()).collect();
        let bn_shift: Vec<f64> = (0..n2).map(|i| beta[i] as f64 - mean[i] as f64 * bn_scale[i]).collect();
        Ok(Self {
            mel,
            stem_weight,
            stem_bias: bb.tensor(g, "stem.0.bias", &[c.c])?,
            stem_norm: LayerNorm::load(g, bb, "stem.1", c.c, LN_EPS)?,
            stages,
            fin_wght1d: Weight1d::load(g, bb.scope("fin_wght1d").get(), c.stages_setup.len() + 1, cf)?,
            pool_linear1: Linear::load_shaped(g, pool, "linear1", &[ASTP_BOTTLENECK, cf, 1], format)?,
            pool_linear2: Linear::load_shaped(g, pool, "linear2", &[cf, ASTP_BOTTLENECK, 1], format)?,
            bn_scale,
            bn_shift,
            linear_weight: w.f32("linear.weight", &[c.embed_dim, n2])?,
            linear_bias: w.f32("linear.bias", &[c.embed_dim])?,
            config,
        })
    }

    /// Opens an official `.pt` (`torch.save({'model_config', 'state_dict'})`) and loads it with the configuration
    /// stored inside.
    pub fn open(g: &Gpu, path: impl AsRef<std::path::Path>, format: WeightFormat) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let ck = super::KnownModel::Redimnet.open(path)?;
        let config = match &ck {
            crate::weights::Checkpoint::Pth(p) => match p.root().get("model_config") {
                Some(v) => RedimConfig::from_pickle(v)?,
                None => {
                    return Err(ModelError::Config(format!(
                        "{} has no `model_config`: expected ReDimNet's torch.save({{'model_config', 'state_dict'}})",
                        path.display()
                    )))
                }
            },
            crate::weights::Checkpoint::Safetensors(_) => {
                return Err(ModelError::Config(format!(
                    "{} is safetensors, which carries no model_config: use SpeakerEncoder::load with a RedimConfig",
                    path.display()
                )))
            }
        };
        Self::load(g, &ck, config, format)
    }

    /// A model with deterministic random weights for `config` (the seeded demo model) and the standard front-end
    /// buffers (pre-emphasis, Hamming window, HTK mel matrix), which random values would make meaningless.
    pub fn seeded(g: &Gpu, config: RedimConfig, seed: u64, format: WeightFormat) -> Result<Self, ModelError> {
        config.validate()?;
        let seeded = crate::weights::SeededSource::new("seeded ReDimNet", &config.key_table(), seed);
        let src = StandardFrontEnd::new(&seeded, &MelBanks::standard(config.f, config.hop_length));
        Self::load(g, &src, config, format)
    }

    /// The front end's buffers.
    pub fn mel(&self) -> &MelBanks {
        &self.mel
    }

    /// The feature front end on a 16 kHz mono waveform (host).
    pub fn features(&self, samples_16k: &[f32]) -> Result<Features, ModelError> {
        let max = MAX_SECONDS * SAMPLE_RATE as usize;
        if samples_16k.len() > max {
            return Err(ModelError::Input {
                what: "waveform".into(),
                problem: format!(
                    "{} samples is longer than {MAX_SECONDS} s at 16 kHz: the reference keeps only the first \
                     {MAX_SECONDS} s (read_voice truncates)",
                    samples_16k.len()
                ),
            });
        }
        if let Some(i) = samples_16k.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::Input { what: "waveform".into(), problem: format!("sample {i} is not finite") });
        }
        self.mel.compute(samples_16k)
    }

    /// The `embed_dim` (192) speaker embedding of a 16 kHz mono waveform (raw, not L2-normalised, as NAVA uses it).
    pub fn embed(&self, g: &Gpu, samples_16k: &[f32]) -> Result<Vec<f32>, ModelError> {
        let feats = self.features(samples_16k)?;
        self.forward_features(g, &feats, None)
    }

    /// Backbone, pooling and head on computed features. `trace` receives `stem`, `stage{i}`, `fin_wght1d` (each
    /// `[t, C·F]`, the transpose of the reference's `[C·F, t]`), `pool` `[2·C·F]` and `bn` `[2·C·F]`.
    pub fn forward_features(
        &self,
        g: &Gpu,
        feats: &Features,
        mut trace: Option<&mut Trace>,
    ) -> Result<Vec<f32>, ModelError> {
        let c = &self.config;
        let t = feats.frames;
        if feats.features.len() != c.f * t {
            return Err(ModelError::Input {
                what: "features".into(),
                problem: format!("{} values for {} mel bins × {t} frames", feats.features.len(), c.f),
            });
        }
        // [F, t] → [t, F, 1].
        let mut host = vec![0.0f32; c.f * t];
        for m in 0..c.f {
            for (i, &v) in feats.features[m * t..(m + 1) * t].iter().enumerate() {
                host[i * c.f + m] = v;
            }
        }
        let x = g.upload_f32("redimnet features", &host, &[t, c.f, 1])?;
        let stem = conv2d_cl(g, &x, &self.stem_weight, &self.stem_bias, 1, ConvAct::None)?;
        norm_inplace(g, &stem, &self.stem_norm)?;
        let mut outs = vec![stem.reshape(&[t, c.width()]).expect("to1d")];
        if let Some(f) = trace.as_mut() {
            f("stem", &outs[0]);
        }
        for (i, s) in self.stages.iter().enumerate() {
            let y = s.forward(g, &outs)?;
            if let Some(f) = trace.as_mut() {
                f(&format!("stage{i}"), &y);
            }
            outs.push(y);
        }
        let x = self.fin_wght1d.forward(g, &outs)?;
        drop(outs);
        if let Some(f) = trace.as_mut() {
            f("fin_wght1d", &x);
        }
        let a = tanh(g, &self.pool_linear1.forward(g, &x, Act::None)?)?;
        let z = self.pool_linear2.forward(g, &a, Act::None)?;
        let pooled = attentive_stats(g, &x, &z)?;
        if let Some(f) = trace.as_mut() {
            f("pool", &pooled);
        }
        let pooled = g.read_f32_blocking(&pooled)?;
        let bn: Vec<f64> =
            pooled.iter().zip(self.bn_scale.iter().zip(&self.bn_shift)).map(|(&v, (s, b))| v as f64 * s + b).collect();
        if let Some(f) = trace.as_mut() {
            let host: Vec<f32> = bn.iter().map(|&v| v as f32).collect();
            f("bn", &g.upload_f32("redimnet bn", &host, &[host.len()])?);
        }
        let n2 = bn.len();
        Ok((0..c.embed_dim)
            .map(|o| {
                let row = &self.linear_weight[o * n2..(o + 1) * n2];
                let acc: f64 = row.iter().zip(&bn).map(|(&w, &v)| w as f64 * v).sum();
                (acc + self.linear_bias[o] as f64) as f32
            })
            .collect())
    }
}

/// A source whose `spec.torchfbank.*` buffers are the standard ones, everything else from `inner`.
struct StandardFrontEnd<'a> {
    inner: &'a dyn TensorSource,
    buffers: Vec<(&'static str, Vec<f32>)>,
}

impl<'a> StandardFrontEnd<'a> {
    fn new(inner: &'a dyn TensorSource, mel: &MelBanks) -> Self {
        let buffers = vec![
            ("spec.torchfbank.1.flipped_filter", mel.flipped_filter.to_vec()),
            ("spec.torchfbank.2.spectrogram.window", mel.window.clone()),
            ("spec.torchfbank.2.mel_scale.fb", mel.fb.clone()),
        ];
        Self { inner, buffers }
    }
}

impl TensorSource for StandardFrontEnd<'_> {
    fn file(&self) -> &std::path::Path {
        self.inner.file()
    }
    fn tensors(&self) -> &[TensorInfo] {
        self.inner.tensors()
    }
    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.inner.info(name)
    }
    fn view(&self, name: &str) -> Result<TensorView<'_>, WeightError> {
        match self.buffers.iter().find(|(k, _)| *k == name) {
            // Seeded sources store F32; a source with other dtypes keeps its own buffers.
            Some((_, v)) => match self.inner.info(name) {
                Some(info) if info.dtype == crate::weights::WeightDType::F32 => {
                    Ok(TensorView { info, bytes: std::borrow::Cow::Owned(bytemuck::cast_slice(v).to_vec()) })
                }
                _ => self.inner.view(name),
            },
            None => self.inner.view(name),
        }
    }
}
