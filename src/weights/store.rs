//! Reading a model's weights by key: a [`Scope`] walks the key tree the way the reference modules nest
//! (`w.scope("double_blocks").at(3).scope("self_attn")`), checks each shape, and turns linear weights into GPU
//! weights of the requested format. [`check_keys`] compares a whole file with a model's expected key table first,
//! so that every missing, unexpected and mis-shaped key is reported in one error.

use std::collections::BTreeMap;

use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::gemm::{PackedWeight, Weight, WeightFormat};
use crate::kernels::KernelError;

use super::{TensorSource, WeightDType, WeightError};

/// Every key a model reads, with its shape.
pub type KeyTable = Vec<(String, Vec<usize>)>;

/// How a file's keys differ from a model's key table: every missing, unexpected and mis-shaped key, in table
/// order (missing, mis-shaped) and file order (unexpected).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyReport {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    /// `(key, expected shape, shape in the file)`.
    pub misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl KeyReport {
    /// Whether the file matches the table exactly.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.misshaped.is_empty()
    }

    /// One line per problem, every one of them (for `nava inspect --expect`).
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.missing.iter().map(|k| format!("missing     {k}")).collect();
        out.extend(self.unexpected.iter().map(|k| format!("unexpected  {k}")));
        out.extend(
            self.misshaped
                .iter()
                .map(|(k, want, got)| format!("mis-shaped  {k}: {got:?} in the file, expected {want:?}")),
        );
        out
    }
}

/// Compares the file with the model's key table. Keys the model does not read are reported too (they usually
/// mean a file of another model), except fp8 `*.weight_scale` companions of fp8 weights.
pub fn compare_keys(src: &dyn TensorSource, expected: &KeyTable) -> KeyReport {
    let want: BTreeMap<&str, &Vec<usize>> = expected.iter().map(|(k, s)| (k.as_str(), s)).collect();
    let mut r = KeyReport::default();
    for (key, shape) in expected {
        match src.info(key) {
            None => r.missing.push(key.clone()),
            Some(info) if &info.shape != shape => r.misshaped.push((key.clone(), shape.clone(), info.shape.clone())),
            Some(_) => {}
        }
    }
    r.unexpected = src
        .tensors()
        .iter()
        .map(|t| t.name.clone())
        .filter(|k| !want.contains_key(k.as_str()))
        .filter(|k| !is_fp8_scale(src, k))
        .collect();
    r
}

/// [`compare_keys`] as one [`WeightError::Mismatch`] carrying the whole report.
pub fn check_keys(src: &dyn TensorSource, expected: &KeyTable, hint: &str) -> Result<(), WeightError> {
    let r = compare_keys(src, expected);
    if r.is_clean() {
        return Ok(());
    }
    Err(WeightError::Mismatch {
        file: src.file().to_path_buf(),
        missing: r.missing,
        unexpected: r.unexpected,
        misshaped: r.misshaped,
        hint: hint.to_string(),
    })
}

fn is_fp8_scale(src: &dyn TensorSource, key: &str) -> bool {
    key.strip_suffix("_scale")
        .and_then(|w| src.info(w))
        .is_some_and(|w| w.dtype == WeightDType::F8E4M3 && key.ends_with(".weight_scale"))
}

/// A position in the key tree of one file.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    src: &'a dyn TensorSource,
    prefix: &'a str,
}

/// An owned prefix for nested scopes (`Scope` borrows its prefix).
pub struct ScopeBuf<'a> {
    src: &'a dyn TensorSource,
    prefix: String,
}

impl<'a> ScopeBuf<'a> {
    pub fn get(&self) -> Scope<'_> {
        Scope { src: self.src, prefix: &self.prefix }
    }
}

impl<'a> Scope<'a> {
    /// The root of `src` under `prefix` (e.g. `"backbone."`, or `""`).
    pub fn root(src: &'a dyn TensorSource, prefix: &'a str) -> Self {
        Self { src, prefix }
    }

