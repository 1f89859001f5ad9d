//! The `wan22_vae` case: the Wan2.2 VAE (`WanVAE_` / `Wan2_2_VAE`, vae2_2.py) — chunked causal decode with its
//! per-chunk traces, the clamp, the tiled decode, the encode with its traces, the 48 statistics and the I2V
//! first-frame latent.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::{compare, Comparison, Io, OracleError, F32_ABS, F32_REL};
use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::gemm::WeightFormat;
use crate::model::video_vae::{Tiling, VaeConfig, VideoVae, LATENT_MEAN, LATENT_STD};
use crate::model::ModelError;
use crate::weights::Checkpoint;

pub(crate) fn run(g: &Gpu, dir: &Path, meta: &Value) -> Result<Vec<Comparison>, OracleError> {
    let case = |problem: String| OracleError::Case { dir: dir.to_path_buf(), problem };
    let config: VaeConfig = serde_json::from_value(meta["config"].clone()).map_err(|e| case(format!("config: {e}")))?;
    let weights = Checkpoint::open(dir.join("weights.safetensors"))?;
    let vae = VideoVae::load(g, &weights, config.clone(), WeightFormat::F32)?;
    let io = Io::open(dir)?;
    let get = |name: &str| io.get(name).ok_or_else(|| case(format!("io.safetensors has no {name}")));
    let shape = |name: &str| io.shape(name).ok_or_else(|| case(format!("io.safetensors has no {name}")));
    let read = |t: &GpuTensor| g.read_f32_blocking(t).map_err(|e| OracleError::Model(ModelError::from(e)));
    let mut out = Vec::new();
    let mut check = |name: &str, got: &[f32]| {
        if let Some(want) = io.get(name) {
            out.push(compare(name, got, &want, F32_ABS, F32_REL));
        }
    };
    if config.z_dim == LATENT_MEAN.len() {
        check("in.latents_mean", &LATENT_MEAN);
        check("in.latents_std", &LATENT_STD);
    }

    // Decode, chunk by chunk, with traces.
    let zs = shape("in.z")?;
    let [_, zc, f, h, w] = zs[..] else { return Err(case(format!("in.z has shape {zs:?}, expected [1, C, F, h, w]"))) };
    let z = g.upload_f32("in.z", &get("in.z")?, &[zc, f, h, w]).map_err(ModelError::from)?;
    let mut traces: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut failed = None;
    let mut chunks: Vec<(usize, Vec<f32>, [usize; 3])> = Vec::new();
    {
        let mut record = |name: &str, t: &GpuTensor| match g.read_f32_blocking(t) {
            Ok(v) => {
                traces.insert(name.to_string(), v);
            }
            Err(e) => failed = Some(e),
        };
        let mut sink = |first: usize, rgb: GpuTensor| -> Result<(), ModelError> {
            let s = rgb.shape();
            let dims = [s[1], s[2], s[3]];
            chunks.push((first, g.read_f32_blocking(&rgb)?, dims));
            Ok(())
        };
        vae.decode_chunks(g, &z, &mut sink, Some(&mut record))?;
    }
    if let Some(e) = failed {
        return Err(ModelError::from(e).into());
    }
    let video = gather_chunks(&chunks);
    check("out.video_unclamped", &video);
    let clamped: Vec<f32> = video.iter().map(|v| v.clamp(-1.0, 1.0)).collect();
    check("out.video", &clamped);
    // The streaming API hands out the same clamped frames.
    let frames = vae.decode_all(g, &z, None)?;
    check("out.video", &frames_to_cthw(&frames));
    for (name, v) in &traces {
        check(&format!("trace.{name}"), v);
    }

    // Tiled decode with the case's latent tile size and stride.
    let pair = |v: &Value| -> Option<[usize; 2]> { Some([v.get(0)?.as_u64()? as usize, v.get(1)?.as_u64()? as usize]) };
    if let (Some(tile), Some(stride)) = (pair(&meta["tiling"]["tile_size"]), pair(&meta["tiling"]["tile_stride"])) {
        let tiling = Tiling::new(tile, stride)?;
        let frames = vae.decode_all(g, &z, Some(&tiling))?;
        check("out.video_tiled", &frames_to_cthw(&frames));
    }

    // Encode with traces; the raw μ is the first z channels of `conv1`'s output.
    let vs = shape("in.video")?;
    let [_, 3, t, ph, pw] = vs[..] else {
        return Err(case(format!("in.video has shape {vs:?}, expected [1, 3, T, H, W]")));
    };
    let video_in = get("in.video")?;
    let x = g.upload_f32("in.video", &video_in, &[3, t, ph, pw]).map_err(ModelError::from)?;
    let mut traces: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut failed = None;
    let mu = {
        let mut record = |name: &str, t: &GpuTensor| match g.read_f32_blocking(t) {
            Ok(v) => {
                traces.insert(name.to_string(), v);
            }
            Err(e) => failed = Some(e),
        };
        vae.encode(g, &x, Some(&mut record))?
    };
    if let Some(e) = failed {
        return Err(ModelError::from(e).into());
    }
    check("out.enc_mu", &read(&mu)?);
    if let Some(ml) = traces.get("enc.mu_logvar") {
        check("out.enc_mu_raw", &ml[..ml.len() / 2]);
    }
    for (name, v) in &traces {
        check(&format!("trace.{name}"), v);
    }

    // I2V: the first frame alone, as [1, h, w, z].
    let plane = ph * pw;
    let first: Vec<f32> = (0..3).flat_map(|c| video_in[c * t * plane..c * t * plane + plane].to_vec()).collect();
    let img = g.upload_f32("first frame", &first, &[3, ph, pw]).map_err(ModelError::from)?;
    let lat = read(&vae.encode_image(g, &img)?)?;
    let zd = config.z_dim;
    let hw = lat.len() / zd;
    let thwc: Vec<f32> = (0..hw).flat_map(|i| (0..zd).map(move |c| (c, i))).map(|(c, i)| lat[c * hw + i]).collect();
    check("out.i2v_latent", &thwc);
    Ok(out)
}

/// Per-chunk `[3, T_i, H, W]` blocks → `[3, ΣT_i, H, W]`.
fn gather_chunks(chunks: &[(usize, Vec<f32>, [usize; 3])]) -> Vec<f32> {
    let total: usize = chunks.iter().map(|c| c.2[0]).sum();
    let Some(&(_, _, [_, h, w])) = chunks.first() else { return Vec::new() };
    let plane = h * w;
    let mut out = vec![0.0f32; 3 * total * plane];
    for (first, v, [t, _, _]) in chunks {
        for c in 0..3 {
            for k in 0..*t {
                let src = &v[(c * t + k) * plane..(c * t + k + 1) * plane];
                out[(c * total + first + k) * plane..(c * total + first + k + 1) * plane].copy_from_slice(src);
            }
        }
    }
    out
}

/// Frames `[3, H, W]` → `[3, T, H, W]`.
fn frames_to_cthw(frames: &[crate::model::video_vae::Frame]) -> Vec<f32> {
    let t = frames.len();
    let Some(f0) = frames.first() else { return Vec::new() };
    let plane = f0.height * f0.width;
    let mut out = vec![0.0f32; 3 * t * plane];
    for (k, f) in frames.iter().enumerate() {
        for c in 0..3 {
            out[(c * t + k) * plane..(c * t + k + 1) * plane].copy_from_slice(&f.data[c * plane..(c + 1) * plane]);
        }
    }
    out
}
