//! Checkpoint readers: safetensors (memory-mapped or in memory) and PyTorch `.pth` zip archives, whose
//! pickle is parsed — never executed — within the subset that state dicts use. Both give the same view:
//! a list of [`TensorInfo`] and, per tensor, its little-endian bytes or its values as f32.
//!
//! Platform differences live in [`Blob`] (where the bytes come from); everything above it sees `&[u8]`.
//!
//! `nava convert` (convert.rs, pack.rs) writes the runtime layout — a directory of `manifest.json` and
//! safetensors shards, GEMM weights optionally packed in the GPU word layout — and [`ManifestSource`]
//! (manifest.rs) reads it back through the same [`TensorSource`] trait. [`StreamedWeights`] (streamed.rs) is the
//! same directory arriving chunk by chunk (a browser's `fetch()`), written straight into GPU buffers, and its
//! [`StreamedSource`] serves the models through that trait too.

mod blob;
pub mod convert;
mod dtype;
mod error;
pub mod manifest;
mod memory;
pub mod pack;
pub mod pickle;
mod progress;
pub mod pth;
pub mod safetensors;
pub mod safetensors_writer;
mod seeded;
mod store;
mod streamed;
mod tables;
mod zip;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

pub use blob::Blob;
pub use convert::{convert, ConvertOptions, ModelInput, ModelReport, Progress, DEFAULT_SHARD_LIMIT};
pub use dtype::{f8e4m3_to_f32, f8e5m2_to_f32, to_f32, WeightDType};
pub use error::WeightError;
pub use manifest::{Manifest, ManifestSource};
pub use memory::MemorySource;
pub use pack::Quant;
pub use pickle::PickleValue;
pub use progress::WithProgress;
pub use pth::Pth;
pub use safetensors::{Safetensors, SafetensorsHeader};
pub use safetensors_writer::{safetensors_to_vec, write_safetensors, SafetensorsWriter, TensorData};
pub use seeded::SeededSource;
pub use store::{check_keys, compare_keys, KeyReport, KeyTable, LoadError, Scope, ScopeBuf};
pub use streamed::{ShardStream, StreamedSource, StreamedWeights};
pub use tables::{OfficialFile, OfficialTable};

/// Name, element type and shape of one stored tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: WeightDType,
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Number of elements (1 for a scalar); saturates instead of overflowing.
    pub fn numel(&self) -> usize {
        self.shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
    }

    /// Bytes of the stored values.
    pub fn len_bytes(&self) -> usize {
        self.numel().saturating_mul(self.dtype.size_bytes())
    }
}

/// One tensor's description and bytes: borrowed from the file where they are contiguous there, copied
/// when a `.pth` stores a strided view.
#[derive(Clone, Debug)]
pub struct TensorView<'a> {
    pub info: &'a TensorInfo,
    pub bytes: Cow<'a, [u8]>,
}

impl TensorView<'_> {
    pub fn name(&self) -> &str {
        &self.info.name
    }
    pub fn dtype(&self) -> WeightDType {
        self.info.dtype
    }
    pub fn shape(&self) -> &[usize] {
        &self.info.shape
    }
    /// The values as f32 (bf16, f16, f8 and f64 converted); `None` for integer and bool tensors.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        to_f32(self.info.dtype, &self.bytes)
    }
}

/// What every checkpoint reader offers. Model code reads through this and never knows the format.
pub trait TensorSource {
    /// The file (or, in memory, the label) named in errors.
    fn file(&self) -> &Path;
    /// Every tensor, in file order.
    fn tensors(&self) -> &[TensorInfo];
    /// One tensor's description, if present.
    fn info(&self, name: &str) -> Option<&TensorInfo>;
    /// One tensor's description and bytes; [`WeightError::Missing`] if absent.
    fn view(&self, name: &str) -> Result<TensorView<'_>, WeightError>;

