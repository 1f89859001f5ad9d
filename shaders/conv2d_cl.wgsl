// conv2d_cl.wgsl — grouped 2-D convolution with 'same' zero padding and stride 1 on channels-last data:
//   y[h, w, o] = act(b[o] + Σ_{j < gin, a < kh, c < kw} wt[o, j, a, c] · x[h + a − ph, w + c − pw, g·gin + j])
// with x [H, W, Cin], y [H, W, Cout], g = o / gout the group of output channel o, gin = Cin / groups input
// channels per group, gout = Cout / groups, ph = (kh − 1) / 2 and pw = (kw − 1) / 2 (PyTorch's padding='same').
// wt is PyTorch's [Cout, gin, kh, kw]. A 1-D convolution along H is the case W = 1, kw = 1.
// ACT (an override, one pipeline per activation): 0 none, 1 exact GELU (erf), 2 ReLU; ADD = 1 adds the result to
// y instead of overwriting it. f32 accumulation. Shifts are word offsets inside the bindings.

override WG: u32 = 64u;
override ACT: u32 = 0u;
override ADD: u32 = 0u;   // 1: y += result (a residual added in place)
// Kernel height and width and input channels per group, fixed per pipeline so that the tap loops unroll (the
// launcher checks they equal the Params values).
override KH: u32 = 3u;
override KW: u32 = 3u;
override GIN: u32 = 1u;
// Output channels per invocation, a divisor of gout up to OUTS (constant so the accumulators stay in registers).
override NOUT: u32 = 1u;
const OUTS: u32 = 8u;     // output channels per invocation

struct Params {
    h: u32,
    w: u32,
    cin: u32,
    cout: u32,
    gin: u32,
    gout: u32,
    kh: u32,
    kw: u32,
    x_shift: u32,
    w_shift: u32,
    b_shift: u32,
    y_shift: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// erf with |error| < 1.2e-7 (Numerical Recipes' erfc Chebyshev fit), enough for an f32 GELU.
fn erf_approx(v: f32) -> f32 {
    let z = abs(v);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = 1.0 - t * exp(poly);
    return select(-r, r, v >= 0.0);
}

@compute @workgroup_size(WG)
fn conv2d_cl(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    // One invocation per pixel and run of NOUT consecutive output channels of one group: the input values of the
    // group are loaded once for all of them.
    let runs_per_group = p.gout / NOUT;
    let groups = p.cout / p.gout;
    let id = (wid.x + wid.y * nwg.x) * WG + lid;
    if (id >= p.h * p.w * groups * runs_per_group) {
        return;
    }
    let run = id % runs_per_group;
    let grp = (id / runs_per_group) % groups;
    let pix = id / (runs_per_group * groups);
    let o0 = grp * p.gout + run * NOUT;
    let col = pix % p.w;
    let row = pix / p.w;
    let ph = (KH - 1u) / 2u;
    let pw = (KW - 1u) / 2u;
    let c0 = grp * GIN;
    let taps = KH * KW;
    var acc: array<f32, OUTS>;
    for (var u = 0u; u < NOUT; u++) {
        acc[u] = bias[p.b_shift + o0 + u];
    }
    for (var a = 0u; a < KH; a++) {
        let hh = i32(row + a) - i32(ph);
        if (hh < 0 || hh >= i32(p.h)) {
            continue;
        }
        for (var c = 0u; c < KW; c++) {
            let ww = i32(col + c) - i32(pw);
            if (ww < 0 || ww >= i32(p.w)) {
                continue;
            }
            let xi = p.x_shift + (u32(hh) * p.w + u32(ww)) * p.cin + c0;
            let tap = a * KW + c;
            for (var j = 0u; j < GIN; j++) {
                let xv = x[xi + j];
                let wi = p.w_shift + (o0 * GIN + j) * taps + tap;
                for (var u = 0u; u < NOUT; u++) {
                    acc[u] += wt[wi + u * GIN * taps] * xv;
                }
            }
        }
    }
    let yi = p.y_shift + pix * p.cout + o0;
    for (var u = 0u; u < NOUT; u++) {
        var v = acc[u];
        if (ACT == 1u) {
            v = 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752));
        } else if (ACT == 2u) {
            v = max(v, 0.0);
        }
        if (ADD == 1u) {
            v += y[yi + u];
        }
        y[yi + u] = v;
    }
}
