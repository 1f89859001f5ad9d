//! Convolution family: causal Conv3d (with the frame cache) and Conv2d here, Conv1d / ConvTranspose1d in `one_d`,
//! upsampling, unpatchify, permute and the cache frames in `movement`; each against a CPU reference written from
//! the PyTorch definition with f64 sums. The binding splits are exercised by lowering the per-binding limit.

use nava::gpu::{Gpu, GpuTensor};
use nava::kernels::conv::{
    causal_conv3d, causal_conv3d_next_cache, conv2d, conv2d_per_frame, variants, with_binding_limit, Conv2dArgs,
    Conv3dArgs, Kernel,
};

use crate::common::{assert_close, rand_vec, test_gpu, Tol};

mod movement;
mod one_d;

/// Conv accumulations of a few hundred terms in f32.
pub(crate) const TOL: Tol = Tol { abs: 2e-5, rel: 2e-5 };

pub(crate) fn up(g: &Gpu, v: &[f32], shape: &[usize]) -> GpuTensor {
    g.upload_f32("test input", v, shape).unwrap()
}

pub(crate) fn read(g: &Gpu, t: &GpuTensor) -> Vec<f32> {
    g.read_f32_blocking(t).unwrap()
}

// ---------------------------------------------------------------------------------------------------------------
// References.

/// One 3-D convolution of a single item from the definition: P = zeros(zp) ‖ cache ‖ x along time, rows and
/// columns zero-padded by (top, left) with out-of-range reads as zero.
#[derive(Clone, Copy)]
struct Conv3dCase {
    cin: usize,
    cout: usize,
    t: usize,
    h: usize,
    w: usize,
    k: [usize; 3],
    /// Zero frames before the cache.
    zp: usize,
    nc: usize,
    /// (top, bottom, left, right).
    pad: [usize; 4],
    stride: [usize; 2],
    dil: [usize; 2],
}

impl Conv3dCase {
    fn out(&self) -> [usize; 3] {
        let [kt, kh, kw] = self.k;
        let [top, bottom, left, right] = self.pad;
        (
            self.zp + self.nc + self.t - kt + 1,
            (self.h + top + bottom - self.dil[0] * (kh - 1) - 1) / self.stride[0] + 1,
            (self.w + left + right - self.dil[1] * (kw - 1) - 1) / self.stride[1] + 1,
        )
            .into()
    }

    fn reference(&self, x: &[f32], cache: &[f32], wt: &[f32], b: Option<&[f32]>) -> Vec<f32> {
        let [kt, kh, kw] = self.k;
        let [to, ho, wo] = self.out();
        let (h, w) = (self.h, self.w);
        let mut y = vec![0.0f32; self.cout * to * ho * wo];
        let frame = |ci: usize, u: usize| -> Option<&[f32]> {
            if u < self.zp {
                None
            } else if u < self.zp + self.nc {
                let f = u - self.zp;
                Some(&cache[(ci * self.nc + f) * h * w..][..h * w])
            } else {
                let f = u - self.zp - self.nc;
                Some(&x[(ci * self.t + f) * h * w..][..h * w])
            }
        };
        for co in 0..self.cout {
            for t in 0..to {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let mut s = b.map_or(0.0, |b| b[co] as f64);
                        for ci in 0..self.cin {
                            for dt in 0..kt {
                                let Some(f) = frame(ci, t + dt) else { continue };
                                for dh in 0..kh {
                                    let ih = (oh * self.stride[0] + dh * self.dil[0]) as isize - self.pad[0] as isize;
                                    if ih < 0 || ih >= h as isize {
                                        continue;
                                    }
                                    for dw in 0..kw {
                                        let iw =
                                            (ow * self.stride[1] + dw * self.dil[1]) as isize - self.pad[2] as isize;
                                        if iw < 0 || iw >= w as isize {
                                            continue;
                                        }
                                        let wi = (((co * self.cin + ci) * kt + dt) * kh + dh) * kw + dw;
                                        s += wt[wi] as f64 * f[ih as usize * w + iw as usize] as f64;
                                    }
                                }
                            }
                        }
                        y[((co * to + t) * ho + oh) * wo + ow] = s as f32;
                    }
                }
            }
        }
        y
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Causal Conv3d.

