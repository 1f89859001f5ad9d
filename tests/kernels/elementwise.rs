//! Pointwise and per-row kernels (`kernels::elementwise`) against references written from the formulas in f64:
//! activations, broadcast add/mul, the gated residual, SnakeBeta, copy/fill, softmax, row reductions and the
//! sinusoidal timestep embedding; the splitting over bindings under a small artificial limit; bad inputs.

use nava::gpu::GpuTensor;
use nava::kernels::elementwise::{
    binary, binary_inplace, copy, copy_into, fill, gated_add, reduce, snake_beta, snake_beta_inplace, softmax,
    softmax_inplace, timestep_embedding, unary, unary_inplace, variants, with_binding_limit, Binary, Reduce,
    TimestepFreqs, Unary,
};

use crate::common::{assert_close, rand_vec, test_gpu, Tol};

fn upload(data: &[f32], shape: &[usize]) -> GpuTensor {
    test_gpu().upload_f32("test input", data, shape).unwrap()
}

fn read(t: &GpuTensor) -> Vec<f32> {
    test_gpu().read_f32_blocking(t).unwrap()
}

/// Seeded values in [-scale, scale).
fn rand_scaled(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    rand_vec(seed, n).into_iter().map(|v| v * scale).collect()
}

fn unary_ref(x: &[f32], f: Unary) -> Vec<f32> {
    x.iter()
        .map(|&v| {
            let v = v as f64;
            (match f {
                Unary::GeluTanh => {
                    let u = ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).clamp(-15.0, 15.0);
                    0.5 * v * (1.0 + u.tanh())
                }
                Unary::Silu => v / (1.0 + (-v).exp()),
                Unary::Clamp { lo, hi } => v.max(lo as f64).min(hi as f64),
                Unary::ScaleAdd { scale, add } => scale as f64 * v + add as f64,
            }) as f32
        })
        .collect()
}

const UNARY_OPS: [Unary; 4] =
    [Unary::GeluTanh, Unary::Silu, Unary::Clamp { lo: -0.5, hi: 2.0 }, Unary::ScaleAdd { scale: -1.5, add: 0.25 }];

#[test]
fn unary_ops_match_reference() {
    let g = test_gpu();
    for (i, shape) in [vec![1], vec![7], vec![3, 300], vec![2, 5, 103]].iter().enumerate() {
        let n: usize = shape.iter().product();
        // ±12 reaches the ±15 clamp of GELU's tanh argument and SiLU's saturated tails.
        let mut x = rand_scaled(100 + i as u64, n, 12.0);
        if n > 4 {
            x[..4].copy_from_slice(&[-100.0, 100.0, 0.0, -1e-3]);
        }
        let xt = upload(&x, shape);
        for f in UNARY_OPS {
            let want = unary_ref(&x, f);
            let y = unary(g, &xt, f).unwrap();
            assert_eq!(y.shape(), &shape[..]);
            assert_close(&format!("{f:?} {shape:?}"), &read(&y), &want, Tol::F32);
            let yt = upload(&x, shape);
            unary_inplace(g, &yt, f).unwrap();
            assert_close(&format!("{f:?} in place {shape:?}"), &read(&yt), &want, Tol::F32);
        }
    }
}

/// `b` indexed as the same shape, one row (`Some(cols)`), or one value per row.
#[derive(Clone, Copy, Debug)]
enum Bcast {
    Same,
    Row,
    PerRow,
}

fn binary_ref(a: &[f32], b: &[f32], cols: usize, mode: Bcast, op: Binary) -> Vec<f32> {
    (0..a.len())
        .map(|i| {
            let bv = match mode {
                Bcast::Same => b[i],
                Bcast::Row => b[i % cols],
                Bcast::PerRow => b[i / cols],
            } as f64;
            (match op {
                Binary::Add => a[i] as f64 + bv,
                Binary::Mul => a[i] as f64 * bv,
            }) as f32
        })
        .collect()
}

