//! Launcher for `shaders/rope.wgsl`: NAVA's rotary position embedding (NAVA.md §4.6, Wan's `rope_apply`).
//!
//! The head dim D is split into D/2 interleaved pairs and three frequency groups, as Wan sizes them from the head
//! dim: the first group has D − 4·⌊D/6⌋ dims, the other two 2·⌊D/6⌋ each (44/42/42 dims = 22/21/21 pairs at
//! D = 128). Pair i of a group of `dim` dims turns at ω_i = 10000^(−2i/dim) per position step.
//! - Video rows (3D): row r of the grid (F, Hg, Wg), in row-major order, has positions f = r/(Hg·Wg),
//!   h = (r/Wg) mod Hg, w = r mod Wg for the three groups.
//! - Audio rows (1D): token p turns the first group's pairs by p·ω_i·`freq_scale` (0.24 in NAVA: an audio token
//!   lands on video latent time 0.24·p); the other pairs are left as they are.
//!
//! The angles and their (cos, sin) are computed on the host in float64, as the reference does, and uploaded once
//! as f32 tables ([`RopeTable`]): at most a few thousand entries per axis, shared by all heads and layers.

use crate::gpu::{spread, Access, DType, Family, Gpu, GpuTensor, Spec};

use super::{Check, KernelError};

pub static FAMILY: Family = Family {
    name: "rope",
    source: include_str!("../../shaders/rope.wgsl"),
};

const OP: &str = "rope";

/// The RoPE base of NAVA and Wan.
pub const THETA: f64 = 10000.0;

/// NAVA's audio frequency scale (`temporal_rope_scaling_factor`).
pub const NAVA_AUDIO_FREQ_SCALE: f64 = 0.24;

const WG: u32 = 64;

/// A video token grid: latent frames × token rows × token columns; its rows are ordered (f, h, w) row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoGrid {
    pub frames: usize,
    pub height: usize,
    pub width: usize,
}

impl VideoGrid {
    pub fn new(frames: usize, height: usize, width: usize) -> Self {
        Self {
            frames,
            height,
            width,
        }
    }

    /// Tokens in the grid.
    pub fn len(&self) -> usize {
        self.frames * self.height * self.width
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The 1D (audio) rotation of rows `start .. start + len`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AudioRope {
    pub start: usize,
    pub len: usize,
    /// Multiplies every frequency of the first group.
    pub freq_scale: f64,
}

/// Which rows of a `[L, H, D]` tensor get which rotation. Rows outside both ranges are not rotated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeLayout {
    pub head_dim: usize,
    /// The 3D rotation of rows `start .. start + grid.len()`.
    pub video: Option<(usize, VideoGrid)>,
    pub audio: Option<AudioRope>,
}

impl RopeLayout {
    /// NAVA's `[video; audio]` rows: the grid's tokens first, then `audio_len` audio tokens.
    pub fn av(head_dim: usize, grid: VideoGrid, audio_len: usize, freq_scale: f64) -> Self {
        Self {
            head_dim,
            video: Some((0, grid)),
            audio: Some(AudioRope {
                start: grid.len(),
                len: audio_len,
                freq_scale,
            }),
        }
    }
}

/// Pairs in the three frequency groups (frame, row, column) of a head dim, as Wan sizes them.
pub fn group_pairs(head_dim: usize) -> [usize; 3] {
    let d1 = 2 * (head_dim / 6);
    let d0 = head_dim - 2 * d1;
    [d0 / 2, d1 / 2, d1 / 2]
}

/// ω_i = θ^(−2i/dim) for the pairs of a group of `dim` dims, in float64 (Wan's `rope_params`).
pub fn group_freqs(dim: usize) -> Vec<f64> {
    (0..dim / 2)
        .map(|i| 1.0 / THETA.powf((2 * i) as f64 / dim as f64))
        .collect()
}

/// (cos, sin) of pos·ω for positions `0..n` and each ω, row-major [n][ω], rounded from float64.
fn table(n: usize, freqs: &[f64], scale: f64) -> impl Iterator<Item = [f32; 2]> + '_ {
    (0..n).flat_map(move |pos| {
        freqs.iter().map(move |w| {
            let a = pos as f64 * (w * scale);
            [a.cos() as f32, a.sin() as f32]
        })
    })
}

