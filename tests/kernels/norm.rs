//! Norm kernels (LayerNorm + adaLN, RMSNorm, PixelNorm, Wan's channel RMS_norm) against f64 CPU references written
//! from the PyTorch formulas, at column counts that are not multiples of the workgroup size, plus the row and
//! channel splits of tensors larger than one binding, in-place runs and input errors.

use nava::gpu::{DType, Gpu, GpuTensor};
use nava::kernels::norm::{
    channel_norm, channel_rms_norm, channel_rms_norm_silu, layer_norm, layer_norm_into, pixel_norm, pixel_norm_silu,
    rms_norm, rms_norm_into, t5_rms_norm, variants, ChannelNorm, Modulation, RowOperand,
};

use crate::common::{assert_close, rand_vec, test_gpu, Tol};

/// Column counts of the row norms: below, at and above the workgroup sizes, and the model's widths.
const COLS: [usize; 8] = [1, 7, 64, 100, 192, 257, 3072, 4096];

/// One row operand on the host: element (r, c) = data[offset + r * stride + c].
struct HostRows<'a> {
    data: &'a [f32],
    offset: usize,
    stride: usize,
}

impl HostRows<'_> {
    fn at(&self, r: usize, c: usize) -> f64 {
        self.data[self.offset + r * self.stride + c] as f64
    }
}

/// `F.layer_norm` (biased variance) with optional affine, then `· (1 + scale) + shift`, in f64.
fn layer_norm_ref(
    x: &[f32],
    cols: usize,
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    eps: f64,
    modulation: Option<(&HostRows, &HostRows)>,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for (r, row) in x.chunks(cols).enumerate() {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
        for (c, &v) in row.iter().enumerate() {
            let mut o = (v as f64 - mean) / (var + eps).sqrt();
            if let Some(w) = w {
                o *= w[c] as f64;
            }
            if let Some(b) = b {
                o += b[c] as f64;
            }
            if let Some((sc, sh)) = modulation {
                o = o * (1.0 + sc.at(r, c)) + sh.at(r, c);
            }
            out.push(o as f32);
        }
    }
    out
}

/// `x * rsqrt(mean(x²) + eps) * w`, in f64.
fn rms_norm_ref(x: &[f32], cols: usize, w: &[f32], eps: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(cols) {
        let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / cols as f64;
        let k = 1.0 / (ms + eps).sqrt();
        out.extend(row.iter().zip(w).map(|(&v, &w)| (v as f64 * k * w as f64) as f32));
    }
    out
}

/// Channel norm of `[B, C, S]` over C, then gamma, bias, SiLU, in f64.
fn channel_ref(
    x: &[f32],
    c: usize,
    s: usize,
    kind: ChannelNorm,
    gamma: Option<&[f32]>,
    bias: Option<&[f32]>,
    silu: bool,
) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    for item in 0..x.len() / (c * s) {
        let base = item * c * s;
        for p in 0..s {
            let ss: f64 = (0..c).map(|ch| (x[base + ch * s + p] as f64).powi(2)).sum();
            let k = match kind {
                // x / sqrt(mean_C x² + eps)
                ChannelNorm::Pixel { eps } => 1.0 / (ss / c as f64 + eps as f64).sqrt(),
                // F.normalize: x / max(‖x‖, 1e-12), then · √C
                ChannelNorm::L2 => (c as f64).sqrt() / ss.sqrt().max(1e-12),
            };
            for ch in 0..c {
                let i = base + ch * s + p;
                let mut o = x[i] as f64 * k;
                if let Some(gm) = gamma {
                    o *= gm[ch] as f64;
                }
                if let Some(b) = bias {
                    o += b[ch] as f64;
                }
                if silu {
                    o /= 1.0 + (-o).exp();
                }
                out[i] = o as f32;
            }
        }
    }
    out
}

fn up(g: &Gpu, data: &[f32], shape: &[usize]) -> GpuTensor {
    g.upload_f32("test input", data, shape).unwrap()
}

fn read(g: &Gpu, t: &GpuTensor) -> Vec<f32> {
    g.read_f32_blocking(t).unwrap()
}

