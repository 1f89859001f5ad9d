//! RoPE against an f64 reference written from NAVA.md §4.6 (not from the shader), for several head dims and grids.

use nava::kernels::rope::{pair_groups, RopeGrid, RopeTable};

use crate::common::{assert_close, rand_vec, test_gpu, Tol};

/// Rotates pairs of `x` `[rows, heads, d]` as the reference does, in f64.
fn reference(x: &[f32], grid: &RopeGrid, heads: usize, d: usize) -> Vec<f32> {
    let c = d / 2;
    let [g0, g1, _] = pair_groups(d);
    let omega = |i: usize, start: usize, n: usize| 10000f64.powf(-(2.0 * (i - start) as f64) / (2 * n) as f64);
    let [f, h, w] = grid.video;
    let rows = f * h * w + grid.audio;
    let mut out = x.to_vec();
    for r in 0..rows {
        for i in 0..c {
            let angle = if r < f * h * w {
                let (fi, hi, wi) = (r / (h * w), (r / w) % h, r % w);
                if i < g0 {
                    fi as f64 * omega(i, 0, g0)
                } else if i < g0 + g1 {
                    hi as f64 * omega(i, g0, g1)
                } else {
                    wi as f64 * omega(i, g0 + g1, g1)
                }
            } else if i < g0 {
                (r - f * h * w) as f64 * omega(i, 0, g0) * grid.audio_scale
            } else {
                0.0
            };
            for hh in 0..heads {
                let j = (r * heads + hh) * d + 2 * i;
                let (a, b) = (x[j] as f64, x[j + 1] as f64);
                out[j] = (a * angle.cos() - b * angle.sin()) as f32;
                out[j + 1] = (a * angle.sin() + b * angle.cos()) as f32;
            }
        }
    }
    out
}

#[test]
fn rope_matches_f64_reference() {
    let g = test_gpu();
    for (i, &(grid, heads, d)) in
        [([3, 2, 3], 2, 32), ([1, 1, 1], 1, 16), ([2, 5, 3], 3, 24), ([4, 3, 7], 2, 128)].iter().enumerate()
    {
        for audio in [0, 10] {
            let rg = RopeGrid { video: grid, audio, audio_scale: 0.24 };
            let rows = grid.iter().product::<usize>() + audio;
            let x = rand_vec(70 + i as u64, rows * heads * d);
            let t = g.upload_f32("x", &x, &[rows, heads, d]).unwrap();
            RopeTable::new(g, rg, d).unwrap().apply(g, &t).unwrap();
            // f32 rotation of f64 angles: a few ulps for |x| ≤ 1.
            assert_close(
                &format!("rope {grid:?}+{audio} d{d}"),
                &g.read_f32_blocking(&t).unwrap(),
                &reference(&x, &rg, heads, d),
                Tol::new(1e-6, 1e-6),
            );
        }
    }
}

#[test]
fn rope_refuses_mismatched_rows_and_long_sequences() {
    let g = test_gpu();
    let rope = RopeTable::new(g, RopeGrid { video: [2, 2, 2], audio: 3, audio_scale: 0.24 }, 16).unwrap();
    let x = g.upload_f32("x", &vec![0.0; 10 * 16], &[10, 1, 16]).unwrap();
    let e = rope.apply(g, &x).unwrap_err().to_string();
    assert!(e.contains("[11, heads, 16]") && e.contains("[10, 1, 16]"), "{e}");
    let e =
        RopeTable::new(g, RopeGrid { video: [1, 1, 1], audio: 2000, audio_scale: 0.24 }, 16).err().unwrap().to_string();
    assert!(e.contains("2000 audio tokens") && e.contains("1024"), "{e}");
}
