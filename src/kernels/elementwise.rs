//! Launchers for the pointwise and per-row ops: `shaders/elementwise.wgsl` here (activations, clamp, scale-add,
//! broadcast add/mul, the DiT gated residual, BigVGAN-v2 SnakeBeta, copy, fill); `shaders/reduce.wgsl` in
//! `elementwise/reduce.rs` (row softmax; sum, mean, max, sum of squares over the last dim); `shaders/timestep.wgsl`
//! in `elementwise/timestep.rs` (the sinusoidal timestep embedding of NAVA.md §4.2). All are re-exported here.
//!
//! Tensors are f32, row-major; "rows" are all leading dims flattened, "cols" the last dim. Every launcher checks
//! shapes first, then splits the work into launches of whole rows whose windows fit one storage binding.

mod reduce;
mod timestep;

pub use reduce::{reduce, softmax, softmax_inplace, Reduce, REDUCE};
pub use timestep::{timestep_embedding, TimestepFreqs, TIMESTEP};

use std::cell::Cell;
use std::sync::Arc;

use crate::gpu::{spread, Access, Binding, DType, Family, Gpu, GpuTensor, Spec};

use super::{Check, KernelError};

pub static FAMILY: Family = Family { name: "elementwise", source: include_str!("../../shaders/elementwise.wgsl") };

/// Invocations per workgroup and elements per invocation of `map` (`step_cols`/`step_ch` depend on `MAP_WG`).
/// On lavapipe 64 × 16 ran 1.5–2× faster than 64 × 4 and than 32 × 16, 128 × 8 or 256 × 4.
const MAP_WG: usize = 64;
const MAP_ITEMS: usize = 16;

// ---- variants ----

/// The op a `map` pipeline computes (the shader's `OP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum MapOp {
    Copy = 0,
    Fill = 1,
    GeluTanh = 2,
    Silu = 3,
    Clamp = 4,
    ScaleAdd = 5,
    Add = 6,
    Mul = 7,
    GatedAdd = 8,
    SnakeBeta = 9,
}

impl MapOp {
    const ALL: [MapOp; 10] = [
        Self::Copy,
        Self::Fill,
        Self::GeluTanh,
        Self::Silu,
        Self::Clamp,
        Self::ScaleAdd,
        Self::Add,
        Self::Mul,
        Self::GatedAdd,
        Self::SnakeBeta,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Copy => "copy",
            Self::Fill => "fill",
            Self::GeluTanh => "gelu_tanh",
            Self::Silu => "silu",
            Self::Clamp => "clamp",
            Self::ScaleAdd => "scale_add",
            Self::Add => "add",
            Self::Mul => "mul",
            Self::GatedAdd => "gated_add",
            Self::SnakeBeta => "snake_beta",
        }
    }

    /// Label `elementwise.map.<op>`.
    fn spec(self) -> Spec {
        use Access::*;
        Spec::new(&FAMILY, "map", &[Read, Read, Read, ReadWrite])
            .tag(self.name())
            .constant("WG", MAP_WG as f64)
            .constant("ITEMS", MAP_ITEMS as f64)
            .constant("OP", self as u32 as f64)
    }
}

/// Every variant, for the validation test.
pub fn variants() -> Vec<Spec> {
    let mut v: Vec<Spec> = MapOp::ALL.iter().map(|op| op.spec()).collect();
    v.extend(reduce::variants());
    v.push(timestep::spec());
    v
}

// ---- binding limit ----

thread_local! {
    static BINDING_LIMIT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Runs `f` with this module's launchers splitting tensors as if one storage binding held at most `bytes`
/// (tests use it to exercise the splitting on small tensors). Applies to the calling thread only.
pub fn with_binding_limit<R>(bytes: u64, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<u64>);
    impl Drop for Restore {
        fn drop(&mut self) {
            BINDING_LIMIT.with(|l| l.set(self.0));
        }
    }
    let _restore = Restore(BINDING_LIMIT.with(|l| l.replace(Some(bytes))));
    f()
}

/// The largest binding a launch may use, in bytes.
fn binding_limit(g: &Gpu) -> u64 {
    let max = g.max_binding();
    BINDING_LIMIT.with(|l| l.get()).map_or(max, |l| l.min(max))
}

