//! The audio family (FIR up/down sampling with fused SnakeBeta, STFT magnitude, log-mel) against references written
//! from PyTorch's definitions (`F.pad` + `conv_transpose1d` + crop, `F.pad` + strided `conv1d`), with f64 sums.

use nava::gpu::{Gpu, GpuTensor};
use nava::kernels::audio::{
    conv1d_gemm, conv2d_gemm, fir_downsample, fir_upsample, log_mel, stft_magnitude, variants, with_binding_limit,
    FirDown, FirUp, GemmConv1d, GemmConv2d, Kernel, Pad, PARAMS_BYTES,
};

use crate::common::{assert_close, rand_vec, test_gpu, Tol};

fn up(g: &Gpu, v: &[f32], shape: &[usize]) -> GpuTensor {
    g.upload_f32("test", v, shape).unwrap()
}

fn read(g: &Gpu, t: &GpuTensor) -> Vec<f32> {
    g.read_f32_blocking(t).unwrap()
}

const TOL: Tol = Tol { abs: 2e-5, rel: 2e-5 };

fn padded(x: &[f32], i: isize, mode: Pad) -> f64 {
    let t = x.len() as isize;
    if (0..t).contains(&i) {
        x[i as usize] as f64
    } else if mode == Pad::Replicate {
        x[i.clamp(0, t - 1) as usize] as f64
    } else if mode == Pad::Reflect {
        let j = if i < 0 { -i } else { 2 * (t - 1) - i };
        x[j as usize] as f64
    } else {
        0.0
    }
}

/// `F.pad(row, (pad, pad), mode)` → `conv_transpose1d(stride=ratio)` → `· gain` → `[pad_left : -pad_right]`, then
/// SnakeBeta with (α, β) of the row.
#[allow(clippy::too_many_arguments)]
fn up_ref(
    row: &[f32],
    f: &[f32],
    ratio: usize,
    pad: usize,
    mode: Pad,
    pl: usize,
    pr: usize,
    gain: f64,
    snake: Option<(f32, f32)>,
) -> Vec<f32> {
    let xp: Vec<f64> = (0..row.len() + 2 * pad).map(|i| padded(row, i as isize - pad as isize, mode)).collect();
    let full = (xp.len() - 1) * ratio + f.len();
    let mut y = vec![0.0f64; full];
    for (i, &v) in xp.iter().enumerate() {
        for (k, &w) in f.iter().enumerate() {
            y[i * ratio + k] += v * w as f64;
        }
    }
    y[pl..full - pr]
        .iter()
        .map(|&v| {
            let v = v * gain;
            match snake {
                None => v as f32,
                Some((a, b)) => {
                    let (a, b) = ((a as f64).exp(), (b as f64).exp());
                    (v + 1.0 / (b + 1e-9) * (v * a).sin().powi(2)) as f32
                }
            }
        })
        .collect()
}

fn down_ref(
    row: &[f32],
    f: &[f32],
    stride: usize,
    pl: usize,
    pr: usize,
    mode: Pad,
    max_len: Option<usize>,
) -> Vec<f32> {
    let n = (row.len() + pl + pr - f.len()) / stride + 1;
    let n = max_len.map_or(n, |m| n.min(m));
    (0..n)
        .map(|t| {
            f.iter()
                .enumerate()
                .map(|(j, &w)| w as f64 * padded(row, (t * stride + j) as isize - pl as isize, mode))
                .sum::<f64>() as f32
        })
        .collect()
}

#[test]
fn params_struct_matches_the_wgsl() {
    for (spec, _) in variants().iter().zip(Kernel::ALL) {
        let src = spec.source();
        let module =
            naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}: {}", spec.label, e.emit_to_string(&src)));
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let (params, _) = module.types.iter().find(|(_, t)| t.name.as_deref() == Some("Params")).unwrap();
        assert_eq!(layouter[params].size as usize, PARAMS_BYTES, "{}", spec.label);
    }
}