#[test]
fn binary_broadcast_matches_reference() {
    let g = test_gpu();
    // (a's shape, b's shape, mode); cols below, at and above the 64-wide step of the shader's column tracking.
    let cases: Vec<(Vec<usize>, Vec<usize>, Bcast)> = vec![
        (vec![1, 1], vec![1, 1], Bcast::Same),
        (vec![5, 9], vec![5, 9], Bcast::Same),
        (vec![5, 9], vec![9], Bcast::Row),
        (vec![5, 9], vec![1, 9], Bcast::Row),
        (vec![5, 9], vec![5, 1], Bcast::PerRow),
        (vec![5, 9], vec![5], Bcast::PerRow),
        (vec![70, 3], vec![3], Bcast::Row),
        (vec![70, 3], vec![70, 1], Bcast::PerRow),
        (vec![9, 64], vec![64], Bcast::Row),
        (vec![9, 64], vec![9], Bcast::PerRow),
        (vec![6, 300], vec![300], Bcast::Row),
        (vec![6, 300], vec![6, 1], Bcast::PerRow),
        (vec![2, 3, 50], vec![50], Bcast::Row),
        (vec![2, 3, 50], vec![2, 3, 1], Bcast::PerRow),
        (vec![4, 4], vec![4], Bcast::Row), // ambiguous 1-d: a row, as in PyTorch
    ];
    for (i, (ashape, bshape, mode)) in cases.iter().enumerate() {
        let cols = *ashape.last().unwrap();
        let a = rand_vec(200 + i as u64, ashape.iter().product());
        let b = rand_vec(300 + i as u64, bshape.iter().product());
        let (at, bt) = (upload(&a, ashape), upload(&b, bshape));
        for op in [Binary::Add, Binary::Mul] {
            let want = binary_ref(&a, &b, cols, *mode, op);
            let what = format!("{op:?} {ashape:?} with {bshape:?} ({mode:?})");
            let y = binary(g, &at, &bt, op).unwrap();
            assert_eq!(y.shape(), &ashape[..]);
            assert_close(&what, &read(&y), &want, Tol::F32);
            let yt = upload(&a, ashape);
            binary_inplace(g, &yt, &bt, op).unwrap();
            assert_close(&format!("{what} in place"), &read(&yt), &want, Tol::F32);
        }
    }
}

#[test]
fn gated_add_full_and_row_gate() {
    let g = test_gpu();
    for (i, (rows, cols)) in [(1, 1), (3, 7), (17, 130), (2, 3072)].into_iter().enumerate() {
        let y0 = rand_vec(400 + i as u64, rows * cols);
        let t = rand_vec(500 + i as u64, rows * cols);
        let tt = upload(&t, &[rows, cols]);
        for per_row in [true, false] {
            let gate = rand_vec(600 + i as u64, if per_row { rows * cols } else { cols });
            let gshape = if per_row {
                vec![rows, cols]
            } else {
                vec![1, 1, cols] // the [B, 1, dim] shape of a modulation chunk
            };
            let yt = upload(&y0, &[rows, cols]);
            gated_add(g, &yt, &tt, &upload(&gate, &gshape)).unwrap();
            let want: Vec<f32> = (0..rows * cols)
                .map(|j| {
                    let gv = gate[if per_row { j } else { j % cols }] as f64;
                    (y0[j] as f64 + t[j] as f64 * gv) as f32
                })
                .collect();
            assert_close(&format!("gated_add {rows}x{cols} gate {gshape:?}"), &read(&yt), &want, Tol::F32);
        }
    }
}

fn snake_ref(x: &[f32], alpha: &[f32], beta: &[f32], t_len: usize) -> Vec<f32> {
    let c = alpha.len();
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = i / t_len % c;
            let (a, b, v) = ((alpha[ch] as f64).exp(), (beta[ch] as f64).exp(), v as f64);
            (v + 1.0 / (b + 1e-9) * (a * v).sin().powi(2)) as f32
        })
        .collect()
}

