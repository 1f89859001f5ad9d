//! Launcher for `shaders/attention.wgsl`: non-causal multi-head attention, flash style (online softmax, O(L)
//! memory), `o = softmax(scale · q·kᵀ + bias) · v` per head, as in PyTorch's `scaled_dot_product_attention` with
//! q, k, v in the `[L, H, D]` layout that a `[L, H·D]` projection output already has.
//!
//! Optional parts: a scale other than 1/√D (UMT5 uses 1.0), an additive bias `[H, Lq, Lk]` (UMT5's relative
//! position bias), and segments that cut the sequence into independent blocks (NAVA's modality-masked pass, where
//! video rows attend only video keys and audio rows only audio keys).
//!
//! Tensors larger than one binding are split into windows: query rows across launches, and keys across launches
//! that carry the softmax state (running max and sum, plus the unnormalised output) from one to the next.

use crate::gpu::{spread, Access, DType, Family, Gpu, GpuTensor, Spec};

use super::{Check, KernelError};

pub static FAMILY: Family = Family { name: "attention", source: include_str!("../../shaders/attention.wgsl") };
pub static FAMILY_COOP: Family =
    Family { name: "attention_coop", source: include_str!("../../shaders/attention_coop.wgsl") };
/// `attention_sg`, attention.wgsl's entry point for CPU drivers with subgroups.
const SUBGROUP: &str = include_str!("../../shaders/common/attention_subgroup.wgsl");
/// Query rows per subgroup of `attention_sg` (`TM` in the shader).
const SUBGROUP_ROWS: u32 = 8;
/// Head-dim chunks that `attention_sg` holds at most (its accumulators a0 .. a3). A chunk is 4·SG dims: one
/// vec4 per lane.
const SUBGROUP_MAX_CHUNKS: u32 = 4;
/// Subgroups per workgroup of `attention_sg`; each owns its own rows.
const SUBGROUPS_PER_WORKGROUP: u32 = 4;

const OP: &str = "attention";

/// Largest head dim: the shader keeps q and the output row of each query in private arrays of this size.
pub const MAX_HEAD_DIM: usize = 128;

/// Queries `q_start .. q_start + q_len` attend only keys `k_start .. k_start + k_len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub q_start: usize,
    pub q_len: usize,
    pub k_start: usize,
    pub k_len: usize,
}

impl Segment {
    pub fn new(q_start: usize, q_len: usize, k_start: usize, k_len: usize) -> Self {
        Self { q_start, q_len, k_start, k_len }
    }
}

/// Everything about an attention call beyond q, k and v. `Default` is plain joint attention with scale 1/√D.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttentionOptions<'a> {
    /// Multiplies q·k before the bias is added; `None` means 1/√D.
    pub scale: Option<f32>,
    /// Independent blocks whose query ranges are disjoint and together cover all query rows. `None`: every query
    /// attends every key.
    pub segments: Option<&'a [Segment]>,
    /// Added to the scaled scores, `[H, Lq, Lk]` f32 (in whole-tensor coordinates, also with segments).
    pub bias: Option<&'a GpuTensor>,
    /// Keys per launch (default: as many as one binding holds). Smaller values bound the time of one dispatch,
    /// which matters where a driver or browser kills long-running work.
    pub max_keys_per_launch: Option<usize>,
    /// Query rows per launch (default: as many as one binding holds).
    pub max_queries_per_launch: Option<usize>,
    /// Kernel and workgroup shape; `None` picks by adapter and head dim. For tests and benches.
    pub variant: Option<Variant>,
    /// The caller accepts f16 rounding of q, k, v and the probabilities (it runs with weights narrower than f32):
    /// adapters with f16 cooperative matrices then use tensor cores (`attention_coop.wgsl`).
    pub half: bool,
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct AttentionParams {
    lq: u32,
    lk: u32,
    h0: u32,
    hn: u32,
    nqb: u32,
    heads: u32,
    ld4: u32,
    q_shift: u32,
    k_shift: u32,
    v_shift: u32,
    o_shift: u32,
    st_shift: u32,
    b_shift: u32,
    b_head: u32,
    b_row: u32,
    flags: u32,
    scale: f32,
    dv: u32,
    _pad1: u32,
    _pad2: u32,
}