/// BigVGAN's Activation1d up step (ratio 2, 12 taps, replicate) with and without SnakeBeta, and the ×3 Hann skip
/// path (43 taps), on lengths that are not multiples of the workgroup, with a batch dim, and split over rows.
#[test]
fn fir_upsample_matches_reference() {
    let g = test_gpu();
    // (channels, batch, T, ratio, taps, pad, pad_left, pad_right, snake)
    let cases = [
        (5, 2, 37, 2, 12, 5, 15, 15, true),
        (3, 1, 70, 2, 12, 5, 15, 15, false),
        (2, 1, 29, 3, 43, 7, 42, 40, false),
        (4, 1, 1, 2, 12, 5, 15, 15, true),
    ];
    for (i, &(c, b, t, ratio, taps, pad, pl, pr, snake)) in cases.iter().enumerate() {
        let x = rand_vec(10 + i as u64, b * c * t).iter().map(|v| v * 3.0).collect::<Vec<_>>();
        let f = rand_vec(20 + i as u64, taps);
        let alpha = rand_vec(30 + i as u64, c);
        let beta = rand_vec(40 + i as u64, c);
        let mut want = Vec::new();
        for r in 0..b * c {
            let sb = snake.then(|| (alpha[r % c], beta[r % c]));
            want.extend(up_ref(&x[r * t..(r + 1) * t], &f, ratio, pad, Pad::Replicate, pl, pr, ratio as f64, sb));
        }
        let (xt, ft, at, bt) =
            (up(g, &x, &[b, c, t]), up(g, &f, &[1, 1, taps]), up(g, &alpha, &[c]), up(g, &beta, &[c]));
        let args = FirUp {
            filter: &ft,
            ratio,
            pad,
            padding: Pad::Replicate,
            pad_left: pl,
            pad_right: pr,
            gain: ratio as f32,
            snake: snake.then_some((&at, &bt)),
        };
        let y = fir_upsample(g, &xt, &args).unwrap();
        assert_eq!(y.shape(), &[b, c, ratio * t]);
        assert_close(&format!("fir_upsample case {i}"), &read(g, &y), &want, TOL);
        // Rows split so that each launch holds about 3 rows.
        let limit = g.binding_align() + 4 * (3 * ratio * t) as u64;
        let y = with_binding_limit(limit, || fir_upsample(g, &xt, &args)).unwrap();
        assert_close(&format!("fir_upsample case {i}, split"), &read(g, &y), &want, TOL);
    }
}

#[test]
fn fir_downsample_matches_reference() {
    let g = test_gpu();
    // LowPassFilter1d (12 taps, stride 2, replicate (5, 6)); torchaudio 48k → 16k (41 taps, stride 3, zeros
    // (19, 22), cut to ceil(T/3)); a unit-filter zero pad.
    type Case = (usize, usize, usize, usize, usize, Pad, Option<usize>);
    let cases: [Case; 5] = [
        (74, 12, 2, 5, 6, Pad::Replicate, None),
        (99, 41, 3, 19, 22, Pad::Zero, Some(33)),
        (100, 41, 3, 19, 22, Pad::Zero, Some(34)),
        (7, 1, 1, 0, 5, Pad::Zero, None),
        (40, 16, 5, 8, 8, Pad::Reflect, None),
    ];
    for (i, &(t, taps, stride, pl, pr, mode, max_len)) in cases.iter().enumerate() {
        let rows = 6;
        let x = rand_vec(50 + i as u64, rows * t);
        let f = rand_vec(60 + i as u64, taps);
        let want: Vec<f32> =
            (0..rows).flat_map(|r| down_ref(&x[r * t..(r + 1) * t], &f, stride, pl, pr, mode, max_len)).collect();
        let (xt, ft) = (up(g, &x, &[2, 3, t]), up(g, &f, &[taps]));
        let args = FirDown { filter: &ft, stride, pad_left: pl, pad_right: pr, padding: mode, max_len };
        let y = fir_downsample(g, &xt, &args).unwrap();
        assert_eq!(y.numel(), want.len());
        assert_close(&format!("fir_downsample case {i}"), &read(g, &y), &want, TOL);
        let y = with_binding_limit(g.binding_align() + 4 * (2 * t) as u64, || fir_downsample(g, &xt, &args)).unwrap();
        assert_close(&format!("fir_downsample case {i}, split"), &read(g, &y), &want, TOL);
    }
}

