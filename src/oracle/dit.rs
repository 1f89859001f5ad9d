//! The `nava_dit` case: the denoiser (`WanAVModel`) on every sub-case, outputs and block traces compared.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::{compare, Comparison, Io, OracleError, F32_ABS, F32_REL};
use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::gemm::WeightFormat;
use crate::model::dit::{Dit, DitConfig, DitInput, Speakers, PREFIX};
use crate::model::ModelError;
use crate::weights::Checkpoint;

pub(crate) fn run(g: &Gpu, dir: &Path, meta: &Value) -> Result<Vec<Comparison>, OracleError> {
    let case = |problem: String| OracleError::Case { dir: dir.to_path_buf(), problem };
    let config: DitConfig = serde_json::from_value(meta["config"].clone()).map_err(|e| case(format!("config: {e}")))?;
    let weights = Checkpoint::open(dir.join("weights.safetensors"))?;
    let dit = Dit::load(g, &weights, PREFIX, config.clone(), WeightFormat::F32)?;
    let io = Io::open(dir)?;
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
        let input = DitInput {
            video: Some(&video),
            audio: &audio,
            t: t[0],
            first_frame_is_clean: i2v,
            masking_modality: masking,
        };
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
        if let Some(v) = &result.video {
            check(format!("out.{sub}.vid"), v)?;
        }
        check(format!("out.{sub}.audio"), &result.audio)?;
        for (name, t) in &traces {
            check(format!("trace.{sub}.{name}"), t)?;
        }
    }
    Ok(out)
}