const BIAS: u32 = 1;
const RESUME: u32 = 2;
const LAST: u32 = 4;

/// Which entry point of attention.wgsl runs, and its workgroup shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// `attention`: `wg` invocations, each owning `qg` groups of four query rows (1 or 2). Label
    /// `attention.attention.q<rows per invocation>.t<WG>`; one pipeline serves every head dim.
    Rows { wg: u32, qg: u32 },
    /// `attention_sg` (common/attention_subgroup.wgsl): eight query rows per subgroup, K, V and q values shared
    /// through subgroup shuffles. Needs a CPU driver with subgroups of one size SG (a multiple of 4 up to 64) and
    /// a head dim that is a multiple of 4·SG, at most 16·SG and 128 (with lavapipe's 8-wide subgroups: 32, 64, 96
    /// or 128). Label `attention.attention_sg.sg<SG>.c<head dim / 4·SG>`.
    Subgroup,
}

impl Variant {
    /// For CPU drivers without subgroups (and head dims the subgroup kernel does not take), which run a workgroup
    /// on one thread: each K/V load serves eight query rows (on lavapipe 1.3× faster than four).
    pub const CPU: Variant = Variant::Rows { wg: 16, qg: 2 };
    /// For GPUs: fewer private values per invocation, more invocations.
    pub const GPU: Variant = Variant::Rows { wg: 64, qg: 1 };

    /// The `attention` shape for this adapter type.
    fn for_adapter(g: &Gpu) -> Self {
        match if g.adapter.is_cpu() { Self::CPU } else { Self::GPU } {
            Variant::Rows { wg, qg } => {
                Variant::Rows { wg: wg.min(g.limits.max_compute_invocations_per_workgroup), qg }
            }
            v => v,
        }
    }
}

/// A chosen kernel: its pipeline spec and the query rows one workgroup covers.
struct Launch {
    spec: Spec,
    rows: usize,
}

fn rows_spec(wg: u32, qg: u32) -> Spec {
    use Access::*;
    Spec::new(&FAMILY, "attention", &[Read, Read, Read, Read, ReadWrite, ReadWrite])
        .tag(&format!("q{}", 4 * qg))
        .tag(&format!("t{wg}"))
        .constant("WG", wg as f64)
        .constant("QG", qg as f64)
}

/// `attention_sg` for subgroups of `sg` and head dim 4·`sg`·`chunks`.
fn subgroup_spec(sg: u32, chunks: u32) -> Spec {
    use Access::*;
    Spec::new(&FAMILY, "attention_sg", &[Read, Read, Read, Read, ReadWrite, ReadWrite])
        .tag(&format!("sg{sg}"))
        .tag(&format!("c{chunks}"))
        .snippet(SUBGROUP)
        .constant("WG", (SUBGROUPS_PER_WORKGROUP * sg) as f64)
        .constant("SG", sg as f64)
        .constant("NC", chunks as f64)
}

/// (subgroup size, head-dim chunks per lane) of `attention_sg` for head dim `d` on this device, or why it cannot
/// run. `NAVA_ATTENTION_SUBGROUP=0` turns it off where the kernel is picked automatically (a debug switch, see
/// README).
fn subgroup_fit(g: &Gpu, d: usize) -> Result<(u32, u32), String> {
    let Some(sg) = super::gemm::fixed_subgroup(g).filter(|_| g.adapter.is_cpu()) else {
        return Err(format!(
            "the subgroup attention kernel runs on CPU drivers with subgroups of one size, a multiple of 4 up to 64 \
             (this adapter: {}, {})",
            if g.adapter.is_cpu() { "a CPU driver" } else { "a GPU" },
            match (g.caps.subgroup, g.caps.subgroup_size) {
                (false, _) => "no subgroups".to_string(),
                (true, 0) => "subgroups of varying size".to_string(),
                (true, sg) => format!("{sg}-wide subgroups"),
            }
        ));
    };
    // One chunk of the head dim: a vec4 per lane.
    let chunk = 4 * sg as usize;
    let max_d = (chunk * SUBGROUP_MAX_CHUNKS as usize).min(MAX_HEAD_DIM) / chunk * chunk;
    if max_d == 0 {
        return Err(format!(
            "the subgroup attention kernel takes head dims that are multiples of {chunk} on {sg}-wide subgroups, and \
             none is at most {MAX_HEAD_DIM}"
        ));
    }
    if !d.is_multiple_of(chunk) || d == 0 || d > max_d {
        return Err(format!(
            "head dim {d}: the subgroup attention kernel takes multiples of {chunk} up to {max_d} on {sg}-wide \
             subgroups"
        ));
    }
    let wg = SUBGROUPS_PER_WORKGROUP * sg;
    if wg > g.limits.max_compute_invocations_per_workgroup {
        return Err(format!("the subgroup attention kernel needs workgroups of {wg} invocations"));
    }
    let chunks = (d / chunk) as u32;
    Ok((sg, chunks))
}

