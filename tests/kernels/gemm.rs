//! GEMM: every weight format and epilogue against an f64 reference, at sizes that are not multiples of the tiles.

use nava::kernels::gemm::{gemm, gemm_gated_add, Act, Epilogue, PackedWeight, Weight, WeightFormat};

use crate::common::{assert_close, rand_vec, rel_max_err, test_gpu, Tol};

/// y = x·Wᵀ + b over f64 sums, then the activation; the formulas, not the shader.
fn reference(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, n: usize, k: usize, act: Act) -> Vec<f32> {
    let mut y = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = b.map_or(0.0, |b| b[j] as f64);
            for t in 0..k {
                s += x[i * k + t] as f64 * w[j * k + t] as f64;
            }
            y[i * n + j] = match act {
                Act::None => s,
                Act::GeluTanh => {
                    0.5 * s * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (s + 0.044715 * s.powi(3))).tanh())
                }
                Act::Silu => s / (1.0 + (-s).exp()),
            } as f32;
        }
    }
    y
}

#[test]
fn gemm_f32_matches_reference() {
    let g = test_gpu();
    for (i, &(m, n, k)) in
        [(1, 1, 1), (3, 7, 5), (5, 13, 33), (17, 64, 96), (64, 300, 130), (130, 257, 256)].iter().enumerate()
    {
        let x = rand_vec(10 + i as u64, m * k);
        let w = rand_vec(20 + i as u64, n * k);
        let b = rand_vec(30 + i as u64, n);
        let xt = g.upload_f32("x", &x, &[m, k]).unwrap();
        let wt = Weight::from_f32(g, "w", WeightFormat::F32, n, k, &w).unwrap();
        let bt = g.upload_f32("b", &b, &[n]).unwrap();
        for act in [Act::None, Act::GeluTanh, Act::Silu] {
            let y = gemm(g, &xt, &wt, Epilogue { bias: Some(&bt), act }).unwrap();
            assert_eq!(y.shape(), &[m, n]);
            let got = g.read_f32_blocking(&y).unwrap();
            let want = reference(&x, &w, Some(&b), m, n, k, act);
            assert_close(&format!("gemm f32 {m}x{n}x{k} {act:?}"), &got, &want, Tol::new(2e-5, 2e-5));
        }
    }
}

#[test]
fn gemm_batched_leading_dims() {
    let g = test_gpu();
    let (b, m, n, k) = (3, 5, 9, 12);
    let x = rand_vec(1, b * m * k);
    let w = rand_vec(2, n * k);
    let xt = g.upload_f32("x", &x, &[b, m, k]).unwrap();
    let wt = Weight::from_f32(g, "w", WeightFormat::F32, n, k, &w).unwrap();
    let y = gemm(g, &xt, &wt, Epilogue::default()).unwrap();
    assert_eq!(y.shape(), &[b, m, n]);
    assert_close(
        "batched gemm",
        &g.read_f32_blocking(&y).unwrap(),
        &reference(&x, &w, None, b * m, n, k, Act::None),
        Tol::new(2e-5, 2e-5),
    );
}

#[test]
fn gemm_gated_residual() {
    let g = test_gpu();
    let (m, n, k) = (6, 10, 20);
    let x = rand_vec(3, m * k);
    let w = rand_vec(4, n * k);
    let b = rand_vec(5, n);
    let res = rand_vec(6, m * n);
    let xt = g.upload_f32("x", &x, &[m, k]).unwrap();
    let wt = Weight::from_f32(g, "w", WeightFormat::F32, n, k, &w).unwrap();
    let bt = g.upload_f32("b", &b, &[n]).unwrap();
    let prod = reference(&x, &w, Some(&b), m, n, k, Act::None);
    // One gate row for all rows, and one gate row per row.
    for per_row in [false, true] {
        let gate = rand_vec(7, if per_row { m * n } else { n });
        let gt = g.upload_f32("g", &gate, &[gate.len()]).unwrap();
        let yt = g.upload_f32("y", &res, &[m, n]).unwrap();
        gemm_gated_add(g, &xt, &wt, Some(&bt), &gt, &yt).unwrap();
        let want: Vec<f32> = (0..m * n).map(|i| res[i] + prod[i] * gate[if per_row { i } else { i % n }]).collect();
        assert_close("gated residual", &g.read_f32_blocking(&yt).unwrap(), &want, Tol::new(2e-5, 2e-5));
    }
}

