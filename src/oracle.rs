//! Running the reference's numerical test cases (`tests/oracles/<case>/`, NAVA_ORACLES): build the module from
//! the case's `meta.json`, feed its `in.*` tensors, and compare every `out.*` and the `trace.*` the module exposes.
//! `nava oracle CASE_DIR` prints the report; `tests/parity.rs` asserts it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::gemm::WeightFormat;
use crate::model::dit::{Dit, DitConfig, DitInput, Speakers, PREFIX};
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
        "nava_dit" => run_dit(g, dir, &meta)?,
        _ => return Err(OracleError::NotImplemented { dir: dir.to_path_buf(), kind }),
    };
    Ok(CaseReport { case: kind, dir: dir.to_path_buf(), comparisons })
}

/// Every case folder under `root` (folders holding a `meta.json`), sorted.
pub fn case_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.join("meta.json").is_file()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

struct Io {
    src: Checkpoint,
}

impl Io {
    fn get(&self, name: &str) -> Option<Vec<f32>> {
        self.src.info(name)?;
        self.src.f32(name).ok().or_else(|| {
            // integer tensors (timesteps, positions)
            let v = self.src.view(name).ok()?;
            let b = &v.bytes;
            match v.dtype() {
                crate::weights::WeightDType::I64 => {
                    Some(b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect())
                }
                _ => None,
            }
        })
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.src.info(name).map(|i| i.shape.clone())
    }
}

fn run_dit(g: &Gpu, dir: &Path, meta: &Value) -> Result<Vec<Comparison>, OracleError> {
    let case = |problem: String| OracleError::Case { dir: dir.to_path_buf(), problem };
    let config: DitConfig = serde_json::from_value(meta["config"].clone()).map_err(|e| case(format!("config: {e}")))?;
    let weights = Checkpoint::open(dir.join("weights.safetensors"))?;
    let dit = Dit::load(g, &weights, PREFIX, config.clone(), WeightFormat::F32)?;
    let io = Io { src: Checkpoint::open(dir.join("io.safetensors"))? };
    let subcases = meta["subcases"].as_object().ok_or_else(|| case("meta.json has no subcases".into()))?;
    let mut out = Vec::new();
    for (sub, spec) in subcases {
        let need = |name: &str| -> Result<(Vec<f32>, Vec<usize>), OracleError> {
            let key = format!("in.{sub}.{name}");
            Ok((io.get(&key).ok_or_else(|| case(format!("missing {key}")))?, io.shape(&key).unwrap_or_default()))
        };
        let i2v = spec["spec"]["i2v"].as_bool().unwrap_or(false);
        let (vid, vid_shape) = if i2v { need("vid_frame0_replaced")? } else { need("vid")? };
        let (audio, audio_shape) = need("audio")?;
        let (ctx, ctx_shape) = need("context")?;
        let (t, _) = need("t")?;
        let spk_embed = io.get(&format!("in.{sub}.spk_embed"));
        let spk_pos = io.get(&format!("in.{sub}.spk_pos"));
        let masking = spec["spec"]["masking_modality"].as_bool().unwrap_or(false);
        let video = g.upload_f32("video", &vid, &vid_shape).map_err(ModelError::from)?;
        let audio = g.upload_f32("audio", &audio, &audio_shape).map_err(ModelError::from)?;
        let context = g.upload_f32("context", &ctx, &ctx_shape).map_err(ModelError::from)?;
        let speakers = spk_embed.map(|e| Speakers {
            embeddings: e.chunks(crate::model::dit::SPK_DIM).map(<[f32]>::to_vec).collect(),
            positions: spk_pos.as_ref().map(|p| p.iter().map(|&v| v as usize).collect()),
        });
        let prepared = dit.prepare_context(g, &context, &context, speakers.as_ref())?;
        let input =
            DitInput { video: &video, audio: &audio, t: t[0], first_frame_is_clean: i2v, masking_modality: masking };
        let mut traces: BTreeMap<String, GpuTensor> = BTreeMap::new();
        traces.insert("ctx_used".into(), prepared.embedded.clone());
        let mut record = |name: &str, t: &GpuTensor| {
            // Block outputs are updated in place: keep a copy.
            if let Ok(c) = crate::kernels::elementwise::copy(g, t) {
                traces.insert(name.to_string(), c);
            }
        };
        let result = dit.forward(g, &input, &prepared, Some(&mut record))?;
        let mut check = |name: String, t: &GpuTensor| -> Result<(), OracleError> {
            if let Some(want) = io.get(&name) {
                let got = g.read_f32_blocking(t).map_err(ModelError::from)?;
                out.push(compare(&name, &got, &want, F32_ABS, F32_REL));
            }
            Ok(())
        };
        check(format!("out.{sub}.vid"), &result.video)?;
        check(format!("out.{sub}.audio"), &result.audio)?;
        for (name, t) in &traces {
            check(format!("trace.{sub}.{name}"), t)?;
        }
    }
    Ok(out)
}