/// Runs `causal_conv3d` for one case (batch `batch`, copies of the same geometry) and checks it.
fn check_conv3d(g: &Gpu, seed: u64, batch: usize, c: &Conv3dCase, limit: Option<u64>) {
    let [kt, kh, kw] = c.k;
    let pt = (c.zp + c.nc) / 2;
    let x = rand_vec(seed, batch * c.cin * c.t * c.h * c.w);
    let cache = rand_vec(seed + 1, batch * c.cin * c.nc * c.h * c.w);
    let wt = rand_vec(seed + 2, c.cout * c.cin * kt * kh * kw);
    let b = rand_vec(seed + 3, c.cout);
    let lead: Vec<usize> = if batch > 1 { vec![batch] } else { vec![] };
    let shape = |ch: usize, t: usize| [lead.clone(), vec![ch, t, c.h, c.w]].concat();
    let xt = up(g, &x, &shape(c.cin, c.t));
    let ct = (c.nc > 0).then(|| up(g, &cache, &shape(c.cin, c.nc)));
    let wtt = up(g, &wt, &[c.cout, c.cin, kt, kh, kw]);
    let bt = up(g, &b, &[c.cout]);
    let args = Conv3dArgs { bias: Some(&bt), padding: [pt, c.pad[0], c.pad[2]], stride: c.stride, cache: ct.as_ref() };
    let run = || causal_conv3d(g, &xt, &wtt, &args).unwrap();
    let y = match limit {
        Some(l) => with_binding_limit(l, run),
        None => run(),
    };
    let [to, ho, wo] = c.out();
    let mut want_shape = lead.clone();
    want_shape.extend([c.cout, to, ho, wo]);
    assert_eq!(y.shape(), want_shape.as_slice());
    let got = read(g, &y);
    let xi = c.cin * c.t * c.h * c.w;
    let ci = c.cin * c.nc * c.h * c.w;
    let yi = c.cout * to * ho * wo;
    for bi in 0..batch {
        let want = c.reference(&x[bi * xi..][..xi], &cache[bi * ci..][..ci], &wt, Some(&b));
        assert_close(
            &format!(
                "causal_conv3d item {bi} {}→{} T{} {}x{} k{:?} cache {} stride {:?} limit {limit:?}",
                c.cin, c.cout, c.t, c.h, c.w, c.k, c.nc, c.stride
            ),
            &got[bi * yi..][..yi],
            &want,
            TOL,
        );
    }
}

fn case3d(cin: usize, cout: usize, t: usize, h: usize, w: usize, k: [usize; 3]) -> Conv3dCase {
    Conv3dCase {
        cin,
        cout,
        t,
        h,
        w,
        k,
        zp: k[0] - 1,
        nc: 0,
        pad: [k[1] / 2, k[1] / 2, k[2] / 2, k[2] / 2],
        stride: [1, 1],
        dil: [1, 1],
    }
}

#[test]
fn causal_conv3d_matches_reference() {
    let g = test_gpu();
    let cases = [
        case3d(3, 5, 3, 7, 9, [3, 3, 3]),
        case3d(1, 1, 1, 1, 1, [3, 3, 3]),
        case3d(4, 13, 2, 17, 19, [3, 3, 3]), // 323 positions per frame: two tiles, 13 = 8 + 5 channels
        case3d(6, 9, 4, 5, 6, [1, 1, 1]),
        case3d(5, 7, 3, 6, 5, [3, 1, 1]),
        case3d(2, 3, 2, 4, 3, [1, 3, 3]),
        // Three channel blocks (16 + 16 + 8) over a 22×40 latent tile, K = 540.
        Conv3dCase { nc: 2, zp: 0, ..case3d(20, 40, 1, 22, 40, [3, 3, 3]) },
    ];
    for (i, c) in cases.iter().enumerate() {
        check_conv3d(g, 100 + 10 * i as u64, 1, c, None);
    }
    // Spatial stride 2 (the encoder's downsamplers), odd and even sizes.
    for (i, (h, w)) in [(9, 11), (8, 6)].into_iter().enumerate() {
        let mut c = case3d(3, 4, 2, h, w, [3, 3, 3]);
        c.stride = [2, 2];
        check_conv3d(g, 200 + i as u64, 1, &c, None);
    }
    // A leading batch dim, with a cache per item.
    let mut c = case3d(3, 4, 2, 5, 4, [3, 3, 3]);
    c.nc = 2;
    c.zp = 0;
    check_conv3d(g, 300, 2, &c, None);
}