/// Each stored format computes exactly with the values it stores (checked against the dequantised weight), and
/// those values are within the format's stated error of the original.
#[test]
fn gemm_weight_formats() {
    let g = test_gpu();
    let (m, n, k) = (7, 37, 100);
    let x = rand_vec(8, m * k);
    let w = rand_vec(9, n * k);
    let xt = g.upload_f32("x", &x, &[m, k]).unwrap();
    let exact = reference(&x, &w, None, m, n, k, Act::None);
    // Bound on max |W_q - W| / max |W|, from each format's step size.
    for (format, bound) in [
        (WeightFormat::F16, 1e-3),
        (WeightFormat::BF16, 4e-3),
        (WeightFormat::Q8, 4.0e-3),
        (WeightFormat::Q4, 7.2e-2),
        (WeightFormat::Fp8, 6.3e-2),
    ] {
        let packed = PackedWeight::quantize(format, n, k, &w);
        let wq = packed.dequantize();
        let err = rel_max_err(&wq, &w);
        assert!(err <= bound, "{format:?} weight error {err} over its bound {bound}");
        let wt = Weight::upload(g, "w", &packed).unwrap();
        let y = g.read_f32_blocking(&gemm(g, &xt, &wt, Epilogue::default()).unwrap()).unwrap();
        assert_close(
            &format!("gemm {format:?}"),
            &y,
            &reference(&x, &wq, None, m, n, k, Act::None),
            Tol::new(3e-5, 3e-5),
        );
        let out_err = rel_max_err(&y, &exact);
        println!("{format:?}: weight error {err:.2e}, output error {out_err:.2e} (relative to max |y|)");
    }
}

#[test]
fn gemm_fp8_passthrough_keeps_bytes() {
    let (n, k) = (3, 8);
    let bytes: Vec<u8> = (0..(n * k) as u32).map(|i| (i * 37 % 0x7e) as u8).collect();
    let scales = [0.5f32, 2.0, 1.0];
    let p = PackedWeight::from_fp8(n, k, &bytes, &scales);
    let w = p.dequantize();
    for ni in 0..n {
        for ki in 0..k {
            let want = nava::kernels::gemm::e4m3_to_f32(bytes[ni * k + ki]) * scales[ni];
            assert_eq!(w[ni * k + ki], want);
        }
    }
}

