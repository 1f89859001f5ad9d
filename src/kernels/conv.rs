//! Launchers for the convolution family (`shaders/conv.wgsl`, `conv_transpose.wgsl`, `conv_copy.wgsl`): the
//! convolutions and resampling of the decoders (NAVA.md §7, §10.4), all f32 with weights in PyTorch layouts.
//!
//! - [`causal_conv3d`]: Wan2.2's `CausalConv3d` (time padded (2·pt, 0), space symmetric) with the frame cache of
//!   chunked decoding; [`causal_conv3d_next_cache`] builds the next cache (`CACHE_T` = 2 in Wan).
//! - [`conv2d`] (per-side padding, so LTX's causal `CausalConv2d` is a plain call) and [`conv2d_per_frame`]
//!   (a 2-D convolution of every frame of `[C, T, H, W]`, as Wan's `Resample` does after `(b t) c h w`).
//! - [`conv1d`] with stride, dilation and groups; [`conv_transpose1d`] (BigVGAN upsamplers, depthwise
//!   anti-aliasing filters).
//! - [`upsample_nearest2x`], [`unpatchify`] / [`patchify`] (Wan's 2×2 pixel shuffle), [`permute`].
//!
//! All of them split work so that no binding exceeds the adapter's limit: convolutions along output channels,
//! input channels (accumulating in y) and, when one channel is too large, output frames; data movement along its
//! outermost dims. [`with_binding_limit`] lowers the limit on the calling thread so tests can exercise the splits.

mod copy;
mod implicit;
mod transpose;

use std::cell::Cell;

use crate::gpu::{spread, Access, Binding, DType, Family, Gpu, GpuTensor, Spec};

use super::{Check, KernelError};
use implicit::{run_conv, Geom};

pub use copy::{avg_down3d, causal_conv3d_next_cache, dup_up3d, patchify, permute, unpatchify, upsample_nearest2x};
pub use transpose::{conv_transpose1d, ConvTranspose1dArgs};

pub static FAMILY: Family = Family { name: "conv", source: include_str!("../../shaders/conv.wgsl") };

/// Output positions per invocation (`PX` in the shaders).
const PX: usize = 4;
/// Params flags shared by the convolution shaders.
const BIAS: u32 = 1;
const ACCUMULATE: u32 = 2;

/// Which compute entry point, in which file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Dense convolution, `CO_B` output channels × `PX` positions (a workgroup's width apart) per invocation.
    Conv,
    /// Dense convolution with column stride 1 and no column dilation: `CO_B` channels × 4 consecutive columns
    /// per invocation, each tap after the first loading one new input.
    ConvRows,
    /// Grouped / depthwise convolution, one output channel per workgroup.
    ConvGrouped,
    /// Dense ConvTranspose1d.
    ConvTranspose,
    /// Grouped / depthwise ConvTranspose1d.
    ConvTransposeGrouped,
    /// Strided copy (upsampling, pixel shuffle, permute, frame cache).
    Copy,
}

impl Kernel {
    /// Bytes of the uniform `Params` the launcher writes for this kernel (the tests compare it with the WGSL).
    pub fn params_bytes(self) -> usize {
        match self {
            Self::Conv | Self::ConvRows | Self::ConvGrouped => implicit::PARAMS_BYTES,
            Self::ConvTranspose | Self::ConvTransposeGrouped => transpose::PARAMS_BYTES,
            Self::Copy => copy::PARAMS_BYTES,
        }
    }

    pub const ALL: [Kernel; 6] =
        [Self::Conv, Self::ConvRows, Self::ConvGrouped, Self::ConvTranspose, Self::ConvTransposeGrouped, Self::Copy];
}

/// Pipeline-cache key of one variant; label `conv.conv_rows.t64`, `conv_copy.copy.t64`, ….
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    pub kernel: Kernel,
    pub wg: u32,
}

