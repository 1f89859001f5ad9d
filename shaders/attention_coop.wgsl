// attention_coop.wgsl — o[i, h, :] = softmax_j( scale · q[i, h, :]·k[j, h, :] ) · v[j, h, :] on cooperative
// matrices (tensor cores): 16x16x16 products with f16 inputs and f32 accumulators.
//
// For adapters with that configuration and a fixed subgroup size SG. A workgroup of 4 subgroups takes 64 query
// rows of one head (16 per subgroup); q, k, v, o are row-major [L, H, HD] f32 (a [L, H·HD] projection output).
// Keys are walked in blocks of 32, staged once per block in workgroup memory as f16 and shared by the 4
// subgroups. Two passes over the keys keep every accumulator inside the cooperative matrices (they cannot be
// rescaled in place, which the one-pass online softmax needs): the first finds each row's max and sum of
// exponentials, the second adds exp(s − max) / sum · v with those fixed. The scores are computed twice: 6·L²·HD
// operations instead of 4, all of them on tensor cores.
//
// Rounding q (scaled), k, v and the probabilities to f16 bounds each term's relative error by about 2^-11; the
// launcher uses this kernel only when the caller allows half-precision arithmetic (weights narrower than f32).
// No additive bias and no key chunks here: the launcher keeps those on attention.wgsl.

override SG: u32 = 32u;
override WG: u32 = 128u;  // 4 * SG, set by the launcher
override HD: u32 = 128u;  // head dim: a multiple of 16, at most MAXD
const MAXD: u32 = 128u;
const BQ: u32 = 64u;      // query rows per workgroup
const BKV: u32 = 32u;     // keys per staged block
const NEG: f32 = -3.0e38;

