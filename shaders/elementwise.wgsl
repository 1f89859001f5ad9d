// elementwise.wgsl — pointwise ops over an f32 tensor seen as [rows, cols] (row-major):
//   y[i] = f(a[i], b[·], c[·])   with a = x[i] (out of place) or y[i] (in place).
// OP (an override, one pipeline per op) picks f:
//   0 copy          y = a
//   1 fill          y = s0
//   2 GELU-tanh     y = 0.5·a·(1 + tanh(clamp(√(2/π)(a + 0.044715a³), ±15)))
//   3 SiLU          y = a / (1 + e^(−a))
//   4 clamp         y = clamp(a, s0, s1)
//   5 scale-add     y = s0·a + s1
//   6 add           y = a + b[bi]
//   7 mul           y = a · b[bi]
//   8 gated add     y = y + x[i]·b[bi]                        (the DiT gated residual, always in place)
//   9 SnakeBeta     y = a + sin²(e^α·a) / (e^β + 1e-9)        α = b[ch], β = c[ch] (BigVGAN-v2 log-scale params)
// The right operand b is indexed by `bmode`: 0 same shape (bi = i), 1 one row (bi = col), 2 one value per row
// (bi = ch). `ch` is the row number modulo `bmod`, so SnakeBeta on [B, C, T] sees channel = row mod C.
//
// Each invocation handles ITEMS elements WG apart, so neighbouring invocations touch neighbouring words. The column
// and channel of each element are carried along instead of divided out per element (integer division is scalar
// and slow on CPU adapters): one division per invocation, then add-and-wrap with steps the launcher precomputes.
// Offsets and counts are in elements; shifts are the word offsets of each tensor inside its binding.

override WG: u32 = 64u;
override ITEMS: u32 = 16u;
override OP: u32 = 0u;

struct Params {
    n: u32,          // elements in this launch (whole rows)
    cols: u32,       // elements per row
    bmod: u32,       // channels: ch = row mod bmod (1 when unused)
    ch0: u32,        // channel of the launch's first row
    step_cols: u32,  // WG mod cols
    step_ch: u32,    // (WG div cols) mod bmod
    bmode: u32,      // 0 same shape, 1 row broadcast, 2 per-row value
    src_y: u32,      // 1: read a from y (in place)
    x_shift: u32,
    b_shift: u32,
    c_shift: u32,
    y_shift: u32,
    s0: f32,         // op scalars (fill value, clamp bounds, scale and shift)
    s1: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

fn gelu_tanh(v: f32) -> f32 {
    // Beyond ±15 tanh is ±1 in f32; the clamp keeps exp-based tanh implementations away from inf/inf.
    let u = clamp(0.7978845608028654 * (v + 0.044715 * v * v * v), -15.0, 15.0);
    return 0.5 * v * (1.0 + tanh(u));
}

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

@compute @workgroup_size(WG)
fn map(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    var i = (wid.x + wid.y * nwg.x) * WG * ITEMS + lid;
    if (i >= p.n) {
        return;
    }
    let row = i / p.cols;
    var col = i - row * p.cols;
    var ch = (p.ch0 + row % p.bmod) % p.bmod;
    // SnakeBeta's e^α and 1/(e^β + 1e-9), recomputed only when the channel changes (rarely: rows are long).
    var snake_ch = 0xffffffffu;
    var snake_a = 0.0;
    var snake_ib = 0.0;
    for (var j = 0u; j < ITEMS; j++) {
        if (i >= p.n) {
            break;
        }
        var bi = p.b_shift + i;
        if (p.bmode == 1u) {
            bi = p.b_shift + col;
        } else if (p.bmode == 2u) {
            bi = p.b_shift + ch;
        }
        let yi = p.y_shift + i;
        var a = 0.0;
        if (OP != 1u && OP != 8u) {
            if (p.src_y != 0u) {
                a = y[yi];
            } else {
                a = x[p.x_shift + i];
            }
        }
        var v = a;
        switch OP {
            case 1u: { v = p.s0; }
            case 2u: { v = gelu_tanh(a); }
            case 3u: { v = silu(a); }
            case 4u: { v = clamp(a, p.s0, p.s1); }
            case 5u: { v = p.s0 * a + p.s1; }
            case 6u: { v = a + b[bi]; }
            case 7u: { v = a * b[bi]; }
            case 8u: { v = y[yi] + x[p.x_shift + i] * b[bi]; }
            case 9u: {
                if (ch != snake_ch) {
                    snake_ch = ch;
                    snake_a = exp(b[bi]);
                    snake_ib = 1.0 / (exp(c[p.c_shift + ch]) + 1e-9);
                }
                let s = sin(snake_a * a);
                v = a + s * s * snake_ib;
            }
            default: {}
        }
        y[yi] = v;
        i += WG;
        col += p.step_cols;
        ch += p.step_ch;
        if (col >= p.cols) {
            col -= p.cols;
            ch += 1u;
        }
        if (ch >= p.bmod) {
            ch -= p.bmod;
        }
    }
}
