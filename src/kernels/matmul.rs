//! Launcher for `shaders/matmul.wgsl`: a product of two activations, `y = alpha · op(A) · op(B)` with optional
//! transposes, for attention whose head dim exceeds the flash kernel's 128 (the Wan2.2 VAE's single-head
//! attention over C = 1024 channels, NAVA.md §7.1). f32 only; each operand must fit one binding.

use crate::gpu::{spread, Access, DType, Family, Gpu, GpuTensor, Spec};

use super::{Check, KernelError};

pub static FAMILY: Family = Family { name: "matmul", source: include_str!("../../shaders/matmul.wgsl") };

const OP: &str = "matmul";
/// Outputs per workgroup side (`TS` in the shader).
const TS: usize = 16;
const TRANS_A: u32 = 1;
const TRANS_B: u32 = 2;

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
    Spec::new(&FAMILY, "matmul", &[Read, Read, ReadWrite]).tag("t16x16")
}

/// The variant this device runs (for `nava info`).
pub fn selected(_g: &Gpu) -> Vec<String> {
    vec![spec().label]
}

/// Every variant, for the validation test.
pub fn variants() -> Vec<Spec> {
    vec![spec()]
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
    let (gx, gy) = (n.div_ceil(TS) as u32, m.div_ceil(TS) as u32);
    if gx > max_groups || gy > max_groups {
        let [x, _] = spread(gx, max_groups);
        return Err(KernelError::Unsupported { op: OP, what: format!("{gx} × {gy} workgroups (limit {x})") });
    }
    let pipe = g.pipeline(&spec())?;
    g.dispatch(&pipe, &[ab, bb, yb], &params, [gx, gy, 1])?;
    Ok(y)
}
