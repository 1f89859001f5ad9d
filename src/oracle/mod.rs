//! Running the reference's numerical test cases (`tests/oracles/<case>/`, NAVA_ORACLES): build the module from
//! the case's `meta.json`, feed its `in.*` tensors, and compare every `out.*` and the `trace.*` the module exposes.
//! `nava oracle CASE_DIR` prints the report; `tests/parity.rs` asserts it.

mod audio_vae;
mod dit;
mod redimnet;
mod sampler;
mod t5;
mod tokenizer;
mod vocoder;
mod wan_vae;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::gpu::Gpu;
use crate::model::ModelError;
use crate::weights::{Checkpoint, TensorSource, WeightError};

/// One compared tensor.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub name: String,
    pub max_abs: f64,
    /// `max_abs / max |reference|`.
    pub max_rel: f64,
    /// Allowed `max_abs`.
    pub tolerance: f64,
    pub worst_index: usize,
    pub got: f32,
    pub want: f32,
}

impl Comparison {
    pub fn passed(&self) -> bool {
        self.max_abs <= self.tolerance
    }
}

/// The result of one case folder.
#[derive(Debug)]
pub struct CaseReport {
    pub case: String,
    pub dir: PathBuf,
    pub comparisons: Vec<Comparison>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        !self.comparisons.is_empty() && self.comparisons.iter().all(Comparison::passed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    #[error("{}: {problem}", .dir.display())]
    Case { dir: PathBuf, problem: String },
    #[error("{}: case kind `{kind}` is not implemented yet", .dir.display())]
    NotImplemented { dir: PathBuf, kind: String },
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Tolerance as the cases advise: `1e-4` absolute plus `1e-4 · max |reference|` (f32 paths).
pub const F32_ABS: f64 = 1e-4;
pub const F32_REL: f64 = 1e-4;

/// Compares `got` with `want`, tolerance `abs + rel · max |want|`.
pub fn compare(name: &str, got: &[f32], want: &[f32], abs: f64, rel: f64) -> Comparison {
    let scale = want.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    let mut c = Comparison {
        name: name.to_string(),
        max_abs: 0.0,
        max_rel: 0.0,
        tolerance: abs + rel * scale,
        worst_index: 0,
        got: 0.0,
        want: 0.0,
    };
    if got.len() != want.len() {
        c.max_abs = f64::INFINITY;
        c.max_rel = f64::INFINITY;
        return c;
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (g as f64 - w as f64).abs();
        if e > c.max_abs || e.is_nan() {
            c.max_abs = if e.is_nan() { f64::INFINITY } else { e };
            c.worst_index = i;
            c.got = g;
            c.want = w;
        }
    }
    c.max_rel = c.max_abs / scale.max(1e-30);
    c
}

/// The case kind named by a folder's `meta.json`.
pub fn case_kind(dir: &Path) -> Result<String, OracleError> {
    let meta = read_meta(dir)?;
    Ok(meta["case"].as_str().unwrap_or("").to_string())
}

fn read_meta(dir: &Path) -> Result<Value, OracleError> {
    let case = |problem: String| OracleError::Case { dir: dir.to_path_buf(), problem };
    let text = std::fs::read_to_string(dir.join("meta.json")).map_err(|e| case(format!("meta.json: {e}")))?;
    serde_json::from_str(&text).map_err(|e| case(format!("meta.json: {e}")))
}

/// Runs every sub-case of a case folder.
pub fn run_case(g: &Gpu, dir: &Path) -> Result<CaseReport, OracleError> {
    let meta = read_meta(dir)?;
    let kind = meta["case"].as_str().unwrap_or("").to_string();
    let comparisons = match kind.as_str() {
        "nava_dit" => dit::run(g, dir, &meta)?,
        "nava_sampler" => sampler::run(g, dir, &meta)?,
        "nava_t5" => t5::run(g, dir, &meta)?,
        "ltx_vocoder_bwe" => vocoder::run(g, dir, &meta)?,
        "ltx_audio_vae" => audio_vae::run(g, dir, &meta)?,
        "redimnet" | "redimnet_m" => redimnet::run(g, dir, &meta)?,
        "nava_tokenizer" => tokenizer::run(dir, &meta)?,
        "wan22_vae" => wan_vae::run(g, dir, &meta)?,
        _ => return Err(OracleError::NotImplemented { dir: dir.to_path_buf(), kind }),
    };
    Ok(CaseReport { case: kind, dir: dir.to_path_buf(), comparisons })
}

/// The folder of cases to run: `NAVA_ORACLES` when set, else `default` (the repository's `tests/oracles`).
pub fn root(default: &Path) -> PathBuf {
    std::env::var_os("NAVA_ORACLES").map(PathBuf::from).unwrap_or_else(|| default.to_path_buf())
}

/// The case folders of one kind (`meta.json`'s `case`) under `root`.
pub fn cases_of(root: &Path, kind: &str) -> Vec<PathBuf> {
    case_dirs(root).into_iter().filter(|d| case_kind(d).is_ok_and(|k| k == kind)).collect()
}

/// Every case folder under `root` (folders holding a `meta.json`), sorted.
pub fn case_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.join("meta.json").is_file()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// The `io.safetensors` of a case: inputs, outputs and traces by name.
pub(crate) struct Io {
    src: Checkpoint,
}

impl Io {
    pub(crate) fn open(dir: &Path) -> Result<Self, OracleError> {
        Ok(Self { src: Checkpoint::open(dir.join("io.safetensors"))? })
    }

    /// A tensor's values as f32 (integer tensors converted), if present.
    pub(crate) fn get(&self, name: &str) -> Option<Vec<f32>> {
        self.src.info(name)?;
        self.src.f32(name).ok().or_else(|| {
            let v = self.src.view(name).ok()?;
            match v.dtype() {
                crate::weights::WeightDType::I64 => Some(
                    v.bytes
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                        .collect(),
                ),
                _ => None,
            }
        })
    }

    pub(crate) fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.src.info(name).map(|i| i.shape.clone())
    }
}