impl Variant {
    pub fn spec(self) -> Spec {
        use Access::*;
        let spec = match self.kernel {
            Kernel::Conv => Spec::new(&FAMILY, "conv", &[Read, Read, Read, Read, ReadWrite]),
            Kernel::ConvRows => Spec::new(&FAMILY, "conv_rows", &[Read, Read, Read, Read, ReadWrite]),
            Kernel::ConvGrouped => Spec::new(&FAMILY, "conv_grouped", &[Read, Read, Read, Read, ReadWrite]),
            Kernel::ConvTranspose => Spec::new(&transpose::FAMILY, "conv_transpose", &[Read, Read, Read, ReadWrite]),
            Kernel::ConvTransposeGrouped => {
                Spec::new(&transpose::FAMILY, "conv_transpose_grouped", &[Read, Read, Read, ReadWrite])
            }
            Kernel::Copy => Spec::new(&copy::FAMILY, "copy", &[Read, ReadWrite]),
        };
        spec.tag(&format!("t{}", self.wg)).constant("WG", self.wg as f64)
    }

    fn pick(g: &Gpu, kernel: Kernel) -> Self {
        Self { kernel, wg: 64.min(g.limits.max_compute_invocations_per_workgroup) }
    }
}

/// The variants this device runs (for `nava info`).
pub fn selected(g: &Gpu) -> Vec<String> {
    Kernel::ALL.iter().map(|&kernel| Variant::pick(g, kernel).spec().label).collect()
}