/// Elements of a window that fits one binding wherever it starts (a window begins up to one alignment early).
fn window_elems(g: &Gpu) -> usize {
    (binding_limit(g).saturating_sub(g.binding_align()) / 4) as usize
}

/// Rows per launch so that `row_elems` elements per row fit one binding.
fn rows_per_launch(g: &Gpu, op: &'static str, row_elems: usize) -> Result<usize, KernelError> {
    let rows = window_elems(g) / row_elems.max(1);
    if rows == 0 {
        return Err(KernelError::Unsupported {
            op,
            what: format!(
                "a row of {row_elems} f32 ({} bytes) does not fit one storage binding ({} bytes on this adapter)",
                4 * row_elems,
                binding_limit(g)
            ),
        });
    }
    Ok(rows)
}

/// Fails unless `t` fits one binding whole (operands read at any index by every launch).
fn fits_whole(g: &Gpu, op: &'static str, t: &GpuTensor) -> Result<(), KernelError> {
    if t.len_bytes() > binding_limit(g) {
        return Err(KernelError::Unsupported {
            op,
            what: format!(
                "a broadcast operand of shape {:?} ({} bytes) does not fit one storage binding ({} bytes)",
                t.shape(),
                t.len_bytes(),
                binding_limit(g)
            ),
        });
    }
    Ok(())
}

fn same_storage(a: &GpuTensor, b: &GpuTensor) -> bool {
    Arc::ptr_eq(&a.buf, &b.buf)
}

/// `(rows, cols)` of a tensor: leading dims flattened, last dim (a 0-d tensor is one row of one).
fn rows_cols(t: &GpuTensor) -> (usize, usize) {
    match t.shape().split_last() {
        Some((&cols, lead)) => (lead.iter().product(), cols),
        None => (1, 1),
    }
}

// ---- map launches ----

