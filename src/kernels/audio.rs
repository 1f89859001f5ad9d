//! Launchers for `shaders/audio.wgsl`: the per-channel resampling filters and spectral front end of the LTX-2.3
//! vocoders (NAVA.md §7.3, §10.4; reference `ltx_core/model/audio_vae/vocoder.py` and
//! `torchaudio.functional.resample`).
//!
//! - [`fir_upsample`]: BigVGAN's `UpSample1d` (pad, depthwise `conv_transpose1d` with one shared filter, × ratio,
//!   crop), optionally fused with SnakeBeta — the first two steps of the anti-aliased `Activation1d`, and the
//!   Hann-sinc ×3 skip path of the bandwidth extension.
//! - [`fir_downsample`]: a strided depthwise FIR with one shared filter: `LowPassFilter1d` (replicate padding),
//!   torchaudio's sinc resampler for integer ratios (zero padding) and, with a unit filter, padding and cropping.
//! - [`conv1d_gemm`]: a "same"-style 1-D convolution as im2col + GEMM (the GEMM family's tuned kernels and
//!   weight formats), back to channel-major `[Cout, L]` with its bias.
//! - [`conv2d_gemm`]: the same for a stride-1 k×k 2-D convolution with per-side zero padding (the audio VAE's
//!   causal convolutions).
//! - [`stft_magnitude`] and [`log_mel`]: `√(re² + im²)` of a conv-STFT and `log(max(basis · mag, 1e-5))`.
//!
//! Signals are `[.., T]` rows (any leading dims). The filter launchers split the rows so that no binding exceeds
//! the adapter's limit.

use std::cell::Cell;

use crate::gpu::{Access, DType, Family, Gpu, GpuTensor, Spec};

use super::{Check, KernelError};

pub static FAMILY: Family = Family { name: "audio", source: include_str!("../../shaders/audio.wgsl") };

const WG: u32 = 64;
/// Outputs each invocation computes (the grid-stride loop), amortising the per-invocation cost of CPU drivers.
const PER_INVOCATION: usize = 16;
const FLAG_SNAKE: u32 = 1;
const FLAG_REPLICATE: u32 = 2;
const FLAG_REFLECT: u32 = 4;
const FLAG_BIAS: u32 = 8;

/// The compute entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Im2col,
    Im2col2d,
    ToChannels,
    FirUp,
    FirDown,
    Magnitude,
    LogMel,
}

impl Kernel {
    pub const ALL: [Kernel; 7] =
        [Self::Im2col, Self::Im2col2d, Self::ToChannels, Self::FirUp, Self::FirDown, Self::Magnitude, Self::LogMel];

    fn entry(self) -> &'static str {
        match self {
            Self::Im2col => "im2col",
            Self::Im2col2d => "im2col2d",
            Self::ToChannels => "to_channels",
            Self::FirUp => "fir_up",
            Self::FirDown => "fir_down",
            Self::Magnitude => "magnitude",
            Self::LogMel => "log_mel",
        }
    }

    pub fn spec(self) -> Spec {
        use Access::*;
        Spec::new(&FAMILY, self.entry(), &[Read, Read, Read, Read, ReadWrite])
            .tag(&format!("t{WG}"))
            .constant("WG", WG as f64)
    }
}

/// Bytes of the uniform `Params` (the tests compare it with the WGSL).
pub const PARAMS_BYTES: usize = std::mem::size_of::<Params>();

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    t_in: u32,
    l_out: u32,
    ratio: u32,
    taps: u32,
    pad: u32,
    pad_left: u32,
    flags: u32,
    channels: u32,
    row0: u32,
    x_off: u32,
    y_off: u32,
    gain: f32,
    _pad: [u32; 3],
}

/// Every variant, for the validation test.
pub fn variants() -> Vec<Spec> {
    Kernel::ALL.iter().map(|k| k.spec()).collect()
}

thread_local! {
    static BINDING_LIMIT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Runs `f` with this family's per-binding limit lowered to `bytes` on the calling thread (never raised above the
/// adapter's), so that tests can check the row splits on small signals.
pub fn with_binding_limit<R>(bytes: u64, f: impl FnOnce() -> R) -> R {
    let old = BINDING_LIMIT.replace(Some(bytes));
    let r = f();
    BINDING_LIMIT.set(old);
    r
}

/// Padding of the samples outside a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pad {
    /// The edge sample repeated (`F.pad(mode="replicate")`).
    Replicate,
    /// Mirrored about the edge sample (`F.pad(mode="reflect")`); the padding must be shorter than the signal.
    Reflect,
    Zero,
}

