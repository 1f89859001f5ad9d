//! `cargo bench --bench kernels`: the kernel benchmarks on the default adapter, each line with GFLOP/s and peak
//! GPU memory; the last line is the headline figure (f32 GEMM at 1024³). Sizes scale down with `NAVA_BENCH_SMALL=1`.

use nava::bench::{gemm_bench, BenchResult};
use nava::gpu::{Gpu, GpuOptions};
use nava::kernels::gemm::WeightFormat;

fn line(r: &BenchResult) {
    println!(
        "{:<40} {:>9.2} GFLOP/s  {:>8.3} ms  peak {:>7.1} MiB",
        r.label,
        r.gflops(),
        r.seconds_per_iter * 1e3,
        r.peak_gpu_bytes as f64 / (1 << 20) as f64
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let g = Gpu::new_blocking(&GpuOptions::from_env())?;
    println!("adapter: {} — {} {}", g.adapter, g.adapter.driver, g.adapter.driver_info);
    let s = if std::env::var_os("NAVA_BENCH_SMALL").is_some() { 256 } else { 1024 };
    for format in [WeightFormat::F16, WeightFormat::BF16, WeightFormat::Q8, WeightFormat::Q4, WeightFormat::Fp8] {
        line(&gemm_bench(&g, s, s, s, format, 2.0)?);
    }
    let f32 = gemm_bench(&g, s, s, s, WeightFormat::F32, 3.0)?;
    line(&f32);
    println!("GFLOP/s: {:.2}", f32.gflops());
    Ok(())
}