/// How the right operand `b` of a map launch is indexed.
#[derive(Clone, Copy)]
enum Operand<'a> {
    None,
    /// Same shape as y: windowed with it.
    Same(&'a GpuTensor),
    /// One row `[cols]`, shared by all rows.
    Row(&'a GpuTensor),
    /// One value per channel, channel = row mod the number of values.
    PerRow(&'a GpuTensor),
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct MapParams {
    n: u32,
    cols: u32,
    bmod: u32,
    ch0: u32,
    step_cols: u32,
    step_ch: u32,
    bmode: u32,
    src_y: u32,
    x_shift: u32,
    b_shift: u32,
    c_shift: u32,
    y_shift: u32,
    s0: f32,
    s1: f32,
    _pad0: u32,
    _pad1: u32,
} // mirrors WGSL `Params` of elementwise.wgsl

/// One map op over `y` seen as `[rows, cols]`.
struct MapJob<'a> {
    op: &'static str,
    code: MapOp,
    /// The left operand when it is not `y` itself.
    x: Option<&'a GpuTensor>,
    b: Operand<'a>,
    /// A second per-channel operand (SnakeBeta's β), indexed like `Operand::PerRow`.
    c: Option<&'a GpuTensor>,
    y: &'a GpuTensor,
    /// Read the left operand from `y` (in place).
    src_y: bool,
    rows: usize,
    cols: usize,
    s: [f32; 2],
}

fn run_map(g: &Gpu, job: MapJob) -> Result<(), KernelError> {
    let (rows, cols) = (job.rows, job.cols);
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let bmod = match job.b {
        Operand::PerRow(t) => t.numel(),
        _ => 1,
    };
    match job.b {
        Operand::Row(t) | Operand::PerRow(t) => fits_whole(g, job.op, t)?,
        _ => {}
    }
    if let Some(c) = job.c {
        fits_whole(g, job.op, c)?;
    }
    let rows_per = rows_per_launch(g, job.op, cols)?;
    let pipe = g.pipeline(&job.code.spec())?;
    let align = g.binding_align();
    let max_groups = g.limits.max_compute_workgroups_per_dimension;
    let dummy = || g.dummy().binding();
    for r0 in (0..rows).step_by(rows_per) {
        let n = rows_per.min(rows - r0) * cols;
        let win = |t: &GpuTensor| t.window((r0 * cols * 4) as u64, (n * 4) as u64, align);
        let yb = win(job.y);
        let xb = job.x.map_or_else(dummy, win);
        let (bb, bmode) = match job.b {
            Operand::None => (dummy(), 0),
            Operand::Same(t) => (win(t), 0),
            Operand::Row(t) => (t.binding(), 1),
            Operand::PerRow(t) => (t.binding(), 2),
        };
        let cb: Binding = job.c.map_or_else(dummy, |t| t.binding());
        let params = MapParams {
            n: n as u32,
            cols: cols as u32,
            bmod: bmod as u32,
            ch0: (r0 % bmod) as u32,
            step_cols: (MAP_WG % cols) as u32,
            step_ch: (MAP_WG / cols % bmod) as u32,
            bmode,
            src_y: job.src_y as u32,
            x_shift: xb.word_shift,
            b_shift: bb.word_shift,
            c_shift: cb.word_shift,
            y_shift: yb.word_shift,
            s0: job.s[0],
            s1: job.s[1],
            ..Default::default()
        };
        let [gx, gy] = spread(n.div_ceil(MAP_WG * MAP_ITEMS) as u32, max_groups);
        g.dispatch(&pipe, &[xb, bb, cb, yb], &params, [gx, gy, 1])?;
    }
    Ok(())
}

fn check_f32(op: &'static str, name: &'static str, t: &GpuTensor) -> Result<(), KernelError> {
    t.expect_dtype(op, name, DType::F32)
}

/// A pointwise activation or affine map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// `0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))`, tanh argument clamped to ±15.
    GeluTanh,
    /// `x / (1 + e^(−x))`.
    Silu,
    /// `min(max(x, lo), hi)`; needs `lo <= hi`.
    Clamp { lo: f32, hi: f32 },
    /// `scale·x + add`.
    ScaleAdd { scale: f32, add: f32 },
}

impl Unary {
    fn job(self, op: &'static str) -> Result<(MapOp, [f32; 2]), KernelError> {
        Ok(match self {
            Self::GeluTanh => (MapOp::GeluTanh, [0.0; 2]),
            Self::Silu => (MapOp::Silu, [0.0; 2]),
            Self::Clamp { lo, hi } => {
                // WGSL leaves clamp with lo > hi (or NaN bounds) unspecified.
                if lo.partial_cmp(&hi).is_none_or(|o| o.is_gt()) {
                    return Err(KernelError::Unsupported {
                        op,
                        what: format!("clamp bounds lo = {lo}, hi = {hi}: need lo <= hi"),
                    });
                }
                (MapOp::Clamp, [lo, hi])
            }
            Self::ScaleAdd { scale, add } => (MapOp::ScaleAdd, [scale, add]),
        })
    }
}

/// `f(x)` into a new tensor of x's shape.
pub fn unary(g: &Gpu, x: &GpuTensor, f: Unary) -> Result<GpuTensor, KernelError> {
    const OP: &str = "unary";
    check_f32(OP, "x", x)?;
    let (code, s) = f.job(OP)?;
    let y = g.alloc("unary output", x.shape(), DType::F32)?;
    run_map(g, flat_job(OP, code, Some(x), &y, s))?;
    Ok(y)
}

/// `x = f(x)` in place.
pub fn unary_inplace(g: &Gpu, x: &GpuTensor, f: Unary) -> Result<(), KernelError> {
    const OP: &str = "unary_inplace";
    check_f32(OP, "x", x)?;
    let (code, s) = f.job(OP)?;
    run_map(g, flat_job(OP, code, None, x, s))
}

/// A job over all elements as one column (no broadcasting: any split point is a row boundary).
fn flat_job<'a>(op: &'static str, code: MapOp, x: Option<&'a GpuTensor>, y: &'a GpuTensor, s: [f32; 2]) -> MapJob<'a> {
    MapJob { op, code, x, b: Operand::None, c: None, y, src_y: x.is_none(), rows: y.numel(), cols: 1, s }
}

/// Sets every element of `y` to `value`.
pub fn fill(g: &Gpu, y: &GpuTensor, value: f32) -> Result<(), KernelError> {
    check_f32("fill", "y", y)?;
    run_map(g, flat_job("fill", MapOp::Fill, None, y, [value, 0.0]))
}

/// A new tensor with x's shape and values.
pub fn copy(g: &Gpu, x: &GpuTensor) -> Result<GpuTensor, KernelError> {
    check_f32("copy", "x", x)?;
    let y = g.alloc("copy output", x.shape(), DType::F32)?;
    run_map(g, flat_job("copy", MapOp::Copy, Some(x), &y, [0.0; 2]))?;
    Ok(y)
}

