//! The `ltx_audio_vae` case: `LtxAudioVAE.wrapped_decode`'s mel (latent tokens → un-normalised, unpatchified
//! latent → `AudioDecoder`) with every `trace.dec.*`, and `wrapped_encode` (waveform → log-mel → `AudioEncoder` →
//! normalised tokens) with `out.enc_mel`, `out.enc_latent_tokens` and every `trace.enc.*`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::{compare, Comparison, Io, OracleError, F32_ABS, F32_REL};
use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::gemm::WeightFormat;
use crate::model::audio_vae::{AudioDecoder, AudioEncoder, AudioVaeConfig};
use crate::model::ModelError;
use crate::weights::Checkpoint;

pub(crate) fn run(g: &Gpu, dir: &Path, meta: &Value) -> Result<Vec<Comparison>, OracleError> {
    let case = |problem: String| OracleError::Case { dir: dir.to_path_buf(), problem };
    let config: AudioVaeConfig =
        serde_json::from_value(meta["config"].clone()).map_err(|e| case(format!("config: {e}")))?;
    let weights = Checkpoint::open(dir.join("weights.safetensors"))?;
    let decoder = AudioDecoder::load(g, &weights, config.clone(), WeightFormat::F32)?;
    let encoder = AudioEncoder::load(g, &weights, config, WeightFormat::F32)?;
    let io = Io::open(dir)?;
    let tokens = io.get("in.latent_tokens").ok_or_else(|| case("missing in.latent_tokens".into()))?;
    let [b, n, t] = io.shape("in.latent_tokens").unwrap_or_default()[..] else {
        return Err(case("in.latent_tokens is not [B, 128, T]".into()));
    };
    let mut out = Vec::new();
    let mut mels = Vec::new();
    let mut traces: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for i in 0..b {
        // `wrapped_decode` transposes [B, 128, T] to tokens [B, T, 128].
        let item = &tokens[i * n * t..(i + 1) * n * t];
        let rows: Vec<f32> = (0..t * n).map(|k| item[(k % n) * t + k / n]).collect();
        let x = g.upload_f32("latent tokens", &rows, &[t, n]).map_err(ModelError::from)?;
        let mut failed = None;
        let mut record = |name: &str, v: &GpuTensor| match g.read_f32_blocking(v) {
            Ok(v) => traces.entry(name.to_string()).or_default().extend(v),
            Err(e) => failed = Some(e),
        };
        let mel = decoder.decode(g, &x, Some(&mut record))?;
        if let Some(e) = failed {
            return Err(ModelError::from(e).into());
        }
        mels.extend(g.read_f32_blocking(&mel).map_err(ModelError::from)?);
    }
    let want = io.get("out.mel").ok_or_else(|| case("missing out.mel".into()))?;
    out.push(compare("out.mel", &mels, &want, F32_ABS, F32_REL));

    let wave = io.get("in.waveform").ok_or_else(|| case("missing in.waveform".into()))?;
    let [b, c, l] = io.shape("in.waveform").unwrap_or_default()[..] else {
        return Err(case("in.waveform is not [B, C, L]".into()));
    };
    let mut enc_tokens = Vec::new();
    for i in 0..b {
        let w = g.upload_f32("waveform", &wave[i * c * l..(i + 1) * c * l], &[c, l]).map_err(ModelError::from)?;
        let mut failed = None;
        let mut record = |name: &str, v: &GpuTensor| match g.read_f32_blocking(v) {
            Ok(v) => traces.entry(name.to_string()).or_default().extend(v),
            Err(e) => failed = Some(e),
        };
        let tokens = encoder.encode(g, &w, Some(&mut record))?;
        if let Some(e) = failed {
            return Err(ModelError::from(e).into());
        }
        // `wrapped_encode` returns [B, 128, T].
        let v = g.read_f32_blocking(&tokens).map_err(ModelError::from)?;
        let (t, n) = (tokens.shape()[0], tokens.shape()[1]);
        enc_tokens.extend((0..n * t).map(|k| v[(k % t) * n + k / t]));
    }
    if let Some(want) = io.get("out.enc_latent_tokens") {
        out.push(compare("out.enc_latent_tokens", &enc_tokens, &want, F32_ABS, F32_REL));
    }
    if let (Some(want), Some(got)) = (io.get("out.enc_mel"), traces.get("enc.mel")) {
        out.push(compare("out.enc_mel", got, &want, F32_ABS, F32_REL));
    }
    for (name, got) in &traces {
        let key = format!("trace.{name}");
        if let Some(want) = io.get(&key) {
            out.push(compare(&key, got, &want, F32_ABS, F32_REL));
        }
    }
    Ok(out)
}
