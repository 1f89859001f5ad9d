//! Launcher for `shaders/conv_transpose.wgsl`: PyTorch's `ConvTranspose1d` (no output padding, dilation 1), used
//! by the BigVGAN upsamplers (k11 s5, k4 s2, …) and, depthwise, by the anti-aliased ×2 upsampler (NAVA.md §7.3).

use crate::gpu::{DType, Family, Gpu, GpuTensor};

use super::{
    cap_elems, check_f32, check_nonzero, check_u32, grid, largest, shape_err, size, split_batch, win, Kernel, Variant,
    ACCUMULATE, BIAS, PX,
};
use crate::kernels::{Check, KernelError};

pub static FAMILY: Family =
    Family { name: "conv_transpose", source: include_str!("../../../shaders/conv_transpose.wgsl") };

/// Output channels per invocation of the dense kernel (`CO_B` in the shader).
const CO_B: usize = 16;

/// Options of [`conv_transpose1d`].
#[derive(Clone, Copy, Debug)]
pub struct ConvTranspose1dArgs<'a> {
    pub bias: Option<&'a GpuTensor>,
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
}

impl Default for ConvTranspose1dArgs<'_> {
    fn default() -> Self {
        Self { bias: None, stride: 1, padding: 0, groups: 1 }
    }
}

pub(super) const PARAMS_BYTES: usize = std::mem::size_of::<ConvTransposeParams>();

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ConvTransposeParams {
    cin_g: u32,
    cout_g: u32,
    t_in: u32,
    l_out: u32,
    k: u32,
    s: u32,
    pad: u32,
    tiles: u32,
    co_begin: u32,
    co_end: u32,
    ci_begin: u32,
    ci_end: u32,
    flags: u32,
    x_off: u32,
    w_off: u32,
    y_off: u32,
    b_off: u32,
    x_safe: u32,
    _pad0: u32,
    _pad1: u32,
}

