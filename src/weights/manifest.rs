//! The runtime weight layout that `nava convert` writes (convert.rs), and [`ManifestSource`], which reads it.
//!
//! A converted directory holds `manifest.json` and safetensors shards of at most `shard_limit_bytes` of data
//! each. The manifest lists the models; each model has its configuration, its quantisation mode, its shards
//! (file, length, keys) and its tensors. A tensor is stored either
//! - plainly (`"stored": {"dtype": "BF16"}`): a safetensors dtype, same shape as in the official file; or
//! - packed (`"stored": {"packed": "q8"}`): the GEMM weight `[n, k]` (trailing conv dims flattened into k) in
//!   the GPU word layout of [`PackedWeight`] — `words` as a U32 array `[k_pad / per_word, n_pad]` and, for
//!   q8/q4, `scales` as U32 `[k_pad / 32, n_pad / 2]` (f16 pairs), for fp8 U32 `[n_pad]` (f32 bits) — so a
//!   loader uploads the words as they are.
//!
//! Each array is cut along its first dimension into `parts`, each naming a shard, the key in that shard and
//! the row range it holds; arrays larger than the shard limit span several shards.
//!
//! Not done yet: GPU loading from the packed words (`Scope::weight` given a `ManifestSource` still packs from
//! the dequantised f32 view; it should take [`ManifestSource::packed`] as it is when the format matches) and
//! block offload (keeping `*_blocks.N` on the host and uploading one block's arrays at a time).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::{missing, Safetensors, TensorInfo, TensorSource, TensorView, WeightDType, WeightError};
use crate::kernels::gemm::{PackedWeight, WeightFormat};

/// The manifest's file name in a converted directory.
pub const MANIFEST: &str = "manifest.json";
/// `format` of every manifest.
pub const FORMAT: &str = "nava-weights";
/// The layout version this code writes and reads.
pub const VERSION: u32 = 1;

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// The most data bytes a shard holds, unless one row of an array is larger.
    pub shard_limit_bytes: u64,
    pub models: Vec<ModelEntry>,
}

/// One model of a converted directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// `nava-dit`, `umt5`, … (see `nava::model::KnownModel`).
    pub name: String,
    /// The official file's name it was converted from.
    pub source: String,
    /// The conversion mode: `none`, `f32`, `f16`, `q8`, `q4` or `fp8`.
    pub quant: String,
    /// The reference module's configuration.
    pub config: serde_json::Value,
    pub shards: Vec<ShardEntry>,
    pub tensors: Vec<TensorEntry>,
}

/// One shard file of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// File name inside the directory.
    pub file: String,
    /// Length of the whole file (header included), checked when the shard is opened.
    pub bytes: u64,
    /// Keys of the shard, in file order.
    pub tensors: Vec<String>,
}

/// How one tensor is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Stored {
    /// A safetensors dtype name (`"BF16"`), same shape as the official tensor.
    Dtype(String),
    /// A [`WeightFormat`] name (`"q8"`), the GPU word layout.
    Packed(String),
}

/// One tensor of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorEntry {
    pub name: String,
    /// The official tensor's shape.
    pub shape: Vec<usize>,
    /// The official tensor's dtype.
    pub source_dtype: String,
    pub stored: Stored,
    /// Stored bytes (words and scales for packed tensors).
    pub bytes: u64,
    /// The values (plain) or words (packed), in row order.
    pub parts: Vec<Part>,
    /// Packed q8/q4/fp8 only: the scales, in row order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scales: Vec<Part>,
    /// Packed only: max |Wq − W| / max |W| over the tensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rel_err: Option<f32>,
}

/// Rows `rows[0]..rows[1]` of an array, stored under `key` in shard number `shard` of the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    pub shard: usize,
    pub key: String,
    pub rows: [usize; 2],
}

/// Shapes of a packed `[n, k]` weight's two arrays: words `[k_pad / per_word, n_pad]` (U32) and, where the
/// format has them, scales (U32). Mirrors the layout documented in kernels/gemm.rs (a test compares it with
/// [`PackedWeight::quantize`]).
pub fn packed_layout(format: WeightFormat, n: usize, k: usize) -> (Vec<usize>, Option<Vec<usize>>) {
    let n_pad = n.div_ceil(4) * 4;
    let (per_word, k_align) = (format.per_word(), format.k_align());
    let k_pad = k.div_ceil(k_align) * k_align;
    let scales = match format {
        WeightFormat::Q8 | WeightFormat::Q4 => Some(vec![k_pad / 32, n_pad / 2]),
        WeightFormat::Fp8 => Some(vec![n_pad]),
        _ => None,
    };
    (vec![k_pad / per_word, n_pad], scales)
}

