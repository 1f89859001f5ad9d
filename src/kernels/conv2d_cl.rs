//! Launcher for `shaders/conv2d_cl.wgsl`: grouped 2-D convolution with `padding='same'`, stride 1, on
//! channels-last `[H, W, C]` data, with an optional exact-GELU or ReLU epilogue, written or added in place.
//! Depthwise and grouped convolutions over a time × frequency plane, 1-D convolutions along H (W = 1) and 1×1
//! convolutions with few channels (where a GEMM tile would sit mostly idle) use it.
//!
//! Each tensor must fit one storage binding (a `[3001, 72, 16]` f32 plane is 14 MB); larger inputs are refused
//! with a message rather than split.

use crate::gpu::{spread, Access, DType, Family, Gpu, GpuTensor, Spec};

use super::{Check, KernelError};

pub static FAMILY: Family = Family { name: "conv2d_cl", source: include_str!("../../shaders/conv2d_cl.wgsl") };

const OP: &str = "conv2d_cl";
const WG: u32 = 64;

/// The activation applied to each output (the shader's `ACT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ConvAct {
    #[default]
    None = 0,
    /// `0.5·x·(1 + erf(x/√2))`, PyTorch's default `nn.GELU()`.
    Gelu = 1,
    Relu = 2,
}

impl ConvAct {
    const ALL: [ConvAct; 3] = [Self::None, Self::Gelu, Self::Relu];

