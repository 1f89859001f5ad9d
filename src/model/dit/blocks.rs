//! The DiT's blocks: `double_blocks.{i}` (Hierarchical Alignment, NAVA.md §4.3: per-modality Q/K/V/O, QK norms
//! and modulation tables, one joint self-attention, per-modality text cross-attention, shared norm3 and FFN) and
//! `single_blocks.{i}` (Unified Fusion, §4.4: every weight shared).

use crate::gpu::{DType, Gpu, GpuTensor};
use crate::kernels::attention::{attention, AttentionOptions, Segment as AttnSegment};
use crate::kernels::elementwise::{binary, Binary};
use crate::kernels::gemm::{Act, WeightFormat};
use crate::kernels::norm::{layer_norm_into, rms_norm_into, Modulation, RowOperand};
use crate::model::layers::{LayerNorm, Linear};
use crate::model::ModelError;
use crate::weights::Scope;

use super::embed::Time;
use super::{DitConfig, Modality, Rows};

/// Projected text keys and values of one cross-attention, `[text_len, heads, head_dim]`.
pub struct CrossKv {
    k: GpuTensor,
    v: GpuTensor,
}

/// RoPE for one forward's rows: the table and the q/k layout.
pub struct RopeLayout {
    table: crate::kernels::rope::RopeTable,
    heads: usize,
    head_dim: usize,
}

impl RopeLayout {
    pub fn new(g: &Gpu, c: &DitConfig, rows: &Rows) -> Result<Self, ModelError> {
        let grid = crate::kernels::rope::RopeGrid {
            video: rows.grid,
            audio: rows.audio,
            audio_scale: c.temporal_rope_scaling_factor,
        };
        Ok(Self {
            table: crate::kernels::rope::RopeTable::new(g, grid, c.head_dim())?,
            heads: c.num_heads,
            head_dim: c.head_dim(),
        })
    }

    /// Whether this layout serves `rows` (same grid and audio length).
    pub fn fits(&self, rows: &Rows) -> bool {
        let grid = self.table.grid();
        grid.video == rows.grid && grid.audio == rows.audio
    }

    /// Rotates q or k `[L, dim]` in place; `L` may be several stacked sequences of the table's layout.
    fn apply(&self, g: &Gpu, x: &GpuTensor, rows: &Rows) -> Result<(), ModelError> {
        let n = rows.len();
        for b in 0..rows.copies {
            let xb = x.rows(b * n, n).expect("one sequence");
            let x3 = xb.reshape(&[n, self.heads, self.head_dim]).expect("dim = heads · head_dim");
            self.table.apply(g, &x3)?;
        }
        Ok(())
    }
}

/// q, k, v, o with RMS norms on q and k (over the whole width), for one modality.
struct Attn {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    norm_q: GpuTensor,
    norm_k: GpuTensor,
}

impl Attn {
    fn load(g: &Gpu, w: Scope, sfx: &str, d: usize, format: WeightFormat) -> Result<Self, ModelError> {
        Ok(Self {
            q: Linear::load(g, w, &format!("q{sfx}"), d, d, format)?,
            k: Linear::load(g, w, &format!("k{sfx}"), d, d, format)?,
            v: Linear::load(g, w, &format!("v{sfx}"), d, d, format)?,
            o: Linear::load(g, w, &format!("o{sfx}"), d, d, format)?,
            norm_q: w.tensor(g, &format!("norm_q{sfx}.weight"), &[d])?,
            norm_k: w.tensor(g, &format!("norm_k{sfx}.weight"), &[d])?,
        })
    }

