//! `nava bench vocoder`: the audio decode of NAVA — LTX-2.3 audio VAE decoder (latent tokens → stereo log-mel),
//! vocoder with bandwidth extension (→ 48 kHz) and the output resampling — on S seconds of audio, with seeded
//! real-size weights (or the tiny demo model, or the official audio VAE file). Reports audio seconds per second
//! for each stage and the peak GPU memory; the last line is the whole decode's figure.

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use nava::gpu::Gpu;
use nava::kernels::gemm::WeightFormat;
use nava::model::audio_vae::{AudioDecoder, AudioVaeConfig};
use nava::model::vocoder::{output_audio, Vocoder, VocoderConfig};
use nava::weights::{Checkpoint, SeededSource, TensorSource, WithProgress};

/// Latent tokens per second of audio (NAVA.md §3.2).
const TOKENS_PER_SECOND: f64 = 25.0;

pub fn run(
    g: &Gpu,
    weights: Option<&Path>,
    tiny: bool,
    seconds: f64,
    rate: usize,
    repeats: usize,
    format: WeightFormat,
) -> Result<(), Box<dyn std::error::Error>> {
    let (vae_cfg, voc_cfg) = if tiny {
        (AudioVaeConfig::tiny(), VocoderConfig::tiny())
    } else {
        (AudioVaeConfig::ltx23(), VocoderConfig::ltx23())
    };
    let src: Box<dyn TensorSource> = match weights {
        Some(p) => Box::new(Checkpoint::open(p)?),
        None => {
            let mut table = vae_cfg.key_table();
            table.extend(voc_cfg.key_table());
            let label = if tiny { "seeded tiny audio VAE + vocoder" } else { "seeded LTX-2.3 audio VAE + vocoder" };
            Box::new(SeededSource::new(label, &table, 1))
        }
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("loading {bar:40} {bytes}/{total_bytes} ({eta})").map_err(|e| e.to_string())?,
    );
    let progress = WithProgress::new(src.as_ref(), |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    let decoder = AudioDecoder::load(g, &progress, vae_cfg.clone(), format)?;
    let vocoder = Vocoder::load(g, &progress, voc_cfg.clone(), format)?;
    bar.finish_and_clear();

    let steps = ((seconds * TOKENS_PER_SECOND).round() as usize).max(1);
    let frames = AudioVaeConfig::mel_frames(steps);
    let audio_s = (frames * voc_cfg.main().hop()) as f64 / voc_cfg.low_rate() as f64;
    let tokens = g.upload_f32(
        "latent tokens",
        &nava::bench::seeded(1, steps * vae_cfg.token_dim()),
        &[steps, vae_cfg.token_dim()],
    )?;
    println!(
        "audio decode: {steps} latent steps → {frames} mel frames → {audio_s:.2} s of stereo audio at {} Hz (BWE {} Hz), \
         {} conv weights",
        rate,
        voc_cfg.output_rate(),
        format.name()
    );
    // Warm-up: pipelines and pool.
    let mel = decoder.decode(g, &tokens, None)?;
    let wave = vocoder.forward(g, &mel)?;
    output_audio(g, &wave, voc_cfg.output_rate(), rate)?;
    g.wait()?;
    g.reset_peak_memory();
    let (mut t_vae, mut t_voc, mut t_out) = (0.0, 0.0, 0.0);
    let n = repeats.max(1);
    for _ in 0..n {
        let t0 = Instant::now();
        let mel = decoder.decode(g, &tokens, None)?;
        g.wait()?;
        let t1 = Instant::now();
        let wave = vocoder.forward(g, &mel)?;
        g.wait()?;
        let t2 = Instant::now();
        output_audio(g, &wave, voc_cfg.output_rate(), rate)?;
        g.wait()?;
        let t3 = Instant::now();
        t_vae += (t1 - t0).as_secs_f64();
        t_voc += (t2 - t1).as_secs_f64();
        t_out += (t3 - t2).as_secs_f64();
    }
    let (t_vae, t_voc, t_out) = (t_vae / n as f64, t_voc / n as f64, t_out / n as f64);
    println!("audio VAE decoder: {:.3} s ({:.3} audio s/s)", t_vae, audio_s / t_vae);
    println!("vocoder + BWE: {:.3} s ({:.3} audio s/s)", t_voc, audio_s / t_voc);
    println!("resample {} → {rate} Hz + clamp: {:.4} s", voc_cfg.output_rate(), t_out);
    println!("peak GPU memory: {:.1} MiB", g.memory().peak_bytes as f64 / (1 << 20) as f64);
    println!("audio seconds/s: {:.3}", audio_s / (t_vae + t_voc + t_out));
    Ok(())
}
