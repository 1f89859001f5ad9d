//! `nava convert`: official checkpoints → the runtime layout of manifest.rs (a directory of `manifest.json` and
//! safetensors shards), optionally quantising the GEMM weights (pack.rs says which and how).
//!
//! The work streams: the shard layout is planned from the headers alone (stored sizes follow from shapes and
//! formats), then tensors are converted one at a time and written in order, so host memory holds about one
//! tensor (its f32 values, packed words and dequantised copy when packed) besides the mapped source. Everything
//! is written into a hidden sibling directory that is renamed to the output only when complete, and removed
//! on any error.

use std::borrow::Cow;
use std::fs;
use std::path::{Path, PathBuf};

use super::manifest::{gemm_dims, packed_layout, Manifest, ModelEntry, Part, ShardEntry, Stored, TensorEntry};
use super::manifest::{FORMAT, MANIFEST, VERSION};
use super::pack::{convert_tensor, plan_actions, Action, Quant};
use super::{SafetensorsWriter, TensorInfo, TensorSource, WeightDType, WeightError};
use crate::kernels::gemm::WeightFormat;

/// The shard size the runtime layout uses: small enough for a browser to fetch and hash one shard at a time.
pub const DEFAULT_SHARD_LIMIT: u64 = 256 << 20;

/// One official file to convert.
pub struct ModelInput<'a> {
    /// The model's name in the manifest (`nava-dit`, `umt5`, …); shards are named after it.
    pub name: String,
    /// The official file's name, recorded in the manifest.
    pub source_name: String,
    pub source: &'a dyn TensorSource,
    /// The reference module's configuration, recorded in the manifest.
    pub config: serde_json::Value,
    pub quant: Quant,
}

#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// Most data bytes per shard (a single row larger than this gets a shard of its own).
    pub shard_limit_bytes: u64,
    /// Replace an existing non-empty output directory.
    pub overwrite: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self { shard_limit_bytes: DEFAULT_SHARD_LIMIT, overwrite: false }
    }
}

/// Reported after each tensor; bytes are source bytes, over all models.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    pub model: &'a str,
    pub tensor: &'a str,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// The worst packed tensor of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct WorstError {
    pub tensor: String,
    pub format: WeightFormat,
    /// max |Wq − W| / max |W|.
    pub rel_err: f32,
}

/// What a conversion did, per model.
#[derive(Clone, Debug)]
pub struct ModelReport {
    pub name: String,
    pub tensors: usize,
    /// Source tensor bytes.
    pub bytes_in: u64,
    /// Shard file bytes (headers included).
    pub bytes_out: u64,
    pub shards: usize,
    /// Tensors packed in a GEMM weight format.
    pub packed: usize,
    /// Arrays cut across shards.
    pub split: usize,
    pub worst: Option<WorstError>,
}

/// One stored array (values, words or scales) and where its rows go.
struct Array {
    /// The key when stored whole; split parts get `#<n>` appended.
    key: String,
    dtype: WeightDType,
    shape: Vec<usize>,
    rows: usize,
    row_bytes: u64,
    parts: Vec<Part>,
}

/// One source tensor's plan.
struct Planned<'t> {
    info: &'t TensorInfo,
    action: Action,
    arrays: Vec<Array>,
}

