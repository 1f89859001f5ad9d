//! Launcher for `shaders/norm.wgsl`: LayerNorm (optional affine, fused adaLN modulation), RMSNorm (also T5's), and
//! the channel norms of the VAE decoders over `[B, C, S]` feature maps: LTX's PixelNorm and Wan2.2's `RMS_norm`
//! (`F.normalize` over C · √C · γ + β), each optionally followed by SiLU.
//!
//! These mirror PyTorch: `F.layer_norm` (biased variance), `x * rsqrt(mean(x²) + eps) * w`, and
//! `F.normalize(x, dim=1, eps=1e-12)`. Tensors larger than one storage binding are split into launches along rows
//! (row norms) or batch items and channel chunks (channel norms); a single row or channel that does not fit one
//! binding is an error that names the limit.

use std::ops::Range;
use std::sync::Arc;

use crate::gpu::{spread, Access, Binding, DType, Family, Gpu, GpuTensor, Spec};

use super::{Check, KernelError};

pub static FAMILY: Family = Family { name: "norm", source: include_str!("../../shaders/norm.wgsl") };
/// Entry points of the row norms with subgroup reductions, appended where the adapter has SUBGROUP.
const NORM_SUBGROUP: &str = include_str!("../../shaders/common/norm_subgroup.wgsl");

// Flag bits of `Params.flags`, as in the shader.
const HAS_W: u32 = 1;
const HAS_B: u32 = 2;
const HAS_MOD: u32 = 4;
const SILU: u32 = 8;
const PIXEL: u32 = 16;
const ACCUMULATE: u32 = 32;

/// `eps` of `F.normalize`: the L2 norm is clamped from below by it.
const NORMALIZE_EPS: f32 = 1e-12;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct NormParams {
    rows: u32,
    cols: u32,
    eps: f32,
    flags: u32,
    x_shift: u32,
    y_shift: u32,
    sc_shift: u32,
    sc_ld: u32,
    sh_shift: u32,
    sh_ld: u32,
    batch: u32,
    c_total: u32,
    c_begin: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

/// The entry points of the shader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    LayerNorm,
    RmsNorm,
    /// Channel norm, all channels of some batch items in one launch.
    ChanNorm,
    /// Channel norm in chunks, pass 1: sums of squares into a scratch row.
    ChanSumsq,
    /// Channel norm in chunks, pass 2: apply.
    ChanApply,
}

impl Kernel {
    pub const ALL: [Kernel; 5] = [Self::LayerNorm, Self::RmsNorm, Self::ChanNorm, Self::ChanSumsq, Self::ChanApply];

    fn entry(self) -> &'static str {
        match self {
            Self::LayerNorm => "layer_norm",
            Self::RmsNorm => "rms_norm",
            Self::ChanNorm => "chan_norm",
            Self::ChanSumsq => "chan_sumsq",
            Self::ChanApply => "chan_apply",
        }
    }

    fn is_row(self) -> bool {
        matches!(self, Self::LayerNorm | Self::RmsNorm)
    }
}

/// Pipeline-cache key of one variant; label `norm.<entry>.t<WG>[.r<R>][.inplace]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    pub kernel: Kernel,
    /// Invocations per workgroup.
    pub wg: u32,
    /// Rows per workgroup (row norms; `wg * rows_per_group <= 256`).
    pub rows_per_group: u32,
    /// Row norms: the output overwrites the input.
    pub inplace: bool,
    /// Row norms: reduce with subgroup operations (needs SUBGROUP).
    pub subgroup: bool,
}

