//! `nava bench vae`: loads the Wan2.2 VAE decoder (seeded at real size, `--tiny`, or a checkpoint) and times the
//! decode of a seeded latent, streaming frames to the host; reports frames/s and peak GPU memory.

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use nava::gpu::Gpu;
use nava::kernels::gemm::WeightFormat;
use nava::model::video_vae::{check_pixel_size, decode_peak_bytes, Tiling, VaeConfig, VaeParts, VideoVae};
use nava::weights::{Checkpoint, ManifestSource, SeededSource, TensorSource, WithProgress};

const MIB: f64 = (1u64 << 20) as f64;

/// What to decode and with which model.
pub struct VaeBench<'a> {
    pub weights: Option<&'a Path>,
    pub tiny: bool,
    pub height: usize,
    pub width: usize,
    pub latent_frames: usize,
    /// GPU memory budget in bytes: decode in tiles that fit it.
    pub budget: Option<u64>,
    pub format: WeightFormat,
}

pub fn run(g: &Gpu, b: &VaeBench) -> Result<(), Box<dyn std::error::Error>> {
    check_pixel_size(b.height, b.width)?;
    if b.latent_frames == 0 {
        return Err("--latent-frames must be at least 1".into());
    }
    let cfg = if b.tiny { VaeConfig::tiny() } else { VaeConfig::wan22() };
    let (h, w, f) = (b.height / 16, b.width / 16, b.latent_frames);
    let tiling = match b.budget {
        Some(bytes) => Tiling::for_budget(&cfg, [h, w], f, bytes)?,
        None => None,
    };
    let planned = decode_peak_bytes(&cfg, [h, w], f, tiling.as_ref());
    match &tiling {
        Some(t) => println!("tiles: {:?} latent cells every {:?}", t.tile, t.stride),
        None => println!("tiles: none"),
    }
    println!(
        "computed peak: {:.1} MiB (weights {:.1}, caches {:.1}, intermediates {:.1})",
        planned.total as f64 / MIB,
        planned.weights as f64 / MIB,
        planned.caches as f64 / MIB,
        planned.working as f64 / MIB
    );
    let src: Box<dyn TensorSource> = match b.weights {
        Some(p) if p.is_dir() => Box::new(ManifestSource::open(p, "wan-vae")?),
        Some(p) => Box::new(Checkpoint::open(p)?),
        None => Box::new(SeededSource::new("seeded Wan2.2 VAE", &cfg.key_table(), 1)),
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("loading {bar:40} {bytes}/{total_bytes} ({eta})").map_err(|e| e.to_string())?,
    );
    let progress = WithProgress::new(src.as_ref(), |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    let vae = VideoVae::load_parts(g, &progress, cfg.clone(), b.format, VaeParts::DECODER)?;
    bar.finish_and_clear();

    let z = g.upload_f32("latents", &nava::bench::seeded(5, 48 * f * h * w), &[cfg.z_dim, f, h, w])?;
    // Warm-up on one latent frame: pipelines compiled, pool filled.
    let z1 = g.upload_f32("latents", &nava::bench::seeded(6, 48 * h * w), &[cfg.z_dim, 1, h, w])?;
    vae.decode(g, &z1, tiling.as_ref(), &mut |_, _| Ok(()))?;
    g.wait()?;
    g.reset_peak_memory();
    let start = Instant::now();
    let mut frames = 0usize;
    vae.decode(g, &z, tiling.as_ref(), &mut |_, _| {
        frames += 1;
        Ok(())
    })?;
    g.wait()?;
    let s = start.elapsed().as_secs_f64();
    println!("vae decode {}x{} from {f} latent frames: {frames} frames in {s:.3} s", b.width, b.height);
    println!("peak GPU memory: {:.1} MiB", g.memory().peak_bytes as f64 / MIB);
    println!("frames/s: {:.3}", frames as f64 / s);
    Ok(())
}