/// Copies `src` into `dst` (same element count; shapes may differ, as after a reshape).
pub fn copy_into(g: &Gpu, src: &GpuTensor, dst: &GpuTensor) -> Result<(), KernelError> {
    const OP: &str = "copy_into";
    check_f32(OP, "src", src)?;
    check_f32(OP, "dst", dst)?;
    if src.numel() != dst.numel() {
        return Err(KernelError::Shape {
            op: OP,
            tensor: "src",
            expected: format!("{} elements, like dst {:?}", dst.numel(), dst.shape()),
            found: src.shape().to_vec(),
        });
    }
    if same_storage(src, dst) {
        return Ok(()); // the same data under another shape
    }
    run_map(g, flat_job(OP, MapOp::Copy, Some(src), dst, [0.0; 2]))
}

/// A pointwise binary op; the right operand may be broadcast (see [`binary`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Mul,
}

/// How `b` broadcasts against `a` `[rows, cols]`: the same shape; one row (`[cols]`, or any shape of `cols`
/// elements whose other dims are 1); or one value per row (`[rows, 1]`, a shape of leading dims ending in 1, or a
/// 1-d `[rows]`). A 1-d `[n]` with `rows == cols == n` is a row, as in PyTorch; pass `[rows, 1]` for per-row.
fn broadcast<'a>(op: &'static str, a: &GpuTensor, b: &'a GpuTensor) -> Result<Operand<'a>, KernelError> {
    let (rows, cols) = rows_cols(a);
    let bs = b.shape();
    if bs == a.shape() {
        return Ok(Operand::Same(b));
    }
    let ones_but_last = bs.split_last().is_some_and(|(_, lead)| lead.iter().all(|&d| d == 1));
    if b.numel() == cols && ones_but_last {
        return Ok(Operand::Row(b));
    }
    let lead = &a.shape()[..a.shape().len().saturating_sub(1)];
    let per_row = (bs.split_last().is_some_and(|(&last, l)| last == 1 && l == lead))
        || (bs.len() == 2 && bs[1] == 1 && bs[0] == rows)
        || bs == [rows];
    if per_row {
        return Ok(Operand::PerRow(b));
    }
    Err(KernelError::Shape {
        op,
        tensor: "b",
        expected: format!("{:?} (same as a), [{cols}] (one row) or [{rows}, 1] (one value per row)", a.shape()),
        found: bs.to_vec(),
    })
}

fn binary_code(op: Binary) -> MapOp {
    match op {
        Binary::Add => MapOp::Add,
        Binary::Mul => MapOp::Mul,
    }
}

/// `a op b` into a new tensor of a's shape, `b` broadcast as one row or one value per row when its shape says so.
pub fn binary(g: &Gpu, a: &GpuTensor, b: &GpuTensor, op: Binary) -> Result<GpuTensor, KernelError> {
    const OP: &str = "binary";
    check_f32(OP, "a", a)?;
    check_f32(OP, "b", b)?;
    let operand = broadcast(OP, a, b)?;
    let (rows, cols) = rows_cols(a);
    let y = g.alloc("binary output", a.shape(), DType::F32)?;
    run_map(
        g,
        MapJob {
            op: OP,
            code: binary_code(op),
            x: Some(a),
            b: operand,
            c: None,
            y: &y,
            src_y: false,
            rows,
            cols,
            s: [0.0; 2],
        },
    )?;
    Ok(y)
}

/// `a = a op b` in place, `b` broadcast as in [`binary`]. `b` must not share a's storage.
pub fn binary_inplace(g: &Gpu, a: &GpuTensor, b: &GpuTensor, op: Binary) -> Result<(), KernelError> {
    const OP: &str = "binary_inplace";
    check_f32(OP, "a", a)?;
    check_f32(OP, "b", b)?;
    let operand = broadcast(OP, a, b)?;
    if same_storage(a, b) {
        return Err(KernelError::Unsupported {
            op: OP,
            what: "`b` is `a` itself; use `binary` (out of place) or `unary_inplace` with ScaleAdd".into(),
        });
    }
    let (rows, cols) = rows_cols(a);
    run_map(
        g,
        MapJob {
            op: OP,
            code: binary_code(op),
            x: None,
            b: operand,
            c: None,
            y: a,
            src_y: true,
            rows,
            cols,
            s: [0.0; 2],
        },
    )
}