#[test]
fn causal_conv3d_partial_cache() {
    // One cached frame and one zero frame (Wan's second chunk after a one-frame first chunk).
    let g = test_gpu();
    let mut c = case3d(3, 10, 2, 6, 7, [3, 3, 3]);
    c.zp = 1;
    c.nc = 1;
    check_conv3d(g, 400, 1, &c, None);
    let mut c = case3d(4, 6, 1, 3, 5, [3, 1, 1]);
    c.zp = 0;
    c.nc = 2;
    check_conv3d(g, 410, 1, &c, None);
}

/// Splits along output channels, input channels (accumulated) and output frames give the unsplit result.
#[test]
fn causal_conv3d_split_bindings() {
    let g = test_gpu();
    let align = g.binding_align();
    let mut c = case3d(11, 19, 6, 6, 7, [3, 3, 3]);
    c.nc = 2;
    c.zp = 0;
    // x holds 11 channels of 6·42 = 252 elements; one frame is 42, one output frame reads 3 frames of x.
    for elems in [4000usize, 1000, 300, 130] {
        check_conv3d(g, 500, 2, &c, Some(align + 4 * elems as u64));
    }
    // The general kernel (column stride 2) splits the same way.
    let mut c = case3d(5, 18, 4, 7, 9, [3, 3, 3]);
    c.stride = [2, 2];
    for elems in [1000usize, 250] {
        check_conv3d(g, 510, 1, &c, Some(align + 4 * elems as u64));
    }
    let x = up(g, &[0.0; 11 * 6 * 42], &[11, 6, 6, 7]);
    let w = up(g, &[0.0; 19 * 11 * 27], &[19, 11, 3, 3, 3]);
    let args = Conv3dArgs { padding: [1, 1, 1], ..Default::default() };
    let e = with_binding_limit(align + 4 * 100, || causal_conv3d(g, &x, &w, &args)).unwrap_err().to_string();
    assert!(
        e.contains("causal_conv3d: one output frame of one channel reads 504 bytes") && e.contains("400 bytes"),
        "{e}"
    );
}

/// A clip convolved in chunks, each with the cache from `causal_conv3d_next_cache`, equals the whole clip.
#[test]
fn causal_conv3d_cache_continuity() {
    let g = test_gpu();
    for (k, pad) in [([3, 3, 3], [1, 1, 1]), ([3, 1, 1], [1, 0, 0])] {
        let (cin, cout, t, h, w) = (3, 5, 6, 5, 4);
        let x = rand_vec(600, cin * t * h * w);
        let wt = rand_vec(601, cout * cin * k[0] * k[1] * k[2]);
        let b = rand_vec(602, cout);
        let wtt = up(g, &wt, &[cout, cin, k[0], k[1], k[2]]);
        let bt = up(g, &b, &[cout]);
        let args = Conv3dArgs { bias: Some(&bt), padding: pad, stride: [1, 1], cache: None };
        let whole = read(g, &causal_conv3d(g, &up(g, &x, &[cin, t, h, w]), &wtt, &args).unwrap());
        // Chunks of 1, 2, 1, 2 frames, like Wan's first chunk followed by longer ones.
        let mut cache: Option<GpuTensor> = None;
        let mut got = vec![Vec::new(); cout];
        let mut f0 = 0;
        for n in [1, 2, 1, 2] {
            let chunk: Vec<f32> =
                (0..cin).flat_map(|c| x[(c * t + f0) * h * w..(c * t + f0 + n) * h * w].to_vec()).collect();
            let xt = up(g, &chunk, &[cin, n, h, w]);
            let chunk_args = Conv3dArgs { cache: cache.as_ref(), ..args };
            let y = causal_conv3d(g, &xt, &wtt, &chunk_args).unwrap();
            assert_eq!(y.shape(), &[cout, n, h, w]);
            let yv = read(g, &y);
            for (co, out) in got.iter_mut().enumerate() {
                out.extend_from_slice(&yv[co * n * h * w..(co + 1) * n * h * w]);
            }
            let next = causal_conv3d_next_cache(g, cache.as_ref(), &xt, 2).unwrap();
            assert_eq!(next.shape(), &[cin, 2.min(f0 + n), h, w]);
            cache = Some(next);
            f0 += n;
        }
        assert_close(&format!("chunked causal_conv3d k{k:?}"), &got.concat(), &whole, TOL);
    }
}

