//! Attentive statistics (softmax over rows, weighted mean and std per column) and tanh against f64 references
//! written from ECAPA's ASTP formulas, at sizes off the workgroup size, plus bad inputs.

use nava::kernels::attentive_stats::{attentive_stats, tanh};

use crate::common::{assert_close, rand_vec, test_gpu, Tol};

fn reference(x: &[f32], z: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; 2 * cols];
    for c in 0..cols {
        let m = (0..rows).map(|t| z[t * cols + c] as f64).fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = (0..rows).map(|t| (z[t * cols + c] as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        let mean: f64 = (0..rows).map(|t| e[t] / s * x[t * cols + c] as f64).sum();
        let sq: f64 = (0..rows).map(|t| e[t] / s * (x[t * cols + c] as f64).powi(2)).sum();
        out[c] = mean as f32;
        out[cols + c] = (sq - mean * mean).max(1e-7).sqrt() as f32;
    }
    out
}

#[test]
fn attentive_stats_matches_reference() {
    let g = test_gpu();
    for (i, &(rows, cols)) in [(1, 1), (5, 3), (151, 96), (1001, 130)].iter().enumerate() {
        let x = rand_vec(40 + i as u64, rows * cols);
        let z: Vec<f32> = rand_vec(50 + i as u64, rows * cols).iter().map(|v| v * 4.0).collect();
        let xg = g.upload_f32("x", &x, &[rows, cols]).expect("upload");
        let zg = g.upload_f32("z", &z, &[rows, cols]).expect("upload");
        let y = attentive_stats(g, &xg, &zg).expect("stats");
        assert_eq!(y.shape(), [2 * cols]);
        let got = g.read_f32_blocking(&y).expect("read");
        // A single row has zero variance: std is sqrt(1e-7) exactly as the clamp gives.
        assert_close(
            &format!("attentive_stats {rows}x{cols}"),
            &got,
            &reference(&x, &z, rows, cols),
            Tol::new(2e-5, 1e-4),
        );
    }
}

#[test]
fn tanh_matches_reference() {
    let g = test_gpu();
    for n in [1usize, 63, 1000] {
        let x: Vec<f32> = rand_vec(60 + n as u64, n).iter().map(|v| v * 12.0).collect();
        let xg = g.upload_f32("x", &x, &[n]).expect("upload");
        let got = g.read_f32_blocking(&tanh(g, &xg).expect("tanh")).expect("read");
        let want: Vec<f32> = x.iter().map(|&v| (v as f64).tanh() as f32).collect();
        assert_close(&format!("tanh {n}"), &got, &want, Tol::new(1e-6, 1e-6));
    }
}

#[test]
fn attentive_stats_rejects_bad_shapes() {
    let g = test_gpu();
    let x = g.upload_f32("x", &[0.0; 12], &[4, 3]).expect("upload");
    let z = g.upload_f32("z", &[0.0; 12], &[3, 4]).expect("upload");
    let e = attentive_stats(g, &x, &z).expect_err("z shape").to_string();
    assert!(e.contains("`z`") && e.contains("[4, 3]"), "{e}");
    let flat = x.reshape(&[12]).expect("reshape");
    let e = attentive_stats(g, &flat, &flat).expect_err("1-d").to_string();
    assert!(e.contains("2 dimensions"), "{e}");
}
