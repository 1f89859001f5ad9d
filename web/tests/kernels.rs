//! Kernel families in a real browser's WebGPU (SwiftShader in Chromium, lavapipe in Firefox) against CPU
//! references written from the formulas, the same way `tests/kernels/` checks them natively: GEMM (f32 with
//! bias + GELU, q8, f16 activations where offered), flash attention, LayerNorm, RMSNorm, softmax, RoPE, conv1d
//! and broadcast add.
//! Run by `web/run-tests` through `wasm-bindgen-test-runner` in headless Chromium and Firefox.
#![cfg(target_arch = "wasm32")]

use std::rc::Rc;

use nava::gpu::{Gpu, GpuTensor};
use nava::kernels::attention::{attention, AttentionOptions};
use nava::kernels::conv::{conv1d, Conv1dArgs};
use nava::kernels::elementwise::{binary, softmax, Binary};
use nava::kernels::gemm::{gemm, Act, Epilogue, Weight, WeightFormat};
use nava::kernels::norm::{layer_norm, rms_norm};
use nava::kernels::rope::{pair_groups, RopeGrid, RopeTable};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

thread_local! {
    static GPU: std::cell::RefCell<Option<Rc<Gpu>>> = const { std::cell::RefCell::new(None) };
}

/// The device the page would open (same limits check), opened once per test binary.
async fn gpu() -> Rc<Gpu> {
    if let Some(g) = GPU.with(|c| c.borrow().clone()) {
        return g;
    }
    let g = Rc::new(nava_web::open_gpu().await.unwrap_or_else(|e| panic!("browser kernel tests need WebGPU: {e}")));
    GPU.with(|c| *c.borrow_mut() = Some(g.clone()));
    g
}

/// Seeded values in [-1, 1) from a 64-bit LCG: the same on every platform, no dependency.
fn rand_vec(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `|got - want| <= abs + rel·|want|` everywhere, naming the worst element otherwise.
fn assert_close(what: &str, got: &[f32], want: &[f32], abs: f32, rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst: Option<(usize, f32)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let excess = (g - w).abs() - (abs + rel * w.abs());
        let excess = if excess.is_nan() { f32::INFINITY } else { excess };
        if excess > 0.0 && worst.is_none_or(|(_, e)| excess > e) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, _)) = worst {
        panic!("{what}: element {i} is {} but expected {} (abs {abs}, rel {rel})", got[i], want[i]);
    }
}

async fn read(g: &Gpu, t: &GpuTensor) -> Vec<f32> {
    g.read_f32(t).await.expect("readback")
}

fn up(g: &Gpu, x: &[f32], shape: &[usize]) -> GpuTensor {
    g.upload_f32("x", x, shape).expect("upload")
}

/// x·Wᵀ + b, then GELU (tanh form), in f64.
fn gemm_ref(x: &[f32], w: &[f32], b: &[f32], m: usize, n: usize, k: usize, gelu: bool) -> Vec<f32> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = b[j] as f64;
            for t in 0..k {
                s += x[i * k + t] as f64 * w[j * k + t] as f64;
            }
            if gelu {
                s = 0.5 * s * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (s + 0.044715 * s.powi(3))).tanh());
            }
            y[i * n + j] = s as f32;
        }
    }
    y
}

#[wasm_bindgen_test]
async fn gemm_f32_bias_gelu() {
    let g = gpu().await;
    for (i, &(m, n, k)) in [(1, 1, 1), (5, 13, 33), (17, 64, 96), (64, 130, 257)].iter().enumerate() {
        let (x, w, b) = (rand_vec(10 + i as u64, m * k), rand_vec(20 + i as u64, n * k), rand_vec(30 + i as u64, n));
        let wt = Weight::from_f32(&g, "w", WeightFormat::F32, n, k, &w).unwrap();
        let bt = up(&g, &b, &[n]);
        for act in [Act::None, Act::GeluTanh] {
            let y = gemm(&g, &up(&g, &x, &[m, k]), &wt, Epilogue { bias: Some(&bt), act }).unwrap();
            let want = gemm_ref(&x, &w, &b, m, n, k, act == Act::GeluTanh);
            assert_close(&format!("gemm {m}x{n}x{k} {act:?}"), &read(&g, &y).await, &want, 2e-5, 2e-5);
        }
    }
}

#[wasm_bindgen_test]
async fn gemm_q8_close_to_f32() {
    let g = gpu().await;
    let (m, n, k) = (9, 40, 96);
    let (x, w) = (rand_vec(1, m * k), rand_vec(2, n * k));
    let wt = Weight::from_f32(&g, "w", WeightFormat::Q8, n, k, &w).unwrap();
    let y = read(&g, &gemm(&g, &up(&g, &x, &[m, k]), &wt, Epilogue::default()).unwrap()).await;
    let want = gemm_ref(&x, &w, &vec![0.0; n], m, n, k, false);
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
    let err = y.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max) / scale;
    assert!(err < 2e-2, "q8 gemm: max error {err} of the output range");
}