#[test]
fn snake_beta_matches_reference() {
    let g = test_gpu();
    for (i, shape) in [vec![1, 1], vec![3, 10], vec![24, 333], vec![2, 5, 70], vec![3, 7, 2]].iter().enumerate() {
        let c = shape[shape.len() - 2];
        let t_len = shape[shape.len() - 1];
        let x = rand_scaled(700 + i as u64, shape.iter().product(), 3.0);
        // Log-scale parameters as trained: e^α in about [0.4, 2.7], e^β in about [0.2, 5].
        let alpha = rand_vec(800 + i as u64, c);
        let beta = rand_scaled(900 + i as u64, c, 1.6);
        let want = snake_ref(&x, &alpha, &beta, t_len);
        let (at, bt) = (upload(&alpha, &[c]), upload(&beta, &[c]));
        let y = snake_beta(g, &upload(&x, shape), &at, &bt).unwrap();
        // sin of arguments up to ~8 rad: allow a few f32 ulps of the argument.
        let tol = Tol::new(2e-5, 2e-5);
        assert_close(&format!("snake_beta {shape:?}"), &read(&y), &want, tol);
        let xt = upload(&x, shape);
        snake_beta_inplace(g, &xt, &at, &bt).unwrap();
        assert_close(&format!("snake_beta in place {shape:?}"), &read(&xt), &want, tol);
    }
}

#[test]
fn copy_and_fill() {
    let g = test_gpu();
    let x = rand_vec(1000, 3 * 77);
    let xt = upload(&x, &[3, 77]);
    let y = copy(g, &xt).unwrap();
    assert_eq!(read(&y), x);
    let dst = g.alloc("dst", &[231], nava::gpu::DType::F32).unwrap();
    copy_into(g, &xt, &dst).unwrap();
    assert_eq!(read(&dst), x);
    fill(g, &dst, -2.5).unwrap();
    assert_eq!(read(&dst), vec![-2.5; 231]);
}

fn softmax_ref(x: &[f32], cols: usize) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|r| {
            let m = r.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let e: Vec<f64> = r.iter().map(|&v| (v as f64 - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |v| (v / s) as f32)
        })
        .collect()
}

#[test]
fn softmax_matches_reference() {
    let g = test_gpu();
    for (i, (rows, cols)) in [(1, 1), (3, 7), (4, 63), (2, 4096), (5, 1000), (1, 5000)].into_iter().enumerate() {
        // Logits up to ±30: e^x alone would overflow f32 without the max subtraction at ±90; add 60 to one row.
        let mut x = rand_scaled(1100 + i as u64, rows * cols, 30.0);
        for v in &mut x[..cols] {
            *v += 60.0;
        }
        let want = softmax_ref(&x, cols);
        let y = softmax(g, &upload(&x, &[rows, cols])).unwrap();
        let tol = Tol::new(1e-6, 2e-5);
        assert_close(&format!("softmax {rows}x{cols}"), &read(&y), &want, tol);
        let xt = upload(&x, &[rows, cols]);
        softmax_inplace(g, &xt).unwrap();
        assert_close(&format!("softmax in place {rows}x{cols}"), &read(&xt), &want, tol);
    }
}

fn reduce_ref(x: &[f32], cols: usize, op: Reduce) -> Vec<f32> {
    x.chunks(cols)
        .map(|r| {
            let r = r.iter().map(|&v| v as f64);
            (match op {
                Reduce::Sum => r.sum::<f64>(),
                Reduce::Mean => r.sum::<f64>() / cols as f64,
                Reduce::Max => r.fold(f64::NEG_INFINITY, f64::max),
                Reduce::SumSq => r.map(|v| v * v).sum(),
            }) as f32
        })
        .collect()
}

#[test]
fn reductions_match_reference() {
    let g = test_gpu();
    for (i, shape) in [vec![1], vec![9], vec![3, 7], vec![4, 65], vec![2, 4096], vec![2, 3, 333]].iter().enumerate() {
        let cols = *shape.last().unwrap();
        let x = rand_vec(1200 + i as u64, shape.iter().product());
        let xt = upload(&x, shape);
        let out_shape = if shape.len() == 1 { vec![1] } else { shape[..shape.len() - 1].to_vec() };
        for op in Reduce::ALL {
            let y = reduce(g, &xt, op).unwrap();
            assert_eq!(y.shape(), &out_shape[..]);
            // f32 sums of `cols` terms of size ≤ 1: rounding grows like √cols ulps of the partial sums.
            let tol = Tol::new(2e-7 * (cols as f32).sqrt().max(1.0), 1e-6);
            assert_close(&format!("{op:?} {shape:?}"), &read(&y), &reduce_ref(&x, cols, op), tol);
        }
    }
}

