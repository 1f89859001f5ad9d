//! RoPE against a float64 CPU reference written from NAVA.md §4.6: 3D video rows, 1D audio rows with scaled
//! frequencies, both on `[video; audio]` rows, in place and out of place, small head dims and odd grids, and bad
//! inputs.

use nava::kernels::rope::{
    rope_1d, rope_3d, rope_apply, rope_apply_inplace, rope_av, rope_av_inplace, variants,
    RopeLayout, RopeTable, VideoGrid,
};

use crate::common::{assert_close, rand_vec, test_gpu, Tol};

/// Rotation angle of pair `i` of a row, in float64: video rows by (f, h, w), audio rows by p·scale on the
/// first group only; `None` for rows outside both ranges.
fn angle(
    d: usize,
    row: usize,
    i: usize,
    video: Option<(usize, [usize; 3])>,
    audio: Option<(usize, usize, f64)>,
) -> f64 {
    // Wan's split of the head dim: d - 4·(d/6) dims for frames, 2·(d/6) for rows and for columns.
    let d_hw = 2 * (d / 6);
    let d_f = d - 2 * d_hw;
    let freq = |idx: usize, dim: usize| 10000f64.powf(-(2.0 * idx as f64) / dim as f64);
    if let Some((s, [f, h, w])) = video {
        if row >= s && row < s + f * h * w {
            let r = row - s;
            let (pf, ph, pw) = (r / (h * w), (r / w) % h, r % w);
            return if i < d_f / 2 {
                pf as f64 * freq(i, d_f)
            } else if i < d_f / 2 + d_hw / 2 {
                ph as f64 * freq(i - d_f / 2, d_hw)
            } else {
                pw as f64 * freq(i - d_f / 2 - d_hw / 2, d_hw)
            };
        }
    }
    if let Some((s, n, scale)) = audio {
        if row >= s && row < s + n && i < d_f / 2 {
            return (row - s) as f64 * freq(i, d_f) * scale;
        }
    }
    0.0
}

/// x · e^{iθ} for every interleaved pair (x[2i], x[2i+1]) of every head, in float64.
fn reference(
    x: &[f32],
    heads: usize,
    d: usize,
    video: Option<(usize, [usize; 3])>,
    audio: Option<(usize, usize, f64)>,
) -> Vec<f32> {
    let rows = x.len() / (heads * d);
    let mut out = x.to_vec();
    for row in 0..rows {
        for h in 0..heads {
            for i in 0..d / 2 {
                let a = angle(d, row, i, video, audio);
                let e = (row * heads + h) * d + 2 * i;
                let (re, im) = (x[e] as f64, x[e + 1] as f64);
                out[e] = (re * a.cos() - im * a.sin()) as f32;
                out[e + 1] = (re * a.sin() + im * a.cos()) as f32;
            }
        }
    }
    out
}