/// Converts `models` into the directory `out`. Fails, leaving nothing behind, if `out` exists and is not empty
/// (unless `opts.overwrite`), or on any read or write error.
pub fn convert(
    out: &Path,
    models: &[ModelInput<'_>],
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<Vec<ModelReport>, WeightError> {
    let out_name = out.file_name().ok_or_else(|| WeightError::Write {
        file: out.to_path_buf(),
        key: String::new(),
        reason: "the output must be a directory path ending in a name".to_string(),
    })?;
    if is_occupied(out)? && !opts.overwrite {
        return Err(WeightError::Io {
            file: out.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists and is not empty: choose another output directory or pass --overwrite",
            ),
        });
    }
    let mut seen = std::collections::HashSet::new();
    for m in models {
        if m.name.is_empty() || m.name.contains(['/', '\\']) || m.name.starts_with('.') || !seen.insert(&m.name) {
            return Err(write_err(out, &m.name, "model names must be distinct plain names"));
        }
    }
    let tmp =
        TempDir::create(out.with_file_name(format!(".{}.partial-{}", out_name.to_string_lossy(), std::process::id())))?;
    let limit = opts.shard_limit_bytes.max(1);
    let bytes_total: u64 = models.iter().flat_map(|m| m.source.tensors()).map(|t| t.len_bytes() as u64).sum();
    let mut bytes_done = 0u64;
    progress(&Progress { model: "", tensor: "", bytes_done, bytes_total });

    let mut entries = Vec::with_capacity(models.len());
    let mut reports = Vec::with_capacity(models.len());
    for m in models {
        let mut plan = plan_model(m.source, m.quant);
        let shard_keys = assign_shards(&mut plan, limit);
        let files: Vec<String> = (1..=shard_keys.len()).map(|i| format!("{}-{i:05}.safetensors", m.name)).collect();
        let mut report = ModelReport {
            name: m.name.clone(),
            tensors: m.source.tensors().len(),
            bytes_in: m.source.tensors().iter().map(|t| t.len_bytes() as u64).sum(),
            bytes_out: 0,
            shards: files.len(),
            packed: 0,
            split: plan.iter().flat_map(|p| &p.arrays).filter(|a| a.parts.len() > 1).count(),
            worst: None,
        };
        let mut tensors = Vec::new();
        let mut shards = ShardSeq { dir: &tmp.path, model: &m.name, files: &files, keys: &shard_keys, open: None };
        for p in &plan {
            let conv = convert_tensor(m.source, p.info, &p.action)?;
            if conv.arrays.len() != p.arrays.len() {
                return Err(write_err(&tmp.path, &p.info.name, "internal: the packed arrays differ from the plan"));
            }
            for (a, bytes) in p.arrays.iter().zip(&conv.arrays) {
                for part in &a.parts {
                    let range = part.rows[0] as u64 * a.row_bytes..part.rows[1] as u64 * a.row_bytes;
                    shards.write(part, &bytes[range.start as usize..range.end as usize])?;
                }
            }
            if let Some(e) = tensor_entry(p, conv.max_rel_err) {
                if let (Stored::Packed(_), Some(rel_err)) = (&e.stored, e.max_rel_err) {
                    report.packed += 1;
                    let format = e.packed_format().expect("written by this module");
                    if report.worst.as_ref().is_none_or(|w| rel_err > w.rel_err || rel_err.is_nan()) {
                        report.worst = Some(WorstError { tensor: e.name.clone(), format, rel_err });
                    }
                }
                tensors.push(e);
            }
            bytes_done += p.info.len_bytes() as u64;
            progress(&Progress { model: &m.name, tensor: &p.info.name, bytes_done, bytes_total });
        }
        shards.finish()?;
        let mut shard_entries = Vec::with_capacity(files.len());
        for (file, keys) in files.iter().zip(&shard_keys) {
            let path = tmp.path.join(file);
            let bytes = fs::metadata(&path).map_err(|source| WeightError::Io { file: path, source })?.len();
            report.bytes_out += bytes;
            shard_entries.push(ShardEntry {
                file: file.clone(),
                bytes,
                tensors: keys.iter().map(|k| k.0.clone()).collect(),
            });
        }
        entries.push(ModelEntry {
            name: m.name.clone(),
            source: m.source_name.clone(),
            quant: m.quant.name().to_string(),
            config: m.config.clone(),
            shards: shard_entries,
            tensors,
        });
        reports.push(report);
    }
    let manifest = Manifest { format: FORMAT.to_string(), version: VERSION, shard_limit_bytes: limit, models: entries };
    write_manifest(&tmp.path, &manifest)?;
    tmp.commit(out)?;
    Ok(reports)
}

fn write_err(file: &Path, key: &str, reason: &str) -> WeightError {
    WeightError::Write { file: file.to_path_buf(), key: key.to_string(), reason: reason.to_string() }
}

/// Whether `out` exists as anything but an empty directory.
fn is_occupied(out: &Path) -> Result<bool, WeightError> {
    let io = |source| WeightError::Io { file: out.to_path_buf(), source };
    match fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(e)),
        Ok(m) if m.is_dir() => Ok(fs::read_dir(out).map_err(io)?.next().is_some()),
        Ok(_) => Ok(true),
    }
}