    /// Raw little-endian bytes of one tensor.
    fn bytes(&self, name: &str) -> Result<Cow<'_, [u8]>, WeightError> {
        Ok(self.view(name)?.bytes)
    }

    /// A GEMM weight already stored in the GPU word layout (a converted directory), used as it is whatever
    /// format the loader asked for; `None` for ordinary tensors.
    fn packed(&self, _name: &str) -> Result<Option<Cow<'_, crate::kernels::gemm::PackedWeight>>, WeightError> {
        Ok(None)
    }

    /// A tensor already in GPU memory as f32 in its own shape (weights streamed into GPU buffers), used as it is
    /// rather than uploaded again; `None` where the source holds its bytes on the host.
    fn resident_f32(&self, _name: &str) -> Option<crate::gpu::GpuTensor> {
        None
    }

    /// A GEMM weight whose packed words are already in GPU memory (a streamed converted directory), used as it is
    /// whatever format the loader asked for; `None` for ordinary tensors and sources on the host.
    fn resident_weight(
        &self,
        _g: &crate::gpu::Gpu,
        _name: &str,
    ) -> Result<Option<crate::kernels::gemm::Weight>, LoadError> {
        Ok(None)
    }

    /// One float tensor's values as f32; [`WeightError::DType`] for integer and bool tensors.
    fn f32(&self, name: &str) -> Result<Vec<f32>, WeightError> {
        let v = self.view(name)?;
        v.to_f32().ok_or_else(|| WeightError::DType {
            file: self.file().to_path_buf(),
            key: name.to_string(),
            expected: "expected a float tensor (F32, F16, BF16, F8_E4M3, F8_E5M2, F64)".to_string(),
            found: v.dtype(),
        })
    }
}

/// A checkpoint of either format, chosen from the file's first bytes.
#[derive(Debug)]
pub enum Checkpoint {
    Safetensors(Safetensors),
    Pth(Pth),
}

impl Checkpoint {
    /// Opens (memory-maps natively) a `.safetensors` or torch `.pth`/`.pt` file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, WeightError> {
        let path = path.as_ref();
        Self::from_blob(path, Blob::open(path)?)
    }

    /// Reads a checkpoint already in memory; `label` names it in errors.
    pub fn from_blob(label: impl Into<PathBuf>, blob: Blob) -> Result<Self, WeightError> {
        let file = label.into();
        if blob.starts_with(b"PK\x03\x04") || blob.starts_with(b"PK\x05\x06") {
            return Ok(Self::Pth(Pth::from_blob(file, blob)?));
        }
        if is_legacy_torch(&blob) {
            return Err(WeightError::Unsupported {
                file,
                what: "a legacy torch.save file (a bare pickle, from PyTorch before 1.6)".to_string(),
                fix: "load and save it again with a current PyTorch, or convert it to safetensors".to_string(),
            });
        }
        Ok(Self::Safetensors(Safetensors::from_blob(file, blob)?))
    }

    fn source(&self) -> &dyn TensorSource {
        match self {
            Self::Safetensors(s) => s,
            Self::Pth(p) => p,
        }
    }
}

impl TensorSource for Checkpoint {
    fn file(&self) -> &Path {
        self.source().file()
    }
    fn tensors(&self) -> &[TensorInfo] {
        self.source().tensors()
    }
    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.source().info(name)
    }
    fn view(&self, name: &str) -> Result<TensorView<'_>, WeightError> {
        self.source().view(name)
    }
}

/// Pre-1.6 torch.save files are a bare pickle opening with the magic number 0x1950a86a20f9469cfc6c
/// (`PROTO n, LONG1 10 bytes`). A safetensors header length can begin with 0x80 too, so the whole
/// magic is compared.
fn is_legacy_torch(b: &[u8]) -> bool {
    const MAGIC: [u8; 12] = [0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    b.len() >= 14 && b[0] == 0x80 && b.get(2..14) == Some(&MAGIC[..])
}

/// Elements of `shape`, `None` on overflow. Any zero dim gives 0 whatever the others are.
fn checked_numel(shape: &[usize]) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

fn missing(file: &Path, name: &str) -> WeightError {
    WeightError::Missing {
        file: file.to_path_buf(),
        keys: vec![name.to_string()],
        hint: "the file has no such tensor: is this the right checkpoint for this model?".to_string(),
    }
}