#[test]
fn gemm_rejects_wrong_shapes() {
    let g = test_gpu();
    let xt = g.upload_f32("x", &[0.0; 12], &[3, 4]).unwrap();
    let wt = Weight::from_f32(g, "w", WeightFormat::F32, 2, 5, &[0.0; 10]).unwrap();
    let e = gemm(g, &xt, &wt, Epilogue::default()).unwrap_err().to_string();
    assert!(e.contains("`x` has shape [3, 4]") && e.contains("in-features"), "{e}");
    let wt = Weight::from_f32(g, "w", WeightFormat::F32, 2, 4, &[0.0; 8]).unwrap();
    let bt = g.upload_f32("b", &[0.0; 3], &[3]).unwrap();
    let e = gemm(g, &xt, &wt, Epilogue { bias: Some(&bt), act: Act::None }).unwrap_err().to_string();
    assert!(e.contains("`bias` has shape [3]"), "{e}");
    // Packed words already on the GPU must start on a 16-byte boundary (the kernels read four columns' words as
    // one vec4): a view one word into its buffer is refused by name, the same words at the start are taken.
    let words = g.upload_u32("words", &[0; 17], &[17]).unwrap();
    let e = match Weight::from_words(WeightFormat::F32, 4, 4, words.rows(1, 16).unwrap(), None) {
        Ok(_) => panic!("words one word into their buffer were taken"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("start 4 bytes into their buffer") && e.contains("16-byte boundary"), "{e}");
    Weight::from_words(WeightFormat::F32, 4, 4, words.rows(0, 16).unwrap(), None).unwrap();
}

/// Row views (as the DiT uses for its video and audio rows) as input, bias, gate and output.
#[test]
fn gemm_on_row_views() {
    let g = test_gpu();
    let (m, n, k) = (9, 6, 10);
    let x = rand_vec(50, m * k);
    let w = rand_vec(51, n * k);
    let table = rand_vec(52, 3 * n); // rows: bias, gate, unused
    let res = rand_vec(53, m * n);
    let xt = g.upload_f32("x", &x, &[m, k]).unwrap();
    let tt = g.upload_f32("table", &table, &[3, n]).unwrap();
    let yt = g.upload_f32("y", &res, &[m, n]).unwrap();
    let wt = Weight::from_f32(g, "w", WeightFormat::F32, n, k, &w).unwrap();
    let (r0, rn) = (3, 5);
    let xv = xt.rows(r0, rn).unwrap();
    let yv = yt.rows(r0, rn).unwrap();
    let bias = tt.rows(1, 1).unwrap().reshape(&[n]).unwrap();
    let gate = tt.rows(2, 1).unwrap();
    gemm_gated_add(g, &xv, &wt, Some(&bias), &gate, &yv).unwrap();
    let prod = reference(&x[r0 * k..(r0 + rn) * k], &w, Some(&table[n..2 * n]), rn, n, k, Act::None);
    let mut want = res.clone();
    for i in 0..rn * n {
        want[r0 * n + i] += prod[i] * table[2 * n + i % n];
    }
    assert_close("gemm on views", &g.read_f32_blocking(&yt).unwrap(), &want, Tol::new(2e-5, 2e-5));
}

/// f16 activations (x and y) with f32 accumulation, where the adapter has SHADER_F16: the result is the f32
/// product of the f16-rounded inputs, rounded once to f16.
#[test]
fn gemm_f16_activations() {
    let g = test_gpu();
    if !g.caps.shader_f16 {
        println!("skipped: adapter has no shader-f16");
        return;
    }
    // k = 37 reads x one element at a time, k = 40 four at a time.
    for (k, format) in
        [(37, WeightFormat::F32), (37, WeightFormat::Q8), (40, WeightFormat::F32), (40, WeightFormat::Q4)]
    {
        let (m, n) = (7, 13);
        let x = rand_vec(60, m * k);
        let w = rand_vec(61, n * k);
        let b = rand_vec(62, n);
        let xr: Vec<f32> = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        let packed = PackedWeight::quantize(format, n, k, &w);
        let wt = Weight::upload(g, "w", &packed).unwrap();
        let xt = g.upload_as_f16("x", &x, &[m, k]).unwrap();
        let bt = g.upload_f32("b", &b, &[n]).unwrap();
        let y = gemm(g, &xt, &wt, Epilogue { bias: Some(&bt), act: Act::GeluTanh }).unwrap();
        assert_eq!(y.dtype(), nava::gpu::DType::F16);
        let want = reference(&xr, &packed.dequantize(), Some(&b), m, n, k, Act::GeluTanh);
        // One f16 rounding of the output: 2^-11 relative.
        assert_close(
            &format!("f16 activations {format:?}"),
            &g.read_f32_blocking(&y).unwrap(),
            &want,
            Tol::new(1e-3, 1e-3),
        );
        // Row views of f16 data (views start on whole words: even rows here).
        let y3 = g.upload_as_f16("y", &vec![0.0; m * n], &[m, n]).unwrap();
        nava::kernels::gemm::gemm_into(g, &xt.rows(2, 3).unwrap(), &wt, Epilogue::default(), &y3.rows(4, 3).unwrap())
            .unwrap();
        let got = g.read_f32_blocking(&y3).unwrap();
        let want = reference(&xr[2 * k..5 * k], &packed.dequantize(), None, 3, n, k, Act::None);
        assert_close("f16 views", &got[4 * n..7 * n], &want, Tol::new(1e-3, 1e-3));
        if k % 2 == 1 {
            assert!(xt.rows(1, 3).is_none(), "a view starting mid-word must be refused");
        }
    }
}

/// The shared-memory tiled kernel (chosen on GPUs) against the f64 reference on this adapter, whatever kernel
/// the adapter would choose: every format, bias and activations, the add and gated stores, rows and columns that
/// are not multiples of its 128 x 128 tile, and k not a multiple of its 8.
#[test]
fn gemm_tiled_kernel_matches_reference() {
    kernel_matches_reference(nava::kernels::gemm::Kernel::Tiled, "tiled");
}

/// gemm.wgsl's plain entry point (CPU drivers without subgroups, browsers), whatever this adapter would choose.
#[test]
fn gemm_plain_kernel_matches_reference() {
    kernel_matches_reference(nava::kernels::gemm::Kernel::Plain, "plain");
}

/// gemm.wgsl's subgroup entry point (CPU drivers with subgroups): also k not a multiple of the subgroup size, k
/// below it, and invocations past the last column (which still load x for their subgroup). An adapter without
/// fixed-size subgroups must refuse it by name.
#[test]
fn gemm_subgroup_kernel_matches_reference() {
    use nava::kernels::gemm::{gemm_on, Kernel};
    let g = test_gpu();
    if g.caps.subgroup_size == 0 {
        let x = g.upload_f32("x", &[1.0; 4], &[1, 4]).unwrap();
        let w = Weight::from_f32(g, "w", WeightFormat::F32, 1, 4, &[1.0; 4]).unwrap();
        let Err(e) = gemm_on(g, Kernel::Subgroup, &x, &w, Epilogue::default()) else {
            panic!("an adapter without fixed-size subgroups must refuse the subgroup kernel");
        };
        assert!(e.to_string().contains("subgroup"), "{e}");
        return;
    }
    kernel_matches_reference(Kernel::Subgroup, "subgroup");
}

fn kernel_matches_reference(kernel: nava::kernels::gemm::Kernel, name: &str) {
    use nava::kernels::gemm::{gemm_into_on, gemm_on, Store};
    let g = test_gpu();
    for (i, &(m, n, k)) in [(1, 5, 3), (130, 133, 37), (257, 128, 72), (9, 300, 20)].iter().enumerate() {
        let x = rand_vec(40 + i as u64, m * k);
        let w = rand_vec(50 + i as u64, n * k);
        let b = rand_vec(60 + i as u64, n);
        let xt = g.upload_f32("x", &x, &[m, k]).unwrap();
        let bt = g.upload_f32("b", &b, &[n]).unwrap();
        for format in WeightFormat::ALL {
            let packed = PackedWeight::quantize(format, n, k, &w);
            let wq = packed.dequantize();
            let wt = Weight::upload(g, "w", &packed).unwrap();
            for act in [Act::None, Act::GeluTanh, Act::Silu] {
                let y = gemm_on(g, kernel, &xt, &wt, Epilogue { bias: Some(&bt), act }).unwrap();
                let want = reference(&x, &wq, Some(&b), m, n, k, act);
                let what = format!("{name} gemm {format:?} {m}x{n}x{k} {act:?}");
                assert_close(&what, &g.read_f32_blocking(&y).unwrap(), &want, Tol::new(3e-5, 3e-5));
            }
            let prod = reference(&x, &wq, None, m, n, k, Act::None);
            let res = rand_vec(70, m * n);
            let gate = rand_vec(71, m * n);
            let gt = g.upload_f32("g", &gate, &[m, n]).unwrap();
            for (store, store_name) in [(Store::Add, "add"), (Store::Gated(&gt), "gated")] {
                let yt = g.upload_f32("y", &res, &[m, n]).unwrap();
                gemm_into_on(g, kernel, &xt, &wt, Epilogue::default(), &yt, store).unwrap();
                let want: Vec<f32> = match store {
                    Store::Gated(_) => (0..m * n).map(|i| res[i] + prod[i] * gate[i]).collect(),
                    _ => (0..m * n).map(|i| res[i] + prod[i]).collect(),
                };
                let what = format!("{name} gemm {store_name} {format:?} {m}x{n}x{k}");
                assert_close(&what, &g.read_f32_blocking(&yt).unwrap(), &want, Tol::new(3e-5, 3e-5));
            }
        }
    }
}