/// `y += t ⊙ gate` in place: the DiT gated residual. `t` has y's shape; `gate` has y's shape or is one row of
/// `cols` values (`[cols]`, `[1, cols]`, `[1, 1, cols]`, …) shared by all rows.
pub fn gated_add(g: &Gpu, y: &GpuTensor, t: &GpuTensor, gate: &GpuTensor) -> Result<(), KernelError> {
    const OP: &str = "gated_add";
    check_f32(OP, "y", y)?;
    check_f32(OP, "t", t)?;
    check_f32(OP, "gate", gate)?;
    t.expect(OP, "t", y.shape())?;
    let (rows, cols) = rows_cols(y);
    let operand = match broadcast(OP, y, gate) {
        Ok(o @ (Operand::Same(_) | Operand::Row(_))) => o,
        _ => {
            return Err(KernelError::Shape {
                op: OP,
                tensor: "gate",
                expected: format!("{:?} (same as y) or [{cols}] (one row)", y.shape()),
                found: gate.shape().to_vec(),
            })
        }
    };
    if same_storage(y, t) || same_storage(y, gate) {
        return Err(KernelError::Unsupported {
            op: OP,
            what: "`t` or `gate` shares y's storage; pass a separate tensor".into(),
        });
    }
    run_map(
        g,
        MapJob {
            op: OP,
            code: MapOp::GatedAdd,
            x: Some(t),
            b: operand,
            c: None,
            y,
            src_y: false,
            rows,
            cols,
            s: [0.0; 2],
        },
    )
}

/// Checks SnakeBeta operands; returns (rows = batch·C, T).
fn snake_check(
    op: &'static str,
    x: &GpuTensor,
    alpha: &GpuTensor,
    beta: &GpuTensor,
) -> Result<(usize, usize), KernelError> {
    check_f32(op, "x", x)?;
    check_f32(op, "alpha", alpha)?;
    check_f32(op, "beta", beta)?;
    let channels = match x.shape() {
        [c, _] | [_, c, _] => *c,
        s => {
            return Err(KernelError::Shape {
                op,
                tensor: "x",
                expected: "[C, T] or [batch, C, T]".into(),
                found: s.to_vec(),
            })
        }
    };
    alpha.expect(op, "alpha", &[channels])?;
    beta.expect(op, "beta", &[channels])?;
    Ok(rows_cols(x))
}

/// BigVGAN-v2 SnakeBeta with log-scale parameters, `y = x + sin²(e^α·x) / (e^β + 1e-9)` with α, β per channel;
/// x is `[C, T]` or `[batch, C, T]`, alpha and beta `[C]`.
pub fn snake_beta(g: &Gpu, x: &GpuTensor, alpha: &GpuTensor, beta: &GpuTensor) -> Result<GpuTensor, KernelError> {
    const OP: &str = "snake_beta";
    let (rows, cols) = snake_check(OP, x, alpha, beta)?;
    let y = g.alloc("snake_beta output", x.shape(), DType::F32)?;
    run_map(g, snake_job(OP, Some(x), alpha, beta, &y, rows, cols))?;
    Ok(y)
}

/// [`snake_beta`] in place on x.
pub fn snake_beta_inplace(g: &Gpu, x: &GpuTensor, alpha: &GpuTensor, beta: &GpuTensor) -> Result<(), KernelError> {
    const OP: &str = "snake_beta_inplace";
    let (rows, cols) = snake_check(OP, x, alpha, beta)?;
    if same_storage(x, alpha) || same_storage(x, beta) {
        return Err(KernelError::Unsupported { op: OP, what: "alpha or beta shares x's storage".into() });
    }
    run_map(g, snake_job(OP, None, alpha, beta, x, rows, cols))
}

fn snake_job<'a>(
    op: &'static str,
    x: Option<&'a GpuTensor>,
    alpha: &'a GpuTensor,
    beta: &'a GpuTensor,
    y: &'a GpuTensor,
    rows: usize,
    cols: usize,
) -> MapJob<'a> {
    MapJob {
        op,
        code: MapOp::SnakeBeta,
        x,
        b: Operand::PerRow(alpha),
        c: Some(beta),
        y,
        src_y: x.is_none(),
        rows,
        cols,
        s: [0.0; 2],
    }
}
