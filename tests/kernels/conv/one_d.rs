//! Conv1d (stride, padding, dilation, groups, depthwise) and ConvTranspose1d (BigVGAN upsamplers, depthwise
//! anti-aliasing filters) against references written from PyTorch's definitions, with f64 sums.

use nava::gpu::Gpu;
use nava::kernels::conv::{conv1d, conv_transpose1d, with_binding_limit, Conv1dArgs, ConvTranspose1dArgs};

use super::{read, up, TOL};
use crate::common::{assert_close, rand_vec, test_gpu};

/// PyTorch `conv1d` with stride, (left, right) padding, dilation and groups; weight `[Cout, Cin/groups, k]`.
#[allow(clippy::too_many_arguments)]
fn conv1d_ref(
    x: &[f32],
    wt: &[f32],
    b: Option<&[f32]>,
    cin: usize,
    t: usize,
    cout: usize,
    k: usize,
    a: &Conv1dArgs,
) -> Vec<f32> {
    let (cin_g, cout_g) = (cin / a.groups, cout / a.groups);
    let lo = (t + a.padding[0] + a.padding[1] - a.dilation * (k - 1) - 1) / a.stride + 1;
    let mut y = vec![0.0f32; cout * lo];
    for co in 0..cout {
        let g0 = co / cout_g * cin_g;
        for o in 0..lo {
            let mut s = b.map_or(0.0, |b| b[co] as f64);
            for ci in 0..cin_g {
                for kk in 0..k {
                    let i = (o * a.stride + kk * a.dilation) as isize - a.padding[0] as isize;
                    if i >= 0 && (i as usize) < t {
                        s += wt[(co * cin_g + ci) * k + kk] as f64 * x[(g0 + ci) * t + i as usize] as f64;
                    }
                }
            }
            y[co * lo + o] = s as f32;
        }
    }
    y
}

/// PyTorch `conv_transpose1d` in scatter form: x[ci, i] · w[ci, co_l, k] lands on output i·s − p + k.
#[allow(clippy::too_many_arguments)]
fn conv_transpose1d_ref(
    x: &[f32],
    wt: &[f32],
    b: Option<&[f32]>,
    cin: usize,
    t: usize,
    cout_g: usize,
    k: usize,
    a: &ConvTranspose1dArgs,
) -> Vec<f32> {
    let cout = cout_g * a.groups;
    let cin_g = cin / a.groups;
    let lo = (t - 1) * a.stride + k - 2 * a.padding;
    let mut acc = vec![0.0f64; cout * lo];
    for co in 0..cout {
        for o in 0..lo {
            acc[co * lo + o] = b.map_or(0.0, |b| b[co] as f64);
        }
    }
    for ci in 0..cin {
        let grp = ci / cin_g;
        for cl in 0..cout_g {
            let co = grp * cout_g + cl;
            for i in 0..t {
                for kk in 0..k {
                    let o = (i * a.stride + kk) as isize - a.padding as isize;
                    if o >= 0 && (o as usize) < lo {
                        acc[co * lo + o as usize] += x[ci * t + i] as f64 * wt[(ci * cout_g + cl) * k + kk] as f64;
                    }
                }
            }
        }
    }
    acc.into_iter().map(|v| v as f32).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Conv1d and ConvTranspose1d.

#[allow(clippy::too_many_arguments)]
fn check_conv1d(
    g: &Gpu,
    seed: u64,
    batch: usize,
    cin: usize,
    cout: usize,
    t: usize,
    k: usize,
    a: Conv1dArgs,
    limit: Option<u64>,
) {
    let x = rand_vec(seed, batch * cin * t);
    let wt = rand_vec(seed + 1, cout * cin / a.groups * k);
    let b = rand_vec(seed + 2, cout);
    let xs = if batch > 1 { vec![batch, cin, t] } else { vec![cin, t] };
    let xt = up(g, &x, &xs);
    let wtt = up(g, &wt, &[cout, cin / a.groups, k]);
    let bt = up(g, &b, &[cout]);
    let args = Conv1dArgs { bias: Some(&bt), ..a };
    let run = || conv1d(g, &xt, &wtt, &args).unwrap();
    let y = match limit {
        Some(l) => with_binding_limit(l, run),
        None => run(),
    };
    let got = read(g, &y);
    let want: Vec<f32> = (0..batch)
        .flat_map(|bi| conv1d_ref(&x[bi * cin * t..][..cin * t], &wt, Some(&b), cin, t, cout, k, &a))
        .collect();
    assert_eq!(y.shape().last(), Some(&(want.len() / batch / cout)));
    assert_close(
        &format!(
            "conv1d {cin}→{cout} T{t} k{k} stride {} pad {:?} dil {} groups {} limit {limit:?}",
            a.stride, a.padding, a.dilation, a.groups
        ),
        &got,
        &want,
        TOL,
    );
}

fn c1(stride: usize, padding: [usize; 2], dilation: usize, groups: usize) -> Conv1dArgs<'static> {
    Conv1dArgs { bias: None, stride, padding, dilation, groups }
}

#[test]
fn conv1d_matches_reference() {
    let g = test_gpu();
    // conv_pre / conv_post k7; AMP convs k3/7/11 with dilation 1/3/5 and "same" padding.
    check_conv1d(g, 1000, 1, 6, 11, 37, 7, c1(1, [3, 3], 1, 1), None);
    check_conv1d(g, 1010, 1, 5, 5, 300, 3, c1(1, [5, 5], 5, 1), None);
    check_conv1d(g, 1020, 2, 4, 9, 29, 11, c1(1, [15, 15], 3, 1), None);
    // Depthwise 12-tap low-pass, stride 2 (DownSample1d), and a grouped conv.
    check_conv1d(g, 1030, 1, 6, 6, 41, 12, c1(2, [5, 6], 1, 6), None);
    check_conv1d(g, 1040, 1, 6, 9, 23, 3, c1(1, [1, 1], 2, 3), None);
    // STFT as a strided conv with a causal left pad; and no padding with stride 3.
    check_conv1d(g, 1050, 1, 1, 10, 100, 16, c1(5, [11, 0], 1, 1), None);
    check_conv1d(g, 1060, 1, 3, 4, 20, 4, c1(3, [0, 0], 1, 1), None);
}

