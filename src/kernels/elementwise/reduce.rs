//! Launcher for `shaders/reduce.wgsl`: per-row sum, mean, max and sum of squares over the last dim, and the row
//! softmax (max-subtracted), out of place or in place. One workgroup per row; launches split at row boundaries.

use crate::gpu::{spread, Access, DType, Family, Gpu, GpuTensor, Spec};

use super::{check_f32, rows_cols, rows_per_launch};
use crate::kernels::KernelError;

pub static REDUCE: Family = Family { name: "reduce", source: include_str!("../../../shaders/reduce.wgsl") };

/// Invocations per row (≤ 256). On lavapipe 32 beat 16, 64 and 128: the partials are combined serially.
const REDUCE_WG: usize = 32;

/// A reduction over the last dim; output one value per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reduce {
    Sum = 0,
    Mean = 1,
    Max = 2,
    SumSq = 3,
}

impl Reduce {
    pub const ALL: [Reduce; 4] = [Self::Sum, Self::Mean, Self::Max, Self::SumSq];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sum => "sum",
            Self::Mean => "mean",
            Self::Max => "max",
            Self::SumSq => "sum_sq",
        }
    }
}

/// `OP` of `row_reduce` for the softmax.
const SOFTMAX_OP: u32 = 4;

/// Label `reduce.row_reduce.<op>`.
fn reduce_spec(op: u32, name: &str) -> Spec {
    use Access::*;
    Spec::new(&REDUCE, "row_reduce", &[Read, ReadWrite])
        .tag(name)
        .constant("WG", REDUCE_WG as f64)
        .constant("OP", op as f64)
}

pub(super) fn variants() -> Vec<Spec> {
    let mut v: Vec<Spec> = Reduce::ALL.iter().map(|&r| reduce_spec(r as u32, r.name())).collect();
    v.push(reduce_spec(SOFTMAX_OP, "softmax"));
    v
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceParams {
    rows: u32,
    cols: u32,
    x_shift: u32,
    y_shift: u32,
    src_y: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
} // mirrors WGSL `Params` of reduce.wgsl

/// One `row_reduce` pass; `y_per_row` is 1 for reductions and `cols` for the softmax. `x: None` reads y.
fn run_rows(
    g: &Gpu,
    op: &'static str,
    spec: Spec,
    x: Option<&GpuTensor>,
    y: &GpuTensor,
    (rows, cols): (usize, usize),
    y_per_row: usize,
) -> Result<(), KernelError> {
    if rows == 0 {
        return Ok(());
    }
    let rows_per = rows_per_launch(g, op, cols)?;
    let pipe = g.pipeline(&spec)?;
    let align = g.binding_align();
    let max_groups = g.limits.max_compute_workgroups_per_dimension;
    for r0 in (0..rows).step_by(rows_per) {
        let rc = rows_per.min(rows - r0);
        let xb =
            x.map_or_else(|| g.dummy().binding(), |x| x.window((r0 * cols * 4) as u64, (rc * cols * 4) as u64, align));
        let yb = y.window((r0 * y_per_row * 4) as u64, (rc * y_per_row * 4) as u64, align);
        let params = ReduceParams {
            rows: rc as u32,
            cols: cols as u32,
            x_shift: xb.word_shift,
            y_shift: yb.word_shift,
            src_y: x.is_none() as u32,
            ..Default::default()
        };
        let [gx, gy] = spread(rc as u32, max_groups);
        g.dispatch(&pipe, &[xb, yb], &params, [gx, gy, 1])?;
    }
    Ok(())
}

/// Reduces the last dim: x `[.., cols]` → `[..]` (a 1-d x gives `[1]`). cols must be at least 1. `Max` of a row of
/// only −inf is −3.4e38 (the f32 identity used).
pub fn reduce(g: &Gpu, x: &GpuTensor, op: Reduce) -> Result<GpuTensor, KernelError> {
    const OP: &str = "reduce";
    check_f32(OP, "x", x)?;
    let (rows, cols) = rows_cols(x);
    if cols == 0 || x.shape().is_empty() {
        return Err(KernelError::Shape {
            op: OP,
            tensor: "x",
            expected: "at least one dim, with a last dim of at least 1".into(),
            found: x.shape().to_vec(),
        });
    }
    let shape = match &x.shape()[..x.shape().len() - 1] {
        [] => vec![1],
        lead => lead.to_vec(),
    };
    let y = g.alloc("reduce output", &shape, DType::F32)?;
    let spec = reduce_spec(op as u32, op.name());
    run_rows(g, OP, spec, Some(x), &y, (rows, cols), 1)?;
    Ok(y)
}

/// Softmax over the last dim (max-subtracted) into a new tensor of x's shape.
pub fn softmax(g: &Gpu, x: &GpuTensor) -> Result<GpuTensor, KernelError> {
    check_f32("softmax", "x", x)?;
    let y = g.alloc("softmax output", x.shape(), DType::F32)?;
    let rc = rows_cols(x);
    let spec = reduce_spec(SOFTMAX_OP, "softmax");
    run_rows(g, "softmax", spec, Some(x), &y, rc, rc.1)?;
    Ok(y)
}

/// [`softmax`] in place.
pub fn softmax_inplace(g: &Gpu, x: &GpuTensor) -> Result<(), KernelError> {
    check_f32("softmax_inplace", "x", x)?;
    let rc = rows_cols(x);
    let spec = reduce_spec(SOFTMAX_OP, "softmax");
    run_rows(g, "softmax_inplace", spec, None, x, rc, rc.1)
}
