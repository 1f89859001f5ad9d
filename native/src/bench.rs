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
}

pub fn run(opts: &GpuOptions, cmd: BenchCmd) -> Result<(), Box<dyn std::error::Error>> {
    let g = Gpu::new_blocking(opts)?;
    println!("adapter: {} — driver {} {}", g.adapter, g.adapter.driver, g.adapter.driver_info);
    match cmd {
        BenchCmd::Gemm { m, n, k, dtype, seconds } => {
            let format = WeightFormat::parse(&dtype)
                .ok_or_else(|| format!("unknown --dtype `{dtype}`: use f32, f16, bf16, q8, q4 or fp8"))?;
            let r = nava::bench::gemm_bench(&g, m, n, k, format, seconds)?;
            report(&r);
            println!("GFLOP/s: {:.2}", r.gflops());
        }
    }
    Ok(())
}

fn report(r: &BenchResult) {
    println!("{}: {} iterations, {:.3} ms each", r.label, r.iters, r.seconds_per_iter * 1e3);
    println!("peak GPU memory: {:.1} MiB", r.peak_gpu_bytes as f64 / (1 << 20) as f64);
}