    /// Writes normalised q, k and v of `h` rows `r` into the same rows of `q`, `k`, `v`.
    fn qkv_into(
        &self,
        g: &Gpu,
        h: &GpuTensor,
        r: std::ops::Range<usize>,
        qkv: &[GpuTensor; 3],
        eps: f32,
    ) -> Result<(), ModelError> {
        let view = |t: &GpuTensor| t.rows(r.start, r.len()).expect("rows of the sequence");
        let hv = view(h);
        self.q.forward_into(g, &hv, &view(&qkv[0]))?;
        rms_norm_into(g, &qkv[0], &qkv[0], r.clone(), &self.norm_q, eps)?;
        self.k.forward_into(g, &hv, &view(&qkv[1]))?;
        rms_norm_into(g, &qkv[1], &qkv[1], r.clone(), &self.norm_k, eps)?;
        self.v.forward_into(g, &hv, &view(&qkv[2]))?;
        Ok(())
    }

    /// Keys and values of the text context.
    fn cross_kv(&self, g: &Gpu, ctx: &GpuTensor, heads: usize, eps: f32) -> Result<CrossKv, ModelError> {
        let n = ctx.shape()[0];
        let k = self.k.forward(g, ctx, Act::None)?;
        rms_norm_into(g, &k, &k, 0..n, &self.norm_k, eps)?;
        let v = self.v.forward(g, ctx, Act::None)?;
        let split = |t: GpuTensor| {
            let d = t.shape()[1];
            t.reshape(&[n, heads, d / heads]).expect("dim = heads · head_dim")
        };
        Ok(CrossKv { k: split(k), v: split(v) })
    }

    /// `x[r] += o(Attn(RMS(q(n[r])), kv))`: text cross-attention, no gate.
    fn cross_add(
        &self,
        g: &Gpu,
        n: &GpuTensor,
        x: &GpuTensor,
        r: std::ops::Range<usize>,
        kv: &CrossKv,
        eps: f32,
    ) -> Result<(), ModelError> {
        let len = r.len();
        let d = n.shape()[1];
        let heads = kv.k.shape()[1];
        let q = self.q.forward(g, &n.rows(r.start, len).expect("rows"), Act::None)?;
        rms_norm_into(g, &q, &q, 0..len, &self.norm_q, eps)?;
        let q = q.reshape(&[len, heads, d / heads]).expect("heads");
        let half = self.q.w.format != WeightFormat::F32;
        let o = attention(g, &q, &kv.k, &kv.v, AttentionOptions { half, ..Default::default() })?;
        self.o.add_into(g, &o.reshape(&[len, d]).expect("heads"), &x.rows(r.start, len).expect("rows"))
    }
}

/// `modulation[6, dim] + e0[t]` for one timestep → `[6, dim]`: shift/scale/gate of attention, then of the FFN.
fn modulation(g: &Gpu, table: &GpuTensor, time: &Time, t_index: usize) -> Result<GpuTensor, ModelError> {
    let d = table.shape()[1];
    let e0 = time.e0.rows(t_index, 1).expect("one row per timestep").reshape(&[6, d]).expect("6·dim");
    Ok(binary(g, table, &e0, Binary::Add)?)
}

fn adaln(m: &GpuTensor, shift: usize) -> Modulation<'_> {
    Modulation { scale: RowOperand::table_row(m, shift + 1), shift: RowOperand::table_row(m, shift) }
}

fn gate(m: &GpuTensor, j: usize) -> GpuTensor {
    m.rows(j, 1).expect("six rows")
}

