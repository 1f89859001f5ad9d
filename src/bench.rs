//! Measurement routines behind `nava bench` and `benches/`: each builds seeded random inputs at the requested
//! size, warms up, times whole batches with a wait for the GPU, and reports throughput and peak GPU memory.

use std::time::Instant;

use crate::gpu::Gpu;
use crate::kernels::gemm::{gemm, Epilogue, Weight, WeightFormat};
use crate::kernels::KernelError;

#[derive(Clone, Debug)]
pub struct BenchResult {
    pub label: String,
    pub iters: u32,
    pub seconds_per_iter: f64,
    pub flops_per_iter: f64,
    pub peak_gpu_bytes: u64,
}

impl BenchResult {
    pub fn gflops(&self) -> f64 {
        self.flops_per_iter / self.seconds_per_iter / 1e9
    }
}

/// Deterministic values in [-1, 1) without a random-number dependency.
pub fn seeded(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Runs `f` until about `budget_s` seconds have passed (at least `min_iters` times) after one warm-up call.
pub fn time_loop(
    g: &Gpu,
    budget_s: f64,
    min_iters: u32,
    mut f: impl FnMut() -> Result<(), KernelError>,
) -> Result<(u32, f64), KernelError> {
    f()?;
    g.wait()?;
    let start = Instant::now();
    let mut iters = 0;
    while iters < min_iters || start.elapsed().as_secs_f64() < budget_s {
        f()?;
        iters += 1;
        g.wait()?;
    }
    Ok((iters, start.elapsed().as_secs_f64() / iters as f64))
}

/// `y = x·Wᵀ` at `m × n × k` with the weight in `format`.
pub fn gemm_bench(
    g: &Gpu,
    m: usize,
    n: usize,
    k: usize,
    format: WeightFormat,
    budget_s: f64,
) -> Result<BenchResult, KernelError> {
    let x = g.upload_f32("bench x", &seeded(1, m * k), &[m, k])?;
    let w = Weight::from_f32(g, "bench w", format, n, k, &seeded(2, n * k))?;
    g.reset_peak_memory();
    let (iters, s) = time_loop(g, budget_s, 2, || gemm(g, &x, &w, Epilogue::default()).map(drop))?;
    Ok(BenchResult {
        label: format!("gemm {m}x{n}x{k} {}", format.name()),
        iters,
        seconds_per_iter: s,
        flops_per_iter: 2.0 * m as f64 * n as f64 * k as f64,
        peak_gpu_bytes: g.memory().peak_bytes,
    })
}
