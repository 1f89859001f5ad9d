// attention.wgsl — o[i, h, :] = softmax_j( scale · q[i, h, :]·k[j, h, :] + bias[h, i, j] ) · v[j, h, :],
// non-causal, flash style: online softmax with a running max and sum in f32, O(L) memory (no Lq×Lk matrix).
//
// q, k, v and o are row-major [L, H, D] (a [L, H·D] projection output), read as vec4s; D = 4·dv.
// A workgroup handles 4·QG·WG query rows of one head; each invocation owns QG groups of four rows (rows lid,
// lid + WG, lid + 2·WG, … of the block) and keeps, per group, q and the output accumulator in private arrays of
// mat4x4: column c of element i holds dims 4i..4i+3 of the group's row c. Then one mat4x4 × vec4 adds the
// partial dot products of four rows with one key, and one mat4x4 × mat4x4 adds four keys' values to four rows,
// so every K/V value loaded is used 4·QG times. All invocations walk the same keys in the same order, so K/V
// loads are uniform across the workgroup (one scalar load and a broadcast on CPU drivers); there is no barrier
// and no workgroup memory. Keys are taken four at a time: the rescale acc *= exp(m_old - m_new) is paid once per
// four keys. The head dim is a runtime value on purpose: as a constant, drivers unroll the dim loops, and lavapipe
// then took 60 s (D = 64) and 136 s (D = 128) to compile one pipeline instead of 3.5 s, for no speed gain.
//
// CPU drivers with subgroups run `attention_sg` (common/attention_subgroup.wgsl, appended to this file) for the
// head dims it takes: on those drivers the run-time-indexed private arrays below cost one scalar access per lane
// and element.
//
// A launch covers `lq` query rows and `lk` keys (one segment, or a chunk of one). When the keys of a row span
// several launches, the unnormalised accumulator stays in `o` and (max, sum) in `st` between them (flags).

override WG: u32 = 16u;   // invocations per workgroup
override QG: u32 = 2u;    // groups of four query rows per invocation: 1 or 2
const MAXDV: u32 = 32u;   // head dim 128 at most
const NEG: f32 = -3.0e38; // "minus infinity" that keeps exp(NEG - m) = 0 and NEG - NEG = 0 finite