impl Variant {
    pub fn spec(self) -> Spec {
        use Access::*;
        let bindings = [Read, Read, Read, Read, Read, ReadWrite];
        let mut s = match (self.subgroup && self.kernel.is_row(), self.kernel) {
            (true, Kernel::LayerNorm) => Spec::new(&FAMILY, "layer_norm_sg", &bindings).snippet(NORM_SUBGROUP),
            (true, _) => Spec::new(&FAMILY, "rms_norm_sg", &bindings).snippet(NORM_SUBGROUP),
            (false, _) => Spec::new(&FAMILY, self.kernel.entry(), &bindings),
        }
        .tag(&format!("t{}", self.wg))
        .constant("WG", self.wg as f64);
        if self.kernel.is_row() {
            s = s.tag(&format!("r{}", self.rows_per_group)).constant("R", self.rows_per_group as f64);
            if self.inplace {
                s = s.tag("inplace").constant("INPLACE", 1.0);
            }
        }
        s
    }

    /// The variant for this adapter. On a CPU driver (lavapipe: one thread per workgroup, 8 lanes per vector,
    /// costly barriers) small workgroups with several rows each are fastest; on GPUs a wide workgroup per row.
    fn pick(g: &Gpu, kernel: Kernel, inplace: bool) -> Self {
        let cpu = g.adapter.is_cpu();
        let max_inv = g.limits.max_compute_invocations_per_workgroup;
        // NAVA_NORM_SUBGROUP=0 keeps the workgroup-memory reduction (a debug switch, see README).
        let subgroup =
            g.caps.subgroup && kernel.is_row() && !std::env::var("NAVA_NORM_SUBGROUP").is_ok_and(|v| v == "0");
        let (wg, r) = match (kernel.is_row(), cpu) {
            (true, true) if subgroup => CPU_ROW_TILE_SUBGROUP,
            (true, true) => CPU_ROW_TILE,
            (true, false) => (256, 1),
            (false, true) => (CPU_CHAN_WG, 1),
            (false, false) => (256, 1),
        };
        let wg = wg.min(max_inv).min(256);
        Self {
            kernel,
            wg,
            rows_per_group: if kernel.is_row() { r.min(256 / wg).max(1) } else { 1 },
            inplace: inplace && kernel.is_row(),
            subgroup,
        }
    }
}

/// (invocations, rows) per workgroup of the row norms on CPU drivers. Measured on lavapipe (Mesa 25, AVX2), process
/// CPU time of LayerNorm + modulation over 2048 x 3072: 8 or 16 invocations ~42 ms, 32: 53, 64: 70, 256: >300;
/// rows per workgroup 1-4 make no measurable difference.
const CPU_ROW_TILE: (u32, u32) = (8, 2);
/// The same with subgroup reductions: 16 invocations (two of lavapipe's 8-wide subgroups; measured like 8).
const CPU_ROW_TILE_SUBGROUP: (u32, u32) = (16, 2);
/// Invocations per workgroup of the channel norms on CPU drivers (16 to 64 measure the same on lavapipe).
const CPU_CHAN_WG: u32 = 64;

/// The variants this device runs (for `nava info`).
pub fn selected(g: &Gpu) -> Vec<String> {
    [Kernel::LayerNorm, Kernel::RmsNorm, Kernel::ChanNorm, Kernel::ChanSumsq, Kernel::ChanApply]
        .into_iter()
        .map(|k| Variant::pick(g, k, false).spec().label)
        .collect()
}

/// Every variant, for the validation test.
pub fn variants() -> Vec<Spec> {
    let mut v = Vec::new();
    for kernel in Kernel::ALL {
        let tiles: &[(u32, u32)] = if kernel.is_row() {
            &[CPU_ROW_TILE, CPU_ROW_TILE_SUBGROUP, (256, 1)]
        } else {
            &[(CPU_CHAN_WG, 1), (256, 1)]
        };
        for &(wg, rows_per_group) in tiles {
            for inplace in [false, true] {
                if inplace && !kernel.is_row() {
                    continue;
                }
                for subgroup in [false, true] {
                    if subgroup && !kernel.is_row() {
                        continue;
                    }
                    v.push(Variant { kernel, wg, rows_per_group, inplace, subgroup }.spec());
                }
            }
        }
    }
    v
}

