//! The `ltx_vocoder_bwe` case: `VocoderWithBWE` on a log-mel (main generator, BWE front end and generator, ×3 skip,
//! 48 kHz output), then NAVA's 48 → 16 kHz resample and ±0.99 clamp; every `out.*` and `trace.*` compared.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::{compare, Comparison, Io, OracleError, F32_ABS, F32_REL};
use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::gemm::WeightFormat;
use crate::model::vocoder::{output_audio, resample, Vocoder, VocoderConfig};
use crate::model::ModelError;
use crate::weights::Checkpoint;

/// NAVA's output rate (`LtxAudioVAE.target_sample_rate`).
const TARGET_RATE: usize = 16000;

pub(crate) fn run(g: &Gpu, dir: &Path, meta: &Value) -> Result<Vec<Comparison>, OracleError> {
    let case = |problem: String| OracleError::Case { dir: dir.to_path_buf(), problem };
    let config: VocoderConfig =
        serde_json::from_value(meta["config"].clone()).map_err(|e| case(format!("config: {e}")))?;
    let weights = Checkpoint::open(dir.join("weights.safetensors"))?;
    let vocoder = Vocoder::load(g, &weights, config.clone(), WeightFormat::F32)?;
    let io = Io::open(dir)?;
    let mel = io.get("in.mel").ok_or_else(|| case("missing in.mel".into()))?;
    let shape = io.shape("in.mel").unwrap_or_default();
    let mel = g.upload_f32("in.mel", &mel, &shape).map_err(ModelError::from)?;

    let mut traces: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut failed = None;
    let mut record = |name: &str, t: &GpuTensor| match g.read_f32_blocking(t) {
        Ok(v) => {
            traces.insert(name.to_string(), v);
        }
        Err(e) => failed = Some(e),
    };
    let parts = vocoder.forward_parts(g, &mel, Some(&mut record))?;
    if let Some(e) = failed {
        return Err(ModelError::from(e).into());
    }
    let read = |t: &GpuTensor| g.read_f32_blocking(t).map_err(|e| OracleError::from(ModelError::from(e)));
    let rate = config.output_rate();
    let outputs = [
        ("out.wave_main16k", read(&parts.main)?),
        ("out.bwe_mel", read(&parts.bwe_mel)?),
        ("out.bwe_residual", read(&parts.residual)?),
        ("out.skip", read(&parts.skip)?),
        ("out.wave48k", read(&parts.wave)?),
        ("out.wave16k", read(&resample(g, &parts.wave, rate, TARGET_RATE)?)?),
        ("out.wave_final", read(&output_audio(g, &parts.wave, rate, TARGET_RATE)?)?),
    ];
    let mut out = Vec::new();
    for (name, got) in &outputs {
        match io.get(name) {
            Some(want) => out.push(compare(name, got, &want, F32_ABS, F32_REL)),
            None => return Err(case(format!("missing {name}"))),
        }
    }
    for (name, got) in &traces {
        let key = format!("trace.{name}");
        if let Some(want) = io.get(&key) {
            out.push(compare(&key, got, &want, F32_ABS, F32_REL));
        }
    }
    Ok(out)
}