impl Pad {
    fn flag(self) -> u32 {
        match self {
            Self::Replicate => FLAG_REPLICATE,
            Self::Reflect => FLAG_REFLECT,
            Self::Zero => 0,
        }
    }
}

fn check_reflect(op: &'static str, mode: Pad, t: usize, pads: &[usize]) -> Result<(), KernelError> {
    let p = pads.iter().copied().max().unwrap_or(0);
    if mode == Pad::Reflect && p >= t {
        return Err(unsupported(
            op,
            format!("reflect padding of {p} needs a signal longer than {p} samples (has {t})"),
        ));
    }
    Ok(())
}

/// Options of [`fir_upsample`]: PyTorch's `F.pad(x, (pad, pad))` then `conv_transpose1d(stride = ratio)` with the
/// filter, times `gain`, keeping outputs `[pad_left, len − pad_right)`.
#[derive(Clone, Copy, Debug)]
pub struct FirUp<'a> {
    /// `[taps]` (or `[1, 1, taps]`), shared by all rows.
    pub filter: &'a GpuTensor,
    pub ratio: usize,
    pub pad: usize,
    pub padding: Pad,
    pub pad_left: usize,
    pub pad_right: usize,
    pub gain: f32,
    /// SnakeBeta after the filter: log-scale `(alpha, beta)`, one per channel (the second-to-last dim of x).
    pub snake: Option<(&'a GpuTensor, &'a GpuTensor)>,
}

/// Options of [`fir_downsample`]: `F.pad(x, (pad_left, pad_right))` then `conv1d(stride)` with the filter; with
/// `max_len` the output is cut to that many samples (torchaudio's `ceil(new·T/orig)`).
#[derive(Clone, Copy, Debug)]
pub struct FirDown<'a> {
    pub filter: &'a GpuTensor,
    pub stride: usize,
    pub pad_left: usize,
    pub pad_right: usize,
    pub padding: Pad,
    pub max_len: Option<usize>,
}

fn check_f32(op: &'static str, name: &'static str, t: &GpuTensor) -> Result<(), KernelError> {
    t.expect_dtype(op, name, DType::F32)
}

fn unsupported(op: &'static str, what: String) -> KernelError {
    KernelError::Unsupported { op, what }
}

/// Rows and length of a `[.., T]` signal.
fn rows_len(op: &'static str, x: &GpuTensor) -> Result<(usize, usize), KernelError> {
    check_f32(op, "x", x)?;
    let s = x.shape();
    let Some((&t, lead)) = s.split_last() else {
        return Err(KernelError::Shape { op, tensor: "x", expected: "[.., T]".into(), found: s.to_vec() });
    };
    let rows: usize = lead.iter().product();
    if t == 0 || rows == 0 {
        return Err(KernelError::Shape {
            op,
            tensor: "x",
            expected: "[.., T], none of them 0".into(),
            found: s.to_vec(),
        });
    }
    Ok((rows, t))
}

fn filter_taps(op: &'static str, f: &GpuTensor) -> Result<usize, KernelError> {
    check_f32(op, "filter", f)?;
    let s = f.shape();
    let taps = f.numel();
    if taps == 0 || s.iter().filter(|&&d| d != 1).count() > 1 {
        return Err(KernelError::Shape {
            op,
            tensor: "filter",
            expected: "[taps] or [1, 1, taps]".into(),
            found: s.to_vec(),
        });
    }
    Ok(taps)
}

