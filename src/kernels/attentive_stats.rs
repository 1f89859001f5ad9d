//! Launcher for `shaders/attentive_stats.wgsl`: the column statistics of attentive statistics pooling (softmax
//! over rows of the logits, then the weighted mean and standard deviation of each column) and an elementwise
//! `tanh`. Tensors must fit one storage binding.

use crate::gpu::{spread, Access, DType, Family, Gpu, GpuTensor, Spec};

use super::{Check, KernelError};

pub static FAMILY: Family =
    Family { name: "attentive_stats", source: include_str!("../../shaders/attentive_stats.wgsl") };

const WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct AttentiveStatsParams {
    rows: u32,
    cols: u32,
    x_shift: u32,
    z_shift: u32,
    y_shift: u32,
    _pad: [u32; 3],
}

fn spec(entry: &'static str) -> Spec {
    use Access::*;
    Spec::new(&FAMILY, entry, &[Read, Read, ReadWrite]).tag(&format!("t{WG}")).constant("WG", WG as f64)
}

/// Every variant, for the validation test.
pub fn variants() -> Vec<Spec> {
    vec![spec("attentive_stats"), spec("tanh_map")]
}

fn fits(g: &Gpu, op: &'static str, name: &str, t: &GpuTensor) -> Result<(), KernelError> {
    if t.len_bytes() + g.binding_align() > g.max_binding() {
        return Err(KernelError::Unsupported {
            op,
            what: format!(
                "`{name}` {:?} does not fit one storage binding ({} bytes on this adapter)",
                t.shape(),
                g.max_binding()
            ),
        });
    }
    Ok(())
}

/// For x and logits z `[T, C]`: `[2C]` = per column, the softmax-over-T weighted mean, then
/// `sqrt(max(weighted E[x²] − mean², 1e-7))`.
pub fn attentive_stats(g: &Gpu, x: &GpuTensor, z: &GpuTensor) -> Result<GpuTensor, KernelError> {
    const OP: &str = "attentive_stats";
    x.expect_dtype(OP, "x", DType::F32)?;
    z.expect_dtype(OP, "z", DType::F32)?;
    let [rows, cols] = x.dims::<2>(OP, "x")?;
    z.expect(OP, "z", &[rows, cols])?;
    if rows == 0 {
        return Err(KernelError::Shape {
            op: OP,
            tensor: "x",
            expected: "at least one row".into(),
            found: vec![0, cols],
        });
    }
    fits(g, OP, "x", x)?;
    fits(g, OP, "z", z)?;
    let y = g.alloc("attentive_stats output", &[2 * cols], DType::F32)?;
    if cols == 0 {
        return Ok(y);
    }
    let (xb, zb, yb) = (x.binding(), z.binding(), y.binding());
    let params = AttentiveStatsParams {
        rows: rows as u32,
        cols: cols as u32,
        x_shift: xb.word_shift,
        z_shift: zb.word_shift,
        y_shift: yb.word_shift,
        ..Default::default()
    };
    let pipe = g.pipeline(&spec("attentive_stats"))?;
    let [gx, gy] = spread((cols as u32).div_ceil(WG), g.limits.max_compute_workgroups_per_dimension);
    g.dispatch(&pipe, &[xb, zb, yb], &params, [gx, gy, 1])?;
    Ok(y)
}

/// `tanh(x)` into a new tensor of x's shape.
pub fn tanh(g: &Gpu, x: &GpuTensor) -> Result<GpuTensor, KernelError> {
    const OP: &str = "tanh";
    x.expect_dtype(OP, "x", DType::F32)?;
    fits(g, OP, "x", x)?;
    let y = g.alloc("tanh output", x.shape(), DType::F32)?;
    let n = x.numel();
    if n == 0 {
        return Ok(y);
    }
    let (xb, zb, yb) = (x.binding(), x.binding(), y.binding());
    let params = AttentiveStatsParams {
        rows: 1,
        cols: n as u32,
        x_shift: xb.word_shift,
        z_shift: zb.word_shift,
        y_shift: yb.word_shift,
        ..Default::default()
    };
    let pipe = g.pipeline(&spec("tanh_map"))?;
    let [gx, gy] = spread((n as u32).div_ceil(WG), g.limits.max_compute_workgroups_per_dimension);
    g.dispatch(&pipe, &[xb, zb, yb], &params, [gx, gy, 1])?;
    Ok(y)
}