/// Activations with an offset per row, so the mean matters.
fn activations(seed: u64, rows: usize, cols: usize) -> Vec<f32> {
    let mut x = rand_vec(seed, rows * cols);
    for (r, row) in x.chunks_mut(cols).enumerate() {
        for v in row {
            *v = *v * 2.0 + (r % 5) as f32 - 2.0;
        }
    }
    x
}

#[test]
fn layer_norm_plain_and_affine() {
    let g = test_gpu();
    for (i, &cols) in COLS.iter().enumerate() {
        let rows = if cols >= 3072 { 3 } else { 9 };
        let x = activations(100 + i as u64, rows, cols);
        let w = rand_vec(200 + i as u64, cols);
        let b = rand_vec(300 + i as u64, cols);
        let (xt, wt, bt) = (up(g, &x, &[rows, cols]), up(g, &w, &[cols]), up(g, &b, &[cols]));
        for (affine, eps) in [(false, 1e-6f32), (true, 1e-5)] {
            let (wo, bo) = if affine { (Some(&wt), Some(&bt)) } else { (None, None) };
            let y = layer_norm(g, &xt, wo, bo, eps, None).unwrap();
            assert_eq!(y.shape(), &[rows, cols]);
            let want = if affine {
                layer_norm_ref(&x, cols, Some(&w), Some(&b), eps as f64, None)
            } else {
                layer_norm_ref(&x, cols, None, None, eps as f64, None)
            };
            assert_close(
                &format!("layer_norm {rows}x{cols} affine={affine}"),
                &read(g, &y),
                &want,
                Tol::new(2e-5, 2e-5),
            );
        }
    }
}

#[test]
fn layer_norm_modulation_broadcast_and_per_row() {
    let g = test_gpu();
    for (i, &cols) in COLS.iter().enumerate() {
        let rows = if cols >= 3072 { 3 } else { 6 };
        let x = activations(400 + i as u64, rows, cols);
        let xt = up(g, &x, &[rows, cols]);
        // One row broadcast to every row.
        let sc = rand_vec(500 + i as u64, cols);
        let sh = rand_vec(600 + i as u64, cols);
        let (sct, sht) = (up(g, &sc, &[cols]), up(g, &sh, &[1, cols]));
        let m = Modulation { scale: RowOperand::broadcast(&sct), shift: RowOperand::broadcast(&sht) };
        let y = layer_norm(g, &xt, None, None, 1e-6, Some(m)).unwrap();
        let (hs, hh) = (HostRows { data: &sc, offset: 0, stride: 0 }, HostRows { data: &sh, offset: 0, stride: 0 });
        assert_close(
            &format!("layer_norm+mod broadcast {rows}x{cols}"),
            &read(g, &y),
            &layer_norm_ref(&x, cols, None, None, 1e-6, Some((&hs, &hh))),
            Tol::new(3e-5, 3e-5),
        );
        // One row of scale and shift per row, with an affine norm in front.
        let sc = rand_vec(700 + i as u64, rows * cols);
        let sh = rand_vec(800 + i as u64, rows * cols);
        let w = rand_vec(900 + i as u64, cols);
        let (sct, sht, wt) = (up(g, &sc, &[rows, cols]), up(g, &sh, &[rows, cols]), up(g, &w, &[cols]));
        let m = Modulation { scale: RowOperand::per_row(&sct), shift: RowOperand::per_row(&sht) };
        let y = layer_norm(g, &xt, Some(&wt), None, 1e-6, Some(m)).unwrap();
        let (hs, hh) =
            (HostRows { data: &sc, offset: 0, stride: cols }, HostRows { data: &sh, offset: 0, stride: cols });
        assert_close(
            &format!("layer_norm+mod per row {rows}x{cols}"),
            &read(g, &y),
            &layer_norm_ref(&x, cols, Some(&w), None, 1e-6, Some((&hs, &hh))),
            Tol::new(3e-5, 3e-5),
        );
    }
}

