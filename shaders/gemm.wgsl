// gemm.wgsl — y[m, n] = epilogue( sum_k x[m, k] * W[n, k] ).
//
// Weights are stored k-major in 32-bit words, `words[(k / PER_WORD) * n_pad + n]` (see kernels/gemm.rs), so the
// four columns an invocation owns are four consecutive words and neighbouring invocations read neighbouring
// words. Each invocation computes a TM x 4 block: TM rows shared by the whole workgroup (the x loads are uniform)
// and 4 consecutive columns. The format snippet appended from shaders/common/ provides
//   fn load_w(kg: u32, n0: u32) -> mat4x4<f32>   // column i = W[n0 .. n0 + 3, 4kg + i]
//   fn col_scale(n: u32) -> f32                   // per-output-channel factor (fp8), else 1
// and declares binding 1 (and 5 for block scales); an x snippet declares binding 0 and provides
//   fn load_x4(i: u32) -> vec4<f32>   // x[i .. i + 3], i a multiple of 4 in the vec4 variant
//   fn load_x1(i: u32) -> f32
// f32 accumulation in every variant; activations x and y are `T`: f32, or f16 in the variants for adapters with
// SHADER_F16 (bias and gate stay f32).

alias T = f32;
// 8 rows per workgroup: each weight load serves 8 rows. On lavapipe 1.2-1.3x the speed of 4; 16 is slower.
const TM: u32 = 8u;
override WG: u32 = 64u;

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

fn x_row(m: u32) -> u32 {
    return p.x_shift + min(m, p.m - 1u) * p.x_ld;
}

@compute @workgroup_size(WG)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let n0 = (wid.x * WG + lid) * 4u;
    let m0 = (wid.y + wid.z * nwg.y) * TM;
    if (n0 >= p.n || m0 >= p.m) {
        return;
    }
    var acc: array<vec4<f32>, TM>;
    for (var r = 0u; r < TM; r++) {
        acc[r] = vec4<f32>(0.0);
    }
    var rows: array<u32, TM>;
    for (var r = 0u; r < TM; r++) {
        rows[r] = x_row(m0 + r);
    }
    let k_full = p.k_begin + (p.k_end - p.k_begin) / 4u * 4u;
    var kg = 0u; // the weight binding starts at k_begin
    for (var k = p.k_begin; k < k_full; k += 4u) {
        let wm = load_w(kg, n0);
        for (var r = 0u; r < TM; r++) {
            let i = rows[r] + k;
            let xv = load_x4(i);
            acc[r] += wm * xv;
        }
        kg += 1u;
    }
    if (k_full < p.k_end) {
        // Tail group: the stored weights are zero-padded; x past the end is masked.
        let wm = load_w(kg, n0);
        let left = p.k_end - k_full;
        for (var r = 0u; r < TM; r++) {
            let i = rows[r] + k_full;
            var xv = vec4<f32>(0.0);
            for (var j = 0u; j < left; j++) {
                xv[j] = load_x1(i + j);
            }
            acc[r] += wm * xv;
        }
    }
    let act = (p.flags >> 1u) & 3u;
    for (var r = 0u; r < TM; r++) {
        let m = m0 + r;
        if (m >= p.m) {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + j;
            if (n >= p.n) {
                break;
            }
            let yi = p.y_shift + m * p.n + n;
            var v = acc[r][j] * col_scale(n);
            if ((p.flags & 16u) != 0u) {
                v += f32(y[yi]);
            }
            if ((p.flags & 1u) != 0u) {
                v += bias[p.b_shift + n];
            }
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
    }
}
