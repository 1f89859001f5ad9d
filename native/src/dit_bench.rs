//! `nava bench dit`: loads the denoiser (with a progress bar) and times forward passes over a latent.

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use nava::gpu::Gpu;
use nava::model::dit::{Dit, DitConfig, DitInput, LoadOptions, PREFIX};
use nava::weights::{Checkpoint, ManifestSource, SeededSource, TensorSource, WithProgress};

pub fn run(
    g: &Gpu,
    weights: Option<&Path>,
    config: Option<&Path>,
    opts: &LoadOptions,
    [frames, height, width]: [usize; 3],
    steps: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = match config {
        Some(p) => DitConfig::from_json(&std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?)?,
        None if weights.is_some() => DitConfig::nava_6b(),
        None => DitConfig::tiny(),
    };
    let (src, prefix): (Box<dyn TensorSource>, &str) = match weights {
        Some(p) if p.is_dir() => (Box::new(ManifestSource::open(p, "nava-dit")?), PREFIX),
        Some(p) => (Box::new(Checkpoint::open(p)?), PREFIX),
        None => (Box::new(SeededSource::new("seeded tiny NAVA", &cfg.key_table(PREFIX), 1)), PREFIX),
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("loading {bar:40} {bytes}/{total_bytes} ({eta})").map_err(|e| e.to_string())?,
    );
    let progress = WithProgress::new(src.as_ref(), |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    let dit = Dit::load_with(g, &progress, prefix, cfg.clone(), opts)?;
    bar.finish_and_clear();
    let (offloaded, bytes) = dit.offload_report();
    println!("blocks offloaded: {offloaded}, uploaded per forward: {:.1} MiB", bytes as f64 / (1 << 20) as f64);

    // Seeded latents and context at the requested grid; audio length as the pipeline derives it.
    let audio_len = (((frames.max(1) - 1) * 4 + 1) as f64 / 24.0 * 25.0).ceil() as usize;
    let video = g.upload_f32(
        "video",
        &nava::bench::seeded(1, cfg.vid_in_dim * frames * height * width),
        &[cfg.vid_in_dim, frames, height, width],
    )?;
    let audio =
        g.upload_f32("audio", &nava::bench::seeded(2, audio_len * cfg.audio_in_dim), &[audio_len, cfg.audio_in_dim])?;
    let n_tok = cfg.text_len.min(16);
    let context = g.upload_f32("context", &nava::bench::seeded(3, n_tok * cfg.text_dim), &[n_tok, cfg.text_dim])?;
    let ctx = dit.prepare_context(g, &context, &context, None)?;
    let input =
        DitInput { video: Some(&video), audio: &audio, t: 999.0, first_frame_is_clean: false, masking_modality: false };
    let tokens = dit.rows(&input)?.total();
    dit.forward(g, &input, &ctx, None)?; // warm-up: pipelines, pool
    g.wait()?;
    g.reset_peak_memory();
    let start = Instant::now();
    for _ in 0..steps.max(1) {
        dit.forward(g, &input, &ctx, None)?;
        g.wait()?;
    }
    let s = start.elapsed().as_secs_f64() / steps.max(1) as f64;
    println!("dit d{} L{tokens} {}: {:.3} s per forward", cfg.dim, opts.format.name(), s);
    println!("peak GPU memory: {:.1} MiB", g.memory().peak_bytes as f64 / (1 << 20) as f64);
    println!("tokens/s: {:.2}", tokens as f64 / s);
    Ok(())
}