/// Rows of an operand read beside `x` (the adaLN scale or shift): for row `r` of the launch (counted from the
/// start of the row range) and column `c`, the element `tensor[offset + r * row_stride + c]` in elements of the
/// flattened tensor. `row_stride` 0 broadcasts one row to all rows.
#[derive(Clone, Copy, Debug)]
pub struct RowOperand<'a> {
    pub tensor: &'a GpuTensor,
    pub offset: usize,
    pub row_stride: usize,
}

impl<'a> RowOperand<'a> {
    /// One row per row of x: `tensor` is `[rows, cols]` (any leading dims).
    pub fn per_row(tensor: &'a GpuTensor) -> Self {
        Self { tensor, offset: 0, row_stride: tensor.shape().last().copied().unwrap_or(0) }
    }

    /// One row `[cols]` (or `[1, cols]`) shared by every row of x.
    pub fn broadcast(tensor: &'a GpuTensor) -> Self {
        Self { tensor, offset: 0, row_stride: 0 }
    }

    /// Row `j` of a table `[.., n, cols]` (e.g. the DiT's `[1, 6, 3072]` modulation), shared by every row of x.
    pub fn table_row(tensor: &'a GpuTensor, j: usize) -> Self {
        Self { tensor, offset: j * tensor.shape().last().copied().unwrap_or(0), row_stride: 0 }
    }

    /// Chunk `j` of `n` per row: `tensor` is `[rows, n, cols]` (e.g. a per-token `e0` of `[L, 6, 3072]`).
    pub fn chunk(tensor: &'a GpuTensor, j: usize, n: usize) -> Self {
        let cols = tensor.shape().last().copied().unwrap_or(0);
        Self { tensor, offset: j * cols, row_stride: n * cols }
    }
}

/// adaLN modulation `y · (1 + scale) + shift`, applied after the (affine) LayerNorm.
#[derive(Clone, Copy, Debug)]
pub struct Modulation<'a> {
    pub scale: RowOperand<'a>,
    pub shift: RowOperand<'a>,
}

/// `LayerNorm` over the last dim of `x` (`[.., cols]`, biased variance as PyTorch), with optional `weight`/`bias`
/// `[cols]`, then the optional adaLN modulation. Returns a new tensor of x's shape.
pub fn layer_norm(
    g: &Gpu,
    x: &GpuTensor,
    weight: Option<&GpuTensor>,
    bias: Option<&GpuTensor>,
    eps: f32,
    modulation: Option<Modulation>,
) -> Result<GpuTensor, KernelError> {
    const OP: &str = "layer_norm";
    let (rows, _) = rows_cols(OP, x)?;
    let y = g.alloc("layer_norm output", x.shape(), DType::F32)?;
    layer_norm_into(g, x, &y, 0..rows, weight, bias, eps, modulation)?;
    Ok(y)
}

/// [`layer_norm`] of rows `rows` of `x` into the same rows of `y` (same shape as x; may be `x` itself, then the
/// norm runs in place). Modulation operands are indexed from the start of the range, so a `[video; audio]` row
/// stack can be normalised with one modulation table per modality by two calls.
#[allow(clippy::too_many_arguments)] // mirrors F.layer_norm's argument list plus the output and row range
pub fn layer_norm_into(
    g: &Gpu,
    x: &GpuTensor,
    y: &GpuTensor,
    rows: Range<usize>,
    weight: Option<&GpuTensor>,
    bias: Option<&GpuTensor>,
    eps: f32,
    modulation: Option<Modulation>,
) -> Result<(), KernelError> {
    run_rows(g, RowJob { op: "layer_norm", kernel: Kernel::LayerNorm, x, y, rows, weight, bias, eps, modulation })
}

/// `RMSNorm` over the last dim of `x` (`[.., cols]`): `y = x / sqrt(mean(x²) + eps) * weight`, weight `[cols]`.
/// Per-head norms (Qwen3's q/k norm) are this on x reshaped to `[tokens · heads, head_dim]`.
pub fn rms_norm(g: &Gpu, x: &GpuTensor, weight: &GpuTensor, eps: f32) -> Result<GpuTensor, KernelError> {
    let (rows, _) = rows_cols("rms_norm", x)?;
    let y = g.alloc("rms_norm output", x.shape(), DType::F32)?;
    rms_norm_into(g, x, &y, 0..rows, weight, eps)?;
    Ok(y)
}

