//! Launcher for `shaders/timestep.wgsl`: the sinusoidal timestep embedding of NAVA.md §4.2,
//! `[cos(t·ω_k) ‖ sin(t·ω_k)]`, ω_k = 10000^(−k/(freq_dim/2)), accurate to the float64 reference within ~1e-7.

use crate::gpu::{spread, Access, DType, Family, Gpu, GpuTensor, Spec};

use super::{check_f32, fits_whole, rows_per_launch};
use crate::kernels::KernelError;

pub static TIMESTEP: Family = Family { name: "timestep", source: include_str!("../../../shaders/timestep.wgsl") };

/// Invocations per workgroup; one (timestep, k) pair each.
const TIMESTEP_WG: usize = 64;

/// Label `timestep.sinusoid`.
pub(super) fn spec() -> Spec {
    use Access::*;
    Spec::new(&TIMESTEP, "sinusoid", &[Read, Read, ReadWrite]).constant("WG", TIMESTEP_WG as f64)
}

/// The frequency table of the sinusoidal timestep embedding for one `freq_dim`: for each k < freq_dim/2,
/// ω_k / 2π in turns as 64-bit fixed point (two u32 words, high first), computed in f64 as the reference does.
/// Build it once and keep it: creating it uploads.
pub struct TimestepFreqs {
    freq_dim: usize,
    table: GpuTensor,
}

impl TimestepFreqs {
    pub fn new(g: &Gpu, freq_dim: usize) -> Result<Self, KernelError> {
        if freq_dim == 0 || !freq_dim.is_multiple_of(2) {
            return Err(KernelError::Unsupported {
                op: "timestep_embedding",
                what: format!("freq_dim {freq_dim}: must be even and positive"),
            });
        }
        let half = freq_dim / 2;
        let mut words = Vec::with_capacity(freq_dim);
        for k in 0..half {
            let omega = 10000f64.powf(-(k as f64) / half as f64);
            let fixed = omega / std::f64::consts::TAU * 4294967296.0; // < 2^30: ω ≤ 1
            let hi = fixed.floor();
            words.push(hi as u32);
            words.push(((fixed - hi) * 4294967296.0).floor() as u32);
        }
        let table = g.upload_u32("timestep freqs", &words, &[half, 2])?;
        Ok(Self { freq_dim, table })
    }

    pub fn freq_dim(&self) -> usize {
        self.freq_dim
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct TimestepParams {
    n: u32,
    half: u32,
    t_shift: u32,
    f_shift: u32,
    y_shift: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
} // mirrors WGSL `Params` of timestep.wgsl

/// `[cos(t·ω_k) ‖ sin(t·ω_k)]` for each timestep: t of any shape (integral values in [0, 2^24)) → `[.., freq_dim]`.
pub fn timestep_embedding(g: &Gpu, freqs: &TimestepFreqs, t: &GpuTensor) -> Result<GpuTensor, KernelError> {
    const OP: &str = "timestep_embedding";
    check_f32(OP, "t", t)?;
    let (dim, half) = (freqs.freq_dim, freqs.freq_dim / 2);
    let mut shape = t.shape().to_vec();
    shape.push(dim);
    let y = g.alloc("timestep embedding", &shape, DType::F32)?;
    let steps = t.numel();
    if steps == 0 {
        return Ok(y);
    }
    fits_whole(g, OP, &freqs.table)?;
    let per = rows_per_launch(g, OP, dim)?;
    let pipe = g.pipeline(&spec())?;
    let align = g.binding_align();
    let max_groups = g.limits.max_compute_workgroups_per_dimension;
    for u0 in (0..steps).step_by(per) {
        let uc = per.min(steps - u0);
        let tb = t.window((u0 * 4) as u64, (uc * 4) as u64, align);
        let yb = y.window((u0 * dim * 4) as u64, (uc * dim * 4) as u64, align);
        let params = TimestepParams {
            n: (uc * half) as u32,
            half: half as u32,
            t_shift: tb.word_shift,
            f_shift: 0,
            y_shift: yb.word_shift,
            ..Default::default()
        };
        let [gx, gy] = spread((uc * half).div_ceil(TIMESTEP_WG) as u32, max_groups);
        g.dispatch(&pipe, &[tb, freqs.table.binding(), yb], &params, [gx, gy, 1])?;
    }
    Ok(y)
}
