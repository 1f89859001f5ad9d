//! Channels-last grouped 'same' convolution against an f64 reference written from PyTorch's `Conv2d` definition
//! (on `[C, H, W]` data, then moved to `[H, W, C]`): grouped, depthwise, 1-D along H with a long kernel, even and
//! odd sizes, each activation, and bad inputs.

use nava::kernels::conv2d_cl::{conv2d_cl, conv2d_cl_add, ConvAct};

use crate::common::{assert_close, rand_vec, test_gpu, Tol};

/// `Conv2d(cin, cout, (kh, kw), padding='same', groups)` on x `[h, w, cin]` (channels last), f64 sums.
#[allow(clippy::too_many_arguments)]
fn reference(
    x: &[f32],
    wt: &[f32],
    b: &[f32],
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    groups: usize,
    kh: usize,
    kw: usize,
    act: ConvAct,
) -> Vec<f32> {
    let (gin, gout) = (cin / groups, cout / groups);
    let (ph, pw) = ((kh - 1) / 2, (kw - 1) / 2);
    let mut y = vec![0.0f32; h * w * cout];
    for r in 0..h {
        for c in 0..w {
            for o in 0..cout {
                let grp = o / gout;
                let mut acc = b[o] as f64;
                for j in 0..gin {
                    for a in 0..kh {
                        for bb in 0..kw {
                            let (rr, cc) =
                                (r as isize + a as isize - ph as isize, c as isize + bb as isize - pw as isize);
                            if rr < 0 || cc < 0 || rr >= h as isize || cc >= w as isize {
                                continue;
                            }
                            let xv = x[(rr as usize * w + cc as usize) * cin + grp * gin + j] as f64;
                            acc += wt[((o * gin + j) * kh + a) * kw + bb] as f64 * xv;
                        }
                    }
                }
                let v = match act {
                    ConvAct::None => acc,
                    ConvAct::Relu => acc.max(0.0),
                    ConvAct::Gelu => 0.5 * acc * (1.0 + erf(acc / std::f64::consts::SQRT_2)),
                };
                y[(r * w + c) * cout + o] = v as f32;
            }
        }
    }
    y
}