/// [`rms_norm`] of rows `rows` of `x` into the same rows of `y` (same shape; may be `x` itself: in place).
pub fn rms_norm_into(
    g: &Gpu,
    x: &GpuTensor,
    y: &GpuTensor,
    rows: Range<usize>,
    weight: &GpuTensor,
    eps: f32,
) -> Result<(), KernelError> {
    run_rows(
        g,
        RowJob {
            op: "rms_norm",
            kernel: Kernel::RmsNorm,
            x,
            y,
            rows,
            weight: Some(weight),
            bias: None,
            eps,
            modulation: None,
        },
    )
}

/// T5's `T5LayerNorm` is the same formula as [`rms_norm`] (no mean subtraction, no bias; the fp16 clamp of the
/// reference only matters for fp16 activations, and ours are f32).
pub fn t5_rms_norm(g: &Gpu, x: &GpuTensor, weight: &GpuTensor, eps: f32) -> Result<GpuTensor, KernelError> {
    rms_norm(g, x, weight, eps)
}

/// Which channel norm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ChannelNorm {
    /// `x / sqrt(mean_C(x²) + eps)` (LTX audio VAE `PixelNorm`, eps 1e-6 there).
    Pixel { eps: f32 },
    /// `F.normalize(x, dim=C) · √C` (Wan2.2 VAE `RMS_norm` before its γ and β).
    L2,
}

/// `PixelNorm` of a `[C, S]` or `[B, C, S]` feature map (reshape `[B, C, T, H, W]` to `[B, C, T·H·W]`).
pub fn pixel_norm(g: &Gpu, x: &GpuTensor, eps: f32) -> Result<GpuTensor, KernelError> {
    chan_norm("pixel_norm", g, x, ChannelNorm::Pixel { eps }, None, None, false)
}

/// [`pixel_norm`] followed by SiLU (the `PN → SiLU` of the audio VAE's resnet blocks).
pub fn pixel_norm_silu(g: &Gpu, x: &GpuTensor, eps: f32) -> Result<GpuTensor, KernelError> {
    chan_norm("pixel_norm_silu", g, x, ChannelNorm::Pixel { eps }, None, None, true)
}

/// Wan2.2's `RMS_norm`: `F.normalize(x, dim=C) · √C · gamma (+ bias)` over a `[C, S]` or `[B, C, S]` map; gamma
/// and bias have C elements (`[C]` or Wan's `[C, 1, 1, 1]`).
pub fn channel_rms_norm(
    g: &Gpu,
    x: &GpuTensor,
    gamma: &GpuTensor,
    bias: Option<&GpuTensor>,
) -> Result<GpuTensor, KernelError> {
    chan_norm("channel_rms_norm", g, x, ChannelNorm::L2, Some(gamma), bias, false)
}

/// [`channel_rms_norm`] followed by SiLU (the `RMS → SiLU` of the Wan VAE's residual blocks and head).
pub fn channel_rms_norm_silu(
    g: &Gpu,
    x: &GpuTensor,
    gamma: &GpuTensor,
    bias: Option<&GpuTensor>,
) -> Result<GpuTensor, KernelError> {
    chan_norm("channel_rms_norm_silu", g, x, ChannelNorm::L2, Some(gamma), bias, true)
}

/// Any channel norm over the C axis of `x` (`[C, S]` or `[B, C, S]`), then `· gamma + bias` (each C elements),
/// then SiLU when `silu`.
pub fn channel_norm(
    g: &Gpu,
    x: &GpuTensor,
    kind: ChannelNorm,
    gamma: Option<&GpuTensor>,
    bias: Option<&GpuTensor>,
    silu: bool,
) -> Result<GpuTensor, KernelError> {
    chan_norm("channel_norm", g, x, kind, gamma, bias, silu)
}