/// The (cos, sin) tables of one layout on the GPU. Build once per sequence shape and reuse for q and k of every
/// layer.
pub struct RopeTable {
    layout: RopeLayout,
    tab: Option<GpuTensor>,
    n0: usize,
    n1: usize,
    t_hw: usize,
    t_a: usize,
}

impl RopeTable {
    pub fn new(g: &Gpu, layout: RopeLayout) -> Result<Self, KernelError> {
        let d = layout.head_dim;
        if d < 2 || !d.is_multiple_of(2) {
            return Err(KernelError::Unsupported {
                op: OP,
                what: format!("head dim {d}: rotary pairs need an even head dim of at least 2"),
            });
        }
        let [n0, n1, _] = group_pairs(d);
        let f0 = group_freqs(2 * n0);
        let f1 = group_freqs(2 * n1);
        let mut host: Vec<[f32; 2]> = Vec::new();
        let (frames, hw) = layout
            .video
            .map_or((0, 0), |(_, gr)| (gr.frames, gr.height.max(gr.width)));
        host.extend(table(frames, &f0, 1.0));
        let t_hw = host.len();
        host.extend(table(hw, &f1, 1.0));
        let t_a = host.len();
        if let Some(a) = layout.audio {
            host.extend(table(a.len, &f0, a.freq_scale));
        }
        let tab = if host.is_empty() {
            None
        } else {
            let flat: Vec<f32> = host.iter().flatten().copied().collect();
            Some(g.upload_f32("rope cos/sin table", &flat, &[host.len(), 2])?)
        };
        Ok(Self {
            layout,
            tab,
            n0,
            n1,
            t_hw,
            t_a,
        })
    }

