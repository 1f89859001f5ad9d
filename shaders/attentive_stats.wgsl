// attentive_stats.wgsl — the two pieces of attentive statistics pooling that no other family computes:
//   tanh_map:        y[i] = tanh(x[i])   (z is not read)
//   attentive_stats: for x, z [T, C] (rows = time) and every column c, with α[t] = softmax_t(z[t, c]):
//     y[c] = Σ_t α[t]·x[t, c],   y[C + c] = sqrt(max(Σ_t α[t]·x[t, c]² − y[c]², 1e-7))
// (ECAPA's ASTP). One invocation per column (tanh_map: per element); f32 accumulation. Shifts are word offsets.

override WG: u32 = 64u;

struct Params {
    rows: u32,
    cols: u32,
    x_shift: u32,
    z_shift: u32,
    y_shift: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn attentive_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let c = (wid.x + wid.y * nwg.x) * WG + lid;
    if (c >= p.cols) {
        return;
    }
    var m = -3.0e38;
    for (var t = 0u; t < p.rows; t++) {
        m = max(m, z[p.z_shift + t * p.cols + c]);
    }
    var s = 0.0;
    var s1 = 0.0;
    var s2 = 0.0;
    for (var t = 0u; t < p.rows; t++) {
        let e = exp(z[p.z_shift + t * p.cols + c] - m);
        let v = x[p.x_shift + t * p.cols + c];
        s += e;
        s1 += e * v;
        s2 += e * v * v;
    }
    let mean = s1 / s;
    let var_ = s2 / s - mean * mean;
    y[p.y_shift + c] = mean;
    y[p.y_shift + p.cols + c] = sqrt(max(var_, 1e-7));
}

@compute @workgroup_size(WG)
fn tanh_map(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.rows * p.cols) {
        return;
    }
    // tanh saturates in f32 beyond |x| = 10; the clamp keeps exp-based implementations finite.
    y[p.y_shift + i] = tanh(clamp(x[p.x_shift + i], -10.0, 10.0));
}