/// The DiT's use: a `[video; audio]` row stack, each modality modulated by rows of its own `[1, 6, cols]` table
/// (two calls over row ranges), and a per-token `[rows, 6, cols]` table read by chunk.
#[test]
fn layer_norm_modulation_table_rows_and_row_ranges() {
    let g = test_gpu();
    let (lv, la, cols) = (5, 3, 100);
    let rows = lv + la;
    let x = activations(1, rows, cols);
    let tv = rand_vec(2, 6 * cols);
    let ta = rand_vec(3, 6 * cols);
    let (xt, tvt, tat) = (up(g, &x, &[rows, cols]), up(g, &tv, &[1, 6, cols]), up(g, &ta, &[1, 6, cols]));
    let y = g.alloc("y", &[rows, cols], DType::F32).unwrap();
    // shift is chunk 0 and scale chunk 1 of the table (Wan's order: shift, scale, gate, ...).
    for (range, t) in [(0..lv, &tvt), (lv..rows, &tat)] {
        let m = Modulation { scale: RowOperand::table_row(t, 1), shift: RowOperand::table_row(t, 0) };
        layer_norm_into(g, &xt, &y, range, None, None, 1e-6, Some(m)).unwrap();
    }
    let mut want = Vec::new();
    for (r0, r1, t) in [(0, lv, &tv), (lv, rows, &ta)] {
        let sc = HostRows { data: t, offset: cols, stride: 0 };
        let sh = HostRows { data: t, offset: 0, stride: 0 };
        want.extend(layer_norm_ref(&x[r0 * cols..r1 * cols], cols, None, None, 1e-6, Some((&sc, &sh))));
    }
    assert_close("layer_norm two tables", &read(g, &y), &want, Tol::new(3e-5, 3e-5));

    // Per-token e0 [rows, 6, cols]: scale = chunk 4, shift = chunk 3; over the audio rows only, whose e0
    // starts at row 0 of its own tensor.
    let e0 = rand_vec(4, la * 6 * cols);
    let e0t = up(g, &e0, &[la, 6, cols]);
    let m = Modulation { scale: RowOperand::chunk(&e0t, 4, 6), shift: RowOperand::chunk(&e0t, 3, 6) };
    layer_norm_into(g, &xt, &y, lv..rows, None, None, 1e-6, Some(m)).unwrap();
    let sc = HostRows { data: &e0, offset: 4 * cols, stride: 6 * cols };
    let sh = HostRows { data: &e0, offset: 3 * cols, stride: 6 * cols };
    want.truncate(lv * cols);
    want.extend(layer_norm_ref(&x[lv * cols..], cols, None, None, 1e-6, Some((&sc, &sh))));
    assert_close("layer_norm per-token chunks", &read(g, &y), &want, Tol::new(3e-5, 3e-5));
}

/// Rows whose mean is far from zero compared with their spread: a one-pass E[x²] − mean² would lose the variance.
#[test]
fn layer_norm_large_mean_is_stable() {
    let g = test_gpu();
    let (rows, cols) = (4, 3072);
    let x: Vec<f32> = rand_vec(5, rows * cols).iter().map(|v| 300.0 + 0.05 * v).collect();
    let y = layer_norm(g, &up(g, &x, &[rows, cols]), None, None, 1e-6, None).unwrap();
    // ulp(300) = 3e-5 is 1e-3 of the std: a mean rounded to f32 would cost that much; a one-pass E[x²] − mean²
    // would lose the whole variance (9e-4 is below ulp(90000) = 8e-3). The kernel does neither.
    assert_close(
        "layer_norm mean 300 std 0.03",
        &read(g, &y),
        &layer_norm_ref(&x, cols, None, None, 1e-6, None),
        Tol::new(5e-5, 5e-5),
    );
}

#[test]
fn layer_norm_in_place_and_leading_dims() {
    let g = test_gpu();
    let (b, l, cols) = (2, 5, 257);
    let x = activations(6, b * l, cols);
    let w = rand_vec(7, cols);
    let bias = rand_vec(8, cols);
    let (wt, bt) = (up(g, &w, &[cols]), up(g, &bias, &[cols]));
    let want = layer_norm_ref(&x, cols, Some(&w), Some(&bias), 1e-6, None);
    let xt = up(g, &x, &[b, l, cols]);
    let y = layer_norm(g, &xt, Some(&wt), Some(&bt), 1e-6, None).unwrap();
    assert_eq!(y.shape(), &[b, l, cols]);
    assert_close("layer_norm [2, 5, 257]", &read(g, &y), &want, Tol::new(2e-5, 2e-5));
    layer_norm_into(g, &xt, &xt, 0..b * l, Some(&wt), Some(&bt), 1e-6, None).unwrap();
    assert_close("layer_norm in place", &read(g, &xt), &want, Tol::new(2e-5, 2e-5));
}