/// The steps both kinds of block share, with `attn(m)` giving the weights of modality `m`.
#[allow(clippy::too_many_arguments)] // the reference block's own arguments
fn block_forward<'a>(
    g: &Gpu,
    c: &DitConfig,
    x: &GpuTensor,
    rows: &Rows,
    mods: &[GpuTensor],
    self_attn: impl Fn(Modality) -> &'a Attn,
    split: bool,
    rope: &RopeLayout,
    segments: Option<&[AttnSegment]>,
    cross: impl Fn(&GpuTensor) -> Result<(), ModelError>,
    ffn: &[Linear; 2],
) -> Result<(), ModelError> {
    let eps = c.eps as f32;
    let (l, d) = (rows.total(), c.dim);
    let h = g.alloc("block norm", &[l, d], DType::F32)?;
    for (i, r) in rows.all_segments() {
        layer_norm_into(g, x, &h, r, None, None, eps, Some(adaln(&mods[i], 0)))?;
    }
    let qkv =
        [g.alloc("q", &[l, d], DType::F32)?, g.alloc("k", &[l, d], DType::F32)?, g.alloc("v", &[l, d], DType::F32)?];
    if split {
        for b in 0..rows.copies {
            for m in [Modality::Video, Modality::Audio] {
                let r = rows.range_in(b, m);
                if !r.is_empty() {
                    self_attn(m).qkv_into(g, &h, r, &qkv, eps)?;
                }
            }
        }
    } else {
        self_attn(Modality::Video).qkv_into(g, &h, 0..l, &qkv, eps)?;
    }
    rope.apply(g, &qkv[0], rows)?;
    rope.apply(g, &qkv[1], rows)?;
    let split3 = |t: &GpuTensor| t.reshape(&[l, c.num_heads, c.head_dim()]).expect("heads");
    let o = attention(
        g,
        &split3(&qkv[0]),
        &split3(&qkv[1]),
        &split3(&qkv[2]),
        AttentionOptions { segments, half: ffn[0].w.format != WeightFormat::F32, ..Default::default() },
    )?;
    let o = o.reshape(&[l, d]).expect("heads");
    for (i, r) in rows.all_segments() {
        let (r0, n) = (r.start, r.len());
        self_attn(rows.segments[i].modality).o.gated_add(
            g,
            &o.rows(r0, n).expect("rows"),
            &gate(&mods[i], 2),
            &x.rows(r0, n).expect("rows"),
        )?;
    }
    cross(x)?;
    for (i, r) in rows.all_segments() {
        layer_norm_into(g, x, &h, r, None, None, eps, Some(adaln(&mods[i], 3)))?;
    }
    let f = ffn[0].forward(g, &h, Act::GeluTanh)?;
    for (i, r) in rows.all_segments() {
        let (r0, n) = (r.start, r.len());
        ffn[1].gated_add(g, &f.rows(r0, n).expect("rows"), &gate(&mods[i], 5), &x.rows(r0, n).expect("rows"))?;
    }
    Ok(())
}

/// `double_blocks.{i}`; `[0]` is video (`q`, `modulation`), `[1]` audio (`q_audio`, `modulation_audio`).
pub struct DoubleBlock {
    self_attn: [Attn; 2],
    norm3: LayerNorm,
    cross_attn: [Attn; 2],
    ffn: [Linear; 2],
    modulation: [GpuTensor; 2],
}

fn idx(m: Modality) -> usize {
    match m {
        Modality::Video => 0,
        Modality::Audio => 1,
    }
}

impl DoubleBlock {
    pub fn load(g: &Gpu, w: Scope, c: &DitConfig, format: WeightFormat) -> Result<Self, ModelError> {
        let d = c.dim;
        let sa = w.scope("self_attn");
        let ca = w.scope("cross_attn");
        let table = |name: &str| -> Result<GpuTensor, ModelError> {
            Ok(w.tensor(g, name, &[1, 6, d])?.reshape(&[6, d]).expect("6·dim"))
        };
        Ok(Self {
            self_attn: [Attn::load(g, sa.get(), "", d, format)?, Attn::load(g, sa.get(), "_audio", d, format)?],
            norm3: LayerNorm::load(g, w, "norm3", d, c.eps as f32)?,
            cross_attn: [Attn::load(g, ca.get(), "", d, format)?, Attn::load(g, ca.get(), "_audio", d, format)?],
            ffn: [
                Linear::load(g, w, "ffn.0", c.ffn_dim, d, format)?,
                Linear::load(g, w, "ffn.2", d, c.ffn_dim, format)?,
            ],
            modulation: [table("modulation.modulation")?, table("modulation_audio.modulation")?],
        })
    }