struct Params {
    lq: u32,        // query rows in this launch (one segment)
    lk: u32,        // keys of the segment
    hn: u32,        // heads
    nqb: u32,       // query blocks per head: ceil(lq / BQ)
    ld: u32,        // f32 per row of q, k, v, o: H·HD
    q_shift: u32,   // f32 index of the segment's first query row in `q` and `o`
    k_shift: u32,   // f32 index of the segment's first key row in `k` and `v`
    o_shift: u32,
    v_shift: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> qs: array<f16, BQ * MAXD>;        // scaled queries [row][dim]
var<workgroup> ks: array<f16, BKV * MAXD>;       // keys [key][dim]
var<workgroup> vs: array<f16, BKV * MAXD>;       // values [key][dim]
var<workgroup> sc: array<f32, 4u * 16u * BKV>;   // per subgroup: scores [16 rows][32 keys], later output tiles
var<workgroup> ps: array<f16, 4u * 16u * BKV>;   // per subgroup: probabilities [16 rows][32 keys]
var<workgroup> row_m: array<f32, BQ>;
var<workgroup> row_l: array<f32, BQ>;

// Stages keys (and values) j0 .. j0 + BKV of head h; keys past the end are zeros (their scores are masked).
fn stage(j0: u32, h: u32, lid: u32, with_v: bool) {
    for (var i = lid; i < BKV * HD; i += WG) {
        let j = i / HD;
        let d = i % HD;
        var kv = 0.0;
        var vv = 0.0;
        if (j0 + j < p.lk) {
            let at = (j0 + j) * p.ld + h * HD + d;
            kv = k[p.k_shift + at];
            if (with_v) {
                vv = v[p.v_shift + at];
            }
        }
        ks[j * MAXD + d] = f16(kv);
        if (with_v) {
            vs[j * MAXD + d] = f16(vv);
        }
    }
}

// This subgroup's 16 x 32 scores of the staged block into its part of `sc`.
fn scores(sid: u32) {
    var s0 = coop_mat16x16<f32, C>();
    var s1 = coop_mat16x16<f32, C>();
    let md = MAXD;
    for (var d = 0u; d < HD; d += 16u) {
        let ia = sid * 16u * MAXD + d;
        let ib0 = d;
        let ib1 = 16u * MAXD + d;
        let a = coopLoadT<coop_mat16x16<f16, A>>(&qs[ia], md);
        // Kᵀ: element (dim, key) sits at ks[key * MAXD + dim], a column-major load.
        let b0 = coopLoad<coop_mat16x16<f16, B>>(&ks[ib0], md);
        let b1 = coopLoad<coop_mat16x16<f16, B>>(&ks[ib1], md);
        s0 = coopMultiplyAdd(a, b0, s0);
        s1 = coopMultiplyAdd(a, b1, s1);
    }
    let at0 = sid * 512u;
    let at1 = sid * 512u + 16u;
    let stride = BKV;
    coopStoreT(s0, &sc[at0], stride);
    coopStoreT(s1, &sc[at1], stride);
}

// Writes one 16 x 16 output tile (left in this subgroup's `sc` with stride 16) to o.
fn flush(sid: u32, lane: u32, q0: u32, h: u32, d0: u32, live: bool) {
    workgroupBarrier();
    for (var e = lane; e < 256u; e += SG) {
        let row = q0 + sid * 16u + e / 16u;
        if (live && row < p.lq) {
            o[p.o_shift + row * p.ld + h * HD + d0 + e % 16u] = sc[sid * 512u + e];
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn attention_coop(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sid: u32,
                  @builtin(subgroup_invocation_id) lane: u32) {
    // Workgroups past the last head compute on clamped indices and store nothing: no early return, so every
    // invocation reaches every barrier and cooperative operation.
    let gi = wid.x + wid.y * nwg.x;
    let live = gi / p.nqb < p.hn;
    let h = min(gi / p.nqb, p.hn - 1u);
    let q0 = (gi % p.nqb) * BQ;
    for (var i = lid; i < BQ * HD; i += WG) {
        let r = i / HD;
        let d = i % HD;
        var x = 0.0;
        if (q0 + r < p.lq) {
            x = q[p.q_shift + (q0 + r) * p.ld + h * HD + d] * p.scale;
        }
        qs[r * MAXD + d] = f16(x);
    }
    if (lid < BQ) {
        row_m[lid] = NEG;
        row_l[lid] = 0.0;
    }
    let mine = sid * 512u + lane * BKV; // this lane's score row, for lanes 0..15
    let row = sid * 16u + lane;

    // Pass 1: each row's max and sum of exponentials.
    for (var j0 = 0u; j0 < p.lk; j0 += BKV) {
        workgroupBarrier();
        stage(j0, h, lid, false);
        workgroupBarrier();
        scores(sid);
        workgroupBarrier();
        if (lane < 16u) {
            let n = min(BKV, p.lk - j0);
            var mx = row_m[row];
            for (var c = 0u; c < n; c++) {
                mx = max(mx, sc[mine + c]);
            }
            var l = row_l[row] * exp(row_m[row] - mx);
            for (var c = 0u; c < n; c++) {
                l += exp(sc[mine + c] - mx);
            }
            row_m[row] = mx;
            row_l[row] = l;
        }
    }

    // Pass 2: o = Σ exp(s − max) / sum · v, accumulated in f32 fragments of 16 dims.
    var o0 = coop_mat16x16<f32, C>();
    var o1 = coop_mat16x16<f32, C>();
    var o2 = coop_mat16x16<f32, C>();
    var o3 = coop_mat16x16<f32, C>();
    var o4 = coop_mat16x16<f32, C>();
    var o5 = coop_mat16x16<f32, C>();
    var o6 = coop_mat16x16<f32, C>();
    var o7 = coop_mat16x16<f32, C>();
    for (var j0 = 0u; j0 < p.lk; j0 += BKV) {
        workgroupBarrier();
        stage(j0, h, lid, true);
        workgroupBarrier();
        scores(sid);
        workgroupBarrier();
        for (var e = lane; e < 16u * BKV; e += SG) {
            let r = sid * 16u + e / BKV;
            var pr = 0.0;
            if (j0 + e % BKV < p.lk) {
                pr = exp(sc[sid * 512u + e] - row_m[r]) / row_l[r];
            }
            ps[sid * 512u + e] = f16(pr);
        }
        workgroupBarrier();
        let md = MAXD;
        let bkv = BKV;
        for (var kk = 0u; kk < BKV; kk += 16u) {
            let ia = sid * 512u + kk;
            let a = coopLoadT<coop_mat16x16<f16, A>>(&ps[ia], bkv);
            let vb = kk * MAXD;
            o0 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb], md), o0);
            if (HD > 16u) {
                o1 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb + 16u], md), o1);
            }
            if (HD > 32u) {
                o2 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb + 32u], md), o2);
            }
            if (HD > 48u) {
                o3 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb + 48u], md), o3);
            }
            if (HD > 64u) {
                o4 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb + 64u], md), o4);
            }
            if (HD > 80u) {
                o5 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb + 80u], md), o5);
            }
            if (HD > 96u) {
                o6 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb + 96u], md), o6);
            }
            if (HD > 112u) {
                o7 = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vs[vb + 112u], md), o7);
            }
        }
    }

    let at = sid * 512u;
    let s16 = 16u;
    coopStoreT(o0, &sc[at], s16);
    flush(sid, lane, q0, h, 0u, live);
    if (HD > 16u) {
        coopStoreT(o1, &sc[at], s16);
        flush(sid, lane, q0, h, 16u, live);
    }
    if (HD > 32u) {
        coopStoreT(o2, &sc[at], s16);
        flush(sid, lane, q0, h, 32u, live);
    }
    if (HD > 48u) {
        coopStoreT(o3, &sc[at], s16);
        flush(sid, lane, q0, h, 48u, live);
    }
    if (HD > 64u) {
        coopStoreT(o4, &sc[at], s16);
        flush(sid, lane, q0, h, 64u, live);
    }
    if (HD > 80u) {
        coopStoreT(o5, &sc[at], s16);
        flush(sid, lane, q0, h, 80u, live);
    }
    if (HD > 96u) {
        coopStoreT(o6, &sc[at], s16);
        flush(sid, lane, q0, h, 96u, live);
    }
    if (HD > 112u) {
        coopStoreT(o7, &sc[at], s16);
        flush(sid, lane, q0, h, 112u, live);
    }
}
