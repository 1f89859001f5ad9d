//! What `nava convert` does to one tensor: the quantisation policy (which tensors run as GEMM weights and so
//! are packed), and the packing itself into [`PackedWeight`]'s GPU word layout with its error.
//!
//! Packing reuses [`PackedWeight`], except fp8 rounding: `f32_to_e4m3` searches all 126 codes per value, too
//! slow for billions of weights, so [`E4m3Rounder`] finds the same code by bisecting the midpoints.

use std::borrow::Cow;

use super::manifest::gemm_dims;
use super::{TensorInfo, TensorSource, WeightDType, WeightError};
use crate::kernels::gemm::{e4m3_to_f32, PackedWeight, WeightFormat};

/// A conversion mode: what `--quant` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Quant {
    /// Every tensor as the official file stores it; only the sharding changes.
    None,
    /// Floats widened to f32 (exact); GEMM weights packed as f32.
    F32,
    /// GEMM weights as 16-bit words: bf16 and f16 weights keep their bits, f32 ones are rounded to f16.
    F16,
    /// GEMM weights as int8 in blocks of 32 along k with an f16 scale per block.
    Q8,
    /// GEMM weights as 4-bit in blocks of 32 along k with an f16 scale per block.
    Q4,
    /// GEMM weights as float8 e4m3 with one f32 scale per output channel.
    Fp8,
}

impl Quant {
    pub const ALL: [Quant; 6] = [Self::None, Self::F32, Self::F16, Self::Q8, Self::Q4, Self::Fp8];

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8 => "q8",
            Self::Q4 => "q4",
            Self::Fp8 => "fp8",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.name() == s)
    }
}

/// GEMM weights smaller than this in either dimension stay plain: they are a rounding error of the model's
/// size and often sensitive (patch embeddings, heads of small width).
pub const MIN_GEMM_DIM: usize = 256;

/// Key fragments of large weights that are not `[out, in…]` GEMM weights, and why.
pub const NOT_GEMM: [(&str, &str); 2] = [
    ("token_embedding.", "an embedding table is gathered by row, not multiplied"),
    (".ups.", "ConvTranspose1d weights are [in, out, k]: packing them as [out, in] would mislead a loader"),
];

/// Whether `t` is packed by the quantising modes: a float `*.weight` with 2 or more dims, at least
/// [`MIN_GEMM_DIM`] output channels and inputs (conv kernels flattened into the inputs), not in [`NOT_GEMM`].
pub fn is_gemm_weight(t: &TensorInfo) -> bool {
    let (n, k) = gemm_dims(&t.shape);
    t.dtype.is_float()
        && t.name.ends_with(".weight")
        && t.shape.len() >= 2
        && n >= MIN_GEMM_DIM
        && k >= MIN_GEMM_DIM
        && !NOT_GEMM.iter().any(|(frag, _)| t.name.contains(frag))
}

/// What becomes of one source tensor.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// Stored plainly as this dtype.
    Plain(WeightDType),
    /// Packed; `fp8_scale` names the official fp8 checkpoint's `weight_scale` companion, folded in.
    Pack { format: WeightFormat, fp8_scale: Option<String> },
    /// A `weight_scale` folded into its packed fp8 weight.
    Folded,
}

/// The fp8 checkpoint's companion of an `F8_E4M3` weight matrix, if present.
fn fp8_scale_of(src: &dyn TensorSource, t: &TensorInfo) -> Option<String> {
    let key = format!("{}_scale", t.name);
    let weight = t.dtype == WeightDType::F8E4M3 && t.name.ends_with(".weight") && t.shape.len() >= 2;
    (weight && src.info(&key).is_some()).then_some(key)
}

/// One action per tensor of `src`, in file order. fp8 weights with a `weight_scale` are packed as fp8 in every
/// mode but `none`: their bytes pass through, never round-tripped through another format.
pub(crate) fn plan_actions(src: &dyn TensorSource, quant: Quant) -> Vec<Action> {
    let folded: std::collections::HashSet<String> = if quant == Quant::None {
        Default::default()
    } else {
        src.tensors().iter().filter_map(|t| fp8_scale_of(src, t)).collect()
    };
    src.tensors()
        .iter()
        .map(|t| {
            if folded.contains(&t.name) {
                return Action::Folded;
            }
            let format = match quant {
                Quant::None => None,
                Quant::F32 => Some(WeightFormat::F32),
                Quant::F16 if t.dtype == WeightDType::BF16 => Some(WeightFormat::BF16),
                Quant::F16 => Some(WeightFormat::F16),
                Quant::Q8 => Some(WeightFormat::Q8),
                Quant::Q4 => Some(WeightFormat::Q4),
                Quant::Fp8 => Some(WeightFormat::Fp8),
            };
            if let (Some(key), Some(_)) = (fp8_scale_of(src, t), format) {
                return Action::Pack { format: WeightFormat::Fp8, fp8_scale: Some(key) };
            }
            match format {
                Some(format) if is_gemm_weight(t) => Action::Pack { format, fp8_scale: None },
                // f32 mode widens every float; f64 is narrowed everywhere (no GPU path reads it).
                _ if t.dtype.is_float() && (quant == Quant::F32 || t.dtype == WeightDType::F64) => {
                    Action::Plain(WeightDType::F32)
                }
                _ => Action::Plain(t.dtype),
            }
        })
        .collect()
}

/// One tensor converted: its stored arrays (values or words, then scales) and, when packed, max |Wq − W| / max |W|.
pub(crate) struct Converted<'a> {
    pub arrays: Vec<Cow<'a, [u8]>>,
    pub max_rel_err: Option<f32>,
}

