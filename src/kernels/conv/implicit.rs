//! The launch plan of `shaders/conv.wgsl` (implicit-GEMM convolution): one [`Geom`] per batch item, split
//! along output frames, output channels and input channels (accumulated in y) so that every window fits one
//! binding, then dispatched to `conv_rows` (column stride 1), `conv` or `conv_grouped`.

use crate::gpu::{DType, Gpu, GpuTensor};
use crate::kernels::{Check, KernelError};

use super::{cap_elems, check_f32, check_u32, grid, largest, size, win, Kernel, Variant, Win, ACCUMULATE, BIAS, PX};

/// Output channels per invocation of the dense kernels (`CO_B` in the shader).
const CO_B: usize = 16;

/// One convolution, per batch item (see the header of `shaders/conv.wgsl` for the meaning of each field).
#[derive(Clone, Copy, Debug)]
pub(super) struct Geom {
    pub(super) cin: usize,
    pub(super) cout: usize,
    pub(super) groups: usize,
    pub(super) t_in: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) nc: usize,
    pub(super) zp: usize,
    pub(super) kt: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) pad_top: usize,
    pub(super) pad_left: usize,
    pub(super) sh: usize,
    pub(super) sw: usize,
    pub(super) dil_h: usize,
    pub(super) dil_w: usize,
    pub(super) t_out: usize,
    pub(super) ho: usize,
    pub(super) wo: usize,
}

impl Geom {
    fn cin_g(&self) -> usize {
        self.cin / self.groups
    }

    fn cout_g(&self) -> usize {
        self.cout / self.groups
    }

    fn taps(&self) -> usize {
        self.kt * self.kh * self.kw
    }

    /// Input channels `[a, b)` read by output channels `[co0, co1)` for group-relative inputs `[ci0, ci1)`.
    fn in_channels(&self, co0: usize, co1: usize, ci0: usize, ci1: usize) -> (usize, usize) {
        let (cin_g, cout_g) = (self.cin_g(), self.cout_g());
        (co0 / cout_g * cin_g + ci0, (co1 - 1) / cout_g * cin_g + ci1)
    }

    /// Frames `[a, b)` of a source that starts at padded frame `first` and has `n` frames, read by output
    /// frames `[t0, t1)`.
    fn frames(&self, first: usize, n: usize, t0: usize, t1: usize) -> (usize, usize) {
        (t0.saturating_sub(first).min(n), (t1 + self.kt - 1).saturating_sub(first).min(n))
    }

    /// Element ranges (item-relative) of x, cache, weight and y used by one launch.
    fn spans(&self, co: (usize, usize), ci: (usize, usize), t: (usize, usize)) -> [(usize, usize); 4] {
        let hw = self.h * self.w;
        let (ca, cb) = self.in_channels(co.0, co.1, ci.0, ci.1);
        let src = |first: usize, n: usize| {
            let (fa, fb) = self.frames(first, n, t.0, t.1);
            if fa >= fb {
                (0, 0)
            } else {
                (ca * n * hw + fa * hw, (cb - 1) * n * hw + fb * hw)
            }
        };
        let taps = self.taps();
        let hwo = self.ho * self.wo;
        [
            src(self.zp + self.nc, self.t_in),
            src(self.zp, self.nc),
            (co.0 * self.cin_g() * taps + ci.0 * taps, (co.1 - 1) * self.cin_g() * taps + ci.1 * taps),
            (co.0 * self.t_out * hwo + t.0 * hwo, (co.1 - 1) * self.t_out * hwo + t.1 * hwo),
        ]
    }

    /// Whether launches of `co_n` output channels, `ci_n` input channels per group and `t_n` output frames fit
    /// the binding limit wherever they start (worst case over positions).
    fn fits(&self, cap: usize, co_n: usize, ci_n: usize, t_n: usize) -> bool {
        let hw = self.h * self.w;
        let cout_g = self.cout_g();
        let groups_spanned = ((co_n + cout_g - 2) / cout_g + 1).min(self.groups);
        let chans = (groups_spanned - 1) * self.cin_g() + ci_n;
        let src = |n: usize| (chans - 1) * n * hw + n.min(t_n + self.kt - 1) * hw;
        let taps = self.taps();
        let hwo = self.ho * self.wo;
        src(self.t_in) <= cap
            && src(self.nc) <= cap
            && (co_n - 1) * self.cin_g() * taps + ci_n * taps <= cap
            && (co_n - 1) * self.t_out * hwo + t_n * hwo <= cap
    }

    /// Launch sizes (output channels, input channels per group, output frames).
    fn plan(&self, op: &'static str, cap: usize) -> Result<(usize, usize, usize), KernelError> {
        let t_n = largest(self.t_out, |t| self.fits(cap, 1, 1, t)).ok_or_else(|| KernelError::Unsupported {
            op,
            what: format!(
                "one output frame of one channel reads {} of input and writes {}, with weight rows of {}: \
                     over the binding limit of {}",
                size(self.h * self.w * self.kt.min(self.t_in + self.nc)),
                size(self.ho * self.wo),
                size(self.taps()),
                size(cap)
            ),
        })?;
        let ci_n = largest(self.cin_g(), |c| self.fits(cap, 1, c, t_n)).expect("1 fits");
        let mut co_n = largest(self.cout, |c| self.fits(cap, c, ci_n, t_n)).expect("1 fits");
        if co_n >= CO_B && co_n < self.cout {
            co_n -= co_n % CO_B;
        }
        Ok((co_n, ci_n, t_n))
    }
}

