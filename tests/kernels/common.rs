//! Shared test helpers: the test device, seeded random data and a tolerance check that names the worst element.

use std::sync::OnceLock;

use nava::gpu::{Gpu, GpuOptions};
use rand::{Rng, SeedableRng};

/// The adapter of every kernel test. Fails with install advice when there is none.
pub fn test_gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new_blocking(&GpuOptions::from_env()) {
        Ok(g) => g,
        Err(e) => panic!("kernel tests need a GPU adapter: {e}"),
    })
}

/// Seeded uniform values in [-1, 1).
pub fn rand_vec(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}

/// Tolerance `|got - want| <= abs + rel * |want|`.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub abs: f32,
    pub rel: f32,
}

impl Tol {
    /// f32 kernels against an f64-accumulated reference.
    #[allow(dead_code)] // not every family uses the default
    pub const F32: Tol = Tol { abs: 1e-5, rel: 1e-5 };
    pub fn new(abs: f32, rel: f32) -> Self {
        Self { abs, rel }
    }
}

/// Asserts closeness, reporting the worst element, got/want and the tolerance.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: Tol) {
    assert_eq!(got.len(), want.len(), "{what}: length {} vs expected {}", got.len(), want.len());
    let mut worst = (0usize, 0.0f32);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let excess = (g - w).abs() - (tol.abs + tol.rel * w.abs());
        if excess.is_nan() || excess > worst.1 {
            worst = (i, if excess.is_nan() { f32::INFINITY } else { excess });
        }
    }
    if worst.1 > 0.0 {
        let i = worst.0;
        panic!("{what}: element {i} is {} but expected {} (tolerance {tol:?})", got[i], want[i]);
    }
}

/// Largest |got - want| relative to the largest |want| (for quantised paths).
pub fn rel_max_err(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0, f32::max) / scale
}