fn chan_norm(
    op: &'static str,
    g: &Gpu,
    x: &GpuTensor,
    kind: ChannelNorm,
    gamma: Option<&GpuTensor>,
    bias: Option<&GpuTensor>,
    silu: bool,
) -> Result<GpuTensor, KernelError> {
    x.expect_dtype(op, "x", DType::F32)?;
    let (batch, c, s) = match *x.shape() {
        [c, s] => (1, c, s),
        [b, c, s] => (b, c, s),
        _ => {
            return Err(KernelError::Shape {
                op,
                tensor: "x",
                expected: "[C, S] or [B, C, S] (reshape [B, C, T, H, W] to [B, C, T·H·W])".into(),
                found: x.shape().to_vec(),
            })
        }
    };
    for (name, t) in [("gamma", gamma), ("bias", bias)] {
        if let Some(t) = t {
            t.expect_dtype(op, name, DType::F32)?;
            if t.shape().first() != Some(&c) || t.numel() != c {
                return Err(KernelError::Shape {
                    op,
                    tensor: name,
                    expected: format!("[{c}] or [{c}, 1, ..] (one value per channel)"),
                    found: t.shape().to_vec(),
                });
            }
        }
    }
    let y = g.alloc("channel_norm output", x.shape(), DType::F32)?;
    if batch == 0 || c == 0 || s == 0 {
        return Ok(y);
    }
    let mut flags = 0;
    let eps = match kind {
        ChannelNorm::Pixel { eps } => {
            flags |= PIXEL;
            eps
        }
        ChannelNorm::L2 => NORMALIZE_EPS,
    };
    if gamma.is_some() {
        flags |= HAS_W;
    }
    if bias.is_some() {
        flags |= HAS_B;
    }
    if silu {
        flags |= SILU;
    }
    let gamma_b = gamma.map_or_else(|| g.dummy().binding(), |t| t.binding());
    let bias_b = bias.map_or_else(|| g.dummy().binding(), |t| t.binding());
    let align = g.binding_align();
    let words = usable_words(g);
    let max_groups = g.limits.max_compute_workgroups_per_dimension;
    let base = NormParams { rows: c as u32, cols: s as u32, eps, flags, c_total: c as u32, ..Default::default() };
    let item = (c * s) as u64;
    let per_launch = (words / item) as usize;
    if per_launch > 0 {
        // Whole items per launch: one invocation per (item, position), walking all channels.
        let v = Variant::pick(g, Kernel::ChanNorm, false);
        let pipe = g.pipeline(&v.spec())?;
        for b0 in (0..batch).step_by(per_launch) {
            let nb = per_launch.min(batch - b0);
            let (start, len) = (4 * b0 as u64 * item, 4 * nb as u64 * item);
            let xb = x.window(start, len, align);
            let yb = y.window(start, len, align);
            let params = NormParams { batch: nb as u32, x_shift: xb.word_shift, y_shift: yb.word_shift, ..base };
            let [gx, gy] = spread((nb * s).div_ceil(v.wg as usize) as u32, max_groups);
            let dummy = g.dummy().binding();
            g.dispatch(&pipe, &[xb, gamma_b.clone(), bias_b.clone(), dummy.clone(), dummy, yb], &params, [gx, gy, 1])?;
        }
        return Ok(y);
    }
    // One item does not fit a binding: chunks of channels, two passes through a [S] scratch row.
    let chunk = (words / s as u64) as usize;
    if chunk == 0 {
        return Err(KernelError::Unsupported {
            op,
            what: format!(
                "one channel of {s} positions ({} bytes) exceeds the largest binding ({} bytes); split the \
                 positions (e.g. decode in smaller tiles)",
                4 * s,
                g.max_binding()
            ),
        });
    }
    let sumsq = g.pipeline(&Variant::pick(g, Kernel::ChanSumsq, false).spec())?;
    let apply_v = Variant::pick(g, Kernel::ChanApply, false);
    let apply = g.pipeline(&apply_v.spec())?;
    let scratch = g.alloc("channel_norm sums of squares", &[s], DType::F32)?;
    let [gx, gy] = spread(s.div_ceil(apply_v.wg as usize) as u32, max_groups);
    let dummy = g.dummy().binding();
    for b in 0..batch {
        let chunks: Vec<(usize, usize)> = (0..c).step_by(chunk).map(|c0| (c0, chunk.min(c - c0))).collect();
        for (pass, pipe) in [(0, &sumsq), (1, &apply)] {
            for &(c0, cc) in &chunks {
                let start = 4 * ((b * c + c0) * s) as u64;
                let len = 4 * (cc * s) as u64;
                let xb = x.window(start, len, align);
                let (out, sc) = if pass == 0 {
                    (scratch.binding(), dummy.clone())
                } else {
                    (y.window(start, len, align), scratch.binding())
                };
                let params = NormParams {
                    rows: cc as u32,
                    batch: 1,
                    c_begin: c0 as u32,
                    flags: flags | if pass == 0 && c0 > 0 { ACCUMULATE } else { 0 },
                    x_shift: xb.word_shift,
                    y_shift: out.word_shift,
                    ..base
                };
                g.dispatch(pipe, &[xb, gamma_b.clone(), bias_b.clone(), sc, dummy.clone(), out], &params, [gx, gy, 1])?;
            }
        }
    }
    Ok(y)
}