#[test]
fn rms_norm_matches_reference() {
    let g = test_gpu();
    for (i, &cols) in COLS.iter().enumerate() {
        let rows = if cols >= 3072 { 3 } else { 11 };
        let x = activations(1000 + i as u64, rows, cols);
        let w = rand_vec(1100 + i as u64, cols);
        let (xt, wt) = (up(g, &x, &[rows, cols]), up(g, &w, &[cols]));
        let want = rms_norm_ref(&x, cols, &w, 1e-6);
        let y = rms_norm(g, &xt, &wt, 1e-6).unwrap();
        assert_close(&format!("rms_norm {rows}x{cols}"), &read(g, &y), &want, Tol::new(2e-5, 2e-5));
        let y = t5_rms_norm(g, &xt, &wt, 1e-6).unwrap();
        assert_close(&format!("t5_rms_norm {rows}x{cols}"), &read(g, &y), &want, Tol::new(2e-5, 2e-5));
    }
}

#[test]
fn rms_norm_in_place_row_range() {
    let g = test_gpu();
    // Per-head q norm: [tokens, heads, 128] normalised over 128, the last 3 tokens only, in place.
    let (tokens, heads, hd) = (6, 4, 128);
    let x = activations(9, tokens * heads, hd);
    let w = rand_vec(10, hd);
    let xt = up(g, &x, &[tokens * heads, hd]);
    let wt = up(g, &w, &[hd]);
    rms_norm_into(g, &xt, &xt, 3 * heads..tokens * heads, &wt, 1e-6).unwrap();
    let mut want = x[..3 * heads * hd].to_vec();
    want.extend(rms_norm_ref(&x[3 * heads * hd..], hd, &w, 1e-6));
    assert_close("rms_norm in place, rows 12..24", &read(g, &xt), &want, Tol::new(2e-5, 2e-5));
}

#[test]
fn channel_norms_match_reference() {
    let g = test_gpu();
    for (i, &(b, c, s)) in
        [(1, 1, 1), (1, 3, 7), (1, 16, 100), (2, 48, 65), (3, 128, 33), (1, 512, 16)].iter().enumerate()
    {
        let x = rand_vec(2000 + i as u64, b * c * s);
        let gamma = rand_vec(2100 + i as u64, c);
        let beta = rand_vec(2200 + i as u64, c);
        let shape: Vec<usize> = if b == 1 { vec![c, s] } else { vec![b, c, s] };
        let xt = up(g, &x, &shape);
        let gt = up(g, &gamma, &[c, 1, 1, 1]);
        let bt = up(g, &beta, &[c]);
        let what = |op: &str| format!("{op} [{b}, {c}, {s}]");
        let tol = Tol::new(2e-5, 2e-5);
        let px = ChannelNorm::Pixel { eps: 1e-6 };
        let y = pixel_norm(g, &xt, 1e-6).unwrap();
        assert_eq!(y.shape(), &shape[..]);
        assert_close(&what("pixel_norm"), &read(g, &y), &channel_ref(&x, c, s, px, None, None, false), tol);
        let y = pixel_norm_silu(g, &xt, 1e-6).unwrap();
        assert_close(&what("pixel_norm_silu"), &read(g, &y), &channel_ref(&x, c, s, px, None, None, true), tol);
        let l2 = ChannelNorm::L2;
        let y = channel_rms_norm(g, &xt, &gt, None).unwrap();
        assert_close(
            &what("channel_rms_norm"),
            &read(g, &y),
            &channel_ref(&x, c, s, l2, Some(&gamma), None, false),
            tol,
        );
        let y = channel_rms_norm_silu(g, &xt, &gt, Some(&bt)).unwrap();
        assert_close(
            &what("channel_rms_norm_silu + bias"),
            &read(g, &y),
            &channel_ref(&x, c, s, l2, Some(&gamma), Some(&beta), true),
            tol,
        );
    }
}