impl Launch {
    /// The kernel for head dim `d`: `variant`, or with `None` the subgroup kernel where it runs well (CPU drivers
    /// with subgroups, head dims it takes) and otherwise the `attention` shape for the adapter type.
    fn of(g: &Gpu, variant: Option<Variant>, d: usize) -> Result<Self, KernelError> {
        let variant = match variant {
            Some(v) => v,
            None => {
                let off = std::env::var("NAVA_ATTENTION_SUBGROUP").is_ok_and(|v| v == "0");
                if !off && subgroup_fit(g, d).is_ok() {
                    Variant::Subgroup
                } else {
                    Variant::for_adapter(g)
                }
            }
        };
        match variant {
            Variant::Subgroup => {
                let (sg, chunks) = subgroup_fit(g, d).map_err(|what| KernelError::Unsupported { op: OP, what })?;
                let rows = (SUBGROUPS_PER_WORKGROUP * SUBGROUP_ROWS) as usize;
                Ok(Launch { spec: subgroup_spec(sg, chunks), rows })
            }
            Variant::Rows { wg, qg } if (qg == 1 || qg == 2) && wg > 0 => {
                Ok(Launch { spec: rows_spec(wg, qg), rows: (4 * qg * wg) as usize })
            }
            v => Err(KernelError::Unsupported {
                op: OP,
                what: format!(
                    "variant {v:?}: groups of four query rows per invocation must be 1 or 2, and WG positive"
                ),
            }),
        }
    }
}

/// The variant this device runs (for `nava info`).
pub fn selected(g: &Gpu) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for d in [64, 128] {
        if let Ok(l) = Launch::of(g, None, d) {
            let label = format!("{} (head dim {d})", l.spec.label);
            v.push(label);
        }
    }
    if let Some(sg) = coop_subgroup(g) {
        v.push(format!("{} (half precision allowed)", coop_spec(sg, MAX_HEAD_DIM).label));
    }
    v
}

/// Every variant, for the validation test.
pub fn variants() -> Vec<Spec> {
    let mut v = vec![rows_spec(16, 2), rows_spec(64, 1)];
    v.extend([(4, 1), (8, 1), (8, 2), (8, 3), (8, 4), (16, 2), (32, 1)].map(|(sg, c)| subgroup_spec(sg, c)));
    v.extend([32, 64].into_iter().flat_map(|sg| [64, 128].map(|hd| coop_spec(sg, hd))));
    v
}

/// Workgroup memory of attention_coop.wgsl, bytes: q 64×128, k and v 32×128 as f16; scores 4×16×32 f32,
/// probabilities as f16; row max and sum.
const COOP_WORKGROUP_BYTES: u32 = 64 * 128 * 2 + 2 * 32 * 128 * 2 + 4 * 16 * 32 * 4 + 4 * 16 * 32 * 2 + 2 * 64 * 4;
/// Query rows per workgroup of attention_coop.wgsl.
const COOP_ROWS: usize = 64;

