// attention.wgsl — o[i, h, :] = softmax_j( scale · q[i, h, :]·k[j, h, :] + bias[h, i, j] ) · v[j, h, :],
// non-causal, flash style: online softmax with a running max and sum in f32, O(L) memory (no Lq×Lk matrix).
//
// q, k, v and o are row-major [L, H, D] (a [L, H·D] projection output), read as vec4s; D = 4·DV.
// One invocation owns one query row of one head: its q (pre-multiplied by the scale) and its output accumulator
// stay in private arrays. A workgroup is WG query rows of one head, and every invocation walks the same keys in
// the same order, so each K/V load is uniform across the workgroup (one scalar load and a broadcast on CPU
// drivers) and no barrier or workgroup memory is needed. Keys are taken four at a time: the softmax rescale
// (acc *= exp(m_old - m_new)) is paid once per four keys.
//
// A launch covers `lq` query rows and `lk` keys (one segment, or a chunk of one). When the keys of a row span
// several launches, the unnormalised accumulator stays in `o` and (max, sum) in `st` between them (flags).

override WG: u32 = 32u;   // query rows per workgroup, one per invocation
override DV: u32 = 16u;   // head dim / 4
const MAXDV: u32 = 32u;   // head dim 128 at most
const NEG: f32 = -3.0e38; // "minus infinity" that keeps exp(NEG - m) = 0 and NEG - NEG = 0 finite

struct Params {
    lq: u32,        // query rows in this launch
    lk: u32,        // keys in this launch
    h0: u32,        // first head of this launch
    hn: u32,        // heads in this launch
    nqb: u32,       // query blocks per head: ceil(lq / WG)
    heads: u32,     // H of the tensors (row stride of `st`, in (max, sum) pairs)
    ld4: u32,       // vec4s per row of q, k, v, o: H·D/4
    q_shift: u32,   // vec4 index of this launch's first query row in `q` (and `o`: o_shift)
    k_shift: u32,   // vec4 index of this launch's first key row in `k` and `v`
    v_shift: u32,
    o_shift: u32,
    st_shift: u32,  // f32 index of this launch's first query row in `st`
    b_shift: u32,   // f32 index of bias[h0, first query, first key] in `bias`
    b_head: u32,    // bias strides in f32: per head (Lq·Lk) and per query row (Lk)
    b_row: u32,
    flags: u32,     // bit 0 bias, bit 1 resume from o/st, bit 2 last key chunk (normalise)
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> st: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let gi = wid.x + wid.y * nwg.x;
    let hl = gi / p.nqb;          // head within the launch; query blocks of one head are neighbours
    if (hl >= p.hn) {
        return;
    }
    let h = p.h0 + hl;
    let qi = (gi % p.nqb) * WG + lid;
    // Rows past the end compute a copy of the last row (keeps every load in range) and store nothing.
    let qr = min(qi, p.lq - 1u);
    let hd = h * DV;
    let qo = p.q_shift + qr * p.ld4 + hd;
    let oo = p.o_shift + qr * p.ld4 + hd;
    let so = p.st_shift + (qr * p.heads + h) * 2u;

    var qv: array<vec4<f32>, MAXDV>;
    var acc: array<vec4<f32>, MAXDV>;
    for (var i = 0u; i < DV; i++) {
        qv[i] = q[qo + i] * p.scale;
        acc[i] = vec4<f32>(0.0);
    }
    var m = NEG;
    var l = 0.0;
    if ((p.flags & 2u) != 0u) {
        m = st[so];
        l = st[so + 1u];
        for (var i = 0u; i < DV; i++) {
            acc[i] = o[oo + i];
        }
    }
    let with_bias = (p.flags & 1u) != 0u;
    let bo = p.b_shift + hl * p.b_head + qr * p.b_row;
    let last = p.lk - 1u;

    for (var j0 = 0u; j0 < p.lk; j0 += 4u) {
        // Four keys; those past the end repeat the last key and are masked below.
        let j = min(vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u), vec4<u32>(last));
        let k0 = p.k_shift + j.x * p.ld4 + hd;
        let k1 = p.k_shift + j.y * p.ld4 + hd;
        let k2 = p.k_shift + j.z * p.ld4 + hd;
        let k3 = p.k_shift + j.w * p.ld4 + hd;
        var d0 = vec4<f32>(0.0);
        var d1 = vec4<f32>(0.0);
        var d2 = vec4<f32>(0.0);
        var d3 = vec4<f32>(0.0);
        for (var i = 0u; i < DV; i++) {
            let a = qv[i];
            d0 += a * k[k0 + i];
            d1 += a * k[k1 + i];
            d2 += a * k[k2 + i];
            d3 += a * k[k3 + i];
        }
        let one = vec4<f32>(1.0);
        var s = vec4<f32>(dot(d0, one), dot(d1, one), dot(d2, one), dot(d3, one));
        if (with_bias) {
            s += vec4<f32>(bias[bo + j.x], bias[bo + j.y], bias[bo + j.z], bias[bo + j.w]);
        }
        if (j0 + 3u > last) {
            s = select(s, vec4<f32>(NEG), vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u) > vec4<u32>(last));
        }
        let mn = max(m, max(max(s.x, s.y), max(s.z, s.w)));
        let alpha = exp(m - mn);
        let e = exp(s - mn);
        l = l * alpha + dot(e, one);
        m = mn;
        let v0 = p.v_shift + j.x * p.ld4 + hd;
        let v1 = p.v_shift + j.y * p.ld4 + hd;
        let v2 = p.v_shift + j.z * p.ld4 + hd;
        let v3 = p.v_shift + j.w * p.ld4 + hd;
        for (var i = 0u; i < DV; i++) {
            acc[i] = acc[i] * alpha + e.x * v[v0 + i] + e.y * v[v1 + i] + e.z * v[v2 + i] + e.w * v[v3 + i];
        }
    }

    if (qi >= p.lq) {
        return;
    }
    if ((p.flags & 4u) != 0u) {
        // A row whose every key was masked by the bias (-inf) has l = 0: it gets zeros, not NaN.
        let inv = select(0.0, 1.0 / l, l > 0.0);
        for (var i = 0u; i < DV; i++) {
            o[oo + i] = acc[i] * inv;
        }
    } else {
        for (var i = 0u; i < DV; i++) {
            o[oo + i] = acc[i];
        }
        st[so] = m;
        st[so + 1u] = l;
    }
}
