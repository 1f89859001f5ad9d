//! Launcher for `shaders/matmul.wgsl`: a product of two activations, `y = alpha · op(A) · op(B)` with optional
//! transposes, for attention whose head dim exceeds the flash kernel's 128 (the Wan2.2 VAE's single-head
//! attention over C = 1024 channels, NAVA.md §7.1). f32 only; each operand must fit one binding. CPU drivers with
//! fixed-size subgroups run `matmul_sg.wgsl` where B's rows are whole vec4s; others the 16 × 16 shared tiles.

use crate::gpu::{spread, Access, DType, Family, Gpu, GpuTensor, Spec};

use super::{Check, KernelError};

pub static FAMILY: Family = Family { name: "matmul", source: include_str!("../../shaders/matmul.wgsl") };
const PARAMS: &str = include_str!("../../shaders/common/matmul_params.wgsl");
pub static FAMILY_SG: Family = Family { name: "matmul_sg", source: include_str!("../../shaders/matmul_sg.wgsl") };

const OP: &str = "matmul";
/// Outputs per workgroup side (`TS` in the shader).
const TS: usize = 16;
const TRANS_A: u32 = 1;
const TRANS_B: u32 = 2;
/// `matmul_sg`: rows per workgroup (`TM`) and the most invocations (`WG`, 4 columns each).
const SG_ROWS: usize = 8;
const SG_WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldy: u32,
    a_shift: u32,
    b_shift: u32,
    y_shift: u32,
    flags: u32,
    alpha: f32,
    _pad: u32,
}

/// Bytes of the uniform `Params` (the tests compare it with the WGSL).
pub const PARAMS_BYTES: usize = std::mem::size_of::<MatmulParams>();

fn spec() -> Spec {
    use Access::*;
    Spec::new(&FAMILY, "matmul", &[Read, Read, ReadWrite]).tag("t16x16").snippet(PARAMS)
}

/// `matmul_sg` for subgroups of `sg` invocations, `wg` invocations per workgroup and the transposes.
fn spec_sg(sg: u32, wg: u32, trans_a: bool, trans_b: bool) -> Spec {
    use Access::*;
    let t = |on: bool, name: &str| if on { name.to_string() } else { format!("n{name}") };
    Spec::new(&FAMILY_SG, "matmul_sg", &[Read, Read, ReadWrite])
        .tag(&format!("sg{sg}"))
        .tag(&format!("t{wg}"))
        .tag(&t(trans_a, "ta"))
        .tag(&t(trans_b, "tb"))
        .snippet(PARAMS)
        .snippet(super::gemm::LANES4)
        .constant("SG", sg as f64)
        .constant("WG", wg as f64)
        .constant("TA", trans_a as u32 as f64)
        .constant("TB", trans_b as u32 as f64)
}

/// The subgroup size of `matmul_sg` on this device: CPU drivers where the subgroup GEMM's shuffles run
/// ([`super::gemm::shuffle_subgroup`]; it divides the workgroup of 64).
fn subgroup_size(g: &Gpu) -> Option<u32> {
    super::gemm::shuffle_subgroup(g).filter(|_| g.adapter.is_cpu())
}

/// The variant this device runs (for `nava info`).
pub fn selected(g: &Gpu) -> Vec<String> {
    match subgroup_size(g) {
        Some(sg) => vec![spec_sg(sg, SG_WG, false, false).label, spec_sg(sg, SG_WG, false, true).label],
        None => vec![spec().label],
    }
}

/// The label of the kernel a product of fresh tensors (B `[k, n]`, or `[n, k]` with `trans_b`) runs (for bench
/// lines).
pub fn variant_label(g: &Gpu, n: usize, k: usize, trans_b: bool) -> String {
    let ldb = if trans_b { k } else { n };
    match subgroup_size(g) {
        Some(sg) if ldb.is_multiple_of(4) && (!trans_b || k.is_multiple_of(4)) => {
            spec_sg(sg, sg_workgroup(sg, n), false, trans_b).label
        }
        _ => spec().label,
    }
}

/// `matmul_sg`'s workgroup for `n` columns: narrow products get fewer invocations, since every invocation past the last column still loads and multiplies.
fn sg_workgroup(sg: u32, n: usize) -> u32 {
    (n.div_ceil(4) as u32).next_multiple_of(sg).clamp(sg, SG_WG)
}

/// Every variant, for the validation test.
pub fn variants() -> Vec<Spec> {
    let mut v = vec![spec()];
    for sg in [4, 8, 32, 64] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            v.push(spec_sg(sg, SG_WG, ta, tb));
        }
    }
    v
}