#[wasm_bindgen_test]
async fn attention_matches_softmax_formula() {
    let g = gpu().await;
    for &(lq, lk, heads, d) in &[(1, 1, 1, 16), (7, 13, 2, 32), (33, 20, 3, 64)] {
        let (q, k, v) = (rand_vec(1, lq * heads * d), rand_vec(2, lk * heads * d), rand_vec(3, lk * heads * d));
        let o = attention(
            &g,
            &up(&g, &q, &[lq, heads, d]),
            &up(&g, &k, &[lk, heads, d]),
            &up(&g, &v, &[lk, heads, d]),
            AttentionOptions::default(),
        )
        .unwrap();
        let scale = 1.0 / (d as f64).sqrt();
        let mut want = vec![0.0f32; lq * heads * d];
        for i in 0..lq {
            for h in 0..heads {
                let qi = &q[(i * heads + h) * d..][..d];
                let s: Vec<f64> = (0..lk)
                    .map(|j| {
                        qi.iter().zip(&k[(j * heads + h) * d..][..d]).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
                            * scale
                    })
                    .collect();
                let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|s| (s - mx).exp()).collect();
                let sum: f64 = e.iter().sum();
                for c in 0..d {
                    let acc: f64 = (0..lk).map(|j| e[j] * v[(j * heads + h) * d + c] as f64).sum();
                    want[(i * heads + h) * d + c] = (acc / sum) as f32;
                }
            }
        }
        assert_close(&format!("attention {lq}x{lk} h{heads} d{d}"), &read(&g, &o).await, &want, 2e-5, 2e-5);
    }
}

#[wasm_bindgen_test]
async fn layer_norm_and_rms_norm() {
    let g = gpu().await;
    for (i, &cols) in [1usize, 7, 100, 257, 3072].iter().enumerate() {
        let rows = 3;
        let (x, w, b) =
            (rand_vec(40 + i as u64, rows * cols), rand_vec(50 + i as u64, cols), rand_vec(60 + i as u64, cols));
        let (xt, wt, bt) = (up(&g, &x, &[rows, cols]), up(&g, &w, &[cols]), up(&g, &b, &[cols]));
        let ln = read(&g, &layer_norm(&g, &xt, Some(&wt), Some(&bt), 1e-6, None).unwrap()).await;
        let rms = read(&g, &rms_norm(&g, &xt, &wt, 1e-6).unwrap()).await;
        let (mut want_ln, mut want_rms) = (Vec::new(), Vec::new());
        for row in x.chunks(cols) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
            let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / cols as f64;
            for (c, &v) in row.iter().enumerate() {
                want_ln.push(((v as f64 - mean) / (var + 1e-6).sqrt() * w[c] as f64 + b[c] as f64) as f32);
                want_rms.push((v as f64 / (ms + 1e-6).sqrt() * w[c] as f64) as f32);
            }
        }
        assert_close(&format!("layer_norm cols {cols}"), &ln, &want_ln, 1e-4, 1e-4);
        assert_close(&format!("rms_norm cols {cols}"), &rms, &want_rms, 1e-5, 1e-5);
    }
}

#[wasm_bindgen_test]
async fn softmax_rows() {
    let g = gpu().await;
    for &(rows, cols) in &[(1, 1), (4, 33), (2, 1000)] {
        let x: Vec<f32> = rand_vec(7, rows * cols).into_iter().map(|v| 8.0 * v).collect();
        let y = read(&g, &softmax(&g, &up(&g, &x, &[rows, cols])).unwrap()).await;
        let mut want = Vec::new();
        for row in x.chunks(cols) {
            let mx = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let sum: f64 = row.iter().map(|&v| (v as f64 - mx).exp()).sum();
            want.extend(row.iter().map(|&v| ((v as f64 - mx).exp() / sum) as f32));
        }
        assert_close(&format!("softmax {rows}x{cols}"), &y, &want, 1e-6, 1e-5);
    }
}