#[test]
fn causal_conv3d_rejects_bad_inputs() {
    let g = test_gpu();
    let x = up(g, &[0.0; 2 * 3 * 4 * 5], &[2, 3, 4, 5]);
    let w_bad_cin = up(g, &[0.0; 4 * 3 * 27], &[4, 3, 3, 3, 3]);
    let e = causal_conv3d(g, &x, &w_bad_cin, &Conv3dArgs::default()).unwrap_err().to_string();
    assert!(e.contains("causal_conv3d: `weight` has shape [4, 3, 3, 3, 3]") && e.contains("x has 2 channels"), "{e}");
    let w_rank = up(g, &[0.0; 4 * 2 * 9], &[4, 2, 3, 3]);
    let e = causal_conv3d(g, &x, &w_rank, &Conv3dArgs::default()).unwrap_err().to_string();
    assert!(e.contains("`weight` has shape [4, 2, 3, 3]; expected 5 dimensions"), "{e}");
    let w = up(g, &[0.0; 4 * 2 * 27], &[4, 2, 3, 3, 3]);
    let b = up(g, &[0.0; 3], &[3]);
    let args = Conv3dArgs { bias: Some(&b), padding: [1, 1, 1], ..Default::default() };
    let e = causal_conv3d(g, &x, &w, &args).unwrap_err().to_string();
    assert!(e.contains("`bias` has shape [3]; expected [4]"), "{e}");
    let cache = up(g, &[0.0; 2 * 3 * 4 * 5], &[2, 3, 4, 5]);
    let args = Conv3dArgs { padding: [1, 1, 1], cache: Some(&cache), ..Default::default() };
    let e = causal_conv3d(g, &x, &w, &args).unwrap_err().to_string();
    assert!(
        e.contains("`cache` has shape [2, 3, 4, 5]; expected [2, 3, 4, 5] with T replaced by at most 2 cached frames"),
        "{e}"
    );
    let x2 = up(g, &[0.0; 10], &[2, 5]);
    let e = causal_conv3d(g, &x2, &w, &Conv3dArgs::default()).unwrap_err().to_string();
    assert!(e.contains("`x` has shape [2, 5]; expected [Cin, T, H, W]"), "{e}");
    // Without time padding a 3-frame kernel needs 3 frames.
    let x1 = up(g, &[0.0; 2 * 2 * 4 * 5], &[2, 2, 4, 5]);
    let e = causal_conv3d(g, &x1, &w, &Conv3dArgs::default()).unwrap_err().to_string();
    assert!(e.contains("padded time (2) is shorter than the kernel's reach (3)"), "{e}");
}

// ---------------------------------------------------------------------------------------------------------------
// Conv2d.

