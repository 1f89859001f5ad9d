//! Launcher for `shaders/conv2d_cl.wgsl`: grouped 2-D convolution with `padding='same'`, stride 1, on
//! channels-last `[H, W, C]` data, with an optional exact-GELU or ReLU epilogue. Depthwise and grouped
//! convolutions over a time × frequency plane, and 1-D convolutions along H (W = 1), use it.
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

    /// Label `conv2d_cl.<act>.t64`.
    fn spec(self) -> Spec {
        use Access::*;
        Spec::new(&FAMILY, "conv2d_cl", &[Read, Read, Read, ReadWrite])
            .tag(self.name())
            .tag(&format!("t{WG}"))
            .constant("WG", WG as f64)
            .constant("ACT", self as u32 as f64)
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

/// Every variant, for the validation test.
pub fn variants() -> Vec<Spec> {
    ConvAct::ALL.iter().map(|a| a.spec()).collect()
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
    let y = g.alloc("conv2d_cl output", &[h, w, cout], DType::F32)?;
    let n = h * w * cout;
    if n == 0 {
        return Ok(y);
    }
    let max = g.max_binding();
    for (name, t) in [("x", x), ("weight", weight), ("y", &y)] {
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
    let pipe = g.pipeline(&act.spec())?;
    let (xb, wb, bb, yb) = (x.binding(), weight.binding(), bias.binding(), y.binding());
    let params = Conv2dClParams {
        h: h as u32,
        w: w as u32,
        cin: cin as u32,
        cout: cout as u32,
        gin: gin as u32,
        gout: (cout / groups) as u32,
        kh: kh as u32,
        kw: kw as u32,
        x_shift: xb.word_shift,
        w_shift: wb.word_shift,
        b_shift: bb.word_shift,
        y_shift: yb.word_shift,
    };
    let [gx, gy] = spread((n as u32).div_ceil(WG), g.limits.max_compute_workgroups_per_dimension);
    g.dispatch(&pipe, &[xb, wb, bb, yb], &params, [gx, gy, 1])?;
    Ok(y)
}