/// The reference in float64, as NAVA.md §4.2 specifies it.
fn timestep_ref(t: &[f32], dim: usize) -> Vec<f64> {
    let half = dim / 2;
    let mut out = Vec::new();
    for &tv in t {
        let angles: Vec<f64> = (0..half).map(|k| tv as f64 * 10000f64.powf(-(k as f64) / half as f64)).collect();
        out.extend(angles.iter().map(|a| a.cos()));
        out.extend(angles.iter().map(|a| a.sin()));
    }
    out
}

fn max_abs_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max)
}

/// Every integer t in [0, 999] at freq_dim 256. Measured on lavapipe (Mesa 25): max |error| vs the f64
/// reference 1.0e-7 (about one ulp of 1). Forming t·ω in f32 alone would be off by up to 5.7e-5, even with an
/// exact cos/sin after it.
#[test]
fn timestep_embedding_matches_f64_reference() {
    let g = test_gpu();
    let freqs = TimestepFreqs::new(g, 256).unwrap();
    let t: Vec<f32> = (0..1000).map(|v| v as f32).collect();
    let y = timestep_embedding(g, &freqs, &upload(&t, &[1000])).unwrap();
    assert_eq!(y.shape(), &[1000, 256]);
    let err = max_abs_err(&read(&y), &timestep_ref(&t, 256));
    println!("timestep embedding, t = 0..999, freq_dim 256: max abs error {err:.2e}");
    assert!(err <= 2e-6, "max abs error {err:.2e} over 2e-6");

    // Other shapes: a [2, 3] grid of timesteps, a small freq_dim, a large t, and a fractional t.
    let freqs = TimestepFreqs::new(g, 6).unwrap();
    let t = [0.0, 1.0, 999.0, 123456.0, 16777215.0, 0.5];
    let y = timestep_embedding(g, &freqs, &upload(&t, &[2, 3])).unwrap();
    assert_eq!(y.shape(), &[2, 3, 6]);
    let err = max_abs_err(&read(&y), &timestep_ref(&t, 6));
    assert!(err <= 2e-6, "small freq_dim: max abs error {err:.2e}");
}

/// Each op under a binding limit of a few hundred bytes, so every launch is split into several windows that start
/// at unaligned offsets.
#[test]
fn split_over_small_bindings() {
    let g = test_gpu();
    let limit = g.binding_align() + 400; // 100 f32 past the worst-case alignment slack
    with_binding_limit(limit, || {
        // 3 rows of 30 per window: 360 bytes, so windows start off any power-of-two alignment ≥ 16.
        let (rows, cols) = (37, 30);
        let n = rows * cols;
        let a = rand_scaled(1300, n, 4.0);
        let b = rand_vec(1301, n);
        let at = upload(&a, &[rows, cols]);
        for f in UNARY_OPS {
            let y = unary(g, &at, f).unwrap();
            assert_close(&format!("split {f:?}"), &read(&y), &unary_ref(&a, f), Tol::F32);
        }
        for (bshape, mode) in
            [(vec![rows, cols], Bcast::Same), (vec![cols], Bcast::Row), (vec![rows, 1], Bcast::PerRow)]
        {
            let bn: usize = bshape.iter().product();
            let y = binary(g, &at, &upload(&b[..bn], &bshape), Binary::Mul).unwrap();
            let want = binary_ref(&a, &b[..bn], cols, mode, Binary::Mul);
            assert_close(&format!("split mul {mode:?}"), &read(&y), &want, Tol::F32);
        }
        let yt = upload(&a, &[rows, cols]);
        gated_add(g, &yt, &upload(&b, &[rows, cols]), &upload(&b[..cols], &[cols])).unwrap();
        let want: Vec<f32> = (0..n).map(|i| a[i] + b[i] * b[i % cols]).collect();
        assert_close("split gated_add", &read(&yt), &want, Tol::F32);

        // SnakeBeta [2, 5, 30]: windows start at rows whose channel is not 0.
        let (alpha, beta) = (rand_vec(1302, 5), rand_vec(1303, 5));
        let snake_a = &a[..2 * 5 * cols];
        let y = snake_beta(g, &upload(snake_a, &[2, 5, cols]), &upload(&alpha, &[5]), &upload(&beta, &[5])).unwrap();
        let want = snake_ref(snake_a, &alpha, &beta, cols);
        assert_close("split snake_beta", &read(&y), &want, Tol::new(2e-5, 2e-5));

        let y = softmax(g, &at).unwrap();
        assert_close("split softmax", &read(&y), &softmax_ref(&a, cols), Tol::new(1e-6, 2e-5));
        let y = reduce(g, &at, Reduce::Sum).unwrap();
        let tol = Tol::new(1e-5, 1e-6);
        assert_close("split sum", &read(&y), &reduce_ref(&a, cols, Reduce::Sum), tol);

        let freqs = TimestepFreqs::new(g, 16).unwrap();
        let t: Vec<f32> = (0..40).map(|v| (v * 25) as f32).collect();
        let y = timestep_embedding(g, &freqs, &upload(&t, &[40])).unwrap();
        let err = max_abs_err(&read(&y), &timestep_ref(&t, 16));
        assert!(err <= 2e-6, "split timestep: max abs error {err:.2e}");
    });
}