/// Every variant, for the validation test.
pub fn variants() -> Vec<Spec> {
    Kernel::ALL.iter().map(|&kernel| Variant { kernel, wg: 64 }.spec()).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Binding limits and windows, shared by the submodules.

thread_local! {
    static BINDING_LIMIT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Runs `f` with this family's per-binding limit lowered to `bytes` on the calling thread (never raised above the
/// adapter's), so that tests can check the split paths on small tensors.
pub fn with_binding_limit<R>(bytes: u64, f: impl FnOnce() -> R) -> R {
    let old = BINDING_LIMIT.replace(Some(bytes));
    let r = f();
    BINDING_LIMIT.set(old);
    r
}

/// Bytes one binding may hold.
fn limit_bytes(g: &Gpu) -> u64 {
    BINDING_LIMIT.get().map_or(g.max_binding(), |l| l.min(g.max_binding()))
}

/// Elements one window may span: a window starts up to `align` bytes before the data it covers.
fn cap_elems(g: &Gpu) -> usize {
    (limit_bytes(g).saturating_sub(g.binding_align()) / 4) as usize
}

/// An f32 element count as a readable size.
fn size(elems: usize) -> String {
    let b = elems as f64 * 4.0;
    if b >= (1 << 20) as f64 {
        format!("{:.1} MiB", b / (1 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b} bytes")
    }
}

/// A window over elements `[start, end)` of the item at element `base` of `t`, the offset the shader adds to an
/// item-relative index (`word_shift − start`, wrapping) and an index inside the window for masked loads.
struct Win {
    binding: Binding,
    off: u32,
    safe: u32,
}

fn win(g: &Gpu, t: &GpuTensor, base: usize, start: usize, end: usize) -> Win {
    let len = end.saturating_sub(start).max(1);
    let binding = t.window(((base + start) * 4) as u64, (len * 4) as u64, g.binding_align());
    let safe = binding.word_shift;
    Win { off: safe.wrapping_sub(start as u32), safe, binding }
}

/// Largest `n` in `[1, max]` with `ok(n)`, for a predicate that holds below some bound; `None` if `ok(1)` fails.
fn largest(max: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
    if max == 0 || !ok(1) {
        return None;
    }
    let (mut lo, mut hi) = (1, max);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if ok(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// Workgroup grid for `n` workgroups (a linear id rebuilt from x and y in the shaders).
fn grid(g: &Gpu, op: &'static str, n: usize) -> Result<[u32; 3], KernelError> {
    let max = g.limits.max_compute_workgroups_per_dimension;
    if n as u64 > max as u64 * max as u64 {
        return Err(KernelError::Unsupported { op, what: format!("{n} workgroups in one launch") });
    }
    let [x, y] = spread(n as u32, max);
    Ok([x, y, 1])
}

/// Shaders index with u32 elements.
fn check_u32(op: &'static str, tensor: &'static str, elems: usize) -> Result<(), KernelError> {
    if elems as u64 > u32::MAX as u64 {
        return Err(KernelError::Unsupported {
            op,
            what: format!("`{tensor}` has {elems} elements; indices are 32-bit"),
        });
    }
    Ok(())
}

fn check_f32(op: &'static str, name: &'static str, t: &GpuTensor) -> Result<(), KernelError> {
    t.expect_dtype(op, name, DType::F32)
}

fn shape_err(op: &'static str, tensor: &'static str, expected: String, t: &GpuTensor) -> KernelError {
    KernelError::Shape { op, tensor, expected, found: t.shape().to_vec() }
}

/// `(n − eff)/s + 1` for a padded length `n`, or an error when the kernel does not fit.
fn out_len(
    op: &'static str,
    what: &str,
    padded: usize,
    k: usize,
    dil: usize,
    stride: usize,
) -> Result<usize, KernelError> {
    let eff = dil * (k - 1) + 1;
    if padded < eff {
        return Err(KernelError::Unsupported {
            op,
            what: format!("the padded {what} ({padded}) is shorter than the kernel's reach ({eff}): no output"),
        });
    }
    Ok((padded - eff) / stride + 1)
}

fn check_nonzero(op: &'static str, what: &str, v: &[usize]) -> Result<(), KernelError> {
    if v.contains(&0) {
        return Err(KernelError::Unsupported { op, what: format!("{what} {v:?} must be at least 1") });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Public API.

/// Options of [`causal_conv3d`].
#[derive(Clone, Copy, Debug)]
pub struct Conv3dArgs<'a> {
    pub bias: Option<&'a GpuTensor>,
    /// `CausalConv3d(padding=(pt, ph, pw))`: time is padded (2·pt, 0), rows (ph, ph), columns (pw, pw).
    pub padding: [usize; 3],
    /// Spatial stride (rows, columns); time stride is 1.
    pub stride: [usize; 2],
    /// The previous chunk's last frames, `[.., Cin, nc, H, W]` with nc ≤ 2·pt: they replace the last nc of the
    /// 2·pt zero frames (Wan: `padding[4] -= cache.shape[2]`).
    pub cache: Option<&'a GpuTensor>,
}

impl Default for Conv3dArgs<'_> {
    fn default() -> Self {
        Self { bias: None, padding: [0; 3], stride: [1, 1], cache: None }
    }
}

/// Options of [`conv2d`] and [`conv2d_per_frame`].
#[derive(Clone, Copy, Debug)]
pub struct Conv2dArgs<'a> {
    pub bias: Option<&'a GpuTensor>,
    /// Zero padding per side: (top, bottom, left, right). LTX's `CausalConv2d` on (time, freq) is (2, 0, 1, 1);
    /// Wan's encoder downsampler (`ZeroPad2d((0, 1, 0, 1))` then stride 2) is (0, 1, 0, 1).
    pub padding: [usize; 4],
    /// (rows, columns).
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
}

impl Default for Conv2dArgs<'_> {
    fn default() -> Self {
        Self { bias: None, padding: [0; 4], stride: [1, 1], dilation: [1, 1] }
    }
}

/// Options of [`conv1d`].
#[derive(Clone, Copy, Debug)]
pub struct Conv1dArgs<'a> {
    pub bias: Option<&'a GpuTensor>,
    pub stride: usize,
    /// Zero padding (left, right).
    pub padding: [usize; 2],
    pub dilation: usize,
    pub groups: usize,
}

impl Default for Conv1dArgs<'_> {
    fn default() -> Self {
        Self { bias: None, stride: 1, padding: [0, 0], dilation: 1, groups: 1 }
    }
}

/// Causal 3-D convolution: x `[Cin, T, H, W]` or `[B, Cin, T, H, W]`, weight `[Cout, Cin, kt, kh, kw]`
/// → `[(B,) Cout, T + 2·pt − kt + 1, Ho, Wo]`, Ho = (H + 2·ph − kh)/sh + 1.
pub fn causal_conv3d(g: &Gpu, x: &GpuTensor, weight: &GpuTensor, args: &Conv3dArgs) -> Result<GpuTensor, KernelError> {
    const OP: &str = "causal_conv3d";
    let (batch, [cin, t_in, h, w]) = split_batch::<4>(OP, "x", x, "[Cin, T, H, W] or [B, Cin, T, H, W]")?;
    let [cout, cin_w, kt, kh, kw] = weight.dims::<5>(OP, "weight")?;
    if cin_w != cin {
        return Err(shape_err(OP, "weight", format!("[Cout, {cin}, kt, kh, kw] (x has {cin} channels)"), weight));
    }
    check_nonzero(OP, "kernel size", &[kt, kh, kw])?;
    check_nonzero(OP, "stride", &args.stride)?;
    let [pt, ph, pw] = args.padding;
    let nc = match args.cache {
        None => 0,
        Some(c) => {
            check_f32(OP, "cache", c)?;
            let mut want = x.shape().to_vec();
            let nc = c.shape().get(want.len() - 3).copied().unwrap_or(0);
            want[x.shape().len() - 3] = nc;
            if c.shape() != want.as_slice() || nc > 2 * pt {
                return Err(shape_err(
                    OP,
                    "cache",
                    format!(
                        "{:?} with T replaced by at most {} cached frames (the causal time padding)",
                        x.shape(),
                        2 * pt
                    ),
                    c,
                ));
            }
            nc
        }
    };
    let t_out = out_len(OP, "time", t_in + 2 * pt, kt, 1, 1)?;
    let ho = out_len(OP, "height", h + 2 * ph, kh, 1, args.stride[0])?;
    let wo = out_len(OP, "width", w + 2 * pw, kw, 1, args.stride[1])?;
    let geom = Geom {
        cin,
        cout,
        groups: 1,
        t_in,
        h,
        w,
        nc,
        zp: 2 * pt - nc,
        kt,
        kh,
        kw,
        pad_top: ph,
        pad_left: pw,
        sh: args.stride[0],
        sw: args.stride[1],
        dil_h: 1,
        dil_w: 1,
        t_out,
        ho,
        wo,
    };
    let mut out = x.shape().to_vec();
    let r = out.len();
    out[r - 4..].copy_from_slice(&[cout, t_out, ho, wo]);
    run_conv(g, OP, x, args.cache, weight, args.bias, &geom, batch, &out)
}

/// 2-D convolution: x `[Cin, H, W]` or `[B, Cin, H, W]`, weight `[Cout, Cin, kh, kw]`.
pub fn conv2d(g: &Gpu, x: &GpuTensor, weight: &GpuTensor, args: &Conv2dArgs) -> Result<GpuTensor, KernelError> {
    const OP: &str = "conv2d";
    let (batch, [cin, h, w]) = split_batch::<3>(OP, "x", x, "[Cin, H, W] or [B, Cin, H, W]")?;
    conv2d_frames(g, OP, x, weight, args, batch, cin, 1, h, w, false)
}

/// The same 2-D convolution applied to every frame: x `[Cin, T, H, W]` or `[B, Cin, T, H, W]`, weight
/// `[Cout, Cin, kh, kw]` → `[(B,) Cout, T, Ho, Wo]`.
pub fn conv2d_per_frame(
    g: &Gpu,
    x: &GpuTensor,
    weight: &GpuTensor,
    args: &Conv2dArgs,
) -> Result<GpuTensor, KernelError> {
    const OP: &str = "conv2d_per_frame";
    let (batch, [cin, t, h, w]) = split_batch::<4>(OP, "x", x, "[Cin, T, H, W] or [B, Cin, T, H, W]")?;
    conv2d_frames(g, OP, x, weight, args, batch, cin, t, h, w, true)
}

#[allow(clippy::too_many_arguments)] // the two public forms differ only in how x's dims are named
fn conv2d_frames(
    g: &Gpu,
    op: &'static str,
    x: &GpuTensor,
    weight: &GpuTensor,
    args: &Conv2dArgs,
    batch: usize,
    cin: usize,
    t: usize,
    h: usize,
    w: usize,
    framed: bool,
) -> Result<GpuTensor, KernelError> {
    let [cout, cin_w, kh, kw] = weight.dims::<4>(op, "weight")?;
    if cin_w != cin {
        return Err(shape_err(op, "weight", format!("[Cout, {cin}, kh, kw] (x has {cin} channels)"), weight));
    }
    check_nonzero(op, "kernel size", &[kh, kw])?;
    check_nonzero(op, "stride", &args.stride)?;
    check_nonzero(op, "dilation", &args.dilation)?;
    let [top, bottom, left, right] = args.padding;
    let [sh, sw] = args.stride;
    let [dil_h, dil_w] = args.dilation;
    let ho = out_len(op, "height", h + top + bottom, kh, dil_h, sh)?;
    let wo = out_len(op, "width", w + left + right, kw, dil_w, sw)?;
    let geom = Geom {
        cin,
        cout,
        groups: 1,
        t_in: t,
        h,
        w,
        nc: 0,
        zp: 0,
        kt: 1,
        kh,
        kw,
        pad_top: top,
        pad_left: left,
        sh,
        sw,
        dil_h,
        dil_w,
        t_out: t,
        ho,
        wo,
    };
    let mut out = x.shape().to_vec();
    let r = out.len();
    if framed {
        out[r - 4..].copy_from_slice(&[cout, t, ho, wo]);
    } else {
        out[r - 3..].copy_from_slice(&[cout, ho, wo]);
    }
    run_conv(g, op, x, None, weight, args.bias, &geom, batch, &out)
}

/// 1-D convolution: x `[Cin, T]` or `[B, Cin, T]`, weight `[Cout, Cin/groups, k]`
/// → `[(B,) Cout, (T + l + r − dilation·(k − 1) − 1)/stride + 1]`.
pub fn conv1d(g: &Gpu, x: &GpuTensor, weight: &GpuTensor, args: &Conv1dArgs) -> Result<GpuTensor, KernelError> {
    const OP: &str = "conv1d";
    let (batch, [cin, t]) = split_batch::<2>(OP, "x", x, "[Cin, T] or [B, Cin, T]")?;
    let [cout, cin_g, k] = weight.dims::<3>(OP, "weight")?;
    let groups = args.groups;
    check_nonzero(OP, "groups", &[groups])?;
    if cin % groups != 0 || cout % groups != 0 {
        return Err(KernelError::Unsupported {
            op: OP,
            what: format!("groups = {groups} must divide the input ({cin}) and output ({cout}) channels"),
        });
    }
    if cin_g != cin / groups {
        return Err(shape_err(
            OP,
            "weight",
            format!("[Cout, {}, k] (x has {cin} channels in {groups} groups)", cin / groups),
            weight,
        ));
    }
    check_nonzero(OP, "kernel size", &[k])?;
    check_nonzero(OP, "stride and dilation", &[args.stride, args.dilation])?;
    let [left, right] = args.padding;
    let lo = out_len(OP, "length", t + left + right, k, args.dilation, args.stride)?;
    let geom = Geom {
        cin,
        cout,
        groups,
        t_in: 1,
        h: 1,
        w: t,
        nc: 0,
        zp: 0,
        kt: 1,
        kh: 1,
        kw: k,
        pad_top: 0,
        pad_left: left,
        sh: 1,
        sw: args.stride,
        dil_h: 1,
        dil_w: args.dilation,
        t_out: 1,
        ho: 1,
        wo: lo,
    };
    let mut out = x.shape().to_vec();
    let r = out.len();
    out[r - 2..].copy_from_slice(&[cout, lo]);
    run_conv(g, OP, x, None, weight, args.bias, &geom, batch, &out)
}

/// Splits an optional leading batch dim off `x`: `N` dims, or `N + 1` with a batch.
fn split_batch<const N: usize>(
    op: &'static str,
    name: &'static str,
    x: &GpuTensor,
    expected: &str,
) -> Result<(usize, [usize; N]), KernelError> {
    check_f32(op, name, x)?;
    let s = x.shape();
    let (batch, dims) = match s.len() {
        n if n == N => (1, s),
        n if n == N + 1 => (s[0], &s[1..]),
        _ => return Err(shape_err(op, name, expected.to_string(), x)),
    };
    let dims: [usize; N] = dims.try_into().expect("length checked above");
    if dims.contains(&0) || batch == 0 {
        return Err(shape_err(op, name, format!("{expected}, none of them 0"), x));
    }
    Ok((batch, dims))
}
