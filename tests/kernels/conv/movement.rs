//! Data movement of the convolution family: nearest ×2 upsampling, unpatchify / patchify, permute and the frame
//! cache of chunked causal convolution, compared element for element (these copy values, so results are exact).

use nava::kernels::conv::{
    causal_conv3d_next_cache, patchify, permute, unpatchify, upsample_nearest2x, with_binding_limit,
};

use super::{read, up};
use crate::common::{rand_vec, test_gpu};

#[test]
fn causal_conv3d_next_cache_frames() {
    let g = test_gpu();
    let (c, h, w) = (3, 2, 3);
    let hw = h * w;
    let old = rand_vec(700, 2 * c * 2 * hw);
    let x = rand_vec(701, 2 * c * 3 * hw);
    let ot = up(g, &old, &[2, c, 2, h, w]);
    let one = up(g, &x[..2 * c * hw], &[2, c, 1, h, w]);
    let three = up(g, &x, &[2, c, 3, h, w]);
    // One new frame: the old cache's last frame, then x.
    let got = read(g, &causal_conv3d_next_cache(g, Some(&ot), &one, 2).unwrap());
    let mut want = Vec::new();
    for bc in 0..2 * c {
        want.extend_from_slice(&old[(bc * 2 + 1) * hw..][..hw]);
        want.extend_from_slice(&x[bc * hw..][..hw]);
    }
    assert_eq!(got, want);
    // Three new frames: the last two of x; with no cache and one frame, one frame.
    let got = read(g, &causal_conv3d_next_cache(g, Some(&ot), &three, 2).unwrap());
    let want: Vec<f32> = (0..2 * c).flat_map(|bc| x[(bc * 3 + 1) * hw..(bc * 3 + 3) * hw].to_vec()).collect();
    assert_eq!(got, want);
    let t = causal_conv3d_next_cache(g, None, &one, 2).unwrap();
    assert_eq!(t.shape(), &[2, c, 1, h, w]);
    assert_eq!(read(g, &t), x[..2 * c * hw].to_vec());
}

#[test]
fn upsample_nearest2x_2d_and_3d() {
    let g = test_gpu();
    for shape in [vec![3, 5, 7], vec![2, 3, 4, 5], vec![1, 1]] {
        let n: usize = shape.iter().product();
        let x = rand_vec(1400, n);
        let y = upsample_nearest2x(g, &up(g, &x, &shape)).unwrap();
        let r = shape.len();
        let (h, w) = (shape[r - 2], shape[r - 1]);
        let mut out = shape.clone();
        out[r - 2] *= 2;
        out[r - 1] *= 2;
        assert_eq!(y.shape(), out.as_slice());
        let mut want = Vec::new();
        for l in 0..n / (h * w) {
            for oh in 0..2 * h {
                for ow in 0..2 * w {
                    want.push(x[l * h * w + oh / 2 * w + ow / 2]);
                }
            }
        }
        assert_eq!(read(g, &y), want, "upsample {shape:?}");
    }
    // Split over channels and rows.
    let x = rand_vec(1410, 6 * 9 * 10);
    let xt = up(g, &x, &[6, 9, 10]);
    let whole = read(g, &upsample_nearest2x(g, &xt).unwrap());
    let align = g.binding_align();
    for elems in [800u64, 100] {
        let y = with_binding_limit(align + 4 * elems, || upsample_nearest2x(g, &xt).unwrap());
        assert_eq!(read(g, &y), whole, "split upsample at {elems} elements");
    }
}

/// `rearrange('b (c r q) f h w -> b c f (h q) (w r)', q=p, r=p)` by index.
fn unpatchify_ref(x: &[f32], c: usize, t: usize, h: usize, w: usize, p: usize) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for ci in 0..c {
        for r in 0..p {
            for q in 0..p {
                let ch = ci * p * p + r * p + q;
                for f in 0..t {
                    for i in 0..h {
                        for j in 0..w {
                            let yi = ((ci * t + f) * h * p + i * p + q) * w * p + j * p + r;
                            y[yi] = x[((ch * t + f) * h + i) * w + j];
                        }
                    }
                }
            }
        }
    }
    y
}

#[test]
fn unpatchify_and_patchify() {
    let g = test_gpu();
    for (b, c, t, h, w, p) in [(1, 3, 2, 3, 5, 2), (2, 2, 1, 2, 3, 2), (1, 2, 2, 2, 2, 3)] {
        let n = b * c * p * p * t * h * w;
        let x = rand_vec(1500, n);
        let shape = if b > 1 { vec![b, c * p * p, t, h, w] } else { vec![c * p * p, t, h, w] };
        let xt = up(g, &x, &shape);
        let y = unpatchify(g, &xt, p).unwrap();
        assert_eq!(&y.shape()[y.shape().len() - 4..], &[c, t, p * h, p * w]);
        let per = n / b;
        let want: Vec<f32> = (0..b).flat_map(|bi| unpatchify_ref(&x[bi * per..][..per], c, t, h, w, p)).collect();
        let got = read(g, &y);
        assert_eq!(got, want, "unpatchify b{b} c{c} t{t} {h}x{w} p{p}");
        let back = patchify(g, &y, p).unwrap();
        assert_eq!(back.shape(), shape.as_slice());
        assert_eq!(read(g, &back), x, "patchify inverts unpatchify");
    }
    let x = up(g, &[0.0; 6 * 2 * 2], &[6, 1, 2, 2]);
    let e = unpatchify(g, &x, 2).unwrap_err().to_string();
    assert!(e.contains("unpatchify: `x` has shape [6, 1, 2, 2]"), "{e}");
}

#[test]
fn permute_matches_reference() {
    let g = test_gpu();
    let align = g.binding_align();
    for (shape, perm) in [
        (vec![3, 4, 5], vec![2, 0, 1]),
        (vec![2, 3, 4, 5, 6], vec![0, 2, 1, 4, 3]),
        (vec![2, 3, 2, 5, 3], vec![4, 3, 2, 1, 0]),
        (vec![7], vec![0]),
    ] {
        let n: usize = shape.iter().product();
        let x = rand_vec(1600, n);
        let xt = up(g, &x, &shape);
        let out: Vec<usize> = perm.iter().map(|&d| shape[d]).collect();
        let mut st = vec![1; shape.len()];
        for i in (0..shape.len() - 1).rev() {
            st[i] = st[i + 1] * shape[i + 1];
        }
        let mut want = Vec::with_capacity(n);
        for lin in 0..n {
            let (mut rest, mut src) = (lin, 0);
            for d in (0..out.len()).rev() {
                src += rest % out[d] * st[perm[d]];
                rest /= out[d];
            }
            want.push(x[src]);
        }
        for limit in [None, Some(align + 4 * 64)] {
            let run = || permute(g, &xt, &perm).unwrap();
            let y = match limit {
                Some(l) => with_binding_limit(l, run),
                None => run(),
            };
            assert_eq!(y.shape(), out.as_slice());
            assert_eq!(read(g, &y), want, "permute {shape:?} by {perm:?} limit {limit:?}");
        }
    }
    let x = up(g, &[0.0; 6], &[2, 3]);
    let e = permute(g, &x, &[1, 1]).unwrap_err().to_string();
    assert!(e.contains("[1, 1] is not a permutation of the 2 dims"), "{e}");
}
