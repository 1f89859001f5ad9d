//! `nava bench speaker`: ReDimNet-M (seeded weights at the real size, or an official `.pt`) embedding a seeded
//! 16 kHz voice-like signal; reports audio seconds per second and peak GPU memory.

use std::path::Path;
use std::time::Instant;

use nava::gpu::Gpu;
use nava::kernels::gemm::WeightFormat;
use nava::model::speaker::{RedimConfig, SpeakerEncoder, SAMPLE_RATE};

pub fn run(
    g: &Gpu,
    weights: Option<&Path>,
    format: WeightFormat,
    seconds: f64,
    runs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let encoder = match weights {
        Some(p) => SpeakerEncoder::open(g, p, format)?,
        None => SpeakerEncoder::seeded(g, RedimConfig::redimnet_m(), 1, format)?,
    };
    let n = (seconds * SAMPLE_RATE as f64).round() as usize;
    // A harmonic tone with vibrato plus a little seeded noise: speech-like energy across the mel range.
    let noise = nava::bench::seeded(7, n);
    let audio: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f64 / SAMPLE_RATE as f64;
            let phase = 2.0 * std::f64::consts::PI * (140.0 * t + 3.0 * (5.0 * t).sin());
            let v = (1..=6).map(|h| (h as f64 * phase).sin() / h as f64).sum::<f64>() * 0.2;
            (v + 0.02 * noise[i] as f64) as f32
        })
        .collect();
    encoder.embed(g, &audio)?; // warm-up: pipelines, pool
    g.reset_peak_memory();
    let start = Instant::now();
    for _ in 0..runs.max(1) {
        encoder.embed(g, &audio)?;
    }
    let s = start.elapsed().as_secs_f64() / runs.max(1) as f64;
    let c = &encoder.config;
    println!(
        "redimnet F{} C{} {} stages {}: {:.3} s per {seconds} s of audio",
        c.f,
        c.c,
        c.stages_setup.len(),
        format.name(),
        s
    );
    println!("peak GPU memory: {:.1} MiB", g.memory().peak_bytes as f64 / (1 << 20) as f64);
    println!("audio-seconds/s: {:.2}", seconds / s);
    Ok(())
}