/// Converts tensor `t` of `src` as `action` says.
pub(crate) fn convert_tensor<'a>(
    src: &'a dyn TensorSource,
    t: &TensorInfo,
    action: &Action,
) -> Result<Converted<'a>, WeightError> {
    match action {
        Action::Folded => Ok(Converted { arrays: Vec::new(), max_rel_err: None }),
        Action::Plain(d) if *d == t.dtype => Ok(Converted { arrays: vec![src.bytes(&t.name)?], max_rel_err: None }),
        Action::Plain(_) => {
            let v = src.f32(&t.name)?;
            Ok(Converted { arrays: vec![Cow::Owned(words_to_bytes(v.iter().map(|x| x.to_bits())))], max_rel_err: None })
        }
        Action::Pack { format, fp8_scale } => {
            let (n, k) = gemm_dims(&t.shape);
            let (packed, reference) = match fp8_scale {
                Some(key) => fp8_passthrough(src, t, key, n, k)?,
                None => {
                    let w = src.f32(&t.name)?;
                    (pack_values(src, t, *format, n, k, &w)?, w)
                }
            };
            let err = max_rel_err(&reference, &packed.dequantize());
            let mut arrays = vec![Cow::Owned(words_to_bytes(packed.words.iter().copied()))];
            if !packed.scales.is_empty() {
                arrays.push(Cow::Owned(words_to_bytes(packed.scales.iter().copied())));
            }
            Ok(Converted { arrays, max_rel_err: Some(err) })
        }
    }
}

/// The official fp8 weight and its `weight_scale` (one value, or one per output channel) packed as they are,
/// with the values they stand for.
fn fp8_passthrough(
    src: &dyn TensorSource,
    t: &TensorInfo,
    scale_key: &str,
    n: usize,
    k: usize,
) -> Result<(PackedWeight, Vec<f32>), WeightError> {
    let bytes = src.bytes(&t.name)?;
    let scale = src.f32(scale_key)?;
    let per_col = match scale.len() {
        1 => vec![scale[0]; n],
        len if len == n => scale,
        len => {
            return Err(WeightError::Shape {
                file: src.file().to_path_buf(),
                key: scale_key.to_string(),
                expected: vec![n],
                found: vec![len],
            })
        }
    };
    let values = bytes.iter().enumerate().map(|(i, &b)| e4m3_to_f32(b) * per_col[i / k.max(1)]).collect();
    Ok((PackedWeight::from_fp8(n, k, &bytes, &per_col), values))
}

/// Packs the values `w` of `t` as `format`; 16-bit sources asked for in their own format keep their bits.
fn pack_values(
    src: &dyn TensorSource,
    t: &TensorInfo,
    format: WeightFormat,
    n: usize,
    k: usize,
    w: &[f32],
) -> Result<PackedWeight, WeightError> {
    Ok(match (t.dtype, format) {
        (WeightDType::BF16, WeightFormat::BF16) | (WeightDType::F16, WeightFormat::F16) => {
            let bytes = src.bytes(&t.name)?;
            let bits: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            PackedWeight::from_half_bits(format, n, k, &bits)
        }
        (_, WeightFormat::Fp8) => quantize_fp8(n, k, w),
        _ => PackedWeight::quantize(format, n, k, w),
    })
}

/// The same packing as `PackedWeight::quantize(Fp8, ..)` (per-column scale max|w| / 448, round to nearest,
/// ties to the smaller magnitude), with the fast rounder.
pub fn quantize_fp8(n: usize, k: usize, w: &[f32]) -> PackedWeight {
    let r = E4m3Rounder::new();
    let mut col = vec![1.0f32; n];
    let mut bytes = vec![0u8; n * k];
    for ni in 0..n {
        let row = &w[ni * k..(ni + 1) * k];
        let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if amax > 0.0 {
            col[ni] = amax / 448.0;
        }
        for (b, &v) in bytes[ni * k..(ni + 1) * k].iter_mut().zip(row) {
            *b = r.round(v / col[ni]);
        }
    }
    PackedWeight::from_fp8(n, k, &bytes, &col)
}

/// f32 → float8 e4m3fn as `kernels::gemm::f32_to_e4m3` rounds (nearest, ties to the smaller magnitude,
/// saturating at ±448, NaN → 0x7f), by bisection over the 126 midpoints between the finite magnitudes.
pub struct E4m3Rounder {
    /// `mids[i]` lies between the magnitudes of codes `i` and `i + 1`; exact in f32 (few significant bits).
    mids: Vec<f32>,
}

impl Default for E4m3Rounder {
    fn default() -> Self {
        Self::new()
    }
}

impl E4m3Rounder {
    pub fn new() -> Self {
        let mags: Vec<f32> = (0u8..=0x7e).map(e4m3_to_f32).collect();
        Self { mids: mags.windows(2).map(|p| (p[0] + p[1]) * 0.5).collect() }
    }

    pub fn round(&self, v: f32) -> u8 {
        if v.is_nan() {
            return 0x7f;
        }
        let sign = if v < 0.0 { 0x80u8 } else { 0 };
        let a = v.abs().min(448.0);
        // Codes 0..=0x7e have increasing magnitudes; a tie stays on the lower code.
        sign | self.mids.partition_point(|&m| m < a) as u8
    }
}

/// max |q − w| / max |w|; 0 for an all-zero tensor.
pub fn max_rel_err(w: &[f32], q: &[f32]) -> f32 {
    let amax = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let dmax = w.iter().zip(q).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    if amax > 0.0 {
        dmax / amax
    } else {
        dmax
    }
}

fn words_to_bytes(words: impl Iterator<Item = u32>) -> Vec<u8> {
    words.flat_map(u32::to_le_bytes).collect()
}