/// `[n, k]` of a GEMM weight: out channels, and everything else flattened (as `Scope::weight` does).
pub fn gemm_dims(shape: &[usize]) -> (usize, usize) {
    (shape.first().copied().unwrap_or(1), shape.iter().skip(1).product())
}

impl Manifest {
    /// Reads and checks `dir/manifest.json`.
    pub fn read(dir: impl AsRef<Path>) -> Result<Self, WeightError> {
        let dir = dir.as_ref();
        let file = dir.join(MANIFEST);
        let text = match std::fs::read(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WeightError::Unsupported {
                    file: dir.to_path_buf(),
                    what: format!("a directory without {MANIFEST}"),
                    fix: "give a directory written by `nava convert`, or a checkpoint file".to_string(),
                })
            }
            Err(source) => return Err(WeightError::Io { file, source }),
        };
        Self::from_json(&file, &text)
    }

    /// Parses and checks a manifest already in memory (fetched by a browser); `file` names it in errors.
    pub fn from_json(file: &Path, text: &[u8]) -> Result<Self, WeightError> {
        let bad = |reason: String| WeightError::Manifest { file: file.to_path_buf(), reason };
        let m: Manifest = serde_json::from_slice(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        if m.format != FORMAT || m.version != VERSION {
            return Err(bad(format!(
                "format `{}` version {} (this build reads `{FORMAT}` version {VERSION})",
                m.format, m.version
            )));
        }
        let mut names = HashSet::new();
        for model in &m.models {
            if !names.insert(model.name.as_str()) {
                return Err(bad(format!("model `{}` is listed twice", model.name)));
            }
            check_model(model).map_err(|r| bad(format!("model `{}`: {r}", model.name)))?;
        }
        Ok(m)
    }

    pub fn model(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }
}

/// One stored array: its dtype and shape as stored.
pub(super) type ArraySpec = (WeightDType, Vec<usize>);

/// What one tensor's entry means once parsed.
#[derive(Clone, Copy, Debug)]
pub(super) enum Layout {
    Plain(WeightDType),
    Packed(WeightFormat),
}

impl TensorEntry {
    /// The packed format, `None` for a plainly stored tensor.
    pub fn packed_format(&self) -> Option<WeightFormat> {
        match &self.stored {
            Stored::Packed(f) => WeightFormat::parse(f),
            Stored::Dtype(_) => None,
        }
    }

    pub(super) fn layout(&self) -> Result<Layout, String> {
        match &self.stored {
            Stored::Dtype(d) => WeightDType::from_safetensors_name(d)
                .map(Layout::Plain)
                .ok_or_else(|| format!("`{}` has unknown dtype `{d}`", self.name)),
            Stored::Packed(f) => WeightFormat::parse(f)
                .map(Layout::Packed)
                .ok_or_else(|| format!("`{}` has unknown packed format `{f}`", self.name)),
        }
    }

    /// The arrays as stored: (dtype, shape) of the values or words, and of the scales if any.
    pub(super) fn arrays(&self, layout: Layout) -> (ArraySpec, Option<ArraySpec>) {
        match layout {
            Layout::Plain(d) => ((d, self.shape.clone()), None),
            Layout::Packed(f) => {
                let (n, k) = gemm_dims(&self.shape);
                let (words, scales) = packed_layout(f, n, k);
                ((WeightDType::U32, words), scales.map(|s| (WeightDType::U32, s)))
            }
        }
    }
}

/// Every reference in a model entry points somewhere valid and every array's parts tile its rows.
fn check_model(m: &ModelEntry) -> Result<(), String> {
    for s in &m.shards {
        if s.file.is_empty() || s.file.contains(['/', '\\']) || s.file.starts_with('.') {
            return Err(format!("shard file name `{}` is not a plain file name", s.file));
        }
    }
    let mut names = HashSet::new();
    for t in &m.tensors {
        if !names.insert(t.name.as_str()) {
            return Err(format!("tensor `{}` is listed twice", t.name));
        }
        let layout = t.layout()?;
        if matches!(layout, Layout::Packed(_)) && t.shape.len() < 2 {
            return Err(format!("`{}` is packed but has shape {:?} (a weight needs 2 or more dims)", t.name, t.shape));
        }
        let (values, scales) = t.arrays(layout);
        check_parts(m, &t.name, "values", &t.parts, &values.1)?;
        match scales {
            Some((_, shape)) => check_parts(m, &t.name, "scales", &t.scales, &shape)?,
            None if !t.scales.is_empty() => return Err(format!("`{}` lists scales its format has not", t.name)),
            None => {}
        }
    }
    Ok(())
}