#[test]
fn channel_rms_norm_of_zeros_is_zero() {
    // F.normalize clamps the norm at 1e-12, so an all-zero position gives zeros (plus bias), not NaN.
    let g = test_gpu();
    let (c, s) = (4, 3);
    let xt = up(g, &[0.0; 12], &[c, s]);
    let gt = up(g, &[1.0; 4], &[c]);
    let bt = up(g, &[0.5, -0.5, 0.0, 2.0], &[c]);
    let y = read(g, &channel_rms_norm(g, &xt, &gt, Some(&bt)).unwrap());
    let want: Vec<f32> = [0.5, -0.5, 0.0, 2.0].iter().flat_map(|&v| [v; 3]).collect();
    assert_eq!(y, want);
}

/// Tensors over one 128 MiB binding (lavapipe's limit; on larger limits the same code runs in one launch):
/// LayerNorm + per-token modulation split by rows, and a channel norm whose channels are split into chunks.
#[test]
fn norms_split_past_one_binding() {
    let g = test_gpu();
    let max = g.max_binding() as usize;
    // Row norm: a per-token scale read at stride 4 · cols from a [rows, 4, cols] table larger than one binding
    // splits the launch by rows, so x, y, scale and shift windows all start mid-tensor in the second launch.
    let cols = 3072;
    let rows = max / (4 * 4 * cols) + 100;
    let (y, want) = {
        let x = activations(11, rows, cols);
        let sc = rand_vec(12, 4 * rows * cols);
        let sh = rand_vec(13, rows * cols);
        let xt = up(g, &x, &[rows, cols]);
        let sct = up(g, &sc, &[rows, 4, cols]);
        let sht = up(g, &sh, &[rows, cols]);
        let m = Modulation { scale: RowOperand::chunk(&sct, 3, 4), shift: RowOperand::per_row(&sht) };
        let y = layer_norm(g, &xt, None, None, 1e-6, Some(m)).unwrap();
        let hs = HostRows { data: &sc, offset: 3 * cols, stride: 4 * cols };
        let hh = HostRows { data: &sh, offset: 0, stride: cols };
        (y, layer_norm_ref(&x, cols, None, None, 1e-6, Some((&hs, &hh))))
    };
    assert_close(
        &format!("layer_norm {rows}x{cols}, scale over {max} bytes"),
        &read(g, &y),
        &want,
        Tol::new(3e-5, 3e-5),
    );
    drop((y, want));
    g.trim(); // hand the pooled buffers of the first half back before allocating the second

    // Channel norm: one item of C × S just over one binding.
    let (c, s) = (24, max / (4 * 24) + 5);
    let (y, want) = {
        let x = rand_vec(14, c * s);
        let gamma = rand_vec(15, c);
        let xt = up(g, &x, &[1, c, s]);
        let gt = up(g, &gamma, &[c]);
        let y = channel_rms_norm(g, &xt, &gt, None).unwrap();
        (y, channel_ref(&x, c, s, ChannelNorm::L2, Some(&gamma), None, false))
    };
    assert_close(
        &format!("channel_rms_norm [1, {c}, {s}] over {max} bytes"),
        &read(g, &y),
        &want,
        Tol::new(2e-5, 2e-5),
    );
}

#[test]
fn norms_reject_bad_inputs() {
    let g = test_gpu();
    let xt = up(g, &[0.0; 12], &[3, 4]);
    let w5 = up(g, &[1.0; 5], &[5]);
    let e = layer_norm(g, &xt, Some(&w5), None, 1e-6, None).unwrap_err().to_string();
    assert!(e.contains("layer_norm: `weight` has shape [5]; expected [4]"), "{e}");

    let e = rms_norm(g, &xt, &w5, 1e-6).unwrap_err().to_string();
    assert!(e.contains("rms_norm: `weight` has shape [5]"), "{e}");

    // A per-row scale with fewer rows than x.
    let s2 = up(g, &[0.0; 8], &[2, 4]);
    let m = Modulation { scale: RowOperand::per_row(&s2), shift: RowOperand::broadcast(&s2) };
    let e = layer_norm(g, &xt, None, None, 1e-6, Some(m)).unwrap_err().to_string();
    assert!(e.contains("`scale` has shape [2, 4]") && e.contains("3 rows of 4"), "{e}");

    let y = g.alloc("y", &[3, 4], DType::F32).unwrap();
    let e = layer_norm_into(g, &xt, &y, 2..4, None, None, 1e-6, None).unwrap_err().to_string();
    assert!(e.contains("row range 2..4 is outside the 3 rows"), "{e}");

    let x4 = up(g, &[0.0; 16], &[1, 2, 2, 4]);
    let e = pixel_norm(g, &x4, 1e-6).unwrap_err().to_string();
    assert!(e.contains("pixel_norm: `x` has shape [1, 2, 2, 4]") && e.contains("[B, C, S]"), "{e}");

    let e = channel_rms_norm(g, &xt, &w5, None).unwrap_err().to_string();
    assert!(e.contains("channel_rms_norm: `gamma` has shape [5]; expected [3]"), "{e}");

    let e = channel_norm(g, &xt, ChannelNorm::L2, None, Some(&w5), false).unwrap_err().to_string();
    assert!(e.contains("`bias`"), "{e}");
}