fn check_conv2d(g: &Gpu, seed: u64, batch: usize, frames: Option<usize>, c: &Conv3dCase, limit: Option<u64>) {
    let [_, kh, kw] = c.k;
    let t = frames.unwrap_or(1);
    let x = rand_vec(seed, batch * c.cin * t * c.h * c.w);
    let wt = rand_vec(seed + 1, c.cout * c.cin * kh * kw);
    let b = rand_vec(seed + 2, c.cout);
    let mut xs: Vec<usize> = if batch > 1 { vec![batch, c.cin] } else { vec![c.cin] };
    if frames.is_some() {
        xs.push(t);
    }
    xs.extend([c.h, c.w]);
    let xt = up(g, &x, &xs);
    let wtt = up(g, &wt, &[c.cout, c.cin, kh, kw]);
    let bt = up(g, &b, &[c.cout]);
    let args = Conv2dArgs { bias: Some(&bt), padding: c.pad, stride: c.stride, dilation: c.dil };
    let run = || {
        if frames.is_some() {
            conv2d_per_frame(g, &xt, &wtt, &args).unwrap()
        } else {
            conv2d(g, &xt, &wtt, &args).unwrap()
        }
    };
    let y = match limit {
        Some(l) => with_binding_limit(l, run),
        None => run(),
    };
    let mut one = Conv3dCase { t, ..*c };
    one.k = [1, kh, kw];
    one.zp = 0;
    one.nc = 0;
    let [to, ho, wo] = one.out();
    let got = read(g, &y);
    let xi = c.cin * t * c.h * c.w;
    let yi = c.cout * to * ho * wo;
    assert_eq!(got.len(), batch * yi);
    for bi in 0..batch {
        let want = one.reference(&x[bi * xi..][..xi], &[], &wt, Some(&b));
        assert_close(
            &format!(
                "conv2d item {bi} {}→{} frames {frames:?} {}x{} k{kh}x{kw} pad {:?} stride {:?} dil {:?}",
                c.cin, c.cout, c.h, c.w, c.pad, c.stride, c.dil
            ),
            &got[bi * yi..][..yi],
            &want,
            TOL,
        );
    }
}

fn case2d(cin: usize, cout: usize, h: usize, w: usize, k: usize, pad: [usize; 4]) -> Conv3dCase {
    Conv3dCase { cin, cout, t: 1, h, w, k: [1, k, k], zp: 0, nc: 0, pad, stride: [1, 1], dil: [1, 1] }
}

#[test]
fn conv2d_matches_reference() {
    let g = test_gpu();
    // LTX's causal conv: time (rows) padded (2, 0), frequency (1, 1); then 1×1; then symmetric.
    check_conv2d(g, 800, 1, None, &case2d(3, 5, 7, 16, 3, [2, 0, 1, 1]), None);
    check_conv2d(g, 810, 1, None, &case2d(4, 2, 9, 5, 1, [0; 4]), None);
    check_conv2d(g, 820, 2, None, &case2d(2, 9, 13, 21, 3, [1, 1, 1, 1]), None);
    // Stride 2 with Wan's downsampling pad (0, 1, 0, 1), and dilation.
    let mut c = case2d(3, 4, 10, 11, 3, [0, 1, 0, 1]);
    c.stride = [2, 2];
    check_conv2d(g, 830, 1, None, &c, None);
    let mut c = case2d(2, 3, 9, 12, 3, [2, 2, 3, 1]);
    c.dil = [2, 3];
    c.stride = [1, 2];
    check_conv2d(g, 840, 1, None, &c, None);
}

#[test]
fn conv2d_per_frame_matches_reference() {
    let g = test_gpu();
    check_conv2d(g, 900, 1, Some(3), &case2d(3, 5, 6, 7, 3, [1, 1, 1, 1]), None);
    check_conv2d(g, 910, 2, Some(2), &case2d(2, 3, 5, 5, 3, [1, 1, 1, 1]), None);
    let align = g.binding_align();
    check_conv2d(g, 920, 1, Some(3), &case2d(5, 6, 6, 7, 3, [1, 1, 1, 1]), Some(align + 4 * 200));
}