/// Words one binding may cover, leaving room for the alignment slack a window adds before its data.
fn usable_words(g: &Gpu) -> u64 {
    g.max_binding().saturating_sub(g.binding_align()) / 4
}

/// Rows and columns of `x` viewed as `[rows, cols]` (every leading dim is a row dim).
fn rows_cols(op: &'static str, x: &GpuTensor) -> Result<(usize, usize), KernelError> {
    x.expect_dtype(op, "x", DType::F32)?;
    match x.shape().split_last() {
        Some((&cols, lead)) => Ok((lead.iter().product(), cols)),
        None => Err(KernelError::Shape {
            op,
            tensor: "x",
            expected: "[.., cols] (at least one dim)".into(),
            found: x.shape().to_vec(),
        }),
    }
}

struct RowJob<'a> {
    op: &'static str,
    kernel: Kernel,
    x: &'a GpuTensor,
    y: &'a GpuTensor,
    rows: Range<usize>,
    weight: Option<&'a GpuTensor>,
    bias: Option<&'a GpuTensor>,
    eps: f32,
    modulation: Option<Modulation<'a>>,
}

/// Checks that a row operand is f32 and covers `n` rows of `cols`.
fn check_operand(
    op: &'static str,
    name: &'static str,
    o: &RowOperand,
    n: usize,
    cols: usize,
) -> Result<(), KernelError> {
    o.tensor.expect_dtype(op, name, DType::F32)?;
    if n == 0 {
        return Ok(());
    }
    let need = n
        .checked_sub(1)
        .and_then(|last| last.checked_mul(o.row_stride))
        .and_then(|v| v.checked_add(o.offset))
        .and_then(|v| v.checked_add(cols));
    match need {
        Some(need) if need <= o.tensor.numel() => Ok(()),
        _ => Err(KernelError::Shape {
            op,
            tensor: name,
            expected: format!(
                "at least {} elements: {n} rows of {cols} at element offset {} with row stride {}",
                need.map_or_else(|| "too many".to_string(), |v| v.to_string()),
                o.offset,
                o.row_stride
            ),
            found: o.tensor.shape().to_vec(),
        }),
    }
}