#[test]
fn conv1d_split_bindings() {
    let g = test_gpu();
    let align = g.binding_align();
    for elems in [400usize, 150, 60] {
        check_conv1d(g, 1100, 2, 9, 10, 50, 5, c1(1, [2, 2], 1, 1), Some(align + 4 * elems as u64));
        check_conv1d(g, 1110, 1, 8, 8, 50, 4, c1(2, [1, 2], 1, 4), Some(align + 4 * elems as u64));
    }
}

#[allow(clippy::too_many_arguments)]
fn check_convt(
    g: &Gpu,
    seed: u64,
    batch: usize,
    cin: usize,
    cout_g: usize,
    t: usize,
    k: usize,
    a: ConvTranspose1dArgs,
    limit: Option<u64>,
) {
    let x = rand_vec(seed, batch * cin * t);
    let wt = rand_vec(seed + 1, cin * cout_g * k);
    let cout = cout_g * a.groups;
    let b = rand_vec(seed + 2, cout);
    let xs = if batch > 1 { vec![batch, cin, t] } else { vec![cin, t] };
    let xt = up(g, &x, &xs);
    let wtt = up(g, &wt, &[cin, cout_g, k]);
    let bt = up(g, &b, &[cout]);
    let args = ConvTranspose1dArgs { bias: Some(&bt), ..a };
    let run = || conv_transpose1d(g, &xt, &wtt, &args).unwrap();
    let y = match limit {
        Some(l) => with_binding_limit(l, run),
        None => run(),
    };
    let lo = (t - 1) * a.stride + k - 2 * a.padding;
    assert_eq!(&y.shape()[y.shape().len() - 2..], &[cout, lo]);
    let want: Vec<f32> = (0..batch)
        .flat_map(|bi| conv_transpose1d_ref(&x[bi * cin * t..][..cin * t], &wt, Some(&b), cin, t, cout_g, k, &a))
        .collect();
    assert_close(
        &format!(
            "conv_transpose1d {cin}→{cout} T{t} k{k} stride {} pad {} groups {} limit {limit:?}",
            a.stride, a.padding, a.groups
        ),
        &read(g, &y),
        &want,
        TOL,
    );
}

fn ct(stride: usize, padding: usize, groups: usize) -> ConvTranspose1dArgs<'static> {
    ConvTranspose1dArgs { bias: None, stride, padding, groups }
}

#[test]
fn conv_transpose1d_matches_reference() {
    let g = test_gpu();
    // BigVGAN upsamplers: k11 s5 p3, k4 s2 p1, k12 s6 p3; no padding; depthwise k12 s2 (UpSample1d); groups 2.
    check_convt(g, 1200, 1, 7, 5, 13, 11, ct(5, 3, 1), None);
    check_convt(g, 1210, 2, 9, 11, 30, 4, ct(2, 1, 1), None);
    check_convt(g, 1220, 1, 4, 3, 9, 12, ct(6, 3, 1), None);
    check_convt(g, 1230, 1, 3, 2, 10, 3, ct(1, 0, 1), None);
    check_convt(g, 1240, 1, 6, 1, 300, 12, ct(2, 0, 6), None);
    check_convt(g, 1250, 1, 4, 3, 17, 5, ct(3, 1, 2), None);
}

#[test]
fn conv_transpose1d_split_bindings() {
    let g = test_gpu();
    let align = g.binding_align();
    for elems in [600usize, 200, 70] {
        check_convt(g, 1300, 2, 9, 10, 20, 4, ct(2, 1, 1), Some(align + 4 * elems as u64));
        check_convt(g, 1310, 1, 8, 2, 20, 5, ct(2, 0, 4), Some(align + 4 * elems as u64));
    }
}

#[test]
fn conv1d_rejects_bad_inputs() {
    let g = test_gpu();
    let x = up(g, &[0.0; 6 * 10], &[6, 10]);
    let w = up(g, &[0.0; 4 * 6 * 3], &[4, 6, 3]);
    let args = Conv1dArgs { groups: 4, ..Default::default() };
    let e = conv1d(g, &x, &w, &args).unwrap_err().to_string();
    assert!(e.contains("groups = 4 must divide the input (6)"), "{e}");
    let args = Conv1dArgs { groups: 2, ..Default::default() };
    let e = conv1d(g, &x, &w, &args).unwrap_err().to_string();
    assert!(e.contains("`weight` has shape [4, 6, 3]; expected [Cout, 3, k] (x has 6 channels in 2 groups)"), "{e}");
    let wt = up(g, &[0.0; 5 * 2 * 3], &[5, 2, 3]);
    let e = conv_transpose1d(g, &x, &wt, &ConvTranspose1dArgs::default()).unwrap_err().to_string();
    assert!(e.contains("conv_transpose1d: `weight` has shape [5, 2, 3]; expected [6, Cout/groups, k]"), "{e}");
    let wt = up(g, &[0.0; 6 * 2 * 3], &[6, 2, 3]);
    let args = ConvTranspose1dArgs { padding: 8, ..Default::default() };
    let e = conv_transpose1d(g, &x, &wt, &args).unwrap_err().to_string();
    assert!(e.contains("padding 8 leaves no output"), "{e}");
}