    pub fn cross_kv(&self, g: &Gpu, ctx: &GpuTensor, heads: usize, eps: f32) -> Result<[CrossKv; 2], ModelError> {
        Ok([self.cross_attn[0].cross_kv(g, ctx, heads, eps)?, self.cross_attn[1].cross_kv(g, ctx, heads, eps)?])
    }

    #[allow(clippy::too_many_arguments)] // the reference block's own arguments
    pub fn forward(
        &self,
        g: &Gpu,
        c: &DitConfig,
        x: &GpuTensor,
        rows: &Rows,
        time: &Time,
        kv: &[&[CrossKv; 2]],
        rope: &RopeLayout,
        segments: Option<&[AttnSegment]>,
    ) -> Result<(), ModelError> {
        let mods = rows
            .segments
            .iter()
            .map(|s| modulation(g, &self.modulation[idx(s.modality)], time, s.t_index))
            .collect::<Result<Vec<_>, _>>()?;
        let eps = c.eps as f32;
        let cross = |x: &GpuTensor| -> Result<(), ModelError> {
            let n = self.norm3.forward(g, x)?;
            for (b, kv) in kv.iter().enumerate() {
                for m in [Modality::Video, Modality::Audio] {
                    let r = rows.range_in(b, m);
                    if !r.is_empty() {
                        self.cross_attn[idx(m)].cross_add(g, &n, x, r, &kv[idx(m)], eps)?;
                    }
                }
            }
            Ok(())
        };
        block_forward(g, c, x, rows, &mods, |m| &self.self_attn[idx(m)], true, rope, segments, cross, &self.ffn)
    }
}

/// `single_blocks.{i}`: the Wan2.2 block, one set of weights for both modalities.
pub struct SingleBlock {
    self_attn: Attn,
    norm3: LayerNorm,
    cross_attn: Attn,
    ffn: [Linear; 2],
    modulation: GpuTensor,
}

impl SingleBlock {
    pub fn load(g: &Gpu, w: Scope, c: &DitConfig, format: WeightFormat) -> Result<Self, ModelError> {
        let d = c.dim;
        Ok(Self {
            self_attn: Attn::load(g, w.scope("self_attn").get(), "", d, format)?,
            norm3: LayerNorm::load(g, w, "norm3", d, c.eps as f32)?,
            cross_attn: Attn::load(g, w.scope("cross_attn").get(), "", d, format)?,
            ffn: [
                Linear::load(g, w, "ffn.0", c.ffn_dim, d, format)?,
                Linear::load(g, w, "ffn.2", d, c.ffn_dim, format)?,
            ],
            modulation: w.tensor(g, "modulation.modulation", &[1, 6, d])?.reshape(&[6, d]).expect("6·dim"),
        })
    }

    pub fn cross_kv(&self, g: &Gpu, ctx: &GpuTensor, heads: usize, eps: f32) -> Result<CrossKv, ModelError> {
        self.cross_attn.cross_kv(g, ctx, heads, eps)
    }

    #[allow(clippy::too_many_arguments)] // the reference block's own arguments
    pub fn forward(
        &self,
        g: &Gpu,
        c: &DitConfig,
        x: &GpuTensor,
        rows: &Rows,
        time: &Time,
        kv: &[&CrossKv],
        rope: &RopeLayout,
        segments: Option<&[AttnSegment]>,
    ) -> Result<(), ModelError> {
        let mods = rows
            .segments
            .iter()
            .map(|s| modulation(g, &self.modulation, time, s.t_index))
            .collect::<Result<Vec<_>, _>>()?;
        let eps = c.eps as f32;
        let cross = |x: &GpuTensor| -> Result<(), ModelError> {
            let n = self.norm3.forward(g, x)?;
            let len = rows.len();
            for (b, kv) in kv.iter().enumerate() {
                self.cross_attn.cross_add(g, &n, x, b * len..(b + 1) * len, kv, eps)?;
            }
            Ok(())
        };
        block_forward(g, c, x, rows, &mods, |_| &self.self_attn, false, rope, segments, cross, &self.ffn)
    }
}