/// Actions and stored arrays of every tensor (folded fp8 scales have none).
fn plan_model(src: &dyn TensorSource, quant: Quant) -> Vec<Planned<'_>> {
    let actions = plan_actions(src, quant);
    src.tensors()
        .iter()
        .zip(actions)
        .map(|(info, action)| {
            let shapes: Vec<(String, WeightDType, Vec<usize>)> = match &action {
                Action::Folded => Vec::new(),
                Action::Plain(d) => vec![(info.name.clone(), *d, info.shape.clone())],
                Action::Pack { format, .. } => {
                    let (n, k) = gemm_dims(&info.shape);
                    let (words, scales) = packed_layout(*format, n, k);
                    let mut v = vec![(format!("{}:words", info.name), WeightDType::U32, words)];
                    v.extend(scales.map(|s| (format!("{}:scales", info.name), WeightDType::U32, s)));
                    v
                }
            };
            let arrays = shapes
                .into_iter()
                .map(|(key, dtype, shape)| {
                    let rows = shape.first().copied().unwrap_or(1);
                    let row_elems: usize = shape.iter().skip(1).product();
                    let row_bytes = (row_elems * dtype.size_bytes()) as u64;
                    Array { key, dtype, shape, rows, row_bytes, parts: Vec::new() }
                })
                .collect();
            Planned { info, action, arrays }
        })
        .collect()
}

/// Fills every array's parts, packing arrays into shards of at most `limit` bytes in tensor order. An array
/// larger than `limit` is cut by rows: it fills the current shard, whole shards, then starts the next.
/// Returns each shard's keys with their dtype and shape, in write order.
fn assign_shards(plan: &mut [Planned<'_>], limit: u64) -> Vec<Vec<(String, WeightDType, Vec<usize>)>> {
    let mut shards: Vec<Vec<(String, WeightDType, Vec<usize>)>> = Vec::new();
    let mut used = limit; // no shard open yet: the first array opens one
    for a in plan.iter_mut().flat_map(|p| p.arrays.iter_mut()) {
        let total = a.rows as u64 * a.row_bytes;
        let mut pieces = Vec::new();
        if total <= limit || a.rows <= 1 {
            if used + total > limit || shards.is_empty() {
                shards.push(Vec::new());
                used = 0;
            }
            pieces.push((shards.len() - 1, 0, a.rows));
            used += total;
        } else {
            let mut start = 0;
            while start < a.rows {
                let mut fit = (limit.saturating_sub(used) / a.row_bytes) as usize;
                if fit == 0 || shards.is_empty() {
                    shards.push(Vec::new());
                    used = 0;
                    fit = ((limit / a.row_bytes) as usize).max(1);
                }
                let end = a.rows.min(start + fit);
                pieces.push((shards.len() - 1, start, end));
                used += (end - start) as u64 * a.row_bytes;
                start = end;
            }
        }
        let split = pieces.len() > 1;
        for (i, (shard, start, end)) in pieces.into_iter().enumerate() {
            let key = if split { format!("{}#{i}", a.key) } else { a.key.clone() };
            let mut shape = a.shape.clone();
            if let Some(first) = shape.first_mut() {
                *first = end - start;
            }
            shards[shard].push((key.clone(), a.dtype, shape));
            a.parts.push(Part { shard, key, rows: [start, end] });
        }
    }
    shards
}

/// The manifest entry of a planned tensor; `None` for a folded fp8 scale.
fn tensor_entry(p: &Planned<'_>, max_rel_err: Option<f32>) -> Option<TensorEntry> {
    let stored = match &p.action {
        Action::Folded => return None,
        Action::Plain(d) => Stored::Dtype(d.safetensors_name().to_string()),
        Action::Pack { format, .. } => Stored::Packed(format.name().to_string()),
    };
    let mut arrays = p.arrays.iter();
    let values = arrays.next().expect("a stored tensor has its values");
    Some(TensorEntry {
        name: p.info.name.clone(),
        shape: p.info.shape.clone(),
        source_dtype: p.info.dtype.safetensors_name().to_string(),
        stored,
        bytes: p.arrays.iter().map(|a| a.rows as u64 * a.row_bytes).sum(),
        parts: values.parts.clone(),
        scales: arrays.next().map(|a| a.parts.clone()).unwrap_or_default(),
        max_rel_err,
    })
}

/// The shards of one model, written one after the other.
struct ShardSeq<'a> {
    dir: &'a Path,
    model: &'a str,
    files: &'a [String],
    keys: &'a [Vec<(String, WeightDType, Vec<usize>)>],
    open: Option<(usize, SafetensorsWriter)>,
}

