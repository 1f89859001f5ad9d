//! Launcher for `shaders/rope.wgsl`, and the angle tables of NAVA's rotary embeddings (NAVA.md §4.6; reference
//! `rope_params`, `rope_apply_3d`, `rope_apply_1d` in model_mm.py).
//!
//! Head dim D has D/2 complex pairs of adjacent elements. Video rows use three frequency groups — frame, row,
//! column — of `c − 2⌊c/3⌋`, `⌊c/3⌋`, `⌊c/3⌋` pairs (c = D/2), each with ω_i = θ^(−2i/dim_j) over its own width
//! dim_j = 2·pairs_j. Audio rows rotate only the frame group's pairs, with ω scaled by a factor (0.24 in NAVA).
//! Tables have `MAX_POSITIONS` rows in the reference: larger positions are refused.

use crate::gpu::{spread, Access, Family, Gpu, GpuTensor, Spec};

use super::{Check, KernelError};

pub static FAMILY: Family = Family { name: "rope", source: include_str!("../../shaders/rope.wgsl") };

/// Rows of the reference's frequency tables: positions (frames, rows, columns, audio steps) must stay below.
pub const MAX_POSITIONS: usize = 1024;
const THETA: f64 = 10000.0;
const WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct RopeParams {
    rows: u32,
    heads: u32,
    pairs: u32,
    x_shift: u32,
    t_shift: u32,
    _pad: [u32; 3],
}

fn spec() -> Spec {
    Spec::new(&FAMILY, "rope", &[Access::ReadWrite, Access::Read]).tag(&format!("t{WG}")).constant("WG", WG as f64)
}

/// Every variant, for the validation test.
pub fn variants() -> Vec<Spec> {
    vec![spec()]
}

/// Pairs per frequency group of a head dim: (frame, row, column).
pub fn pair_groups(head_dim: usize) -> [usize; 3] {
    let c = head_dim / 2;
    [c - 2 * (c / 3), c / 3, c / 3]
}

fn omegas(pairs: usize, scale: f64) -> Vec<f64> {
    let dim = 2 * pairs;
    (0..pairs).map(|i| scale / THETA.powf((2 * i) as f64 / dim as f64)).collect()
}

/// Where the rows of a sequence sit: a video grid followed by audio steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeGrid {
    /// Token grid of the video rows (frames, rows, columns), row-major.
    pub video: [usize; 3],
    /// Audio rows after the video rows.
    pub audio: usize,
    /// Multiplies the audio frequencies (`temporal_rope_scaling_factor`).
    pub audio_scale: f64,
}

/// The (cos, sin) of every row and pair, `[rows, D/2, 2]`, computed in f64.
pub fn table(grid: &RopeGrid, head_dim: usize) -> Result<Vec<f32>, KernelError> {
    let [f, h, w] = grid.video;
    for (what, n) in [("latent frames", f), ("token rows", h), ("token columns", w), ("audio tokens", grid.audio)] {
        if n > MAX_POSITIONS {
            return Err(KernelError::Unsupported {
                op: "rope",
                what: format!(
                    "{n} {what}: the model's position tables end at {MAX_POSITIONS}; use a shorter or smaller clip"
                ),
            });
        }
    }
    let c = head_dim / 2;
    let groups = pair_groups(head_dim);
    let om: Vec<Vec<f64>> = groups.iter().map(|&n| omegas(n, 1.0)).collect();
    let om_audio = omegas(groups[0], grid.audio_scale);
    let mut t = Vec::with_capacity((f * h * w + grid.audio) * c * 2);
    let mut push = |angle: f64| {
        t.push(angle.cos() as f32);
        t.push(angle.sin() as f32);
    };
    for r in 0..f * h * w {
        let pos = [r / (h * w), (r / w) % h, r % w];
        for (g, o) in om.iter().enumerate() {
            for &omega in o {
                push(pos[g] as f64 * omega);
            }
        }
    }
    for p in 0..grid.audio {
        for &omega in &om_audio {
            push(p as f64 * omega);
        }
        for _ in groups[0]..c {
            push(0.0);
        }
    }
    Ok(t)
}

/// A table on the GPU for one sequence layout; build once per generation and reuse at every step.
pub struct RopeTable {
    grid: RopeGrid,
    head_dim: usize,
    cs: GpuTensor,
}

impl RopeTable {
    pub fn new(g: &Gpu, grid: RopeGrid, head_dim: usize) -> Result<Self, KernelError> {
        if head_dim < 6 || !head_dim.is_multiple_of(2) {
            return Err(KernelError::Unsupported {
                op: "rope",
                what: format!("head dim {head_dim}: must be even and at least 6"),
            });
        }
        let t = table(&grid, head_dim)?;
        let rows = grid.video.iter().product::<usize>() + grid.audio;
        let cs = g.upload_f32("rope table", &t, &[rows, head_dim / 2, 2])?;
        Ok(Self { grid, head_dim, cs })
    }

    pub fn grid(&self) -> &RopeGrid {
        &self.grid
    }

    /// Rotates `x` `[rows, heads, head_dim]` in place (rows in the table's order).
    pub fn apply(&self, g: &Gpu, x: &GpuTensor) -> Result<(), KernelError> {
        const OP: &str = "rope";
        x.expect_dtype(OP, "x", crate::gpu::DType::F32)?;
        let [rows, heads, d] = x.dims::<3>(OP, "x")?;
        let want = self.cs.shape()[0];
        if rows != want || d != self.head_dim {
            return Err(KernelError::Shape {
                op: OP,
                tensor: "x",
                expected: format!(
                    "[{want}, heads, {}] (the video grid {:?} plus {} audio rows)",
                    self.head_dim, self.grid.video, self.grid.audio
                ),
                found: x.shape().to_vec(),
            });
        }
        let pipe = g.pipeline(&spec())?;
        let pairs = d / 2;
        // Split by rows so that x's binding fits.
        let row_bytes = (heads * d * 4) as u64;
        let max_rows = ((g.max_binding() / row_bytes) as usize).max(1);
        let align = g.binding_align();
        for r0 in (0..rows).step_by(max_rows) {
            let n = max_rows.min(rows - r0);
            let xb = x.window(r0 as u64 * row_bytes, n as u64 * row_bytes, align);
            let tb = self.cs.window((r0 * pairs * 8) as u64, (n * pairs * 8) as u64, align);
            let params = RopeParams {
                rows: n as u32,
                heads: heads as u32,
                pairs: pairs as u32,
                x_shift: xb.word_shift,
                t_shift: tb.word_shift,
                ..Default::default()
            };
            let total = (n * heads * pairs) as u32;
            let [gx, gy] = spread(total.div_ceil(WG), g.limits.max_compute_workgroups_per_dimension);
            g.dispatch(&pipe, &[xb, tb], &params, [gx, gy, 1])?;
        }
        Ok(())
    }
}
