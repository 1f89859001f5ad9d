// conv2d_cl.wgsl — grouped 2-D convolution with 'same' zero padding and stride 1 on channels-last data:
//   y[h, w, o] = act(b[o] + Σ_{j < gin, a < kh, c < kw} wt[o, j, a, c] · x[h + a − ph, w + c − pw, g·gin + j])
// with x [H, W, Cin], y [H, W, Cout], g = o / gout the group of output channel o, gin = Cin / groups input
// channels per group, gout = Cout / groups, ph = (kh − 1) / 2 and pw = (kw − 1) / 2 (PyTorch's padding='same').
// wt is PyTorch's [Cout, gin, kh, kw]. A 1-D convolution along H is the case W = 1, kw = 1.
// ACT (an override, one pipeline per activation): 0 none, 1 exact GELU (erf), 2 ReLU.
// One invocation per output element; f32 accumulation. Shifts are word offsets inside the bindings.

override WG: u32 = 64u;
override ACT: u32 = 0u;

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
    let id = (wid.x + wid.y * nwg.x) * WG + lid;
    if (id >= p.h * p.w * p.cout) {
        return;
    }
    let o = id % p.cout;
    let pix = id / p.cout;
    let col = pix % p.w;
    let row = pix / p.w;
    let ph = (p.kh - 1u) / 2u;
    let pw = (p.kw - 1u) / 2u;
    let c0 = (o / p.gout) * p.gin;
    var acc = bias[p.b_shift + o];
    for (var a = 0u; a < p.kh; a++) {
        let hh = i32(row + a) - i32(ph);
        if (hh < 0 || hh >= i32(p.h)) {
            continue;
        }
        for (var c = 0u; c < p.kw; c++) {
            let ww = i32(col + c) - i32(pw);
            if (ww < 0 || ww >= i32(p.w)) {
                continue;
            }
            let xi = p.x_shift + (u32(hh) * p.w + u32(ww)) * p.cin + c0;
            let wi = p.w_shift + (o * p.gin * p.kh + a) * p.kw + c;
            for (var j = 0u; j < p.gin; j++) {
                acc += wt[wi + j * p.kh * p.kw] * x[xi + j];
            }
        }
    }
    if (ACT == 1u) {
        acc = 0.5 * acc * (1.0 + erf_approx(acc * 0.70710678118654752));
    } else if (ACT == 2u) {
        acc = max(acc, 0.0);
    }
    y[p.y_shift + id] = acc;
}