fn check_parts(m: &ModelEntry, name: &str, what: &str, parts: &[Part], shape: &[usize]) -> Result<(), String> {
    let rows = shape.first().copied().unwrap_or(1);
    let mut next = 0;
    for p in parts {
        let Some(shard) = m.shards.get(p.shard) else {
            return Err(format!("`{name}` {what} name shard number {}, of {} listed", p.shard, m.shards.len()));
        };
        if !shard.tensors.contains(&p.key) {
            return Err(format!("`{name}` {what}: key `{}` is not listed in shard {}", p.key, shard.file));
        }
        if p.rows[0] != next || p.rows[1] < p.rows[0] {
            return Err(format!("`{name}` {what}: part rows {:?} do not follow row {next}", p.rows));
        }
        next = p.rows[1];
    }
    if next != rows || parts.is_empty() {
        return Err(format!("`{name}` {what}: parts cover {next} of {rows} rows"));
    }
    Ok(())
}

/// A model entry's tensors as a reader sees them: their descriptions (packed weights as the f32 tensors they
/// dequantise to), how each is stored, and a name index. Shared by the file-system and the streamed stores.
#[derive(Debug)]
pub(super) struct ModelIndex {
    pub infos: Vec<TensorInfo>,
    pub layouts: Vec<Layout>,
    pub index: HashMap<String, usize>,
}

impl ModelIndex {
    /// `model` must have passed [`Manifest::read`]'s checks.
    pub fn new(model: &ModelEntry) -> Self {
        let mut infos = Vec::with_capacity(model.tensors.len());
        let mut layouts = Vec::with_capacity(model.tensors.len());
        let mut index = HashMap::new();
        for t in &model.tensors {
            let layout = t.layout().expect("checked by Manifest::read");
            let dtype = match layout {
                Layout::Plain(d) => d,
                Layout::Packed(_) => WeightDType::F32,
            };
            index.insert(t.name.clone(), infos.len());
            infos.push(TensorInfo { name: t.name.clone(), dtype, shape: t.shape.clone() });
            layouts.push(layout);
        }
        Self { infos, layouts, index }
    }
}

/// The dtype and shape that part `p` of an array of `shape` (as stored) has in its shard.
pub(super) fn part_spec(dtype: WeightDType, shape: &[usize], p: &Part) -> ArraySpec {
    let mut want = shape.to_vec();
    if let Some(first) = want.first_mut() {
        *first = p.rows[1] - p.rows[0];
    }
    (dtype, want)
}

/// One model of a converted directory as a [`TensorSource`]: shards are opened (mapped) on first use, split
/// arrays are joined, and packed weights read as their dequantised f32 values through the trait (use
/// [`ManifestSource::packed`] to get the GPU words without repacking).
#[derive(Debug)]
pub struct ManifestSource {
    dir: PathBuf,
    label: PathBuf,
    model: ModelEntry,
    infos: Vec<TensorInfo>,
    layouts: Vec<Layout>,
    index: HashMap<String, usize>,
    shards: Vec<OnceLock<Safetensors>>,
}

impl ManifestSource {
    /// The model `name` of the converted directory `dir`.
    pub fn open(dir: impl AsRef<Path>, name: &str) -> Result<Self, WeightError> {
        let dir = dir.as_ref();
        let manifest = Manifest::read(dir)?;
        let names: Vec<&str> = manifest.models.iter().map(|m| m.name.as_str()).collect();
        let Some(model) = manifest.model(name) else {
            return Err(WeightError::Missing {
                file: dir.join(MANIFEST),
                keys: vec![name.to_string()],
                hint: format!("this directory holds the models {names:?}"),
            });
        };
        Ok(Self::from_entry(dir, model.clone()))
    }

    /// Every model of the directory, in manifest order.
    pub fn open_all(dir: impl AsRef<Path>) -> Result<Vec<Self>, WeightError> {
        let dir = dir.as_ref();
        Ok(Manifest::read(dir)?.models.into_iter().map(|m| Self::from_entry(dir, m)).collect())
    }

    /// `model` must have passed [`Manifest::read`]'s checks.
    fn from_entry(dir: &Path, model: ModelEntry) -> Self {
        let ModelIndex { infos, layouts, index } = ModelIndex::new(&model);
        Self {
            dir: dir.to_path_buf(),
            label: dir.join(format!("{MANIFEST}#{}", model.name)),
            shards: model.shards.iter().map(|_| OnceLock::new()).collect(),
            model,
            infos,
            layouts,
            index,
        }
    }