    fn name(self) -> &'static str {
        match self {
            Self::None => "linear",
            Self::Gelu => "gelu",
            Self::Relu => "relu",
        }
    }

    /// Label `conv2d_cl.<act>[.add].k<kh>x<kw>.g<gin>.o<nout>.t64`: one pipeline per kernel shape, so its loops
    /// unroll and its accumulators stay in registers.
    fn spec(self, add: bool, [kh, kw, gin, nout]: [usize; 4]) -> Spec {
        use Access::*;
        let s = Spec::new(&FAMILY, "conv2d_cl", &[Read, Read, Read, ReadWrite]).tag(self.name());
        let s = if add { s.tag("add") } else { s };
        s.tag(&format!("k{kh}x{kw}.g{gin}.o{nout}.t{WG}"))
            .constant("WG", WG as f64)
            .constant("ACT", self as u32 as f64)
            .constant("ADD", add as u32 as f64)
            .constant("KH", kh as f64)
            .constant("KW", kw as f64)
            .constant("GIN", gin as f64)
            .constant("NOUT", nout as f64)
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Conv2dClParams {
    h: u32,
    w: u32,
    cin: u32,
    cout: u32,
    gin: u32,
    gout: u32,
    kh: u32,
    kw: u32,
    x_shift: u32,
    w_shift: u32,
    b_shift: u32,
    y_shift: u32,
}

/// Output channels per invocation (the shader's `OUTS`).
const OUTS: usize = 8;

/// Every variant, for the validation test.
pub fn variants() -> Vec<Spec> {
    let mut v: Vec<Spec> = ConvAct::ALL.iter().map(|a| a.spec(false, [3, 3, 4, 4])).collect();
    v.push(ConvAct::None.spec(true, [1, 1, 16, 8]));
    v.push(ConvAct::None.spec(false, [59, 1, 1, 1]));
    v
}

/// `y = act(conv(x) + bias)`: x `[H, W, Cin]`, weight `[Cout, Cin / groups, kh, kw]` (PyTorch's layout, kh along H),
/// bias `[Cout]`; returns `[H, W, Cout]`.
pub fn conv2d_cl(
    g: &Gpu,
    x: &GpuTensor,
    weight: &GpuTensor,
    bias: &GpuTensor,
    groups: usize,
    act: ConvAct,
) -> Result<GpuTensor, KernelError> {
    let [h, w, _] = x.dims::<3>(OP, "x")?;
    let cout = weight.shape().first().copied().unwrap_or(0);
    let y = g.alloc("conv2d_cl output", &[h, w, cout], DType::F32)?;
    run(g, x, weight, bias, groups, act, false, &y)?;
    Ok(y)
}

/// `y += conv(x) + bias` in place (a residual branch); y is `[H, W, Cout]` and must not share x's storage.
pub fn conv2d_cl_add(
    g: &Gpu,
    x: &GpuTensor,
    weight: &GpuTensor,
    bias: &GpuTensor,
    groups: usize,
    y: &GpuTensor,
) -> Result<(), KernelError> {
    let [h, w, _] = x.dims::<3>(OP, "x")?;
    let cout = weight.shape().first().copied().unwrap_or(0);
    y.expect(OP, "y", &[h, w, cout])?;
    y.expect_dtype(OP, "y", DType::F32)?;
    if x.binding_id() == y.binding_id() {
        return Err(KernelError::Unsupported { op: OP, what: "`y` shares x's storage; pass a separate input".into() });
    }
    run(g, x, weight, bias, groups, ConvAct::None, true, y)
}

#[allow(clippy::too_many_arguments)] // the public launchers' arguments plus the mode and output
fn run(
    g: &Gpu,
    x: &GpuTensor,
    weight: &GpuTensor,
    bias: &GpuTensor,
    groups: usize,
    act: ConvAct,
    add: bool,
    y: &GpuTensor,
) -> Result<(), KernelError> {
    for (name, t) in [("x", x), ("weight", weight), ("bias", bias)] {
        t.expect_dtype(OP, name, DType::F32)?;
    }
    let [h, w, cin] = x.dims::<3>(OP, "x")?;
    let [cout, gin, kh, kw] = weight.dims::<4>(OP, "weight")?;
    if groups == 0 || !cin.is_multiple_of(groups) || !cout.is_multiple_of(groups) || cin / groups != gin {
        return Err(KernelError::Shape {
            op: OP,
            tensor: "weight",
            expected: format!(
                "[Cout, {}, kh, kw] with Cin = {cin} and Cout divisible by groups = {groups}",
                cin.checked_div(groups).unwrap_or(0)
            ),
            found: weight.shape().to_vec(),
        });
    }
    if kh == 0 || kw == 0 {
        return Err(KernelError::Shape {
            op: OP,
            tensor: "weight",
            expected: "kernel sizes of at least 1".into(),
            found: weight.shape().to_vec(),
        });
    }
    bias.expect(OP, "bias", &[cout])?;
    let gout = cout / groups;
    // The largest divisor of gout up to OUTS.
    let nout = (1..=OUTS.min(gout)).rev().find(|d| gout.is_multiple_of(*d)).unwrap_or(1);
    let n = h * w * cout / nout.max(1);
    if n == 0 {
        return Ok(());
    }
    let max = g.max_binding();
    for (name, t) in [("x", x), ("weight", weight), ("y", y)] {
        if t.len_bytes() + g.binding_align() > max {
            return Err(KernelError::Unsupported {
                op: OP,
                what: format!(
                    "`{name}` {:?} ({} bytes) does not fit one storage binding ({max} bytes on this adapter): \
                     process shorter pieces",
                    t.shape(),
                    t.len_bytes()
                ),
            });
        }
    }
    let pipe = g.pipeline(&act.spec(add, [kh, kw, gin, nout]))?;
    let (xb, wb, bb, yb) = (x.binding(), weight.binding(), bias.binding(), y.binding());
    let params = Conv2dClParams {
        h: h as u32,
        w: w as u32,
        cin: cin as u32,
        cout: cout as u32,
        gin: gin as u32,
        gout: gout as u32,
        kh: kh as u32,
        kw: kw as u32,
        x_shift: xb.word_shift,
        w_shift: wb.word_shift,
        b_shift: bb.word_shift,
        y_shift: yb.word_shift,
    };
    let [gx, gy] = spread((n as u32).div_ceil(WG), g.limits.max_compute_workgroups_per_dimension);
    g.dispatch(&pipe, &[xb, wb, bb, yb], &params, [gx, gy, 1])?;
    Ok(())
}