/// Runs one filter kernel over all rows, in launches whose x and y windows fit a binding.
#[allow(clippy::too_many_arguments)]
fn run_rows(
    g: &Gpu,
    op: &'static str,
    kernel: Kernel,
    x: &GpuTensor,
    y: &GpuTensor,
    rows: usize,
    in_per_row: usize,
    out_per_row: usize,
    filter: &GpuTensor,
    snake: Option<(&GpuTensor, &GpuTensor)>,
    base: Params,
) -> Result<(), KernelError> {
    let limit = BINDING_LIMIT.get().map_or(g.max_binding(), |l| l.min(g.max_binding()));
    let cap = (limit.saturating_sub(g.binding_align()) / 4) as usize;
    let per = in_per_row.max(out_per_row);
    if per > cap {
        return Err(unsupported(op, format!("one row ({per} samples) exceeds the binding limit")));
    }
    // Rows are workgroup y: at most the grid's limit per launch.
    let max_y = g.limits.max_compute_workgroups_per_dimension as usize;
    let chunk = (cap / per).min(rows).min(max_y).max(1);
    if (rows * out_per_row) as u64 > u32::MAX as u64 || (rows * in_per_row) as u64 > u32::MAX as u64 {
        return Err(unsupported(op, "more than 2³² samples; indices are 32-bit".into()));
    }
    let pipe = g.pipeline(&kernel.spec())?;
    let align = g.binding_align();
    let dummy = g.dummy();
    for r0 in (0..rows).step_by(chunk) {
        let n = chunk.min(rows - r0);
        let xb = x.window((r0 * in_per_row * 4) as u64, (n * in_per_row * 4) as u64, align);
        let yb = y.window((r0 * out_per_row * 4) as u64, (n * out_per_row * 4) as u64, align);
        let (ab, bb) = match snake {
            Some((a, b)) => (a.binding(), b.binding()),
            None => (dummy.binding(), dummy.binding()),
        };
        let params = Params { rows: n as u32, row0: r0 as u32, x_off: xb.word_shift, y_off: yb.word_shift, ..base };
        // Enough workgroups along a row to keep the device busy; the shader loops over the rest.
        let gx = (out_per_row.div_ceil(WG as usize * PER_INVOCATION)).min(max_y).max(1) as u32;
        g.dispatch(&pipe, &[xb, filter.binding(), ab, bb, yb], &params, [gx, n as u32, 1])?;
    }
    Ok(())
}

/// `UpSample1d`-style upsampling of `x` `[.., C, T]` (or `[.., T]` without SnakeBeta) → `[.., C, L]` with
/// `L = (T + 2·pad − 1)·ratio + taps − pad_left − pad_right`.
pub fn fir_upsample(g: &Gpu, x: &GpuTensor, args: &FirUp) -> Result<GpuTensor, KernelError> {
    const OP: &str = "fir_upsample";
    let (rows, t) = rows_len(OP, x)?;
    let taps = filter_taps(OP, args.filter)?;
    if args.ratio == 0 {
        return Err(unsupported(OP, "ratio must be at least 1".into()));
    }
    let full = (t + 2 * args.pad - 1) * args.ratio + taps;
    let l_out = full.checked_sub(args.pad_left + args.pad_right).filter(|&l| l > 0).ok_or_else(|| {
        unsupported(OP, format!("cropping {} + {} leaves nothing of {full} samples", args.pad_left, args.pad_right))
    })?;
    let channels = match args.snake {
        None => 1,
        Some((a, b)) => {
            check_f32(OP, "alpha", a)?;
            check_f32(OP, "beta", b)?;
            let s = x.shape();
            if s.len() < 2 {
                return Err(KernelError::Shape {
                    op: OP,
                    tensor: "x",
                    expected: "[.., C, T] with SnakeBeta".into(),
                    found: s.to_vec(),
                });
            }
            let c = s[s.len() - 2];
            a.expect(OP, "alpha", &[c])?;
            b.expect(OP, "beta", &[c])?;
            c
        }
    };
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("rank checked") = l_out;
    let y = g.alloc("fir_upsample output", &shape, DType::F32)?;
    check_reflect(OP, args.padding, t, &[args.pad])?;
    let flags = if args.snake.is_some() { FLAG_SNAKE } else { 0 } | args.padding.flag();
    let base = Params {
        t_in: t as u32,
        l_out: l_out as u32,
        ratio: args.ratio as u32,
        taps: taps as u32,
        pad: args.pad as u32,
        pad_left: args.pad_left as u32,
        flags,
        channels: channels as u32,
        gain: args.gain,
        ..Default::default()
    };
    run_rows(g, OP, Kernel::FirUp, x, &y, rows, t, l_out, args.filter, args.snake, base)?;
    Ok(y)
}