pub(super) const PARAMS_BYTES: usize = std::mem::size_of::<ConvParams>();

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ConvParams {
    cin_g: u32,
    t_in: u32,
    h: u32,
    w: u32,
    cout_g: u32,
    t_out: u32,
    ho: u32,
    wo: u32,
    kt: u32,
    kh: u32,
    kw: u32,
    nc: u32,
    zp: u32,
    pad_top: u32,
    pad_left: u32,
    sh: u32,
    sw: u32,
    dil_h: u32,
    dil_w: u32,
    tiles: u32,
    co_begin: u32,
    co_end: u32,
    ci_begin: u32,
    ci_end: u32,
    t_begin: u32,
    t_end: u32,
    flags: u32,
    x_off: u32,
    c_off: u32,
    w_off: u32,
    y_off: u32,
    b_off: u32,
    x_safe: u32,
    c_safe: u32,
    _pad0: u32,
    _pad1: u32,
}

#[allow(clippy::too_many_arguments)] // every public convolution funnels into this one launch plan
pub(super) fn run_conv(
    g: &Gpu,
    op: &'static str,
    x: &GpuTensor,
    cache: Option<&GpuTensor>,
    weight: &GpuTensor,
    bias: Option<&GpuTensor>,
    geom: &Geom,
    batch: usize,
    out_shape: &[usize],
) -> Result<GpuTensor, KernelError> {
    check_f32(op, "weight", weight)?;
    if let Some(b) = bias {
        check_f32(op, "bias", b)?;
        b.expect(op, "bias", &[geom.cout])?;
    }
    let x_item = geom.cin * geom.t_in * geom.h * geom.w;
    let c_item = geom.cin * geom.nc * geom.h * geom.w;
    let y_item = geom.cout * geom.t_out * geom.ho * geom.wo;
    check_u32(op, "x", x_item)?;
    check_u32(op, "cache", c_item)?;
    check_u32(op, "y", y_item)?;
    check_u32(op, "weight", weight.numel())?;
    let y = g.alloc(&format!("{op} output"), out_shape, DType::F32)?;
    let cap = cap_elems(g);
    let (co_n, ci_n, t_n) = geom.plan(op, cap)?;
    let grouped = geom.groups > 1;
    let kernel = if grouped {
        Kernel::ConvGrouped
    } else if geom.sw == 1 && geom.dil_w == 1 {
        Kernel::ConvRows
    } else {
        Kernel::Conv
    };
    let variant = Variant::pick(g, kernel);
    let pipe = g.pipeline(&variant.spec())?;
    let wg = variant.wg as usize;
    // Workgroups per output frame: `conv_rows` covers WG runs of 4 columns, the others WG·PX positions.
    let tiles = if kernel == Kernel::ConvRows {
        (geom.ho * geom.wo.div_ceil(PX)).div_ceil(wg)
    } else {
        (geom.ho * geom.wo).div_ceil(wg * PX)
    };
    let cin_g = geom.cin_g();
    let dummy = g.dummy();
    for b in 0..batch {
        for t0 in (0..geom.t_out).step_by(t_n) {
            let t1 = (t0 + t_n).min(geom.t_out);
            for co0 in (0..geom.cout).step_by(co_n) {
                let co1 = (co0 + co_n).min(geom.cout);
                let blocks = if grouped { co1 - co0 } else { (co1 - co0).div_ceil(CO_B) };
                let groups = grid(g, op, tiles * (t1 - t0) * blocks)?;
                for ci0 in (0..cin_g).step_by(ci_n) {
                    let ci1 = (ci0 + ci_n).min(cin_g);
                    let [xs, cs, ws, ys] = geom.spans((co0, co1), (ci0, ci1), (t0, t1));
                    let xw = win(g, x, b * x_item, xs.0, xs.1);
                    let cw = match cache {
                        Some(c) => win(g, c, b * c_item, cs.0, cs.1),
                        None => Win { binding: dummy.binding(), off: 0, safe: 0 },
                    };
                    let ww = win(g, weight, 0, ws.0, ws.1);
                    let yw = win(g, &y, b * y_item, ys.0, ys.1);
                    let mut flags = 0;
                    if ci0 == 0 && bias.is_some() {
                        flags |= BIAS;
                    }
                    if ci0 > 0 {
                        flags |= ACCUMULATE;
                    }
                    let params = ConvParams {
                        cin_g: cin_g as u32,
                        t_in: geom.t_in as u32,
                        h: geom.h as u32,
                        w: geom.w as u32,
                        cout_g: geom.cout_g() as u32,
                        t_out: geom.t_out as u32,
                        ho: geom.ho as u32,
                        wo: geom.wo as u32,
                        kt: geom.kt as u32,
                        kh: geom.kh as u32,
                        kw: geom.kw as u32,
                        nc: geom.nc as u32,
                        zp: geom.zp as u32,
                        pad_top: geom.pad_top as u32,
                        pad_left: geom.pad_left as u32,
                        sh: geom.sh as u32,
                        sw: geom.sw as u32,
                        dil_h: geom.dil_h as u32,
                        dil_w: geom.dil_w as u32,
                        tiles: tiles as u32,
                        co_begin: co0 as u32,
                        co_end: co1 as u32,
                        ci_begin: ci0 as u32,
                        ci_end: ci1 as u32,
                        t_begin: t0 as u32,
                        t_end: t1 as u32,
                        flags,
                        x_off: xw.off,
                        c_off: cw.off,
                        w_off: ww.off,
                        y_off: yw.off,
                        b_off: 0,
                        x_safe: xw.safe,
                        c_safe: cw.safe,
                        ..Default::default()
                    };
                    let bb = bias.map_or_else(|| dummy.binding(), |t| t.binding());
                    g.dispatch(&pipe, &[xw.binding, cw.binding, ww.binding, bb, yw.binding], &params, groups)?;
                }
            }
        }
    }
    Ok(y)
}
