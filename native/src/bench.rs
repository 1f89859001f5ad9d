//! `nava bench …`: kernel throughput on this adapter. The last line of each bench is its headline figure.

use clap::Subcommand;
use nava::bench::BenchResult;
use nava::gpu::{Gpu, GpuOptions};
use nava::kernels::gemm::WeightFormat;

#[derive(Subcommand)]
pub enum BenchCmd {
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
}

fn format_arg(dtype: &str) -> Result<WeightFormat, String> {
    WeightFormat::parse(dtype).ok_or_else(|| format!("unknown --dtype `{dtype}`: use f32, f16, bf16, q8, q4 or fp8"))
}

pub fn run(opts: &GpuOptions, cmd: BenchCmd) -> Result<(), Box<dyn std::error::Error>> {
    let g = Gpu::new_blocking(opts)?;
    println!("adapter: {} — driver {} {}", g.adapter, g.adapter.driver, g.adapter.driver_info);
    match cmd {
        BenchCmd::Gemm { m, n, k, dtype, seconds } => {
            let r = nava::bench::gemm_bench(&g, m, n, k, format_arg(&dtype)?, seconds)?;
            report(&r);
            println!("GFLOP/s: {:.2}", r.gflops());
        }
        BenchCmd::Attention { heads, lq, lk, head_dim, seconds } => {
            let r = nava::bench::attention_bench(&g, heads, lq, lk, head_dim, seconds)?;
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
    }
    Ok(())
}

fn report(r: &BenchResult) {
    println!("{}: {} iterations, {:.3} ms each", r.label, r.iters, r.seconds_per_iter * 1e3);
    println!("peak GPU memory: {:.1} MiB", r.peak_gpu_bytes as f64 / (1 << 20) as f64);
}