#[test]
fn rejects_bad_inputs() {
    let g = test_gpu();
    let a = upload(&[0.0; 12], &[3, 4]);
    let err = |r: Result<(), nava::kernels::KernelError>| r.unwrap_err().to_string();

    let e = err(binary(g, &a, &upload(&[0.0; 5], &[5]), Binary::Add).map(drop));
    assert!(e.contains("binary") && e.contains("`b`") && e.contains("[5]"), "{e}");
    assert!(e.contains("[4] (one row)") && e.contains("[3, 1]"), "{e}");

    let e = err(gated_add(g, &a, &upload(&[0.0; 12], &[4, 3]), &a.clone()));
    assert!(e.contains("gated_add") && e.contains("`t`") && e.contains("[4, 3]"), "{e}");
    let t = upload(&[0.0; 12], &[3, 4]);
    let e = err(gated_add(g, &a, &t, &upload(&[0.0; 3], &[3, 1])));
    assert!(e.contains("`gate`") && e.contains("[3, 1]"), "{e}");

    let e = err(binary_inplace(g, &a, &a.clone(), Binary::Add));
    assert!(e.contains("`b` is `a` itself"), "{e}");

    let e = err(unary(g, &a, Unary::Clamp { lo: 1.0, hi: 0.0 }).map(drop));
    assert!(e.contains("lo <= hi"), "{e}");

    let alpha = upload(&[0.0; 3], &[3]);
    let e = err(snake_beta(g, &a, &alpha, &upload(&[0.0; 4], &[4])).map(drop));
    assert!(e.contains("snake_beta") && e.contains("`beta`") && e.contains("[4]"), "{e}");
    let e = err(snake_beta(g, &upload(&[0.0; 4], &[4]), &alpha, &alpha).map(drop));
    assert!(e.contains("[C, T] or [batch, C, T]"), "{e}");

    let e = match TimestepFreqs::new(g, 7) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("odd freq_dim accepted"),
    };
    assert!(e.contains("freq_dim 7"), "{e}");

    let h = g.upload_as_f16("h", &[0.0; 4], &[4]).unwrap();
    let e = err(softmax(g, &h).map(drop));
    assert!(e.contains("softmax") && e.contains("f16") && e.contains("f32"), "{e}");

    // A row too long for one binding is refused by name rather than dispatched.
    let long = upload(&vec![0.0; 300], &[1, 300]);
    let e = with_binding_limit(g.binding_align() + 400, || err(softmax(g, &long).map(drop)));
    assert!(e.contains("softmax") && e.contains("row of 300 f32"), "{e}");
}

/// Every variant parses and validates with naga (no adapter needed).
#[test]
fn elementwise_variants_validate() {
    for spec in variants() {
        let src = spec.source();
        let module =
            naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}: {}", spec.label, e.emit_to_string(&src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e:?}", spec.label));
        assert!(
            module.entry_points.iter().any(|e| e.name == spec.entry),
            "{}: no entry point {}",
            spec.label,
            spec.entry
        );
    }
}
