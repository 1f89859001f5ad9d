//! A copy of some tensors of a checkpoint in host memory, behind [`TensorSource`]: block offload keeps the
//! transformer blocks here (GEMM weights already packed in the GPU layout) and uploads one block at a time.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::kernels::gemm::{PackedWeight, WeightFormat};

use super::{TensorInfo, TensorSource, TensorView, WeightDType, WeightError};

pub struct MemorySource {
    label: PathBuf,
    infos: Vec<TensorInfo>,
    plain: HashMap<String, Vec<u8>>,
    packed: HashMap<String, PackedWeight>,
}

impl MemorySource {
    /// Copies every tensor under `prefix`: two-dimensional `*.weight` tensors packed as `format` (or as the source
    /// already packs them), everything else as f32.
    pub fn capture(src: &dyn TensorSource, prefix: &str, format: WeightFormat) -> Result<Self, WeightError> {
        let mut infos = Vec::new();
        let mut plain = HashMap::new();
        let mut packed = HashMap::new();
        for info in src.tensors().iter().filter(|t| t.name.starts_with(prefix)) {
            let name = info.name.clone();
            if info.shape.len() == 2 && name.ends_with(".weight") {
                let p = match src.packed(&name)? {
                    Some(p) => p.into_owned(),
                    None => PackedWeight::quantize(format, info.shape[0], info.shape[1], &src.f32(&name)?),
                };
                packed.insert(name.clone(), p);
            } else {
                plain.insert(name.clone(), bytemuck::cast_slice(&src.f32(&name)?).to_vec());
            }
            infos.push(TensorInfo { name, dtype: WeightDType::F32, shape: info.shape.clone() });
        }
        Ok(Self { label: src.file().join(prefix.trim_end_matches('.')), infos, plain, packed })
    }

    /// Bytes one upload of everything here moves to the GPU.
    pub fn upload_bytes(&self) -> u64 {
        let packed: usize = self.packed.values().map(|p| 4 * (p.words.len() + p.scales.len())).sum();
        let plain: usize = self.plain.values().map(Vec::len).sum();
        (packed + plain) as u64
    }
}

impl TensorSource for MemorySource {
    fn file(&self) -> &Path {
        &self.label
    }

    fn tensors(&self) -> &[TensorInfo] {
        &self.infos
    }

    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.infos.iter().find(|t| t.name == name)
    }

    fn view(&self, name: &str) -> Result<TensorView<'_>, WeightError> {
        let missing = || WeightError::Missing {
            file: self.label.clone(),
            keys: vec![name.to_string()],
            hint: "not part of the offloaded block".into(),
        };
        let info = self.info(name).ok_or_else(missing)?;
        let bytes = match (self.plain.get(name), self.packed.get(name)) {
            (Some(b), _) => Cow::Borrowed(b.as_slice()),
            (None, Some(p)) => Cow::Owned(bytemuck::cast_slice(&p.dequantize()).to_vec()),
            (None, None) => return Err(missing()),
        };
        Ok(TensorView { info, bytes })
    }

    fn packed(&self, name: &str) -> Result<Option<Cow<'_, PackedWeight>>, WeightError> {
        Ok(self.packed.get(name).map(Cow::Borrowed))
    }
}