    pub fn layout(&self) -> &RopeLayout {
        &self.layout
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct RopeParams {
    rows: u32,
    row0: u32,
    heads: u32,
    pairs: u32,
    x_shift: u32,
    y_shift: u32,
    v_start: u32,
    v_len: u32,
    grid_h: u32,
    grid_w: u32,
    a_start: u32,
    a_len: u32,
    n0: u32,
    n1: u32,
    t_f: u32,
    t_hw: u32,
    t_a: u32,
    in_place: u32,
    _pad0: u32,
    _pad1: u32,
}

/// Pipeline-cache key of the RoPE kernel; label `rope.rope.t<WG>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    pub wg: u32,
}

impl Variant {
    pub fn spec(self) -> Spec {
        use Access::*;
        Spec::new(&FAMILY, "rope", &[ReadWrite, Read, ReadWrite])
            .tag(&format!("t{}", self.wg))
            .constant("WG", self.wg as f64)
    }
}

/// Every variant, for the validation test.
pub fn variants() -> Vec<Spec> {
    vec![Variant { wg: WG }.spec()]
}

/// Rotates `x` `[L, H, D]` by the table's layout into a new tensor (rows outside the layout are copied).
pub fn rope_apply(g: &Gpu, x: &GpuTensor, t: &RopeTable) -> Result<GpuTensor, KernelError> {
    let shape = check(x, &t.layout)?;
    let y = g.alloc("rope output", &shape, DType::F32)?;
    run(g, x, Some(&y), t)?;
    Ok(y)
}

/// Rotates `x` `[L, H, D]` in place by the table's layout (rows outside the layout are untouched).
pub fn rope_apply_inplace(g: &Gpu, x: &GpuTensor, t: &RopeTable) -> Result<(), KernelError> {
    check(x, &t.layout)?;
    run(g, x, None, t)
}

/// NAVA's RoPE of `[video; audio]` rows: `x` is `[grid.len() + audio_len, H, D]`; returns a new tensor.
pub fn rope_av(
    g: &Gpu,
    x: &GpuTensor,
    grid: VideoGrid,
    audio_len: usize,
    freq_scale: f64,
) -> Result<GpuTensor, KernelError> {
    let t = av_table(g, x, grid, audio_len, freq_scale)?;
    rope_apply(g, x, &t)
}

/// [`rope_av`] in place.
pub fn rope_av_inplace(
    g: &Gpu,
    x: &GpuTensor,
    grid: VideoGrid,
    audio_len: usize,
    freq_scale: f64,
) -> Result<(), KernelError> {
    let t = av_table(g, x, grid, audio_len, freq_scale)?;
    rope_apply_inplace(g, x, &t)
}

/// The 3D (video) rotation of rows `start_row .. start_row + grid.len()` of `x` `[L, H, D]`; other rows are copied.
pub fn rope_3d(
    g: &Gpu,
    x: &GpuTensor,
    grid: VideoGrid,
    start_row: usize,
) -> Result<GpuTensor, KernelError> {
    let layout = RopeLayout {
        head_dim: head_dim(x)?,
        video: Some((start_row, grid)),
        audio: None,
    };
    rope_apply(g, x, &RopeTable::new(g, layout)?)
}

/// The 1D (audio) rotation of rows `start_row .. start_row + len` of `x` `[L, H, D]`; other rows are copied.
pub fn rope_1d(
    g: &Gpu,
    x: &GpuTensor,
    start_row: usize,
    len: usize,
    freq_scale: f64,
) -> Result<GpuTensor, KernelError> {
    let layout = RopeLayout {
        head_dim: head_dim(x)?,
        video: None,
        audio: Some(AudioRope {
            start: start_row,
            len,
            freq_scale,
        }),
    };
    rope_apply(g, x, &RopeTable::new(g, layout)?)
}

fn head_dim(x: &GpuTensor) -> Result<usize, KernelError> {
    let [_, _, d] = x.dims::<3>(OP, "x")?;
    Ok(d)
}

fn av_table(
    g: &Gpu,
    x: &GpuTensor,
    grid: VideoGrid,
    audio_len: usize,
    freq_scale: f64,
) -> Result<RopeTable, KernelError> {
    let [l, h, d] = x.dims::<3>(OP, "x")?;
    if l != grid.len() + audio_len {
        return Err(KernelError::Shape {
            op: OP,
            tensor: "x",
            expected: format!(
                "[{} video rows (grid {}×{}×{}) + {audio_len} audio rows = {}, {h}, {d}]",
                grid.len(),
                grid.frames,
                grid.height,
                grid.width,
                grid.len() + audio_len
            ),
            found: x.shape().to_vec(),
        });
    }
    RopeTable::new(g, RopeLayout::av(d, grid, audio_len, freq_scale))
}

/// Checks x against a layout; returns its shape.
fn check(x: &GpuTensor, layout: &RopeLayout) -> Result<Vec<usize>, KernelError> {
    x.expect_dtype(OP, "x", DType::F32)?;
    let [l, h, d] = x.dims::<3>(OP, "x")?;
    if d != layout.head_dim {
        return Err(KernelError::Shape {
            op: OP,
            tensor: "x",
            expected: format!("[L, H, {}] (the table's head dim)", layout.head_dim),
            found: x.shape().to_vec(),
        });
    }
    let video = layout.video.map(|(s, gr)| (s, gr.len()));
    let audio = layout.audio.map(|a| (a.start, a.len));
    for (what, range) in [("video", video), ("audio", audio)] {
        if let Some((s, n)) = range {
            if s + n > l {
                return Err(KernelError::Shape {
                    op: OP,
                    tensor: "x",
                    expected: format!(
                        "at least {} rows for the {what} rows {s}..{}, [.., {h}, {d}]",
                        s + n,
                        s + n
                    ),
                    found: x.shape().to_vec(),
                });
            }
        }
    }
    if let (Some((vs, vn)), Some((as_, an))) = (video, audio) {
        if vs < as_ + an && as_ < vs + vn && vn > 0 && an > 0 {
            return Err(KernelError::Unsupported {
                op: OP,
                what: format!(
                    "video rows {vs}..{} and audio rows {as_}..{} overlap",
                    vs + vn,
                    as_ + an
                ),
            });
        }
    }
    Ok(x.shape().to_vec())
}

fn run(g: &Gpu, x: &GpuTensor, y: Option<&GpuTensor>, t: &RopeTable) -> Result<(), KernelError> {
    let [l, heads, d] = x.dims::<3>(OP, "x")?;
    let pairs = d / 2;
    if l == 0 || heads == 0 {
        return Ok(());
    }
    let lay = &t.layout;
    let (v_start, grid) = lay.video.unwrap_or((0, VideoGrid::new(0, 0, 0)));
    let audio = lay.audio.unwrap_or(AudioRope {
        start: 0,
        len: 0,
        freq_scale: 1.0,
    });
    // In place, only the rotated rows need a launch; a copy covers every row.
    let (first, end) = if y.is_some() {
        (0, l)
    } else {
        let ranges = [(v_start, grid.len()), (audio.start, audio.len)];
        let live = ranges.iter().filter(|r| r.1 > 0);
        let first = live.clone().map(|r| r.0).min();
        let end = live.map(|r| r.0 + r.1).max();
        match (first, end) {
            (Some(f), Some(e)) => (f, e),
            _ => return Ok(()),
        }
    };
    let pipe = g.pipeline(&Variant { wg: WG }.spec())?;
    let max = g.max_binding();
    let align = g.binding_align();
    let row_bytes = (heads * d * 4) as u64;
    let fit_rows = (max.saturating_sub(align) / row_bytes) as usize;
    if fit_rows == 0 {
        return Err(KernelError::Unsupported {
            op: OP,
            what: format!(
                "one row of {heads} heads × {d} ({row_bytes} bytes) exceeds the adapter's binding limit of \
                 {max} bytes"
            ),
        });
    }
    // Invocations of one launch: rows × pairs, within the workgroup grid.
    let max_groups = g.limits.max_compute_workgroups_per_dimension as usize;
    let fit_rows = fit_rows.min(max_groups * max_groups * WG as usize / pairs.max(1));
    let tab = t
        .tab
        .as_ref()
        .map_or_else(|| g.dummy().binding(), |t| t.binding());
    for r0 in (first..end).step_by(fit_rows) {
        let rc = fit_rows.min(end - r0);
        let xb = x.window(r0 as u64 * row_bytes, rc as u64 * row_bytes, align);
        let yb = match y {
            Some(y) => y.window(r0 as u64 * row_bytes, rc as u64 * row_bytes, align),
            None => g.dummy().binding(),
        };
        // Rows are whole pairs, so the word shifts are even.
        let params = RopeParams {
            rows: rc as u32,
            row0: r0 as u32,
            heads: heads as u32,
            pairs: pairs as u32,
            x_shift: xb.word_shift / 2,
            y_shift: yb.word_shift / 2,
            v_start: v_start as u32,
            v_len: grid.len() as u32,
            grid_h: grid.height as u32,
            grid_w: grid.width as u32,
            a_start: audio.start as u32,
            a_len: audio.len as u32,
            n0: t.n0 as u32,
            n1: t.n1 as u32,
            t_f: 0,
            t_hw: t.t_hw as u32,
            t_a: t.t_a as u32,
            in_place: y.is_none() as u32,
            ..Default::default()
        };
        let groups = (rc * pairs).div_ceil(WG as usize) as u32;
        let [gx, gy] = spread(groups, max_groups as u32);
        g.dispatch(&pipe, &[xb, tab.clone(), yb], &params, [gx, gy, 1])?;
    }
    Ok(())
}