/// erf by its Maclaurin series (|x| < 3) or asymptotic value, accurate to 1e-12 in the range tested.
fn erf(x: f64) -> f64 {
    if x.abs() > 5.0 {
        return x.signum();
    }
    let mut sum = 0.0;
    let mut term = x;
    let mut n = 0.0;
    while term.abs() > 1e-17 || n < 5.0 {
        sum += term / (2.0 * n + 1.0);
        n += 1.0;
        term *= -x * x / n;
        if n > 200.0 {
            break;
        }
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn conv2d_cl_matches_reference() {
    let g = test_gpu();
    // (h, w, cin, cout, groups, kh, kw): stem 1→C, grouped ConvNeXt, depthwise, 1-D along H (w = 1, 59 taps),
    // an even kernel, and sizes that are not workgroup multiples.
    let cases = [
        (7, 5, 1, 4, 1, 3, 3),
        (13, 9, 8, 8, 2, 3, 3),
        (5, 3, 6, 6, 6, 3, 3),
        (70, 1, 12, 12, 12, 59, 1),
        (6, 4, 4, 8, 2, 2, 3),
        (3, 11, 16, 16, 4, 3, 3),
        // Runs of 8 output channels per invocation with a remainder: 1×1 over 20 channels, and 2 groups of 10.
        (9, 5, 20, 20, 1, 1, 1),
        (4, 6, 6, 20, 2, 3, 1),
    ];
    for (i, &(h, w, cin, cout, groups, kh, kw)) in cases.iter().enumerate() {
        for act in [ConvAct::None, ConvAct::Gelu, ConvAct::Relu] {
            let x = rand_vec(10 + i as u64, h * w * cin);
            let wt: Vec<f32> =
                rand_vec(20 + i as u64, cout * (cin / groups) * kh * kw).iter().map(|v| v * 2.0).collect();
            let b = rand_vec(30 + i as u64, cout);
            let xg = g.upload_f32("x", &x, &[h, w, cin]).expect("upload");
            let wg = g.upload_f32("w", &wt, &[cout, cin / groups, kh, kw]).expect("upload");
            let bg = g.upload_f32("b", &b, &[cout]).expect("upload");
            let y = conv2d_cl(g, &xg, &wg, &bg, groups, act).expect("conv2d_cl");
            assert_eq!(y.shape(), [h, w, cout]);
            let got = g.read_f32_blocking(&y).expect("read");
            let want = reference(&x, &wt, &b, h, w, cin, cout, groups, kh, kw, act);
            assert_close(&format!("conv2d_cl case {i} {act:?}"), &got, &want, Tol::new(2e-5, 2e-5));
        }
    }
}

#[test]
fn conv2d_cl_add_accumulates_in_place() {
    let g = test_gpu();
    let (h, w, c) = (11, 7, 12);
    let x = rand_vec(70, h * w * c);
    let wt = rand_vec(71, c * c);
    let b = rand_vec(72, c);
    let y0 = rand_vec(73, h * w * c);
    let xg = g.upload_f32("x", &x, &[h, w, c]).expect("upload");
    let wg = g.upload_f32("w", &wt, &[c, c, 1, 1]).expect("upload");
    let bg = g.upload_f32("b", &b, &[c]).expect("upload");
    let yg = g.upload_f32("y", &y0, &[h, w, c]).expect("upload");
    conv2d_cl_add(g, &xg, &wg, &bg, 1, &yg).expect("conv2d_cl_add");
    let conv = reference(&x, &wt, &b, h, w, c, c, 1, 1, 1, ConvAct::None);
    let want: Vec<f32> = conv.iter().zip(&y0).map(|(a, b)| a + b).collect();
    assert_close("conv2d_cl_add", &g.read_f32_blocking(&yg).expect("read"), &want, Tol::new(2e-5, 2e-5));
    let e = conv2d_cl_add(g, &xg, &wg, &bg, 1, &xg).expect_err("aliasing").to_string();
    assert!(e.contains("shares x's storage"), "{e}");
    let small = g.upload_f32("y", &y0[..c], &[1, 1, c]).expect("upload");
    let e = conv2d_cl_add(g, &xg, &wg, &bg, 1, &small).expect_err("y shape").to_string();
    assert!(e.contains("`y`"), "{e}");
}

#[test]
fn conv2d_cl_rejects_bad_shapes() {
    let g = test_gpu();
    let x = g.upload_f32("x", &[0.0; 24], &[2, 3, 4]).expect("upload");
    let w = g.upload_f32("w", &[0.0; 72], &[4, 2, 3, 3]).expect("upload");
    let b = g.upload_f32("b", &[0.0; 4], &[4]).expect("upload");
    // Cin / groups must equal the weight's second dim.
    let e = conv2d_cl(g, &x, &w, &b, 1, ConvAct::None).expect_err("groups mismatch").to_string();
    assert!(e.contains("weight") && e.contains("groups = 1"), "{e}");
    let e = conv2d_cl(g, &x, &w, &b, 0, ConvAct::None).expect_err("zero groups").to_string();
    assert!(e.contains("weight"), "{e}");
    let short = g.upload_f32("b", &[0.0; 3], &[3]).expect("upload");
    let e = conv2d_cl(g, &x, &w, &short, 2, ConvAct::None).expect_err("bias").to_string();
    assert!(e.contains("bias") && e.contains("[4]"), "{e}");
    let flat = x.reshape(&[6, 4]).expect("reshape");
    let e = conv2d_cl(g, &flat, &w, &b, 2, ConvAct::None).expect_err("2-d x").to_string();
    assert!(e.contains("3 dimensions"), "{e}");
}