/// The tensor-core kernel for head dim `hd` on subgroups of `sg`.
fn coop_spec(sg: u32, hd: usize) -> Spec {
    use Access::*;
    Spec::new(&FAMILY_COOP, "attention_coop", &[Read, Read, Read, ReadWrite])
        .tag(&format!("d{hd}"))
        .tag(&format!("sg{sg}"))
        .enable("f16")
        .enable("wgpu_cooperative_matrix")
        .constant("SG", sg as f64)
        .constant("WG", 4.0 * sg as f64)
        .constant("HD", hd as f64)
}

/// The subgroup size the tensor-core kernel runs with on this device, if it can run here at all.
/// `NAVA_ATTENTION_COOP=0` turns it off (a debug switch, see README).
fn coop_subgroup(g: &Gpu) -> Option<u32> {
    let sg = g.caps.subgroup_size;
    let off = std::env::var("NAVA_ATTENTION_COOP").is_ok_and(|v| v == "0");
    (g.caps.coop_f16_16
        && !off
        && sg > 0
        && 4 * sg <= g.limits.max_compute_invocations_per_workgroup
        && COOP_WORKGROUP_BYTES <= g.limits.max_compute_workgroup_storage_size)
        .then_some(sg)
}

/// The label of the kernel `attention_bench` runs (for bench lines).
pub fn variant_label(g: &Gpu, half: bool, d: usize) -> String {
    match coop_subgroup(g) {
        Some(sg) if half && d.is_multiple_of(16) => coop_spec(sg, d).label,
        _ => Launch::of(g, None, d).map_or_else(|e| e.to_string(), |l| l.spec.label),
    }
}

