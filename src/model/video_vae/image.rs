//! The image-to-video first frame as the reference prepares it — ernie-research/NAVA `local_video_vae.py`
//! `_resize_center_crop` + `LocalVideoVAEAdapter.encode` (NAVA.md §5.3, §10.4): scale so that both sides cover
//! the target (`round(side · max(tw/w, th/h))`), resize with PIL's LANCZOS, crop the centre, map 0..255 to
//! [−1, 1] as `v / 255 · 2 − 1`.
//!
//! The resize follows Pillow's `ImagingResample` for 8-bit images: a separable Lanczos-3 filter whose support
//! grows with the downscale factor, coefficients normalised per output sample and rounded to 22-bit fixed
//! point, a horizontal pass then a vertical pass, each rounding and clamping to 0..255.

use crate::model::ModelError;

use super::check_pixel_size;

/// Pillow's fixed-point precision for 8-bit resampling (`PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Per output sample: first input index and fixed-point weights (`precompute_coeffs` + `normalize_coeffs_8bpc`).
fn coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 3.0 * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let k: Vec<f64> = (xmin..xmax).map(|x| lanczos((x as f64 - center + 0.5) * ss)).collect();
            let ww: f64 = k.iter().sum();
            let fixed = k
                .iter()
                .map(|&v| {
                    let v = if ww != 0.0 { v / ww } else { v };
                    let f = v * (1u64 << PRECISION_BITS) as f64;
                    (if f < 0.0 { f - 0.5 } else { f + 0.5 }) as i64
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes interleaved RGB bytes `[h, w, 3]` to `[out_h, out_w, 3]` (Pillow `Image.resize(.., LANCZOS)`).
pub fn resize_lanczos(rgb: &[u8], w: usize, h: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    let horizontal = if out_w == w {
        rgb.to_vec()
    } else {
        let cx = coeffs(w, out_w);
        let mut out = vec![0u8; h * out_w * 3];
        for y in 0..h {
            for (x, (x0, k)) in cx.iter().enumerate() {
                for c in 0..3 {
                    let acc = k.iter().enumerate().fold(1i64 << (PRECISION_BITS - 1), |a, (i, &kv)| {
                        a + rgb[(y * w + x0 + i) * 3 + c] as i64 * kv
                    });
                    out[(y * out_w + x) * 3 + c] = clip8(acc);
                }
            }
        }
        out
    };
    if out_h == h {
        return horizontal;
    }
    let cy = coeffs(h, out_h);
    let mut out = vec![0u8; out_h * out_w * 3];
    for (y, (y0, k)) in cy.iter().enumerate() {
        for x in 0..out_w {
            for c in 0..3 {
                let acc = k.iter().enumerate().fold(1i64 << (PRECISION_BITS - 1), |a, (i, &kv)| {
                    a + horizontal[((y0 + i) * out_w + x) * 3 + c] as i64 * kv
                });
                out[(y * out_w + x) * 3 + c] = clip8(acc);
            }
        }
    }
    out
}

/// `_resize_center_crop` then the adapter's normalisation: RGB bytes `[h, w, 3]` → `[3, target_h, target_w]` f32 in
/// [−1, 1]. Target sizes must be multiples of 32.
pub fn resize_center_crop(
    rgb: &[u8],
    w: usize,
    h: usize,
    target_h: usize,
    target_w: usize,
) -> Result<Vec<f32>, ModelError> {
    check_pixel_size(target_h, target_w)?;
    if w == 0 || h == 0 || rgb.len() != w * h * 3 {
        return Err(ModelError::Input {
            what: "image".into(),
            problem: format!("{} bytes for {w}×{h} RGB (expected {})", rgb.len(), w * h * 3),
        });
    }
    let scale = (target_w as f64 / w as f64).max(target_h as f64 / h as f64);
    // Python's round() on a float: half to even.
    let rw = (w as f64 * scale).round_ties_even() as usize;
    let rh = (h as f64 * scale).round_ties_even() as usize;
    let resized = resize_lanczos(rgb, w, h, rw.max(target_w), rh.max(target_h));
    let (rw, rh) = (rw.max(target_w), rh.max(target_h));
    let (left, top) = ((rw - target_w) / 2, (rh - target_h) / 2);
    let mut out = vec![0.0f32; 3 * target_h * target_w];
    for y in 0..target_h {
        for x in 0..target_w {
            for c in 0..3 {
                let v = resized[((top + y) * rw + left + x) * 3 + c] as f32;
                out[(c * target_h + y) * target_w + x] = v / 255.0 * 2.0 - 1.0;
            }
        }
    }
    Ok(out)
}