/// Options of [`matmul`]: `trans_a` reads A from a `[K, M]` tensor, `trans_b` reads B from `[N, K]`.
#[derive(Clone, Copy, Debug)]
pub struct MatmulArgs {
    pub trans_a: bool,
    pub trans_b: bool,
    pub alpha: f32,
}

impl Default for MatmulArgs {
    fn default() -> Self {
        Self { trans_a: false, trans_b: false, alpha: 1.0 }
    }
}

/// `y [M, N] = alpha · op(a) · op(b)`: a is `[M, K]` (or `[K, M]` with `trans_a`), b is `[K, N]` (or `[N, K]`
/// with `trans_b`). Both may be row views of larger tensors.
pub fn matmul(g: &Gpu, a: &GpuTensor, b: &GpuTensor, args: MatmulArgs) -> Result<GpuTensor, KernelError> {
    a.expect_dtype(OP, "a", DType::F32)?;
    b.expect_dtype(OP, "b", DType::F32)?;
    let [a0, a1] = a.dims::<2>(OP, "a")?;
    let [b0, b1] = b.dims::<2>(OP, "b")?;
    let (m, k) = if args.trans_a { (a1, a0) } else { (a0, a1) };
    let (kb, n) = if args.trans_b { (b1, b0) } else { (b0, b1) };
    if kb != k {
        return Err(KernelError::Shape {
            op: OP,
            tensor: "b",
            expected: format!("{} with K = {k} (the inner dim of a)", if args.trans_b { "[N, K]" } else { "[K, N]" }),
            found: b.shape().to_vec(),
        });
    }
    if m == 0 || n == 0 || k == 0 {
        return Err(KernelError::Shape {
            op: OP,
            tensor: "a",
            expected: "non-empty operands (M, N and K at least 1)".into(),
            found: a.shape().to_vec(),
        });
    }
    let max = g.max_binding().saturating_sub(g.binding_align());
    for (name, t) in [("a", a), ("b", b)] {
        if t.len_bytes() > max {
            return Err(KernelError::Unsupported {
                op: OP,
                what: format!("`{name}` ({} bytes) exceeds one binding ({max} bytes)", t.len_bytes()),
            });
        }
    }
    if (m * n * 4) as u64 > max || m * n > u32::MAX as usize {
        return Err(KernelError::Unsupported {
            op: OP,
            what: format!("the output [{m}, {n}] exceeds one binding ({max} bytes): use smaller tiles"),
        });
    }
    let y = g.alloc("matmul output", &[m, n], DType::F32)?;
    let (ab, bb, yb) = (a.binding(), b.binding(), y.binding());
    let mut flags = 0;
    if args.trans_a {
        flags |= TRANS_A;
    }
    if args.trans_b {
        flags |= TRANS_B;
    }
    let params = MatmulParams {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        lda: a1 as u32,
        ldb: b1 as u32,
        ldy: n as u32,
        a_shift: ab.word_shift,
        b_shift: bb.word_shift,
        y_shift: yb.word_shift,
        flags,
        alpha: args.alpha,
        _pad: 0,
    };
    let max_groups = g.limits.max_compute_workgroups_per_dimension;
    let b_vec4 = b1.is_multiple_of(4) && bb.word_shift.is_multiple_of(4);
    let k_vec4 = !args.trans_b || k.is_multiple_of(4);
    if let Some(sg) = subgroup_size(g).filter(|_| b_vec4 && k_vec4) {
        let wg = sg_workgroup(sg, n);
        let gx = n.div_ceil(4 * wg as usize) as u32;
        let [gy, gz] = spread(m.div_ceil(SG_ROWS) as u32, max_groups);
        let pipe = g.pipeline(&spec_sg(sg, wg, args.trans_a, args.trans_b))?;
        g.dispatch(&pipe, &[ab, bb, yb], &params, [gx, gy, gz])?;
        return Ok(y);
    }
    let (gx, gy) = (n.div_ceil(TS) as u32, m.div_ceil(TS) as u32);
    if gx > max_groups || gy > max_groups {
        let [x, _] = spread(gx, max_groups);
        return Err(KernelError::Unsupported { op: OP, what: format!("{gx} × {gy} workgroups (limit {x})") });
    }
    let pipe = g.pipeline(&spec())?;
    g.dispatch(&pipe, &[ab, bb, yb], &params, [gx, gy, 1])?;
    Ok(y)
}