#[wasm_bindgen_test]
async fn rope_video_and_audio_rows() {
    let g = gpu().await;
    let (grid, heads, d) = ([2usize, 3, 2], 2usize, 32usize);
    let rg = RopeGrid { video: grid, audio: 5, audio_scale: 0.24 };
    let rows = grid.iter().product::<usize>() + rg.audio;
    let x = rand_vec(70, rows * heads * d);
    let t = up(&g, &x, &[rows, heads, d]);
    RopeTable::new(&g, rg, d).unwrap().apply(&g, &t).unwrap();
    let got = read(&g, &t).await;
    // NAVA.md §4.6: frame, height and width frequencies over three groups of pairs; audio rows use the first.
    let [g0, g1, _] = pair_groups(d);
    let omega = |i: usize, start: usize, n: usize| 10000f64.powf(-(2.0 * (i - start) as f64) / (2 * n) as f64);
    let [f, h, w] = grid;
    let mut want = x.clone();
    for r in 0..rows {
        for i in 0..d / 2 {
            let angle = if r < f * h * w {
                let (fi, hi, wi) = (r / (h * w), (r / w) % h, r % w);
                match i {
                    i if i < g0 => fi as f64 * omega(i, 0, g0),
                    i if i < g0 + g1 => hi as f64 * omega(i, g0, g1),
                    i => wi as f64 * omega(i, g0 + g1, g1),
                }
            } else if i < g0 {
                (r - f * h * w) as f64 * omega(i, 0, g0) * rg.audio_scale
            } else {
                0.0
            };
            for hh in 0..heads {
                let j = (r * heads + hh) * d + 2 * i;
                let (a, b) = (x[j] as f64, x[j + 1] as f64);
                want[j] = (a * angle.cos() - b * angle.sin()) as f32;
                want[j + 1] = (a * angle.sin() + b * angle.cos()) as f32;
            }
        }
    }
    assert_close("rope", &got, &want, 1e-6, 1e-6);
}

#[wasm_bindgen_test]
async fn conv1d_padded_strided() {
    let g = gpu().await;
    let (cin, cout, t, k, stride, pad) = (3usize, 4usize, 17usize, 5usize, 2usize, 2usize);
    let (x, w, b) = (rand_vec(80, cin * t), rand_vec(81, cout * cin * k), rand_vec(82, cout));
    let bt = up(&g, &b, &[cout]);
    let args = Conv1dArgs { bias: Some(&bt), stride, padding: [pad, pad], ..Default::default() };
    let y = read(&g, &conv1d(&g, &up(&g, &x, &[cin, t]), &up(&g, &w, &[cout, cin, k]), &args).unwrap()).await;
    let t_out = (t + 2 * pad - k) / stride + 1;
    let mut want = vec![0.0f32; cout * t_out];
    for o in 0..cout {
        for p in 0..t_out {
            let mut s = b[o] as f64;
            for c in 0..cin {
                for j in 0..k {
                    let src = (p * stride + j) as isize - pad as isize;
                    if (0..t as isize).contains(&src) {
                        s += x[c * t + src as usize] as f64 * w[(o * cin + c) * k + j] as f64;
                    }
                }
            }
            want[o * t_out + p] = s as f32;
        }
    }
    assert_close("conv1d", &y, &want, 2e-5, 2e-5);
}

#[wasm_bindgen_test]
async fn broadcast_add_row() {
    let g = gpu().await;
    let (rows, cols) = (5, 37);
    let (a, b) = (rand_vec(90, rows * cols), rand_vec(91, cols));
    let y = read(&g, &binary(&g, &up(&g, &a, &[rows, cols]), &up(&g, &b, &[cols]), Binary::Add).unwrap()).await;
    let want: Vec<f32> = a.iter().enumerate().map(|(i, v)| v + b[i % cols]).collect();
    assert_close("add", &y, &want, 0.0, 0.0);
}

/// f16 activations where the browser offers shader-f16 (Firefox on lavapipe; not Chromium's SwiftShader): the
/// product of the f16-rounded inputs, rounded once to f16.
#[wasm_bindgen_test]
async fn gemm_f16_activations_where_offered() {
    let g = gpu().await;
    if !g.caps.shader_f16 {
        wasm_bindgen_test::console_log!("gemm_f16_activations_where_offered: skipped, the adapter has no shader-f16");
        return;
    }
    let (m, n, k) = (7, 13, 40);
    let (x, w, b) = (rand_vec(60, m * k), rand_vec(61, n * k), rand_vec(62, n));
    let xr: Vec<f32> = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    let wt = Weight::from_f32(&g, "w", WeightFormat::F32, n, k, &w).unwrap();
    let xt = g.upload_as_f16("x", &x, &[m, k]).unwrap();
    let y = gemm(&g, &xt, &wt, Epilogue { bias: Some(&up(&g, &b, &[n])), act: Act::GeluTanh }).unwrap();
    assert_eq!(y.dtype(), nava::gpu::DType::F16);
    assert_close("gemm f16 activations", &read(&g, &y).await, &gemm_ref(&xr, &w, &b, m, n, k, true), 1e-3, 1e-3);
}