    /// The model's entry: name, configuration, quantisation mode, shards.
    pub fn model(&self) -> &ModelEntry {
        &self.model
    }

    /// How `name` is stored.
    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        self.index.get(name).map(|&i| &self.model.tensors[i])
    }

    /// A packed weight in the GPU word layout, as stored (no repacking); `None` if `name` is stored plainly.
    pub fn packed(&self, name: &str) -> Result<Option<PackedWeight>, WeightError> {
        let i = *self.index.get(name).ok_or_else(|| missing(&self.label, name))?;
        let Layout::Packed(format) = self.layouts[i] else {
            return Ok(None);
        };
        let t = &self.model.tensors[i];
        let ((_, words_shape), scales) = t.arrays(self.layouts[i]);
        let words = u32s(&self.join(&t.parts, WeightDType::U32, &words_shape)?);
        let scales = match scales {
            Some((_, shape)) => u32s(&self.join(&t.scales, WeightDType::U32, &shape)?),
            None => Vec::new(),
        };
        let (n, k) = gemm_dims(&t.shape);
        Ok(Some(PackedWeight { format, n, k, words, scales }))
    }

    /// Shard `i`, opened and checked against the manifest on first use.
    fn shard(&self, i: usize) -> Result<&Safetensors, WeightError> {
        if let Some(s) = self.shards[i].get() {
            return Ok(s);
        }
        let entry = &self.model.shards[i];
        let path = self.dir.join(&entry.file);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WeightError::MissingShard { dir: self.dir.clone(), shard: entry.file.clone() })
            }
            Err(source) => return Err(WeightError::Io { file: path, source }),
        };
        let bad = |reason: String| WeightError::Shard { file: path.clone(), reason };
        if len != entry.bytes {
            let what = if len < entry.bytes { "truncated" } else { "longer than written" };
            return Err(bad(format!("the file has {len} bytes, manifest.json lists {} ({what})", entry.bytes)));
        }
        let s = Safetensors::open(&path)?;
        let keys: Vec<&str> = s.tensors().iter().map(|t| t.name.as_str()).collect();
        if keys != entry.tensors.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(bad("its tensors are not the ones manifest.json lists".to_string()));
        }
        Ok(self.shards[i].get_or_init(|| s))
    }

    /// The bytes of one array (`shape` as stored) from its parts, borrowed when there is one part.
    fn join(&self, parts: &[Part], dtype: WeightDType, shape: &[usize]) -> Result<Cow<'_, [u8]>, WeightError> {
        let mut pieces = Vec::with_capacity(parts.len());
        for p in parts {
            let shard = self.shard(p.shard)?;
            let v = shard.view(&p.key)?;
            let (dtype, want) = part_spec(dtype, shape, p);
            if v.dtype() != dtype || v.shape() != want {
                return Err(WeightError::Shard {
                    file: shard.file().to_path_buf(),
                    reason: format!(
                        "`{}` is {} {:?}, manifest.json expects {dtype} {want:?}",
                        p.key,
                        v.dtype(),
                        v.shape()
                    ),
                });
            }
            pieces.push(v.bytes);
        }
        if pieces.len() == 1 {
            return Ok(pieces.pop().expect("one piece"));
        }
        Ok(Cow::Owned(pieces.concat()))
    }
}

pub(super) fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

impl TensorSource for ManifestSource {
    fn file(&self) -> &Path {
        &self.label
    }
    fn packed(&self, name: &str) -> Result<Option<std::borrow::Cow<'_, PackedWeight>>, WeightError> {
        Ok(ManifestSource::packed(self, name)?.map(std::borrow::Cow::Owned))
    }
    fn tensors(&self) -> &[TensorInfo] {
        &self.infos
    }
    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.infos[i])
    }
    fn view(&self, name: &str) -> Result<TensorView<'_>, WeightError> {
        let i = *self.index.get(name).ok_or_else(|| missing(&self.label, name))?;
        let info = &self.infos[i];
        let bytes = match self.layouts[i] {
            Layout::Plain(d) => self.join(&self.model.tensors[i].parts, d, &info.shape)?,
            Layout::Packed(_) => {
                let p = self.packed(name)?.expect("packed layout");
                Cow::Owned(p.dequantize().iter().flat_map(|v| v.to_le_bytes()).collect())
            }
        };
        Ok(TensorView { info, bytes })
    }
}