fn max_abs_err(got: &[f32], want: &[f32]) -> f32 {
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Measured on lavapipe (Mesa 25.0.7): at most 1.2e-7 absolute for |x| ≤ 1 with positions up to 1000, far inside
/// the target of 1e-5: the f32 tables cost nothing.
const TOL: Tol = Tol {
    abs: 1e-6,
    rel: 0.0,
};

#[test]
fn rope_av_matches_reference() {
    let g = test_gpu();
    let mut worst = 0.0f32;
    for (n, &([f, h, w], audio_len, heads, d)) in [
        ([3, 4, 5], 7, 2, 128),
        ([2, 3, 3], 5, 3, 16),
        ([1, 1, 1], 1, 1, 24),
        ([5, 7, 3], 0, 2, 64),
        ([3, 2, 1], 11, 1, 128),
        ([1, 1, 3], 9, 2, 36),
        // Positions up to 1000 (the reference's tables have 1024 rows).
        ([1, 1, 1], 1000, 1, 16),
    ]
    .iter()
    .enumerate()
    {
        let grid = VideoGrid::new(f, h, w);
        let l = grid.len() + audio_len;
        let x = rand_vec(700 + n as u64, l * heads * d);
        let want = reference(
            &x,
            heads,
            d,
            Some((0, [f, h, w])),
            Some((grid.len(), audio_len, 0.24)),
        );
        let xt = g.upload_f32("x", &x, &[l, heads, d]).unwrap();
        let y = rope_av(g, &xt, grid, audio_len, 0.24).unwrap();
        assert_eq!(y.shape(), &[l, heads, d]);
        let got = g.read_f32_blocking(&y).unwrap();
        let what = format!("rope_av grid {f}x{h}x{w} audio {audio_len} H {heads} D {d}");
        assert_close(&what, &got, &want, TOL);
        worst = worst.max(max_abs_err(&got, &want));
        // In place gives the same values, and leaves the input rotated.
        rope_av_inplace(g, &xt, grid, audio_len, 0.24).unwrap();
        let got = g.read_f32_blocking(&xt).unwrap();
        assert_close(&format!("{what} in place"), &got, &want, TOL);
    }
    println!("rope: largest abs error vs float64 {worst:.2e}");
}

#[test]
fn rope_3d_and_1d_on_row_ranges() {
    let g = test_gpu();
    let (heads, d) = (2, 24);
    // 3D on rows 2..2+30 of 35, the rest copied.
    let l = 35;
    let x = rand_vec(800, l * heads * d);
    let xt = g.upload_f32("x", &x, &[l, heads, d]).unwrap();
    let grid = VideoGrid::new(2, 5, 3);
    let got = g
        .read_f32_blocking(&rope_3d(g, &xt, grid, 2).unwrap())
        .unwrap();
    let want = reference(&x, heads, d, Some((2, [2, 5, 3])), None);
    assert_close("rope_3d from row 2", &got, &want, TOL);
    // 1D on rows 3..3+20, frequencies × 0.5.
    let got = g
        .read_f32_blocking(&rope_1d(g, &xt, 3, 20, 0.5).unwrap())
        .unwrap();
    let want = reference(&x, heads, d, None, Some((3, 20, 0.5)));
    assert_close("rope_1d from row 3", &got, &want, TOL);
    // A table built once and applied twice (q and k of a layer), audio before video.
    let layout = RopeLayout {
        head_dim: d,
        video: Some((5, VideoGrid::new(3, 2, 5))),
        audio: Some(nava::kernels::rope::AudioRope {
            start: 0,
            len: 5,
            freq_scale: 0.24,
        }),
    };
    let table = RopeTable::new(g, layout).unwrap();
    let want = reference(&x, heads, d, Some((5, [3, 2, 5])), Some((0, 5, 0.24)));
    let got = g
        .read_f32_blocking(&rope_apply(g, &xt, &table).unwrap())
        .unwrap();
    assert_close("rope_apply audio first", &got, &want, TOL);
    rope_apply_inplace(g, &xt, &table).unwrap();
    let got = g.read_f32_blocking(&xt).unwrap();
    assert_close("rope_apply_inplace audio first", &got, &want, TOL);
}

#[test]
fn rope_rejects_bad_input() {
    let g = test_gpu();
    let xt = g.upload_f32("x", &[0.0; 10 * 16], &[10, 1, 16]).unwrap();
    // 2×2×2 = 8 video rows + 3 audio rows ≠ 10 rows.
    let e = rope_av(g, &xt, VideoGrid::new(2, 2, 2), 3, 0.24)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rope: `x` has shape [10, 1, 16]; expected [8 video rows (grid 2×2×2) + 3 audio rows = 11"),
        "{e}"
    );
    let e = rope_3d(g, &xt, VideoGrid::new(3, 2, 2), 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("at least 12 rows for the video rows 0..12"),
        "{e}"
    );
    let odd = g.upload_f32("x", &[0.0; 2 * 7], &[2, 1, 7]).unwrap();
    let e = rope_1d(g, &odd, 0, 2, 1.0).unwrap_err().to_string();
    assert!(e.contains("head dim 7"), "{e}");
    let table = RopeTable::new(g, RopeLayout::av(24, VideoGrid::new(1, 2, 4), 2, 0.24)).unwrap();
    let e = rope_apply(g, &xt, &table).unwrap_err().to_string();
    assert!(
        e.contains("expected [L, H, 24] (the table's head dim)"),
        "{e}"
    );
    let layout = RopeLayout {
        head_dim: 16,
        video: Some((0, VideoGrid::new(1, 2, 3))),
        audio: Some(nava::kernels::rope::AudioRope {
            start: 4,
            len: 2,
            freq_scale: 1.0,
        }),
    };
    let e = rope_apply(g, &xt, &RopeTable::new(g, layout).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("video rows 0..6 and audio rows 4..6 overlap"),
        "{e}"
    );
    let x2 = g.upload_f32("x", &[0.0; 16], &[1, 16]).unwrap();
    let e = rope_av(g, &x2, VideoGrid::new(1, 1, 1), 0, 0.24)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`x` has shape [1, 16]; expected 3 dimensions"),
        "{e}"
    );
}

#[test]
fn rope_variants_validate() {
    for spec in variants() {
        let src = spec.source();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", spec.label, e.emit_to_string(&src)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {e:?}", spec.label));
    }
}