fn run_rows(g: &Gpu, job: RowJob) -> Result<(), KernelError> {
    let op = job.op;
    let (total_rows, cols) = rows_cols(op, job.x)?;
    job.y.expect(op, "y", job.x.shape())?;
    job.y.expect_dtype(op, "y", DType::F32)?;
    if job.rows.start > job.rows.end || job.rows.end > total_rows {
        return Err(KernelError::Unsupported {
            op,
            what: format!("row range {:?} is outside the {total_rows} rows of x", job.rows),
        });
    }
    for (name, t) in [("weight", job.weight), ("bias", job.bias)] {
        if let Some(t) = t {
            t.expect(op, name, &[cols])?;
            t.expect_dtype(op, name, DType::F32)?;
        }
    }
    let n_rows = job.rows.len();
    if let Some(m) = &job.modulation {
        check_operand(op, "scale", &m.scale, n_rows, cols)?;
        check_operand(op, "shift", &m.shift, n_rows, cols)?;
    }
    if n_rows == 0 || cols == 0 {
        return Ok(());
    }
    let inplace = Arc::ptr_eq(&job.x.buf, &job.y.buf);

    // Rows per launch: x and y windows, and every strided operand window, within one binding.
    let words = usable_words(g);
    let limit = |what: &str| KernelError::Unsupported {
        op,
        what: format!(
            "{what} of {cols} f32 ({} bytes) exceeds the largest binding ({} bytes)",
            4 * cols,
            g.max_binding()
        ),
    };
    let cols64 = cols as u64;
    let mut chunk = words / cols64;
    if chunk == 0 {
        return Err(limit("a row"));
    }
    if let Some(m) = &job.modulation {
        for o in [&m.scale, &m.shift] {
            if o.row_stride > 0 {
                let fit = words.checked_sub(cols64).ok_or_else(|| limit("a row"))?;
                chunk = chunk.min(fit / o.row_stride as u64 + 1);
            }
        }
    }
    let chunk = chunk as usize;

    let v = Variant::pick(g, job.kernel, inplace);
    let pipe = g.pipeline(&v.spec())?;
    let align = g.binding_align();
    let max_groups = g.limits.max_compute_workgroups_per_dimension;
    let mut flags = 0;
    if job.weight.is_some() {
        flags |= HAS_W;
    }
    if job.bias.is_some() {
        flags |= HAS_B;
    }
    if job.modulation.is_some() {
        flags |= HAS_MOD;
    }
    let dummy = g.dummy().binding();
    let whole = |t: Option<&GpuTensor>| t.map_or_else(|| dummy.clone(), |t| t.binding());
    // A window over `n` rows of an operand from launch row `r` (relative to the range start).
    let operand = |o: Option<&RowOperand>, r: usize, n: usize| -> (Binding, u32) {
        match o {
            Some(o) => {
                let start = (o.offset + r * o.row_stride) as u64;
                let len = ((n - 1) * o.row_stride + cols) as u64;
                let b = o.tensor.window(4 * start, 4 * len, align);
                let s = b.word_shift;
                (b, s)
            }
            None => (dummy.clone(), 0),
        }
    };
    for r in (0..n_rows).step_by(chunk) {
        let n = chunk.min(n_rows - r);
        let start = 4 * ((job.rows.start + r) * cols) as u64;
        let len = 4 * (n * cols) as u64;
        let yb = job.y.window(start, len, align);
        let xb = if inplace { dummy.clone() } else { job.x.window(start, len, align) };
        let (scb, sc_shift) = operand(job.modulation.as_ref().map(|m| &m.scale), r, n);
        let (shb, sh_shift) = operand(job.modulation.as_ref().map(|m| &m.shift), r, n);
        let (sc_ld, sh_ld) =
            job.modulation.as_ref().map_or((0, 0), |m| (m.scale.row_stride as u32, m.shift.row_stride as u32));
        let params = NormParams {
            rows: n as u32,
            cols: cols as u32,
            eps: job.eps,
            flags,
            x_shift: if inplace { yb.word_shift } else { xb.word_shift },
            y_shift: yb.word_shift,
            sc_shift,
            sc_ld,
            sh_shift,
            sh_ld,
            ..Default::default()
        };
        let [gx, gy] = spread(n.div_ceil(v.rows_per_group as usize) as u32, max_groups);
        g.dispatch(&pipe, &[xb, whole(job.weight), whole(job.bias), scb, shb, yb], &params, [gx, gy, 1])?;
    }
    Ok(())
}
