// What every GEMM kernel (gemm.wgsl, gemm_tiled.wgsl, gemm_coop.wgsl) shares: the parameters, the bias, gate and
// output bindings, and the epilogue that meets the product with them. Appended to each of those kernels.

struct Params {
    m: u32,         // rows of x and y
    n: u32,         // columns of y
    k_begin: u32,   // this launch covers k in [k_begin, k_end): a weight too large for one binding is split
    k_end: u32,
    n_pad: u32,     // stored weight columns (n rounded up to 4)
    x_ld: u32,      // elements per row of x
    x_shift: u32,   // offsets of each tensor inside its binding, in elements of its array
    w_shift: u32,
    s_shift: u32,
    y_shift: u32,
    b_shift: u32,
    g_shift: u32,
    g_ld: u32,      // elements per row of the gate; 0 broadcasts one row
    flags: u32,     // bit 0 bias, bits 1-2 activation (1 GELU-tanh, 2 SiLU), bit 3 gated residual, bit 4 accumulate
    _pad0: u32,
    _pad: u32,
}

@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> gate: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;
@group(0) @binding(6) var<uniform> p: Params;

fn gelu_tanh(v: f32) -> f32 {
    let u = clamp(0.7978845608028654 * (v + 0.044715 * v * v * v), -15.0, 15.0);
    return 0.5 * v * (1.0 + tanh(u));
}

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

// y[m, n] from the product `acc` (unscaled): × the column's scale, + what y holds (accumulate), + bias, the
// activation, then the gated residual. Rows and columns past the end are skipped.
fn epilogue(m: u32, n: u32, acc: f32) {
    if (m >= p.m || n >= p.n) {
        return;
    }
    let yi = p.y_shift + m * p.n + n;
    var v = acc * col_scale(n);
    if ((p.flags & 16u) != 0u) {
        v += f32(y[yi]);
    }
    if ((p.flags & 1u) != 0u) {
        v += bias[p.b_shift + n];
    }
    let act = (p.flags >> 1u) & 3u;
    if (act == 1u) {
        v = gelu_tanh(v);
    } else if (act == 2u) {
        v = silu(v);
    }
    if ((p.flags & 8u) != 0u) {
        v = f32(y[yi]) + v * gate[p.g_shift + m * p.g_ld + n];
    }
    y[yi] = T(v);
}
