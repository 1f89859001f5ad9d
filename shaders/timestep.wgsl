// timestep.wgsl — sinusoidal timestep embedding (NAVA.md §4.2): for each timestep t[u] and k < half,
//   y[u, k] = cos(t·ω_k),  y[u, half + k] = sin(t·ω_k),  ω_k = 10000^(−k/half).
// The reference works in float64, where t·ω_k (up to ~1000 rad) keeps ~1e-13 rad; f32 alone would lose ~6e-5 rad.
// So the angle is formed in turns, in 32-bit fixed point, by integer arithmetic:
//   freq[k] = (hi, lo) with ω_k / 2π = (hi + lo·2^-32)·2^-32 turns  (computed in f64 by the launcher),
//   turns·2^32 = t·hi + t·lo·2^-32  (mod 2^32)
// The product t·hi wraps in u32 exactly (the integer turns fall off the top); the small t·lo term and a fractional
// part of t (if any) are added in f32, where their rounding is below 2^-31 turns. The top two bits of the fixed-
// point angle pick the quadrant and the rest, at most π/4, goes through short Taylor series; total error is a few
// f32 ulps of 1, independent of t. t is used as max(t, 0) and must be below 2^24.

override WG: u32 = 64u;

struct Params {
    n: u32,        // pairs (u, k) in this launch = timesteps · half
    half: u32,     // freq_dim / 2
    t_shift: u32,
    f_shift: u32,
    y_shift: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> t: array<f32>;
@group(0) @binding(1) var<storage, read> freq: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const TWO_PI_OVER_2_32: f32 = 1.4629180792671596e-9;  // 2π / 2^32: radians per fixed-point unit

@compute @workgroup_size(WG)
fn sinusoid(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let u = i / p.half;
    let k = i - u * p.half;
    let tv = clamp(t[p.t_shift + u], 0.0, 16777215.0);
    let ti = floor(tv);
    let tf = tv - ti;
    let hi = freq[p.f_shift + 2u * k];
    let lo = freq[p.f_shift + 2u * k + 1u];
    // ti·lo·2^-32 < 2^24 units; tf·hi < 2^30 units: both fit u32 and round to within a unit or two.
    let small = u32(ti * f32(lo) * 2.3283064365386963e-10) + u32(tf * f32(hi));
    let turns = u32(ti) * hi + small;  // wrapping: mod 2^32 is mod one turn
    // Quadrant q = round(turns / 2^30); r = the rest, a signed angle of at most 1/8 turn.
    let q = ((turns + 0x20000000u) >> 30u) & 3u;
    let r = f32(bitcast<i32>(turns - (q << 30u))) * TWO_PI_OVER_2_32;
    let r2 = r * r;
    // Taylor terms up to r^9 / r^10; the first omitted ones are below 2e-9 at |r| = π/4.
    let s = r * (1.0 + r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0)))));
    let c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0
        + r2 * (-1.0 / 3628800.0)))));
    var cs = vec2<f32>(c, s);  // (cos, sin) of the whole angle = rotate (c, s) by q quarter turns
    if (q == 1u) {
        cs = vec2<f32>(-s, c);
    } else if (q == 2u) {
        cs = vec2<f32>(-c, -s);
    } else if (q == 3u) {
        cs = vec2<f32>(s, -c);
    }
    let row = p.y_shift + u * 2u * p.half;
    y[row + k] = cs.x;
    y[row + p.half + k] = cs.y;
}
