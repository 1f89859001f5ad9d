//! `nava bench …`: kernel throughput on this adapter. The last line of each bench is its headline figure.

use clap::Subcommand;
use nava::bench::BenchResult;
use nava::gpu::{Gpu, GpuOptions};
use nava::kernels::gemm::WeightFormat;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// A whole generation (the built-in tiny model by default), timed per stage; last line frames/s.
    Generate {
        /// A converted weights directory instead of the tiny model.
        #[arg(long)]
        weights: Option<std::path::PathBuf>,
        /// Latent frames (tiny default 13; 37 with weights).
        #[arg(long)]
        latent_frames: Option<usize>,
        #[arg(long)]
        steps: Option<usize>,
    },
    /// y = x·Wᵀ with x [m, k] and W [n, k] stored in the given format.
    Gemm {
        #[arg(long, default_value_t = 1024)]
        m: usize,
        #[arg(long, default_value_t = 1024)]
        n: usize,
        #[arg(long, default_value_t = 1024)]
        k: usize,
        /// Weight format: f32, f16, bf16, q8, q4, fp8.
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// Seconds to measure for.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Also check this many rows of y against an f64 CPU product (prints the max relative error).
        #[arg(long, default_value_t = 0)]
        check_rows: usize,
        /// `dit`: instead of m × n × k, the denoiser's GEMMs of NAVA.md §10.1 with their token counts scaled to
        /// this adapter (each FFN GEMM about `--seconds` long, at most 32,712 tokens as at 704×1280 × 6 s), in
        /// every format when `--dtype all`; the last line is the FLOP-weighted throughput of all shapes.
        #[arg(long)]
        shapes: Option<String>,
        /// With `--shapes dit`: the tokens per pass, instead of scaling them to the adapter.
        #[arg(long)]
        tokens: Option<usize>,
    },
    /// The Wan2.2 VAE decoder's causal 3×3×3 convolution (channels in = out, as in its residual blocks: 1024,
    /// 512, 256 at the decoder's resolutions) over x [channels, frames, height, width].
    Conv3d {
        #[arg(long, default_value_t = 128)]
        channels: usize,
        /// Frames of the chunk (the decoder convolves 1 to 4 at a time, after 2 cached or zero frames).
        #[arg(long, default_value_t = 2)]
        frames: usize,
        #[arg(long, default_value_t = 32)]
        height: usize,
        #[arg(long, default_value_t = 32)]
        width: usize,
        /// Weight precision: f32, or f16/bf16 (rounded; the kernel computes in f32).
        #[arg(long, default_value = "f32")]
        dtype: String,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// A product of two activations, y [m, n] = a [m, k] · b [k, n] (or b [n, k] transposed): the VAE's
    /// single-head attention.
    Matmul {
        #[arg(long, default_value_t = 1024)]
        m: usize,
        #[arg(long, default_value_t = 1024)]
        n: usize,
        #[arg(long, default_value_t = 1024)]
        k: usize,
        /// b is [n, k], used transposed (the scores q·kᵀ).
        #[arg(long)]
        trans_b: bool,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// Attention of q [lq, heads, head-dim] over k, v [lk, heads, head-dim].
    Attention {
        #[arg(long, default_value_t = 1)]
        heads: usize,
        #[arg(long, default_value_t = 1024)]
        lq: usize,
        #[arg(long, default_value_t = 1024)]
        lk: usize,
        #[arg(long, default_value_t = 64)]
        head_dim: usize,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Allow f16 arithmetic (tensor cores where offered), as generation does with weights narrower than f32.
        #[arg(long)]
        half: bool,
        /// Also check this many query rows of head 0 against an f64 CPU reference (prints the max relative
        /// error).
        #[arg(long, default_value_t = 0)]
        check_rows: usize,
    },
    /// One DiT block at NAVA_6B width (3072, 24 heads, FFN 14336) with seeded weights.
    Block {
        /// double (Hierarchical Alignment) or single (Unified Fusion).
        #[arg(long, default_value = "double")]
        kind: String,
        #[arg(long, default_value_t = 256)]
        tokens: usize,
        #[arg(long, default_value = "f32")]
        dtype: String,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// The whole denoiser over a latent: seeded weights at a tiny size, or a real checkpoint / converted
    /// directory; reports seconds per forward, tokens/s, peak GPU memory and block-offload uploads.
    Dit {
        /// NAVA.safetensors, NAVA_fp8.safetensors or a converted directory (default: seeded tiny model).
        #[arg(long)]
        weights: Option<std::path::PathBuf>,
        /// The DiT config JSON (default: NAVA_6B with --weights, the tiny config without).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// Keep every block in host memory and upload it when it runs.
        #[arg(long)]
        offload: bool,
        /// GPU memory budget in GiB: blocks that do not fit are offloaded.
        #[arg(long)]
        max_vram: Option<f64>,
        /// Latent frames, height and width (the latent grid, 16× smaller than pixels).
        #[arg(long, default_value_t = 3)]
        frames: usize,
        #[arg(long, default_value_t = 8)]
        height: usize,
        #[arg(long, default_value_t = 12)]
        width: usize,
        /// Forward passes to time.
        #[arg(long, default_value_t = 2)]
        steps: usize,
    },
    /// The audio decode: LTX-2.3 audio VAE decoder + vocoder with BWE + output resampling on S seconds of audio
    /// (seeded real-size weights by default); reports audio seconds per second and peak GPU memory.
    Vocoder {
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// The official ltx-2.3-22b-dev_audio_vae.safetensors (default: seeded weights).
        #[arg(long)]
        weights: Option<std::path::PathBuf>,
        /// The seeded tiny demo model instead of the real size.
        #[arg(long)]
        tiny: bool,
        /// Output sample rate: 16000 (NAVA's) or 48000 (the vocoder's own).
        #[arg(long, default_value_t = 16000)]
        rate: usize,
        /// Timed repetitions.
        #[arg(long, default_value_t = 1)]
        repeats: usize,
        /// Storage of the wide convolutions' weights (run as GEMMs): f32, f16, bf16, q8, q4, fp8.
        #[arg(long, default_value = "f32")]
        dtype: String,
    },
    /// The ReDimNet speaker encoder on a seeded voice-like signal: seeded ReDimNet-M weights, or an official `.pt`;
    /// reports audio seconds per second and peak GPU memory.
    Speaker {
        /// A ReDimNet `.pt` (torch.save of model_config and state_dict); default: seeded ReDimNet-M.
        #[arg(long)]
        weights: Option<std::path::PathBuf>,
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// Seconds of 16 kHz audio per embedding (at most 30).
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 2)]
        runs: usize,
    },
    /// The Wan2.2 VAE decoder over a seeded latent (real size with seeded weights, `--tiny`, or `--weights`);
    /// reports frames/s and peak GPU memory.
    Vae {
        /// Wan2.2_VAE.pth or a converted directory (default: seeded weights).
        #[arg(long)]
        weights: Option<std::path::PathBuf>,
        /// The small seeded demo model instead of the real size.
        #[arg(long)]
        tiny: bool,
        /// Pixel height and width (multiples of 32).
        #[arg(long, default_value_t = 64)]
        height: usize,
        #[arg(long, default_value_t = 96)]
        width: usize,
        #[arg(long, default_value_t = 2)]
        latent_frames: usize,
        /// GPU memory budget in GiB: decode in spatial tiles that fit it.
        #[arg(long)]
        max_vram: Option<f64>,
        #[arg(long, default_value = "f32")]
        dtype: String,
    },
    /// The UMT5-XXL text encoder at full width: seeded weights (--layers of 24) or a checkpoint; tokens/s.
    TextEncoder {
        /// models_t5_umt5-xxl-enc-bf16.pth or a safetensors file (default: seeded weights).
        #[arg(long)]
        weights: Option<std::path::PathBuf>,
        /// Blocks of the seeded model (default all 24; fewer to fit memory and time).
        #[arg(long)]
        layers: Option<usize>,
        /// Tokens encoded per forward, over all prompts.
        #[arg(long, default_value_t = 512)]
        tokens: usize,
        /// Prompts sharing the forward (2: a positive and a negative prompt).
        #[arg(long, default_value_t = 1)]
        prompts: usize,
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// Encodes to time.
        #[arg(long, default_value_t = 2)]
        steps: usize,
    },
}

