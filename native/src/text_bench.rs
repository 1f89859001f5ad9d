//! `nava bench text-encoder`: the UMT5-XXL encoder (reference `T5Encoder`, Wan2.2 `wan/modules/t5.py`) at full
//! width with seeded weights (`--layers` of the 24 to fit memory and time) or a real checkpoint; times encoding a
//! batch of prompts in one forward and reports tokens/s and peak GPU memory.

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use nava::gpu::Gpu;
use nava::kernels::gemm::WeightFormat;
use nava::model::text_encoder::{T5Config, TextEncoder};
use nava::weights::{Checkpoint, Pth, SeededSource, TensorSource, WithProgress};

/// Embedding rows of the seeded model: the gather runs on the host, so the full 256 384 rows (4.2 GB of f32) would
/// only cost host memory and generation time.
const SEEDED_VOCAB: usize = 4096;

pub struct Args<'a> {
    pub weights: Option<&'a Path>,
    pub layers: Option<usize>,
    pub tokens: usize,
    pub prompts: usize,
    pub format: WeightFormat,
    pub steps: usize,
}

pub fn run(g: &Gpu, a: Args) -> Result<(), Box<dyn std::error::Error>> {
    let full = T5Config::umt5_xxl();
    let layers = a.layers.unwrap_or(full.encoder_layers);
    if layers == 0 || layers > full.encoder_layers {
        return Err(format!("--layers {layers}: choose 1 to {}", full.encoder_layers).into());
    }
    if a.prompts == 0 || a.tokens < a.prompts {
        return Err(
            format!("--tokens {} must give each of the {} prompts at least one token", a.tokens, a.prompts).into()
        );
    }
    if a.weights.is_some() && layers != full.encoder_layers {
        return Err("--layers applies to seeded weights: a checkpoint is loaded whole".into());
    }
    let cfg = match a.weights {
        Some(_) => full,
        None => T5Config { encoder_layers: layers, vocab_size: SEEDED_VOCAB, ..full },
    };
    let src: Box<dyn TensorSource> = match a.weights {
        Some(p) if p.extension().is_some_and(|e| e == "pth") => Box::new(Pth::open(p)?),
        Some(p) => Box::new(Checkpoint::open(p)?),
        None => Box::new(SeededSource::new("seeded UMT5-XXL", &cfg.key_table(), 1)),
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("loading {bar:40} {bytes}/{total_bytes} ({eta})").map_err(|e| e.to_string())?,
    );
    let progress = WithProgress::new(src.as_ref(), |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    let t0 = Instant::now();
    let enc = TextEncoder::load(g, &progress, cfg.clone(), a.format)?;
    bar.finish_and_clear();
    println!(
        "loaded {} blocks of width {} ({}) in {:.1} s: {:.1} MiB on the GPU",
        layers,
        cfg.dim,
        a.format.name(),
        t0.elapsed().as_secs_f64(),
        enc.gpu_bytes() as f64 / (1 << 20) as f64
    );

    // Prompt lengths: the tokens split as evenly as possible (e.g. a positive and a negative prompt).
    let vocab = cfg.vocab_size as u64;
    let ids: Vec<Vec<u32>> = (0..a.prompts)
        .map(|p| {
            let n = a.tokens / a.prompts + usize::from(p < a.tokens % a.prompts);
            let mut v: Vec<u32> = nava::bench::seeded(10 + p as u64, n)
                .iter()
                .map(|x| 3 + ((x.abs() * 1e6) as u64 % (vocab - 3)) as u32)
                .collect();
            *v.last_mut().expect("n ≥ 1") = 1;
            v
        })
        .collect();
    let refs: Vec<&[u32]> = ids.iter().map(|v| v.as_slice()).collect();
    enc.encode(g, &refs)?; // warm-up: pipelines, pool
    g.wait()?;
    g.reset_peak_memory();
    let start = Instant::now();
    for _ in 0..a.steps.max(1) {
        let out = enc.encode(g, &refs)?;
        g.wait()?;
        drop(out);
    }
    let s = start.elapsed().as_secs_f64() / a.steps.max(1) as f64;
    println!(
        "umt5 {} blocks, {} tokens in {} prompt(s), {}: {:.3} s per encode",
        layers,
        a.tokens,
        a.prompts,
        a.format.name(),
        s
    );
    println!("peak GPU memory: {:.1} MiB", g.memory().peak_bytes as f64 / (1 << 20) as f64);
    println!("tokens/s: {:.2}", a.tokens as f64 / s);
    Ok(())
}