/// Strided FIR of `x` `[.., T]` → `[.., L]`, `L = (T + pad_left + pad_right − taps)/stride + 1` (at most
/// `max_len`).
pub fn fir_downsample(g: &Gpu, x: &GpuTensor, args: &FirDown) -> Result<GpuTensor, KernelError> {
    const OP: &str = "fir_downsample";
    let (rows, t) = rows_len(OP, x)?;
    let taps = filter_taps(OP, args.filter)?;
    if args.stride == 0 {
        return Err(unsupported(OP, "stride must be at least 1".into()));
    }
    let padded = t + args.pad_left + args.pad_right;
    if padded < taps {
        return Err(unsupported(OP, format!("the padded length {padded} is shorter than the {taps}-tap filter")));
    }
    check_reflect(OP, args.padding, t, &[args.pad_left, args.pad_right])?;
    let mut l_out = (padded - taps) / args.stride + 1;
    if let Some(m) = args.max_len {
        l_out = l_out.min(m.max(1));
    }
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("rank checked") = l_out;
    let y = g.alloc("fir_downsample output", &shape, DType::F32)?;
    let base = Params {
        t_in: t as u32,
        l_out: l_out as u32,
        ratio: args.stride as u32,
        taps: taps as u32,
        pad_left: args.pad_left as u32,
        flags: args.padding.flag(),
        channels: 1,
        gain: 1.0,
        ..Default::default()
    };
    run_rows(g, OP, Kernel::FirDown, x, &y, rows, t, l_out, args.filter, None, base)?;
    Ok(y)
}

/// Magnitude of a conv-STFT: `spec` `[.., 2n, F]` (real parts in rows `0..n`, imaginary in `n..2n`) → `[.., n, F]`.
pub fn stft_magnitude(g: &Gpu, spec: &GpuTensor) -> Result<GpuTensor, KernelError> {
    const OP: &str = "stft_magnitude";
    check_f32(OP, "spec", spec)?;
    let s = spec.shape();
    if s.len() < 2 || !s[s.len() - 2].is_multiple_of(2) || spec.numel() == 0 {
        return Err(KernelError::Shape {
            op: OP,
            tensor: "spec",
            expected: "[.., 2n, F] (real then imaginary rows)".into(),
            found: s.to_vec(),
        });
    }
    let (n, frames) = (s[s.len() - 2] / 2, s[s.len() - 1]);
    let rows: usize = s[..s.len() - 2].iter().product();
    let mut shape = s.to_vec();
    let r = shape.len();
    shape[r - 2] = n;
    let y = g.alloc("stft magnitude", &shape, DType::F32)?;
    let base = Params { t_in: frames as u32, pad: n as u32, ..Default::default() };
    run_rows(g, OP, Kernel::Magnitude, spec, &y, rows, 2 * n * frames, n * frames, g.dummy(), None, base)?;
    Ok(y)
}

/// `log(max(basis · mag, 1e-5))` per frame: `mag` `[.., n, F]`, `basis` `[m, n]` → `[.., m, F]`.
pub fn log_mel(g: &Gpu, mag: &GpuTensor, basis: &GpuTensor) -> Result<GpuTensor, KernelError> {
    const OP: &str = "log_mel";
    check_f32(OP, "mag", mag)?;
    check_f32(OP, "basis", basis)?;
    let [m, n] = basis.dims::<2>(OP, "basis")?;
    let s = mag.shape();
    if s.len() < 2 || s[s.len() - 2] != n || mag.numel() == 0 {
        return Err(KernelError::Shape {
            op: OP,
            tensor: "mag",
            expected: format!("[.., {n}, F] (the basis has {n} frequency bins)"),
            found: s.to_vec(),
        });
    }
    let frames = s[s.len() - 1];
    let rows: usize = s[..s.len() - 2].iter().product();
    let mut shape = s.to_vec();
    let r = shape.len();
    shape[r - 2] = m;
    let y = g.alloc("log mel", &shape, DType::F32)?;
    let base = Params { t_in: frames as u32, pad: n as u32, channels: m as u32, ..Default::default() };
    run_rows(g, OP, Kernel::LogMel, mag, &y, rows, n * frames, m * frames, basis, None, base)?;
    Ok(y)
}

/// Elements of each im2col / GEMM temporary of the convolutions as GEMMs (16 MiB), so that their peak memory stays
/// small beside the activations.
const GEMM_TEMP_ELEMS: usize = 4 << 20;

/// Options of [`conv1d_gemm`]: stride 1, dilation, zero padding (left, right).
#[derive(Clone, Copy)]
pub struct GemmConv1d<'a> {
    /// `[Cout, Cin·k]` (the PyTorch weight `[Cout, Cin, k]` flattened), any GEMM format.
    pub weight: &'a crate::kernels::gemm::Weight,
    pub k: usize,
    pub bias: Option<&'a GpuTensor>,
    pub padding: [usize; 2],
    pub dilation: usize,
}