fn format_arg(dtype: &str) -> Result<WeightFormat, String> {
    WeightFormat::parse(dtype).ok_or_else(|| {
        format!("unknown --dtype `{dtype}`: use f32, f16, bf16, q8, q4 or fp8 (or all with --shapes dit)")
    })
}

pub fn run(opts: &GpuOptions, cmd: BenchCmd) -> Result<(), Box<dyn std::error::Error>> {
    let g = Gpu::new_blocking(opts)?;
    println!("adapter: {} — driver {} {}", g.adapter, g.adapter.driver, g.adapter.driver_info);
    match cmd {
        BenchCmd::Gemm { shapes: Some(shapes), dtype, seconds, tokens, .. } => {
            if shapes != "dit" {
                return Err(format!("unknown --shapes `{shapes}`: the one set is `dit` (NAVA.md §10.1)").into());
            }
            let formats = if dtype == "all" { WeightFormat::ALL.to_vec() } else { vec![format_arg(&dtype)?] };
            let tokens = match tokens {
                Some(t) if t > 0 => t,
                Some(_) => return Err("--tokens must be at least 1".into()),
                None => nava::bench::dit_tokens_for(&g, seconds)?,
            };
            println!("tokens per pass: {tokens}{}", if tokens < 32_712 { " (scaled to this adapter)" } else { "" });
            let (mut flops, mut secs) = (0.0, 0.0);
            for format in formats {
                for (name, m, n, k) in nava::bench::dit_gemm_shapes(tokens) {
                    let r = nava::bench::gemm_bench(&g, m, n, k, format, seconds.min(1.0))?;
                    println!(
                        "{name:<34} {m:>6} x {n:>5} x {k:>5} {:<4} {:>10.2} GFLOP/s  peak {:.1} MiB",
                        format.name(),
                        r.gflops(),
                        r.peak_gpu_bytes as f64 / (1 << 20) as f64
                    );
                    flops += r.flops_per_iter;
                    secs += r.seconds_per_iter;
                }
            }
            println!("GFLOP/s: {:.2}", flops / secs / 1e9);
        }
        BenchCmd::Gemm { m, n, k, dtype, seconds, check_rows, .. } => {
            if check_rows > 0 {
                let e = nava::bench::gemm_check(&g, m, n, k, format_arg(&dtype)?, check_rows)?;
                println!("check: max |y - ref| / max |ref| over {check_rows} rows = {e:.3e}");
            }
            let r = nava::bench::gemm_bench(&g, m, n, k, format_arg(&dtype)?, seconds)?;
            report(&r);
            println!("GFLOP/s: {:.2}", r.gflops());
        }
        BenchCmd::Conv3d { channels, frames, height, width, dtype, seconds } => {
            if [channels, frames, height, width].contains(&0) {
                return Err("--channels, --frames, --height and --width must be at least 1".into());
            }
            let r = nava::bench::conv3d_bench(&g, channels, [frames, height, width], format_arg(&dtype)?, seconds)?;
            report(&r);
            println!("GFLOP/s: {:.2}", r.gflops());
        }
        BenchCmd::Matmul { m, n, k, trans_b, seconds } => {
            if [m, n, k].contains(&0) {
                return Err("--m, --n and --k must be at least 1".into());
            }
            let r = nava::bench::matmul_bench(&g, [m, n, k], trans_b, seconds)?;
            report(&r);
            println!("GFLOP/s: {:.2}", r.gflops());
        }
        BenchCmd::Attention { heads, lq, lk, head_dim, seconds, half, check_rows } => {
            if check_rows > 0 {
                let e = nava::bench::attention_check(&g, heads, lq, lk, head_dim, half, check_rows)?;
                println!("check: max |o - ref| / max |ref| over {check_rows} rows = {e:.3e}");
            }
            let r = nava::bench::attention_bench(&g, heads, lq, lk, head_dim, half, seconds)?;
            report(&r);
            println!("GFLOP/s: {:.2}", r.gflops());
        }
        BenchCmd::Block { kind, tokens, dtype, seconds } => {
            let kind = match kind.as_str() {
                "double" => nava::bench::BlockKind::Double,
                "single" => nava::bench::BlockKind::Single,
                other => return Err(format!("unknown --kind `{other}`: use double or single").into()),
            };
            let config = nava::model::dit::DitConfig::nava_6b();
            let r = nava::bench::block_bench(&g, &config, kind, tokens, format_arg(&dtype)?, seconds)?;
            report(&r);
            println!("GFLOP/s: {:.2}", r.gflops());
            println!("tokens/s: {:.2}", tokens as f64 / r.seconds_per_iter);
        }
        BenchCmd::Generate { weights, latent_frames, steps } => {
            crate::generate_bench::run(&g, weights.as_deref(), latent_frames, steps)?;
        }
        BenchCmd::Dit { weights, config, dtype, offload, max_vram, frames, height, width, steps } => {
            let offload = match (offload, max_vram) {
                (true, _) => nava::model::dit::Offload::Always,
                (false, Some(gib)) => nava::model::dit::Offload::Budget((gib * (1u64 << 30) as f64) as u64),
                (false, None) => nava::model::dit::Offload::Never,
            };
            let opts = nava::model::dit::LoadOptions { format: format_arg(&dtype)?, offload };
            crate::dit_bench::run(&g, weights.as_deref(), config.as_deref(), &opts, [frames, height, width], steps)?;
        }
        BenchCmd::Vocoder { seconds, weights, tiny, rate, repeats, dtype } => {
            crate::audio_bench::run(&g, weights.as_deref(), tiny, seconds, rate, repeats, format_arg(&dtype)?)?;
        }
        BenchCmd::Speaker { weights, dtype, seconds, runs } => {
            crate::speaker_bench::run(&g, weights.as_deref(), format_arg(&dtype)?, seconds, runs)?;
        }
        BenchCmd::Vae { weights, tiny, height, width, latent_frames, max_vram, dtype } => {
            let b = crate::vae_bench::VaeBench {
                weights: weights.as_deref(),
                tiny,
                height,
                width,
                latent_frames,
                budget: max_vram.map(|gib| (gib * (1u64 << 30) as f64) as u64),
                format: format_arg(&dtype)?,
            };
            crate::vae_bench::run(&g, &b)?;
        }
        BenchCmd::TextEncoder { weights, layers, tokens, prompts, dtype, steps } => {
            let format = format_arg(&dtype)?;
            let args = crate::text_bench::Args { weights: weights.as_deref(), layers, tokens, prompts, format, steps };
            crate::text_bench::run(&g, args)?;
        }
    }
    Ok(())
}

fn report(r: &BenchResult) {
    println!("{}: {} iterations, {:.3} ms each", r.label, r.iters, r.seconds_per_iter * 1e3);
    println!("peak GPU memory: {:.1} MiB", r.peak_gpu_bytes as f64 / (1 << 20) as f64);
}