impl ShardSeq<'_> {
    /// Writes one part, finishing the current shard and starting the next as the plan moves on.
    fn write(&mut self, part: &Part, bytes: &[u8]) -> Result<(), WeightError> {
        while self.open.as_ref().is_none_or(|(i, _)| *i < part.shard) {
            let next = self.open.as_ref().map_or(0, |(i, _)| i + 1);
            if let Some((_, w)) = self.open.take() {
                w.finish()?;
            }
            let plan = self.keys[next]
                .iter()
                .map(|(name, dtype, shape)| TensorInfo { name: name.clone(), dtype: *dtype, shape: shape.clone() })
                .collect();
            let meta = [("format", FORMAT), ("model", self.model)];
            self.open = Some((next, SafetensorsWriter::create(self.dir.join(&self.files[next]), plan, &meta)?));
        }
        let (_, w) = self.open.as_mut().expect("opened above");
        w.write(&part.key, bytes)
    }

    fn finish(mut self) -> Result<(), WeightError> {
        match self.open.take() {
            Some((i, w)) if i + 1 == self.files.len() => w.finish(),
            None if self.files.is_empty() => Ok(()),
            _ => Err(write_err(self.dir, self.model, "internal: not every planned shard was written")),
        }
    }
}

/// `manifest.json`: compact JSON with one line per shard and per tensor, so it stays small (a browser fetches
/// it first) and still reads and greps line by line.
fn write_manifest(dir: &Path, m: &Manifest) -> Result<(), WeightError> {
    let path = dir.join(MANIFEST);
    let io = |source| WeightError::Io { file: path.clone(), source };
    let mut text = format!(
        "{{\"format\":{},\"version\":{},\"shard_limit_bytes\":{},\"models\":[",
        to_json(&path, &m.format)?,
        m.version,
        m.shard_limit_bytes
    );
    for (i, model) in m.models.iter().enumerate() {
        text.push_str(if i == 0 { "\n{" } else { ",\n{" });
        text.push_str(&format!(
            "\"name\":{},\"source\":{},\"quant\":{},\n\"config\":{},\n\"shards\":[",
            to_json(&path, &model.name)?,
            to_json(&path, &model.source)?,
            to_json(&path, &model.quant)?,
            to_json(&path, &model.config)?
        ));
        for (j, s) in model.shards.iter().enumerate() {
            text.push_str(if j == 0 { "\n" } else { ",\n" });
            text.push_str(&to_json(&path, s)?);
        }
        text.push_str("],\n\"tensors\":[");
        for (j, t) in model.tensors.iter().enumerate() {
            text.push_str(if j == 0 { "\n" } else { ",\n" });
            text.push_str(&to_json(&path, t)?);
        }
        text.push_str("]}");
    }
    text.push_str("\n]}\n");
    let f = fs::File::create(&path).map_err(io)?;
    std::io::Write::write_all(&mut &f, text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

fn to_json<T: serde::Serialize + ?Sized>(file: &Path, v: &T) -> Result<String, WeightError> {
    serde_json::to_string(v).map_err(|e| write_err(file, "", &e.to_string()))
}

/// A directory removed on drop unless committed (renamed to its final name).
struct TempDir {
    path: PathBuf,
    committed: bool,
}

impl TempDir {
    fn create(path: PathBuf) -> Result<Self, WeightError> {
        let _ = fs::remove_dir_all(&path); // a leftover of this process id from an earlier crash
        fs::create_dir_all(&path).map_err(|source| WeightError::Io { file: path.clone(), source })?;
        Ok(Self { path, committed: false })
    }

    /// Puts the finished directory at `out`. An existing `out` (empty, or replaced under --overwrite) is moved
    /// aside first and removed after, so `out` is never half old, half new.
    fn commit(mut self, out: &Path) -> Result<(), WeightError> {
        let io = |source| WeightError::Io { file: out.to_path_buf(), source };
        let old = self.path.with_file_name(format!(
            ".{}.old-{}",
            out.file_name().map(|n| n.to_string_lossy()).unwrap_or(Cow::Borrowed("out")),
            std::process::id()
        ));
        let had_old = fs::symlink_metadata(out).is_ok();
        if had_old {
            fs::rename(out, &old).map_err(io)?;
        }
        if let Err(e) = fs::rename(&self.path, out) {
            if had_old {
                let _ = fs::rename(&old, out);
            }
            return Err(io(e));
        }
        self.committed = true;
        if had_old {
            let _ = if old.is_dir() { fs::remove_dir_all(&old) } else { fs::remove_file(&old) };
        }
        Ok(())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