/// Conv1d as im2col + GEMM against PyTorch's definition: "same" dilated kernels, an asymmetric padding, with and
/// without bias, chunked over output samples.
#[test]
fn conv1d_gemm_matches_reference() {
    use nava::kernels::gemm::{Weight, WeightFormat};
    let g = test_gpu();
    for (i, &(cin, cout, l, k, d, pl, pr, bias)) in
        [(5, 7, 37, 3, 1, 1, 1, true), (6, 4, 50, 7, 3, 9, 9, false), (3, 9, 20, 7, 1, 6, 0, true)].iter().enumerate()
    {
        let x = rand_vec(130 + i as u64, cin * l);
        let w = rand_vec(140 + i as u64, cout * cin * k);
        let b = rand_vec(150 + i as u64, cout);
        let lo = l + pl + pr - d * (k - 1);
        let mut want = vec![0.0f32; cout * lo];
        for co in 0..cout {
            for t in 0..lo {
                let mut s = if bias { b[co] as f64 } else { 0.0 };
                for ci in 0..cin {
                    for j in 0..k {
                        let idx = (t + j * d) as isize - pl as isize;
                        if (0..l as isize).contains(&idx) {
                            s += w[(co * cin + ci) * k + j] as f64 * x[ci * l + idx as usize] as f64;
                        }
                    }
                }
                want[co * lo + t] = s as f32;
            }
        }
        let wt = Weight::from_f32(g, "w", WeightFormat::F32, cout, cin * k, &w).unwrap();
        let bt = up(g, &b, &[cout]);
        let xt = up(g, &x, &[cin, l]);
        let args = GemmConv1d { weight: &wt, k, bias: bias.then_some(&bt), padding: [pl, pr], dilation: d };
        let y = conv1d_gemm(g, &xt, &args).unwrap();
        assert_eq!(y.shape(), &[cout, lo]);
        assert_close(&format!("conv1d_gemm case {i}"), &read(g, &y), &want, Tol::new(1e-4, 1e-4));
        // A limit that just holds x and y: chunks of a few output samples each.
        let limit = g.binding_align() + 4 * (cin * l).max(cout * lo) as u64;
        let y = with_binding_limit(limit, || conv1d_gemm(g, &xt, &args)).unwrap();
        assert_close(&format!("conv1d_gemm case {i}, chunked"), &read(g, &y), &want, Tol::new(1e-4, 1e-4));
    }
    let wt = Weight::from_f32(g, "w", WeightFormat::F32, 2, 6, &[0.0; 12]).unwrap();
    let xt = up(g, &rand_vec(1, 8), &[4, 2]);
    let args = GemmConv1d { weight: &wt, k: 3, bias: None, padding: [1, 1], dilation: 1 };
    let e = conv1d_gemm(g, &xt, &args).unwrap_err().to_string();
    assert!(e.contains("weight [2, 6] for 4 channels × 3 taps"), "{e}");
}

/// Conv2d as im2col + GEMM: the audio VAE's causal 3×3 (pad time (2, 0), frequency (1, 1)), its upsampler's
/// (1, 0, 1, 1) and a 1×1, chunked over positions.
#[test]
fn conv2d_gemm_matches_reference() {
    use nava::kernels::gemm::{Weight, WeightFormat};
    let g = test_gpu();
    for (i, &(cin, cout, h, w, k, pad)) in
        [(4, 6, 7, 9, 3, [2, 0, 1, 1]), (3, 5, 6, 5, 3, [1, 0, 1, 1]), (6, 3, 4, 5, 1, [0, 0, 0, 0])].iter().enumerate()
    {
        let x = rand_vec(160 + i as u64, cin * h * w);
        let wt = rand_vec(170 + i as u64, cout * cin * k * k);
        let b = rand_vec(180 + i as u64, cout);
        let (ho, wo) = (h + pad[0] + pad[1] - k + 1, w + pad[2] + pad[3] - k + 1);
        let mut want = vec![0.0f32; cout * ho * wo];
        for co in 0..cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut s = b[co] as f64;
                    for ci in 0..cin {
                        for a in 0..k {
                            for c in 0..k {
                                let (iy, ix) =
                                    ((oy + a) as isize - pad[0] as isize, (ox + c) as isize - pad[2] as isize);
                                if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                    s += wt[((co * cin + ci) * k + a) * k + c] as f64
                                        * x[(ci * h + iy as usize) * w + ix as usize] as f64;
                                }
                            }
                        }
                    }
                    want[(co * ho + oy) * wo + ox] = s as f32;
                }
            }
        }
        let wg = Weight::from_f32(g, "w", WeightFormat::F32, cout, cin * k * k, &wt).unwrap();
        let bt = up(g, &b, &[cout]);
        let xt = up(g, &x, &[cin, h, w]);
        let args = GemmConv2d { weight: &wg, k, bias: Some(&bt), padding: pad };
        let y = conv2d_gemm(g, &xt, &args).unwrap();
        assert_eq!(y.shape(), &[cout, ho, wo]);
        assert_close(&format!("conv2d_gemm case {i}"), &read(g, &y), &want, Tol::new(1e-4, 1e-4));
        let limit = g.binding_align() + 4 * (cin * h * w).max(cout * ho * wo) as u64;
        let y = with_binding_limit(limit, || conv2d_gemm(g, &xt, &args)).unwrap();
        assert_close(&format!("conv2d_gemm case {i}, chunked"), &read(g, &y), &want, Tol::new(1e-4, 1e-4));
    }
}

