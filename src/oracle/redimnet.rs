//! The `redimnet` and `redimnet_m` cases: ReDimNet on a 16 kHz waveform — the front end's pre-emphasis, mel power
//! and features, the backbone's stem, stage and weighted outputs, ASTP, BatchNorm and the 192-d embedding.
//! Backbone traces are `[C·F, t]` in the reference and `[t, C·F]` here: they are transposed before comparing.

use std::path::Path;

use serde_json::Value;

use super::{compare, Comparison, Io, OracleError, F32_ABS, F32_REL};
use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::gemm::WeightFormat;
use crate::model::speaker::{RedimConfig, SpeakerEncoder};
use crate::model::ModelError;
use crate::weights::Checkpoint;

/// `trace.fbank_power` is compared relatively, as the case advises: `rel · max |reference|`.
const POWER_REL: f64 = 1e-5;

pub(crate) fn run(g: &Gpu, dir: &Path, meta: &Value) -> Result<Vec<Comparison>, OracleError> {
    let case = |problem: String| OracleError::Case { dir: dir.to_path_buf(), problem };
    let config: RedimConfig =
        serde_json::from_value(meta["config"].clone()).map_err(|e| case(format!("config: {e}")))?;
    let weights = Checkpoint::open(dir.join("weights.safetensors"))?;
    let encoder = SpeakerEncoder::load(g, &weights, config.clone(), WeightFormat::F32)?;
    let io = Io::open(dir)?;
    let wave = io.get("in.waveform").ok_or_else(|| case("missing in.waveform".into()))?;
    let feats = encoder.features(&wave)?;
    let mut out = Vec::new();
    let mut check = |name: &str, got: &[f32], abs: f64, rel: f64| {
        if let Some(want) = io.get(name) {
            out.push(compare(name, got, &want, abs, rel));
        }
    };
    check("trace.preemph", &feats.preemph, F32_ABS, F32_REL);
    check("trace.fbank_power", &feats.power, 0.0, POWER_REL);
    check("out.features", &feats.features, F32_ABS, F32_REL);

    let mut traces: Vec<(String, Vec<f32>)> = Vec::new();
    let mut failed = None;
    let mut record = |name: &str, t: &GpuTensor| match g.read_f32_blocking(t) {
        Ok(v) => {
            let v = match t.shape() {
                [rows, cols] => transpose(&v, *rows, *cols),
                _ => v,
            };
            traces.push((name.to_string(), v));
        }
        Err(e) => failed = Some(e),
    };
    let embedding = encoder.forward_features(g, &feats, Some(&mut record))?;
    if let Some(e) = failed {
        return Err(ModelError::from(e).into());
    }
    check("out.embedding", &embedding, F32_ABS, F32_REL);
    for (name, v) in &traces {
        check(&format!("trace.{name}"), v, F32_ABS, F32_REL);
    }
    // The pipeline's entry point gives the same embedding.
    let again = encoder.embed(g, &wave)?;
    out.push(compare("embed(waveform) vs forward_features", &again, &embedding, F32_ABS, F32_REL));
    Ok(out)
}

fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}