#[test]
fn conv2d_rejects_bad_inputs() {
    let g = test_gpu();
    let x = up(g, &[0.0; 3 * 4 * 4], &[3, 4, 4]);
    let w = up(g, &[0.0; 2 * 4 * 9], &[2, 4, 3, 3]);
    let e = conv2d(g, &x, &w, &Conv2dArgs::default()).unwrap_err().to_string();
    assert!(e.contains("conv2d: `weight` has shape [2, 4, 3, 3]; expected [Cout, 3, kh, kw]"), "{e}");
    let w = up(g, &[0.0; 2 * 3 * 9], &[2, 3, 3, 3]);
    let args = Conv2dArgs { stride: [0, 1], ..Default::default() };
    let e = conv2d(g, &x, &w, &args).unwrap_err().to_string();
    assert!(e.contains("stride [0, 1] must be at least 1"), "{e}");
}

// ---------------------------------------------------------------------------------------------------------------
// Variants and speed.

/// Every variant parses and validates with naga (no adapter needed), and its `Params` has the size of the
/// struct the launcher writes.
#[test]
fn conv_variants_validate() {
    let specs = variants();
    assert_eq!(specs.len(), Kernel::ALL.len());
    for (spec, kernel) in specs.iter().zip(Kernel::ALL) {
        let src = spec.source();
        let module =
            naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}: {}", spec.label, e.emit_to_string(&src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::default())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e:?}", spec.label));
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let (params, _) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("Params"))
            .unwrap_or_else(|| panic!("{}: no Params struct", spec.label));
        assert_eq!(
            layouter[params].size as usize,
            kernel.params_bytes(),
            "{}: WGSL Params vs the launcher's struct",
            spec.label
        );
        assert_eq!(kernel.params_bytes() % 16, 0, "{}", spec.label);
    }
}

/// Throughput of the 3×3×3 causal conv on one chunk with a 2-frame cache, beside the GEMM of the same size
/// (M = positions, N = Cout, K = 27·Cin) as a yardstick measured under the same load
/// (`cargo test --test kernels -- --ignored conv3d_speed --nocapture`).
#[test]
#[ignore]
fn conv3d_speed() {
    use nava::kernels::gemm::{gemm, Epilogue, Weight, WeightFormat};
    let g = test_gpu();
    // CPU seconds of all threads of this process (lavapipe's workers included): other processes on the
    // machine then barely change the figure.
    let cpu = || -> f64 {
        let mut ns = 0u64;
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let stat = std::fs::read_to_string(task.unwrap().path().join("schedstat")).unwrap_or_default();
            ns += stat.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
        ns as f64 * 1e-9
    };
    let time = |f: &dyn Fn()| {
        f();
        g.wait().unwrap();
        let reps = 3;
        let t0 = cpu();
        for _ in 0..reps {
            f();
        }
        g.wait().unwrap();
        (cpu() - t0) / reps as f64
    };
    for (cin, cout, h, w) in [(64, 64, 32, 32), (128, 128, 22, 40), (256, 256, 22, 40)] {
        let x = up(g, &rand_vec(1, cin * h * w), &[cin, 1, h, w]);
        let cache = up(g, &rand_vec(2, cin * 2 * h * w), &[cin, 2, h, w]);
        let wt = up(g, &rand_vec(3, cout * cin * 27), &[cout, cin, 3, 3, 3]);
        let args = Conv3dArgs { padding: [1, 1, 1], cache: Some(&cache), ..Default::default() };
        let s = time(&|| {
            causal_conv3d(g, &x, &wt, &args).unwrap();
        });
        let (m, k) = (h * w, 27 * cin);
        let a = up(g, &rand_vec(4, m * k), &[m, k]);
        let wg = Weight::from_f32(g, "w", WeightFormat::F32, cout, k, &rand_vec(5, cout * k)).unwrap();
        let sg = time(&|| {
            gemm(g, &a, &wg, Epilogue::default()).unwrap();
        });
        let flop = 2.0 * (cin * cout * 27 * h * w) as f64;
        println!(
            "conv3d 3x3x3 {cin}->{cout} {h}x{w} +2 cached frames: {:.1} CPU-ms, {:.2} GFLOP per CPU-s; \
             gemm {m}x{cout}x{k}: {:.2}",
            s * 1e3,
            flop / s / 1e9,
            flop / sg / 1e9
        );
    }
}