#[test]
fn stft_magnitude_and_log_mel_match_reference() {
    let g = test_gpu();
    let (rows, n, frames, m) = (3, 13, 9, 5);
    let spec: Vec<f32> = rand_vec(70, rows * 2 * n * frames).iter().map(|v| v * 4.0).collect();
    let mut mag = vec![0.0f32; rows * n * frames];
    for r in 0..rows {
        for k in 0..n {
            for f in 0..frames {
                let re = spec[(r * 2 * n + k) * frames + f] as f64;
                let im = spec[(r * 2 * n + n + k) * frames + f] as f64;
                mag[(r * n + k) * frames + f] = (re * re + im * im).sqrt() as f32;
            }
        }
    }
    let st = up(g, &spec, &[rows, 2 * n, frames]);
    let got = stft_magnitude(g, &st).unwrap();
    assert_eq!(got.shape(), &[rows, n, frames]);
    assert_close("stft_magnitude", &read(g, &got), &mag, TOL);
    // Some basis rows are zero so that the 1e-5 floor is exercised.
    let mut basis: Vec<f32> = rand_vec(71, m * n).iter().map(|v| v.abs()).collect();
    basis[..n].iter_mut().for_each(|v| *v = 0.0);
    let mut want = vec![0.0f32; rows * m * frames];
    for r in 0..rows {
        for j in 0..m {
            for f in 0..frames {
                let s: f64 = (0..n).map(|k| basis[j * n + k] as f64 * mag[(r * n + k) * frames + f] as f64).sum();
                want[(r * m + j) * frames + f] = s.max(1e-5).ln() as f32;
            }
        }
    }
    let lm = log_mel(g, &got, &up(g, &basis, &[m, n])).unwrap();
    assert_eq!(lm.shape(), &[rows, m, frames]);
    assert_close("log_mel", &read(g, &lm), &want, TOL);
}

#[test]
fn bad_inputs_are_refused_with_reasons() {
    let g = test_gpu();
    let x = up(g, &rand_vec(1, 4 * 10), &[4, 10]);
    let f2 = up(g, &rand_vec(2, 6), &[2, 3]);
    let f = up(g, &rand_vec(3, 12), &[12]);
    let a3 = up(g, &rand_vec(4, 3), &[3]);
    let args = FirUp {
        filter: &f2,
        ratio: 2,
        pad: 5,
        padding: Pad::Replicate,
        pad_left: 15,
        pad_right: 15,
        gain: 2.0,
        snake: None,
    };
    let e = fir_upsample(g, &x, &args).unwrap_err().to_string();
    assert!(e.contains("filter") && e.contains("[taps]"), "{e}");
    let e = fir_upsample(g, &x, &FirUp { filter: &f, snake: Some((&a3, &a3)), ..args }).unwrap_err().to_string();
    assert!(e.contains("alpha") && e.contains("[4]"), "{e}");
    let e = fir_upsample(g, &x, &FirUp { filter: &f, pad_left: 100, ..args }).unwrap_err().to_string();
    assert!(e.contains("leaves nothing"), "{e}");
    let down = FirDown { filter: &f, stride: 0, pad_left: 0, pad_right: 0, padding: Pad::Zero, max_len: None };
    let e = fir_downsample(g, &x, &down).unwrap_err().to_string();
    assert!(e.contains("stride"), "{e}");
    let short = up(g, &[1.0; 5], &[5]);
    let e = fir_downsample(g, &short, &FirDown { stride: 1, ..down }).unwrap_err().to_string();
    assert!(e.contains("shorter than the 12-tap filter"), "{e}");
    let e = fir_downsample(
        g,
        &short,
        &FirDown { filter: &f, stride: 1, pad_left: 5, pad_right: 5, padding: Pad::Reflect, max_len: None },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("reflect padding of 5"), "{e}");
    let e = stft_magnitude(g, &up(g, &[0.0; 9], &[3, 3])).unwrap_err().to_string();
    assert!(e.contains("2n"), "{e}");
    let e = log_mel(g, &x, &up(g, &[0.0; 6], &[2, 3])).unwrap_err().to_string();
    assert!(e.contains("3 frequency bins"), "{e}");
}