/// `conv1d(x, w, stride 1, dilation, padding)` of `x` `[Cin, L]` → `[Cout, L + l + r − dilation·(k − 1)]`, in
/// chunks of output samples: im2col `[t, Cin·k]` → GEMM → transposed into the output with the bias.
pub fn conv1d_gemm(g: &Gpu, x: &GpuTensor, args: &GemmConv1d) -> Result<GpuTensor, KernelError> {
    use crate::kernels::gemm::{gemm, Epilogue};
    const OP: &str = "conv1d_gemm";
    check_f32(OP, "x", x)?;
    let [cin, l] = x.dims::<2>(OP, "x")?;
    let (k, d) = (args.k, args.dilation);
    if k == 0 || d == 0 || args.weight.k != cin * k {
        return Err(unsupported(
            OP,
            format!("weight [{}, {}] for {cin} channels × {k} taps (dilation {d})", args.weight.n, args.weight.k),
        ));
    }
    let cout = args.weight.n;
    let reach = d * (k - 1) + 1;
    let padded = l + args.padding[0] + args.padding[1];
    if padded < reach {
        return Err(unsupported(OP, format!("the padded length {padded} is shorter than the kernel's reach {reach}")));
    }
    let l_out = padded - reach + 1;
    if let Some(b) = args.bias {
        check_f32(OP, "bias", b)?;
        b.expect(OP, "bias", &[cout])?;
    }
    let limit = BINDING_LIMIT.get().map_or(g.max_binding(), |v| v.min(g.max_binding()));
    let cap = (limit.saturating_sub(g.binding_align()) / 4) as usize;
    let max_y = g.limits.max_compute_workgroups_per_dimension as usize;
    let width = cin * k;
    if width > cap || cout > cap || cin * l > cap || cout * l_out > cap || cout > max_y {
        return Err(unsupported(OP, format!("{cin}×{l} → {cout}×{l_out} exceeds the binding or grid limits")));
    }
    // Output samples per chunk: columns and GEMM output within a binding and about 16 MiB each.
    let budget = GEMM_TEMP_ELEMS.min(cap);
    let chunk = (budget / width).min(budget / cout).min(max_y).clamp(1, 4096);
    let y = g.alloc("conv1d_gemm output", &[cout, l_out], DType::F32)?;
    let im2col = g.pipeline(&Kernel::Im2col.spec())?;
    let to_ch = g.pipeline(&Kernel::ToChannels.spec())?;
    let dummy = g.dummy();
    for t0 in (0..l_out).step_by(chunk) {
        let n = chunk.min(l_out - t0);
        let cols = g.alloc("conv1d_gemm columns", &[n, width], DType::F32)?;
        let params = Params {
            rows: cin as u32,
            t_in: l as u32,
            l_out: n as u32,
            taps: k as u32,
            pad: d as u32,
            pad_left: args.padding[0] as u32,
            row0: t0 as u32,
            ..Default::default()
        };
        let gx = width.div_ceil(WG as usize * 4).min(max_y).max(1) as u32;
        let b = dummy.binding();
        g.dispatch(
            &im2col,
            &[x.binding(), b.clone(), b.clone(), b.clone(), cols.binding()],
            &params,
            [gx, n as u32, 1],
        )?;
        let part = gemm(g, &cols, args.weight, Epilogue::default())?;
        let params = Params {
            rows: cout as u32,
            t_in: n as u32,
            l_out: l_out as u32,
            row0: t0 as u32,
            flags: if args.bias.is_some() { FLAG_BIAS } else { 0 },
            ..Default::default()
        };
        let bias = args.bias.map_or_else(|| dummy.binding(), |t| t.binding());
        let gx = n.div_ceil(WG as usize * 4).min(max_y).max(1) as u32;
        g.dispatch(&to_ch, &[part.binding(), bias, b.clone(), b, y.binding()], &params, [gx, cout as u32, 1])?;
    }
    Ok(y)
}

