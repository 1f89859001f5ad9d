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
//! and ASTP. Host: the feature front end (f64 FFT, [`SpeakerEncoder::features`]), the final BatchNorm1d and Linear on the pooled
//! `[2·C·F]` vector (under 0.5 M multiply-adds) in f64.

mod config;
mod features;
mod wav;

pub use config::{pickle_to_json, RedimConfig, StageSetup, ASTP_BOTTLENECK, BN_EPS, LN_EPS, N_HEAD, POS_KERNEL};
pub use features::{mel_filterbank, Features, MelBanks, N_FFT, WIN_LENGTH};
pub use wav::{read_voice, resample, MAX_SECONDS, MIN_SECONDS, SAMPLE_RATE, SILENCE_PEAK};

use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::attention::{attention, AttentionOptions};
use crate::kernels::attentive_stats::{attentive_stats, tanh};
use crate::kernels::conv2d_cl::{conv2d_cl, ConvAct};
use crate::kernels::elementwise::{binary, binary_inplace, Binary};
use crate::kernels::gemm::{Act, Weight, WeightFormat};
use crate::kernels::norm::layer_norm_into;
use crate::weights::{check_keys, Scope, TensorInfo, TensorSource, TensorView, WeightError};

use super::dit::Trace;
use super::layers::{LayerNorm, Linear};
use super::ModelError;

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
    #[cfg(not(target_arch = "wasm32"))]
    pub fn embed(&self, g: &Gpu, samples_16k: &[f32]) -> Result<Vec<f32>, ModelError> {
        let feats = self.features(samples_16k)?;
        self.forward_features(g, &feats, None)
    }

    /// [`SpeakerEncoder::embed`] for targets without blocking reads (the browser).
    pub async fn embed_async(&self, g: &Gpu, samples_16k: &[f32]) -> Result<Vec<f32>, ModelError> {
        let feats = self.features(samples_16k)?;
        let pooled = self.pool(g, &feats, None)?;
        let pooled = g.read_f32(&pooled).await?;
        Ok(self.head(&pooled).1)
    }

    /// Backbone, pooling and head on computed features (blocking read of the pooled vector). `trace` receives
    /// what [`SpeakerEncoder::pool`] traces, then `bn` `[2·C·F]`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_features(
        &self,
        g: &Gpu,
        feats: &Features,
        mut trace: Option<&mut Trace>,
    ) -> Result<Vec<f32>, ModelError> {
        let pooled = self.pool(g, feats, trace.as_deref_mut())?;
        let (bn, embedding) = self.head(&g.read_f32_blocking(&pooled)?);
        if let Some(f) = trace.as_mut() {
            f("bn", &g.upload_f32("redimnet bn", &bn, &[bn.len()])?);
        }
        Ok(embedding)
    }

    /// The GPU part on computed features: stem, stages, stage weighting and ASTP → `[2·C·F]`. `trace` receives
    /// `stem`, `stage{i}`, `fin_wght1d` (each `[t, C·F]`, the transpose of the reference's `[C·F, t]`) and `pool`.
    pub fn pool(&self, g: &Gpu, feats: &Features, mut trace: Option<&mut Trace>) -> Result<GpuTensor, ModelError> {
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
            // Recorded launches keep their buffers alive until submitted: submit per stage so that a stage's
            // intermediates return to the pool (peak memory then grows with the stage outputs kept, not the
            // whole forward).
            g.flush()?;
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
        Ok(pooled)
    }

    /// The host head on the pooled vector: (`bn(pooled)`, `linear(bn)`), f64 sums.
    pub fn head(&self, pooled: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let bn: Vec<f64> =
            pooled.iter().zip(self.bn_scale.iter().zip(&self.bn_shift)).map(|(&v, (s, b))| v as f64 * s + b).collect();
        let n2 = bn.len();
        let embedding = (0..self.config.embed_dim)
            .map(|o| {
                let row = &self.linear_weight[o * n2..(o + 1) * n2];
                let acc: f64 = row.iter().zip(&bn).map(|(&w, &v)| w as f64 * v).sum();
                (acc + self.linear_bias[o] as f64) as f32
            })
            .collect();
        (bn.iter().map(|&v| v as f32).collect(), embedding)
    }
}

/// Calls `f` with the weights [`SpeakerEncoder::seeded`] loads (seeded values, the standard front-end buffers), as
/// a source: what the built-in tiny model writes as its converted `redimnet`.
pub fn with_seeded_source<R>(config: &RedimConfig, seed: u64, f: impl FnOnce(&dyn TensorSource) -> R) -> R {
    let seeded = crate::weights::SeededSource::new("seeded ReDimNet", &config.key_table(), seed);
    f(&StandardFrontEnd::new(&seeded, &MelBanks::standard(config.f, config.hop_length)))
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