struct Params {
    lq: u32,        // query rows in this launch
    lk: u32,        // keys in this launch
    h0: u32,        // first head of this launch
    hn: u32,        // heads in this launch
    nqb: u32,       // query blocks per head: ceil(lq / rows per workgroup), 4·QG·WG here, 32 in attention_sg
    heads: u32,     // H of the tensors (row stride of `st`, in (max, sum) pairs)
    ld4: u32,       // vec4s per row of q, k, v, o: H·D/4
    q_shift: u32,   // vec4 index of this launch's first query row in `q`
    k_shift: u32,   // vec4 index of this launch's first key row in `k` and `v`
    v_shift: u32,
    o_shift: u32,   // vec4 index of this launch's first query row in `o`
    st_shift: u32,  // f32 index of this launch's first query row in `st`
    b_shift: u32,   // f32 index of bias[h0, first query, first key] in `bias`
    b_head: u32,    // bias strides in f32: per head (Lq·Lk) and per query row (Lk)
    b_row: u32,
    flags: u32,     // bit 0 bias, bit 1 resume from o/st, bit 2 last key chunk (normalise)
    scale: f32,
    dv: u32,        // head dim / 4
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

// Four query rows × the head dim, transposed in blocks of four dims (see the header).
alias Rows = array<mat4x4<f32>, MAXDV>;

// Where a group of four rows lives: its rows within the launch (clamped copies past the end compute but never
// store), vec4 offsets of the rows in q and o, f32 offsets of their state and of their bias rows.
struct Group {
    rows: vec4<u32>,
    q_off: vec4<u32>,
    o_off: vec4<u32>,
    s_off: vec4<u32>,
    b_off: vec4<u32>,
}

// Online-softmax state of four rows, and the last step's rescale factor and probabilities (column c of `pt`
// holds row c's weights of the four keys).
struct Softmax {
    m: vec4<f32>,
    l: vec4<f32>,
    alpha: vec4<f32>,
    pt: mat4x4<f32>,
}

fn group(first: u32, h: u32, hl: u32) -> Group {
    let rows = vec4<u32>(first, first + WG, first + 2u * WG, first + 3u * WG);
    let r = min(rows, vec4<u32>(p.lq - 1u));
    let hd = vec4<u32>(h * p.dv);
    return Group(
        rows,
        vec4<u32>(p.q_shift) + r * p.ld4 + hd,
        vec4<u32>(p.o_shift) + r * p.ld4 + hd,
        vec4<u32>(p.st_shift) + (r * p.heads + vec4<u32>(h)) * 2u,
        vec4<u32>(p.b_shift + hl * p.b_head) + r * p.b_row,
    );
}

fn load_q(g: Group, dst: ptr<function, Rows>) {
    for (var i = 0u; i < p.dv; i++) {
        let a = g.q_off + vec4<u32>(i);
        (*dst)[i] = transpose(mat4x4<f32>(q[a.x], q[a.y], q[a.z], q[a.w])) * p.scale;
    }
}

// A fresh state, or the one the previous key chunk left in `st` and `o`.
fn start(g: Group, acc: ptr<function, Rows>) -> Softmax {
    var s = Softmax(vec4<f32>(NEG), vec4<f32>(0.0), vec4<f32>(1.0), mat4x4<f32>());
    if ((p.flags & 2u) != 0u) {
        for (var c = 0u; c < 4u; c++) {
            s.m[c] = st[g.s_off[c]];
            s.l[c] = st[g.s_off[c] + 1u];
        }
        for (var i = 0u; i < p.dv; i++) {
            let a = g.o_off + vec4<u32>(i);
            (*acc)[i] = mat4x4<f32>(o[a.x], o[a.y], o[a.z], o[a.w]);
        }
    }
    return s;
}

// Scores of four keys (columns) for four rows → bias, masking of keys past the end, softmax update.
fn step(g: Group, prev: Softmax, s_in: mat4x4<f32>, j0: u32, j: vec4<u32>) -> Softmax {
    var s = s_in;
    if ((p.flags & 1u) != 0u) {
        let b = g.b_off;
        s[0] += vec4<f32>(bias[b.x + j.x], bias[b.y + j.x], bias[b.z + j.x], bias[b.w + j.x]);
        s[1] += vec4<f32>(bias[b.x + j.y], bias[b.y + j.y], bias[b.z + j.y], bias[b.w + j.y]);
        s[2] += vec4<f32>(bias[b.x + j.z], bias[b.y + j.z], bias[b.z + j.z], bias[b.w + j.z]);
        s[3] += vec4<f32>(bias[b.x + j.w], bias[b.y + j.w], bias[b.z + j.w], bias[b.w + j.w]);
    }
    if (j0 + 3u >= p.lk) {
        if (j0 + 1u >= p.lk) {
            s[1] = vec4<f32>(NEG);
        }
        if (j0 + 2u >= p.lk) {
            s[2] = vec4<f32>(NEG);
        }
        s[3] = vec4<f32>(NEG);
    }
    let m = max(prev.m, max(max(s[0], s[1]), max(s[2], s[3])));
    let alpha = exp(prev.m - m);
    var e = mat4x4<f32>(exp(s[0] - m), exp(s[1] - m), exp(s[2] - m), exp(s[3] - m));
    // Keys past the end weigh nothing, also in a row whose every real key so far was masked by a -inf bias
    // (there m = NEG, and exp(NEG - m) would be 1).
    if (j0 + 3u >= p.lk) {
        if (j0 + 1u >= p.lk) {
            e[1] = vec4<f32>(0.0);
        }
        if (j0 + 2u >= p.lk) {
            e[2] = vec4<f32>(0.0);
        }
        e[3] = vec4<f32>(0.0);
    }
    return Softmax(m, prev.l * alpha + e[0] + e[1] + e[2] + e[3], alpha, transpose(e));
}

// acc[i] = acc[i] · diag(alpha) + V_i · P, with V_i's columns the four keys' dims 4i..4i+3.
fn accumulate(acc: ptr<function, Rows>, i: u32, vm: mat4x4<f32>, s: Softmax) {
    let a = (*acc)[i];
    let al = s.alpha;
    (*acc)[i] = mat4x4<f32>(a[0] * al.x, a[1] * al.y, a[2] * al.z, a[3] * al.w) + vm * s.pt;
}

// Last key chunk: normalised rows. Otherwise: unnormalised rows and (max, sum) for the next chunk.
fn finish(g: Group, acc: ptr<function, Rows>, s: Softmax) {
    let last = (p.flags & 4u) != 0u;
    // A row whose every key was masked by the bias (-inf) has l = 0: it gets zeros, not NaN.
    let inv = select(vec4<f32>(1.0), select(vec4<f32>(0.0), 1.0 / s.l, s.l > vec4<f32>(0.0)), last);
    for (var c = 0u; c < 4u; c++) {
        if (g.rows[c] < p.lq) {
            let oo = g.o_off[c];
            for (var i = 0u; i < p.dv; i++) {
                o[oo + i] = (*acc)[i][c] * inv[c];
            }
            if (!last) {
                st[g.s_off[c]] = s.m[c];
                st[g.s_off[c] + 1u] = s.l[c];
            }
        }
    }
}

@compute @workgroup_size(WG)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let gi = wid.x + wid.y * nwg.x;
    let hl = gi / p.nqb;          // head within the launch; the query blocks of one head are neighbours
    if (hl >= p.hn) {
        return;
    }
    let h = p.h0 + hl;
    let first = (gi % p.nqb) * 4u * QG * WG + lid;
    let ga = group(first, h, hl);
    let gb = group(first + 4u * WG, h, hl);
    var qa: Rows;
    var qb: Rows;
    var acc_a: Rows;
    var acc_b: Rows;
    load_q(ga, &qa);
    var sa = start(ga, &acc_a);
    var sb = sa;
    if (QG > 1u) {
        load_q(gb, &qb);
        sb = start(gb, &acc_b);
    }
    let hd = h * p.dv;