/// Options of [`conv2d_gemm`]: a k×k kernel, stride 1, zero padding (top, bottom, left, right).
#[derive(Clone, Copy)]
pub struct GemmConv2d<'a> {
    /// `[Cout, Cin·k·k]` (the PyTorch weight `[Cout, Cin, k, k]` flattened), any GEMM format.
    pub weight: &'a crate::kernels::gemm::Weight,
    pub k: usize,
    pub bias: Option<&'a GpuTensor>,
    pub padding: [usize; 4],
}

/// `conv2d(x, w, stride 1, padding)` of `x` `[Cin, H, W]` → `[Cout, Ho, Wo]` (`Ho = H + top + bottom − k + 1`), in
/// chunks of output positions: im2col `[positions, Cin·k²]` → GEMM → transposed into the output with the bias.
pub fn conv2d_gemm(g: &Gpu, x: &GpuTensor, args: &GemmConv2d) -> Result<GpuTensor, KernelError> {
    use crate::kernels::gemm::{gemm, Epilogue};
    const OP: &str = "conv2d_gemm";
    check_f32(OP, "x", x)?;
    let [cin, h, w] = x.dims::<3>(OP, "x")?;
    let k = args.k;
    if k == 0 || args.weight.k != cin * k * k {
        return Err(unsupported(
            OP,
            format!("weight [{}, {}] for {cin} channels × {k}×{k} taps", args.weight.n, args.weight.k),
        ));
    }
    let [top, bottom, left, right] = args.padding;
    let (hp, wp) = (h + top + bottom, w + left + right);
    if hp < k || wp < k {
        return Err(unsupported(OP, format!("the padded map {hp}×{wp} is smaller than the {k}×{k} kernel")));
    }
    let (ho, wo) = (hp - k + 1, wp - k + 1);
    let cout = args.weight.n;
    if let Some(b) = args.bias {
        check_f32(OP, "bias", b)?;
        b.expect(OP, "bias", &[cout])?;
    }
    let positions = ho * wo;
    let limit = BINDING_LIMIT.get().map_or(g.max_binding(), |v| v.min(g.max_binding()));
    let cap = (limit.saturating_sub(g.binding_align()) / 4) as usize;
    let max_y = g.limits.max_compute_workgroups_per_dimension as usize;
    let width = cin * k * k;
    if width > cap || cin * h * w > cap || cout * positions > cap || cout > max_y {
        return Err(unsupported(OP, format!("{cin}×{h}×{w} → {cout}×{ho}×{wo} exceeds the binding or grid limits")));
    }
    // Positions per chunk: columns and GEMM output within a binding and about 16 MiB each.
    let budget = GEMM_TEMP_ELEMS.min(cap);
    let chunk = (budget / width).min(budget / cout).min(max_y).clamp(1, 4096);
    let y = g.alloc("conv2d_gemm output", &[cout, ho, wo], DType::F32)?;
    let im2col = g.pipeline(&Kernel::Im2col2d.spec())?;
    let to_ch = g.pipeline(&Kernel::ToChannels.spec())?;
    let dummy = g.dummy();
    for p0 in (0..positions).step_by(chunk) {
        let n = chunk.min(positions - p0);
        let cols = g.alloc("conv2d_gemm columns", &[n, width], DType::F32)?;
        let params = Params {
            rows: cin as u32,
            t_in: h as u32,
            ratio: w as u32,
            l_out: n as u32,
            taps: k as u32,
            pad: top as u32,
            pad_left: left as u32,
            channels: wo as u32,
            row0: p0 as u32,
            ..Default::default()
        };
        let gx = width.div_ceil(WG as usize * 4).min(max_y).max(1) as u32;
        let b = dummy.binding();
        g.dispatch(
            &im2col,
            &[x.binding(), b.clone(), b.clone(), b.clone(), cols.binding()],
            &params,
            [gx, n as u32, 1],
        )?;
        let part = gemm(g, &cols, args.weight, Epilogue::default())?;
        let params = Params {
            rows: cout as u32,
            t_in: n as u32,
            l_out: positions as u32,
            row0: p0 as u32,
            flags: if args.bias.is_some() { FLAG_BIAS } else { 0 },
            ..Default::default()
        };
        let bias = args.bias.map_or_else(|| dummy.binding(), |t| t.binding());
        let gx = n.div_ceil(WG as usize * 4).min(max_y).max(1) as u32;
        g.dispatch(&to_ch, &[part.binding(), bias, b.clone(), b, y.binding()], &params, [gx, cout as u32, 1])?;
    }
    Ok(y)
}