/// Every variant parses and validates with naga, and the WGSL `Params` is as large as the Rust struct.
#[test]
fn norm_variants_validate() {
    let specs = variants();
    assert!(specs.len() >= 5);
    for spec in specs {
        let src = spec.source();
        let module =
            naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}: {}", spec.label, e.emit_to_string(&src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e:?}", spec.label));
        let params = module
            .global_variables
            .iter()
            .find(|(_, v)| v.name.as_deref() == Some("p"))
            .map(|(_, v)| v.ty)
            .expect("the shader has a uniform `p`");
        match &module.types[params].inner {
            naga::TypeInner::Struct { span, .. } => assert_eq!(*span, 64, "{}", spec.label),
            other => panic!("{}: Params is {other:?}", spec.label),
        }
    }
}

/// Timings of the picked variants (`cargo test --test kernels bench_norms -- --ignored --nocapture`). Process CPU
/// time is printed beside wall time because it is stable on a shared machine.
#[test]
#[ignore]
fn bench_norms() {
    fn cpu_seconds() -> f64 {
        // utime and stime, fields 14 and 15 of /proc/self/stat, in 1/100 s.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let f: Vec<f64> =
            stat.rsplit(')').next().unwrap_or("").split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
        f.get(11).zip(f.get(12)).map_or(0.0, |(u, s)| (u + s) / 100.0)
    }
    fn time(g: &Gpu, what: &str, elems: usize, run: &dyn Fn()) {
        let it = 20;
        run();
        g.wait().unwrap();
        let (c0, t0) = (cpu_seconds(), std::time::Instant::now());
        for _ in 0..it {
            run();
        }
        g.wait().unwrap();
        let wall = t0.elapsed().as_secs_f64() / it as f64;
        let cpu = (cpu_seconds() - c0) / it as f64;
        println!(
            "{what}: {:.2} ms wall, {:.1} ms CPU, {:.0} M elements/s",
            wall * 1e3,
            cpu * 1e3,
            elems as f64 / wall / 1e6
        );
    }
    let g = test_gpu();
    let (rows, cols) = (2048, 3072);
    let xt = up(g, &activations(1, rows, cols), &[rows, cols]);
    let table = up(g, &rand_vec(2, 6 * cols), &[6, cols]);
    let w = up(g, &rand_vec(3, cols), &[cols]);
    let y = g.alloc("y", &[rows, cols], DType::F32).unwrap();
    let m = Modulation { scale: RowOperand::table_row(&table, 1), shift: RowOperand::table_row(&table, 0) };
    let n = rows * cols;
    time(g, "layer_norm + modulation 2048x3072", n, &|| {
        layer_norm_into(g, &xt, &y, 0..rows, None, None, 1e-6, Some(m)).unwrap()
    });
    time(g, "layer_norm affine 2048x3072", n, &|| {
        layer_norm_into(g, &xt, &y, 0..rows, Some(&w), Some(&w), 1e-6, None).unwrap()
    });
    time(g, "rms_norm 2048x3072", n, &|| rms_norm_into(g, &xt, &y, 0..rows, &w, 1e-6).unwrap());
    let (c, s) = (512, 64 * 64);
    let xc = up(g, &rand_vec(4, c * s), &[c, s]);
    let gamma = up(g, &rand_vec(5, c), &[c]);
    time(g, "channel_rms_norm_silu 512x4096", c * s, &|| {
        channel_rms_norm_silu(g, &xc, &gamma, None).unwrap();
    });
}
