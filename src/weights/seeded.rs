//! Deterministic stand-in weights: any key table filled with seeded values of a sensible scale, behind the same
//! [`TensorSource`] interface as a checkpoint file. Benchmarks use it at real sizes; the built-in tiny model
//! generates its weights this way. Values are made on demand, tensor by tensor.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::{KeyTable, TensorInfo, TensorSource, TensorView, WeightDType, WeightError};

pub struct SeededSource {
    label: PathBuf,
    seed: u64,
    tensors: Vec<TensorInfo>,
}

impl SeededSource {
    pub fn new(label: &str, table: &KeyTable, seed: u64) -> Self {
        let tensors = table
            .iter()
            .map(|(name, shape)| TensorInfo { name: name.clone(), dtype: WeightDType::F32, shape: shape.clone() })
            .collect();
        Self { label: PathBuf::from(label), seed, tensors }
    }

    /// The values of one tensor: `U(−1, 1)/√fan_in` for weights of two or more dims, around 1 for norm scales,
    /// small for biases, `N(0, 1)/√dim`-like for modulation tables and tokens.
    pub fn values(&self, info: &TensorInfo) -> Vec<f32> {
        let n = info.numel();
        let mut s = self.seed ^ fnv(&info.name);
        let mut next = move || {
            // xorshift64*
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            ((s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let name = info.name.as_str();
        let last = info.shape.last().copied().unwrap_or(1).max(1) as f32;
        if info.shape.len() >= 2 && !name.contains("modulation") && !name.ends_with("null_token") {
            let fan_in: usize = info.shape[1..].iter().product();
            let a = 1.0 / (fan_in.max(1) as f32).sqrt();
            (0..n).map(|_| next() * a).collect()
        } else if name.ends_with("bias") {
            (0..n).map(|_| next() * 0.05).collect()
        } else if info.shape.len() == 1 {
            (0..n).map(|_| 1.0 + 0.1 * next()).collect()
        } else {
            let a = (3.0 / last).sqrt();
            (0..n).map(|_| next() * a).collect()
        }
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

impl TensorSource for SeededSource {
    fn file(&self) -> &Path {
        &self.label
    }

    fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    fn view(&self, name: &str) -> Result<TensorView<'_>, WeightError> {
        let info = self.info(name).ok_or_else(|| WeightError::Missing {
            file: self.label.clone(),
            keys: vec![name.to_string()],
            hint: "the key table has no such tensor".into(),
        })?;
        let v = self.values(info);
        Ok(TensorView { info, bytes: Cow::Owned(bytemuck::cast_slice(&v).to_vec()) })
    }
}