    for (var j0 = 0u; j0 < p.lk; j0 += 4u) {
        // Four keys; those past the end repeat the last key and are masked in step().
        let j = min(vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u), vec4<u32>(p.lk - 1u));
        let kb = vec4<u32>(p.k_shift + hd) + j * p.ld4;
        var a0 = vec4<f32>(0.0);
        var a1 = vec4<f32>(0.0);
        var a2 = vec4<f32>(0.0);
        var a3 = vec4<f32>(0.0);
        var b0 = vec4<f32>(0.0);
        var b1 = vec4<f32>(0.0);
        var b2 = vec4<f32>(0.0);
        var b3 = vec4<f32>(0.0);
        for (var i = 0u; i < p.dv; i++) {
            let k0 = k[kb.x + i];
            let k1 = k[kb.y + i];
            let k2 = k[kb.z + i];
            let k3 = k[kb.w + i];
            let x = qa[i];
            a0 += x * k0;
            a1 += x * k1;
            a2 += x * k2;
            a3 += x * k3;
            if (QG > 1u) {
                let y = qb[i];
                b0 += y * k0;
                b1 += y * k1;
                b2 += y * k2;
                b3 += y * k3;
            }
        }
        sa = step(ga, sa, mat4x4<f32>(a0, a1, a2, a3), j0, j);
        if (QG > 1u) {
            sb = step(gb, sb, mat4x4<f32>(b0, b1, b2, b3), j0, j);
        }
        let vb = vec4<u32>(p.v_shift + hd) + j * p.ld4;
        for (var i = 0u; i < p.dv; i++) {
            let vm = mat4x4<f32>(v[vb.x + i], v[vb.y + i], v[vb.z + i], v[vb.w + i]);
            accumulate(&acc_a, i, vm, sa);
            if (QG > 1u) {
                accumulate(&acc_b, i, vm, sb);
            }
        }
    }

    finish(ga, &acc_a, sa);
    if (QG > 1u) {
        finish(gb, &acc_b, sb);
    }
}
