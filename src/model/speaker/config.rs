//! ReDimNet's configuration — the keyword arguments of `ReDimNetWrap` (IDRnD/ReDimNet `redimnet/model.py`) as a
//! checkpoint's `model_config` or a case's `meta.json` states them — and the key table they imply.

use serde::{Deserialize, Serialize};

use crate::kernels::attention::MAX_HEAD_DIM;
use crate::weights::{KeyTable, PickleValue};

use super::super::ModelError;
use super::{N_FFT, WIN_LENGTH};

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