/// Transposed 1-D convolution: x `[Cin, T]` or `[B, Cin, T]`, weight `[Cin, Cout/groups, k]` (PyTorch layout)
/// → `[(B,) Cout, (T − 1)·stride − 2·padding + k]`.
pub fn conv_transpose1d(
    g: &Gpu,
    x: &GpuTensor,
    weight: &GpuTensor,
    args: &ConvTranspose1dArgs,
) -> Result<GpuTensor, KernelError> {
    const OP: &str = "conv_transpose1d";
    let (batch, [cin, t_in]) = split_batch::<2>(OP, "x", x, "[Cin, T] or [B, Cin, T]")?;
    check_f32(OP, "weight", weight)?;
    let [cin_w, cout_g, k] = weight.dims::<3>(OP, "weight")?;
    let groups = args.groups;
    check_nonzero(OP, "groups, stride and kernel size", &[groups, args.stride, k])?;
    if cin_w != cin {
        return Err(shape_err(OP, "weight", format!("[{cin}, Cout/groups, k] (x has {cin} channels)"), weight));
    }
    if cin % groups != 0 {
        return Err(KernelError::Unsupported {
            op: OP,
            what: format!("groups = {groups} must divide the input channels ({cin})"),
        });
    }
    let cout = cout_g * groups;
    if let Some(b) = args.bias {
        check_f32(OP, "bias", b)?;
        b.expect(OP, "bias", &[cout])?;
    }
    let (s, pad) = (args.stride, args.padding);
    let l_out = ((t_in - 1) * s + k).checked_sub(2 * pad).filter(|&l| l > 0);
    let Some(l_out) = l_out else {
        return Err(KernelError::Unsupported {
            op: OP,
            what: format!("padding {pad} leaves no output for length {t_in}, stride {s}, kernel {k}"),
        });
    };
    check_u32(OP, "x", cin * t_in)?;
    check_u32(OP, "y", cout * l_out)?;
    check_u32(OP, "weight", weight.numel())?;
    let cin_g = cin / groups;

    // Input channels [a, b) read by outputs [co0, co1) for group-relative inputs [ci0, ci1).
    let in_channels =
        |co0: usize, co1: usize, ci0: usize, ci1: usize| (co0 / cout_g * cin_g + ci0, (co1 - 1) / cout_g * cin_g + ci1);
    let cap = cap_elems(g);
    let fits = |co_n: usize, ci_n: usize| {
        let spanned = ((co_n + cout_g - 2) / cout_g + 1).min(groups);
        let chans = (spanned - 1) * cin_g + ci_n;
        chans * t_in <= cap && chans * cout_g * k <= cap && co_n * l_out <= cap
    };
    let ci_n = largest(cin_g, |c| fits(1, c)).ok_or_else(|| KernelError::Unsupported {
        op: OP,
        what: format!(
            "one channel ({} in, {} out) exceeds the binding limit of {}",
            size(t_in),
            size(l_out),
            size(cap)
        ),
    })?;
    let mut co_n = largest(cout, |c| fits(c, ci_n)).expect("1 fits");
    if co_n >= CO_B && co_n < cout {
        co_n -= co_n % CO_B;
    }

    let y_shape = {
        let mut v = x.shape().to_vec();
        let r = v.len();
        v[r - 2..].copy_from_slice(&[cout, l_out]);
        v
    };
    let y = g.alloc("conv_transpose1d output", &y_shape, DType::F32)?;
    let grouped = groups > 1;
    let variant = Variant::pick(g, if grouped { Kernel::ConvTransposeGrouped } else { Kernel::ConvTranspose });
    let pipe = g.pipeline(&variant.spec())?;
    // Outputs per class: ceil(l_out / s) at most.
    let tiles = l_out.div_ceil(s).div_ceil(variant.wg as usize * PX);
    let dummy = g.dummy();
    for b in 0..batch {
        for co0 in (0..cout).step_by(co_n) {
            let co1 = (co0 + co_n).min(cout);
            let blocks = if grouped { co1 - co0 } else { (co1 - co0).div_ceil(CO_B) };
            let wg_grid = grid(g, OP, tiles * s * blocks)?;
            // Group-relative output columns of the weight touched by this chunk.
            let (l0, l1) =
                if co0 / cout_g == (co1 - 1) / cout_g { (co0 % cout_g, (co1 - 1) % cout_g + 1) } else { (0, cout_g) };
            for ci0 in (0..cin_g).step_by(ci_n) {
                let ci1 = (ci0 + ci_n).min(cin_g);
                let (ca, cb) = in_channels(co0, co1, ci0, ci1);
                let xw = win(g, x, b * cin * t_in, ca * t_in, cb * t_in);
                let ww = win(g, weight, 0, (ca * cout_g + l0) * k, ((cb - 1) * cout_g + l1) * k);
                let yw = win(g, &y, b * cout * l_out, co0 * l_out, co1 * l_out);
                let mut flags = 0;
                if ci0 == 0 && args.bias.is_some() {
                    flags |= BIAS;
                }
                if ci0 > 0 {
                    flags |= ACCUMULATE;
                }
                let params = ConvTransposeParams {
                    cin_g: cin_g as u32,
                    cout_g: cout_g as u32,
                    t_in: t_in as u32,
                    l_out: l_out as u32,
                    k: k as u32,
                    s: s as u32,
                    pad: pad as u32,
                    tiles: tiles as u32,
                    co_begin: co0 as u32,
                    co_end: co1 as u32,
                    ci_begin: ci0 as u32,
                    ci_end: ci1 as u32,
                    flags,
                    x_off: xw.off,
                    w_off: ww.off,
                    y_off: yw.off,
                    b_off: 0,
                    x_safe: xw.safe,
                    ..Default::default()
                };
                let bb = args.bias.map_or_else(|| dummy.binding(), |t| t.binding());
                g.dispatch(&pipe, &[xw.binding, ww.binding, bb, yw.binding], &params, wg_grid)?;
            }
        }
    }
    Ok(y)
}