/// Attention of q `[Lq, H, D]` over k, v `[Lk, H, D]`; returns `[Lq, H, D]`. D must be a multiple of 4 in
/// 4..=128.
pub fn attention(
    g: &Gpu,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    opts: AttentionOptions,
) -> Result<GpuTensor, KernelError> {
    for (name, t) in [("q", q), ("k", k), ("v", v)] {
        t.expect_dtype(OP, name, DType::F32)?;
    }
    let [lq, heads, d] = q.dims::<3>(OP, "q")?;
    let [lk, _, _] = k.dims::<3>(OP, "k")?;
    if k.shape()[1..] != [heads, d] {
        return Err(KernelError::Shape {
            op: OP,
            tensor: "k",
            expected: format!("[Lk, {heads}, {d}] (the heads and head dim of q)"),
            found: k.shape().to_vec(),
        });
    }
    v.expect(OP, "v", &[lk, heads, d])?;
    if lk == 0 && lq > 0 {
        return Err(KernelError::Shape {
            op: OP,
            tensor: "k",
            expected: "at least one key row".into(),
            found: k.shape().to_vec(),
        });
    }
    if d == 0 || !d.is_multiple_of(4) || d > MAX_HEAD_DIM {
        return Err(KernelError::Unsupported {
            op: OP,
            what: format!(
                "head dim {d}: this kernel takes multiples of 4 up to {MAX_HEAD_DIM} (use a \
                 GEMM-based path for larger heads)"
            ),
        });
    }
    if let Some(b) = opts.bias {
        b.expect_dtype(OP, "bias", DType::F32)?;
        b.expect(OP, "bias", &[heads, lq, lk])?;
    }
    let whole = [Segment::new(0, lq, 0, lk)];
    let segments = opts.segments.unwrap_or(&whole);
    check_segments(segments, lq, lk)?;

    let out = g.alloc("attention output", &[lq, heads, d], DType::F32)?;
    if lq == 0 || heads == 0 {
        return Ok(out);
    }
    if let Some(sg) = coop_subgroup(g) {
        // Whole tensors in one binding each, no bias, no key chunks, head dim a multiple of 16.
        let fits = [q, k, v, &out].iter().all(|t| t.len_bytes() + g.binding_align() <= g.max_binding());
        let short = opts.max_keys_per_launch.is_none_or(|m| segments.iter().all(|s| s.k_len <= m));
        if opts.half && opts.bias.is_none() && d.is_multiple_of(16) && fits && short && opts.variant.is_none() {
            run_coop(g, sg, [q, k, v, &out], segments, opts.scale.unwrap_or((1.0 / (d as f64).sqrt()) as f32))?;
            return Ok(out);
        }
    }
    let launch = Launch::of(g, opts.variant, d)?;
    let pipe = g.pipeline(&launch.spec)?;
    let max = g.max_binding();
    let align = g.binding_align();

    // Rows per window: a window may start up to `align` bytes before its data.
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
    let mut q_rows = fit_rows.min(opts.max_queries_per_launch.unwrap_or(usize::MAX).max(1));
    let k_rows = fit_rows.min(opts.max_keys_per_launch.unwrap_or(usize::MAX).max(1));
    let bias_words = max.saturating_sub(align) / 4;
    if opts.bias.is_some() {
        // One head's bias rows of a query chunk must fit one binding: (q_rows - 1)·Lk + Lk words.
        let rows = (bias_words / lk as u64) as usize;
        if rows == 0 {
            return Err(KernelError::Unsupported {
                op: OP,
                what: format!("one bias row of {lk} keys exceeds the adapter's binding limit"),
            });
        }
        q_rows = q_rows.min(rows);
    }
    let split_keys = segments.iter().any(|s| s.k_len > k_rows);
    // The state is only read and written when keys are split; otherwise a small placeholder fills the slot
    // (the shared dummy cannot: it is bound read-only as the bias in the same launch).
    let state = if split_keys {
        g.alloc("attention softmax state", &[lq, heads, 2], DType::F32)?
    } else {
        g.alloc("attention softmax state (unused)", &[4], DType::F32)?
    };
    let scale = opts.scale.unwrap_or((1.0 / (d as f64).sqrt()) as f32);
    let max_groups = g.limits.max_compute_workgroups_per_dimension;
    let dv = d / 4;

    for seg in segments.iter().filter(|s| s.q_len > 0) {
        for q0 in (seg.q_start..seg.q_start + seg.q_len).step_by(q_rows) {
            let qc = q_rows.min(seg.q_start + seg.q_len - q0);
            let qb = q.window(q0 as u64 * row_bytes, qc as u64 * row_bytes, align);
            let ob = out.window(q0 as u64 * row_bytes, qc as u64 * row_bytes, align);
            let st_row = (heads * 2 * 4) as u64;
            let sb =
                if split_keys { state.window(q0 as u64 * st_row, qc as u64 * st_row, align) } else { state.binding() };
            let nqb = qc.div_ceil(launch.rows);
            let k_end = seg.k_start + seg.k_len;
            for k0 in (seg.k_start..k_end).step_by(k_rows) {
                let kc = k_rows.min(k_end - k0);
                let kb = k.window(k0 as u64 * row_bytes, kc as u64 * row_bytes, align);
                let vb = v.window(k0 as u64 * row_bytes, kc as u64 * row_bytes, align);
                let mut flags = 0;
                if k0 > seg.k_start {
                    flags |= RESUME;
                }
                if k0 + kc == k_end {
                    flags |= LAST;
                }
                // Heads per launch: all of them, unless the bias span of all heads exceeds one binding.
                let mut h0 = 0;
                while h0 < heads {
                    let (hn, bb, b_shift) = match opts.bias {
                        None => (heads, g.dummy().binding(), 0),
                        Some(b) => {
                            let one = ((qc - 1) * lk + kc) as u64;
                            let per_head = (lq * lk) as u64;
                            let hn = (1 + (bias_words - one) / per_head).min((heads - h0) as u64) as usize;
                            let start = ((h0 * lq + q0) * lk + k0) as u64;
                            let words = (hn as u64 - 1) * per_head + one;
                            let bb = b.window(4 * start, 4 * words, align);
                            let shift = bb.word_shift;
                            (hn, bb, shift)
                        }
                    };
                    if opts.bias.is_some() {
                        flags |= BIAS;
                    }
                    // Windows start at whole rows and rows are whole vec4s, so word shifts are multiples of 4.
                    let params = AttentionParams {
                        lq: qc as u32,
                        lk: kc as u32,
                        h0: h0 as u32,
                        hn: hn as u32,
                        nqb: nqb as u32,
                        heads: heads as u32,
                        ld4: (heads * dv) as u32,
                        q_shift: qb.word_shift / 4,
                        k_shift: kb.word_shift / 4,
                        v_shift: vb.word_shift / 4,
                        o_shift: ob.word_shift / 4,
                        st_shift: sb.word_shift,
                        b_shift,
                        b_head: (lq * lk) as u32,
                        b_row: lk as u32,
                        flags,
                        scale,
                        dv: dv as u32,
                        ..Default::default()
                    };
                    let groups = (nqb * hn) as u32;
                    let [gx, gy] = spread(groups, max_groups);
                    g.dispatch(
                        &pipe,
                        &[qb.clone(), kb.clone(), vb.clone(), bb, ob.clone(), sb.clone()],
                        &params,
                        [gx, gy, 1],
                    )?;
                    h0 += hn;
                }
            }
        }
    }
    Ok(out)
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct CoopParams {
    lq: u32,
    lk: u32,
    hn: u32,
    nqb: u32,
    ld: u32,
    q_shift: u32,
    k_shift: u32,
    o_shift: u32,
    v_shift: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

/// One launch per segment of attention_coop.wgsl over whole-tensor bindings.
fn run_coop(g: &Gpu, sg: u32, t: [&GpuTensor; 4], segments: &[Segment], scale: f32) -> Result<(), KernelError> {
    let [q, k, v, out] = t;
    let [_, heads, d] = q.dims::<3>(OP, "q")?;
    let pipe = g.pipeline(&coop_spec(sg, d))?;
    let ld = heads * d;
    let (qb, kb, vb, ob) = (q.binding(), k.binding(), v.binding(), out.binding());
    for s in segments.iter().filter(|s| s.q_len > 0) {
        let nqb = s.q_len.div_ceil(COOP_ROWS);
        let params = CoopParams {
            lq: s.q_len as u32,
            lk: s.k_len as u32,
            hn: heads as u32,
            nqb: nqb as u32,
            ld: ld as u32,
            q_shift: qb.word_shift + (s.q_start * ld) as u32,
            k_shift: kb.word_shift + (s.k_start * ld) as u32,
            o_shift: ob.word_shift + (s.q_start * ld) as u32,
            v_shift: vb.word_shift + (s.k_start * ld) as u32,
            scale,
            ..Default::default()
        };
        let [gx, gy] = spread((nqb * heads) as u32, g.limits.max_compute_workgroups_per_dimension);
        g.dispatch(&pipe, &[qb.clone(), kb.clone(), vb.clone(), ob.clone()], &params, [gx, gy, 1])?;
    }
    Ok(())
}

/// Segments must stay inside the tensors, give every query row to exactly one segment, and give a non-empty
/// query range at least one key.
fn check_segments(segments: &[Segment], lq: usize, lk: usize) -> Result<(), KernelError> {
    let bad = |s: &Segment, why: String| KernelError::Shape {
        op: OP,
        tensor: "segments",
        expected: why,
        found: vec![s.q_start, s.q_len, s.k_start, s.k_len],
    };
    let mut covered = vec![false; lq];
    for s in segments {
        if s.q_start + s.q_len > lq || s.k_start + s.k_len > lk {
            return Err(bad(
                s,
                format!("(q_start, q_len, k_start, k_len) within Lq = {lq} query rows and Lk = {lk} keys"),
            ));
        }
        if s.q_len > 0 && s.k_len == 0 {
            return Err(bad(s, "at least one key for a segment with queries".into()));
        }
        for c in &mut covered[s.q_start..s.q_start + s.q_len] {
            if *c {
                return Err(bad(s, "query ranges that do not overlap other segments".into()));
            }
            *c = true;
        }
    }
    if let Some(row) = covered.iter().position(|c| !c) {
        return Err(KernelError::Shape {
            op: OP,
            tensor: "segments",
            expected: format!("query ranges that cover all {lq} rows (row {row} is in none)"),
            found: segments.iter().flat_map(|s| [s.q_start, s.q_len, s.k_start, s.k_len]).collect(),
        });
    }
    Ok(())
}