    /// The scope of a child module: `name.`.
    pub fn scope(&self, name: &str) -> ScopeBuf<'a> {
        ScopeBuf { src: self.src, prefix: format!("{}{name}.", self.prefix) }
    }

    /// The scope of item `i` of a module list.
    pub fn at(&self, i: usize) -> ScopeBuf<'a> {
        self.scope(&i.to_string())
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn has(&self, name: &str) -> bool {
        self.src.info(&self.key(name)).is_some()
    }

    /// A tensor's values as f32 after checking its shape.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightError> {
        let key = self.key(name);
        let info = self.src.info(&key).ok_or_else(|| WeightError::Missing {
            file: self.src.file().to_path_buf(),
            keys: vec![key.clone()],
            hint: "is this the right model file?".into(),
        })?;
        if info.shape != shape {
            return Err(WeightError::Shape {
                file: self.src.file().to_path_buf(),
                key,
                expected: shape.to_vec(),
                found: info.shape.clone(),
            });
        }
        self.src.f32(&key)
    }

    /// A tensor uploaded as f32.
    pub fn tensor(&self, g: &Gpu, name: &str, shape: &[usize]) -> Result<GpuTensor, LoadError> {
        if let Some(t) = self.src.resident_f32(&self.key(name)) {
            if t.shape() == shape {
                return Ok(t);
            }
        }
        let v = self.f32(name, shape)?;
        Ok(g.upload_f32(&self.key(name), &v, shape)?)
    }

    /// `name` as a GEMM weight `[out, inp]` (any trailing kernel dims are flattened into `inp`, as a convolution
    /// used as a GEMM needs) in `format`. An fp8 weight with its `weight_scale` and a bf16/f16 weight asked for in
    /// its own format pass through unchanged.
    pub fn weight(&self, g: &Gpu, name: &str, shape: &[usize], format: WeightFormat) -> Result<Weight, LoadError> {
        let key = self.key(name);
        let out = shape[0];
        let inp: usize = shape[1..].iter().product();
        let dtype = self.src.info(&key).map(|i| i.dtype);
        if let Some(w) = self.src.resident_weight(g, &key)? {
            if (w.n, w.k) != (out, inp) {
                return Err(LoadError::Weights(WeightError::Shape {
                    file: self.src.file().to_path_buf(),
                    key,
                    expected: shape.to_vec(),
                    found: vec![w.n, w.k],
                }));
            }
            return Ok(w);
        }
        if let Some(p) = self.src.packed(&key)? {
            if (p.n, p.k) != (out, inp) {
                return Err(LoadError::Weights(WeightError::Shape {
                    file: self.src.file().to_path_buf(),
                    key,
                    expected: shape.to_vec(),
                    found: vec![p.n, p.k],
                }));
            }
            return Ok(Weight::upload(g, &key, &p)?);
        }
        let packed = match (dtype, format) {
            (Some(WeightDType::F8E4M3), _) => {
                self.f32(name, shape).map(drop)?; // shape check
                let bytes = self.src.bytes(&key)?;
                let scale = self.src.f32(&format!("{key}_scale")).map_err(|_| WeightError::Missing {
                    file: self.src.file().to_path_buf(),
                    keys: vec![format!("{key}_scale")],
                    hint: "an fp8 weight needs its weight_scale tensor".into(),
                })?;
                let per_col: Vec<f32> = if scale.len() == out { scale } else { vec![scale[0]; out] };
                PackedWeight::from_fp8(out, inp, &bytes, &per_col)
            }
            (Some(WeightDType::BF16), WeightFormat::BF16) | (Some(WeightDType::F16), WeightFormat::F16) => {
                self.f32(name, shape).map(drop)?;
                let bytes = self.src.bytes(&key)?;
                let bits: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
                PackedWeight::from_half_bits(format, out, inp, &bits)
            }
            _ => PackedWeight::quantize(format, out, inp, &self.f32(name, shape)?),
        };
        Ok(Weight::upload(g, &key, &packed)?)
    }
}

/// Loading a model: a file problem or a GPU problem.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

impl From<crate::gpu::GpuError> for LoadError {
    fn from(e: crate::gpu::GpuError) -> Self {
        LoadError::Kernel(KernelError::Gpu(e))
    }
}
