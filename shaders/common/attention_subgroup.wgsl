// attention.wgsl's entry point for CPU drivers with subgroups (native only), built for the same launches as
// `attention` (Params, bindings, key chunks carried in `o` and `st`).
//
// On lavapipe (Mesa 25.0.7), a private array indexed at run time compiles to one scalar load or store per lane
// and element, and a storage load whose address varies across lanes to one bounds-checked scalar load per lane.
// `attention` keeps q and the output rows in run-time-indexed arrays, which was most of its time. Here every
// private array index is a constant and every loaded value serves TM query rows:
// - a subgroup owns TM query rows. For each block of 4·SG keys, lane l computes the scores of keys 4l .. 4l + 3
//   for all TM rows from its own K rows, with the q values handed round by shuffles (Q·Kᵀ as in gemm_sg);
// - the online softmax takes each row's block maximum with subgroupMax; each lane keeps its own part of the row
//   sums, added across the subgroup at the end;
// - for P·V, lane l owns dims 4(l + SG·c) .. 4(l + SG·c) + 3 of every row for chunks c < NC, in four
//   accumulator arrays (a0 .. a3, one per chunk, so that no index depends on NC), and takes the four
//   probabilities of each source lane's keys with one vec4 shuffle per row; at most two chunks per pass over
//   the block's keys.
// SG is the adapter's fixed subgroup size and the head dim is 4·SG·NC with NC ≤ 4. TM is a constant: private
// arrays cannot be sized by override constants, and 8 measured best on lavapipe (4 and 6 slower; 10, 12 and 16
// two to five times slower).

override SG: u32 = 8u;
override NC: u32 = 2u;
const TM: u32 = 8u;

alias Rows4 = array<vec4<f32>, TM>;

// acc[r] += (v rows of four keys, dims at vo) · pv[r] for every row.
fn pv_chunk(acc: ptr<function, Rows4>, pv: ptr<function, Rows4>, vo: vec4<u32>) {
    let vm = mat4x4<f32>(v[vo.x], v[vo.y], v[vo.z], v[vo.w]);
    for (var r = 0u; r < TM; r++) {
        (*acc)[r] += vm * (*pv)[r];
    }
}

// P·V for the chunks c0 (into a) and c0 + 1 (into b, where NC > c0 + 1): the four keys of each source lane in
// turn, their probabilities by one shuffle per row. Two chunks per pass: with all four in one pass (head dim 128
// on lavapipe) the accumulators spilled and attention ran 1.3–1.5× slower.
fn pv_pass(a: ptr<function, Rows4>, b: ptr<function, Rows4>, pr: ptr<function, Rows4>, j0: u32, vb: vec4<u32>,
           c0: u32) {
    for (var src = 0u; src < SG; src++) {
        let jj = min(vec4<u32>(j0 + 4u * src) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.lk - 1u));
        let vo = vb + jj * p.ld4 + vec4<u32>(c0 * SG);
        var pv: Rows4;
        for (var r = 0u; r < TM; r++) {
            pv[r] = subgroupShuffle((*pr)[r], src);
        }
        pv_chunk(a, &pv, vo);
        if (NC > c0 + 1u) {
            pv_chunk(b, &pv, vo + vec4<u32>(SG));
        }
    }
}

fn scale_chunk(acc: ptr<function, Rows4>, alpha: ptr<function, array<f32, TM>>) {
    for (var r = 0u; r < TM; r++) {
        (*acc)[r] *= (*alpha)[r];
    }
}

fn load_chunk(acc: ptr<function, Rows4>, oo: ptr<function, array<u32, TM>>, c: u32, resume: bool) {
    for (var r = 0u; r < TM; r++) {
        (*acc)[r] = vec4<f32>(0.0);
        if (resume) {
            (*acc)[r] = o[(*oo)[r] + SG * c];
        }
    }
}

fn store_chunk(acc: ptr<function, Rows4>, oo: ptr<function, array<u32, TM>>, inv: ptr<function, array<f32, TM>>,
               live: ptr<function, array<bool, TM>>, c: u32) {
    for (var r = 0u; r < TM; r++) {
        if ((*live)[r]) {
            o[(*oo)[r] + SG * c] = (*acc)[r] * (*inv)[r];
        }
    }
}

@compute @workgroup_size(WG)
fn attention_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(subgroup_id) sid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let gi = wid.x + wid.y * nwg.x;
    let hl = gi / p.nqb;
    if (hl >= p.hn) {
        return;
    }
    let h = p.h0 + hl;
    let first = (gi % p.nqb) * (WG / SG) * TM + sid * TM;
    let hd = h * p.dv;
    let resume = (p.flags & 2u) != 0u;
    var qo: array<u32, TM>;   // vec4 offset of row r's head in q, plus this lane
    var oo: array<u32, TM>;   // the same in o
    var so: array<u32, TM>;   // f32 offset of row r's (max, sum) in st
    var bo: array<u32, TM>;   // f32 offset of row r's bias
    var live: array<bool, TM>;
    var m: array<f32, TM>;    // running row max (the same in every lane)
    var l: array<f32, TM>;    // this lane's part of the running row sum
    for (var r = 0u; r < TM; r++) {
        let row = min(first + r, p.lq - 1u);
        live[r] = first + r < p.lq;
        qo[r] = p.q_shift + row * p.ld4 + hd + lane;
        oo[r] = p.o_shift + row * p.ld4 + hd + lane;
        so[r] = p.st_shift + (row * p.heads + h) * 2u;
        bo[r] = p.b_shift + hl * p.b_head + row * p.b_row;
        m[r] = NEG;
        l[r] = 0.0;
        if (resume) {
            m[r] = st[so[r]];
            l[r] = select(0.0, st[so[r] + 1u], lane == 0u);
        }
    }
    var a0: Rows4;
    var a1: Rows4;
    var a2: Rows4;
    var a3: Rows4;
    load_chunk(&a0, &oo, 0u, resume);
    if (NC > 1u) {
        load_chunk(&a1, &oo, 1u, resume);
    }
    if (NC > 2u) {
        load_chunk(&a2, &oo, 2u, resume);
    }
    if (NC > 3u) {
        load_chunk(&a3, &oo, 3u, resume);
    }

    for (var j0 = 0u; j0 < p.lk; j0 += 4u * SG) {
        // Scores of this lane's four keys (past the end: the last key, masked below) for the TM rows.
        let jl = vec4<u32>(j0 + 4u * lane) + vec4<u32>(0u, 1u, 2u, 3u);
        let valid = jl < vec4<u32>(p.lk);
        let j = min(jl, vec4<u32>(p.lk - 1u));
        let kb = vec4<u32>(p.k_shift + hd) + j * p.ld4;
        var s: Rows4;
        for (var r = 0u; r < TM; r++) {
            s[r] = vec4<f32>(0.0);
        }
        for (var c = 0u; c < NC; c++) {
            var qv: Rows4;
            for (var r = 0u; r < TM; r++) {
                qv[r] = q[qo[r] + SG * c];
            }
            for (var g = 0u; g < SG; g++) {
                let i = g + SG * c;
                let kt = transpose(mat4x4<f32>(k[kb.x + i], k[kb.y + i], k[kb.z + i], k[kb.w + i]));
                for (var r = 0u; r < TM; r++) {
                    s[r] += kt * subgroupShuffle(qv[r], g);
                }
            }
        }
        // Online softmax over the block: row maxima across the subgroup, this lane's probabilities.
        var pr: Rows4;
        var alpha: array<f32, TM>;
        for (var r = 0u; r < TM; r++) {
            var sr = s[r] * p.scale;
            if ((p.flags & 1u) != 0u) {
                sr += vec4<f32>(bias[bo[r] + j.x], bias[bo[r] + j.y], bias[bo[r] + j.z], bias[bo[r] + j.w]);
            }
            sr = select(vec4<f32>(NEG), sr, valid);
            let mn = max(m[r], subgroupMax(max(max(sr.x, sr.y), max(sr.z, sr.w))));
            alpha[r] = exp(m[r] - mn);
            m[r] = mn;
            let e = select(vec4<f32>(0.0), exp(sr - vec4<f32>(mn)), valid);
            pr[r] = e;
            l[r] = l[r] * alpha[r] + (e.x + e.y + e.z + e.w);
        }
        scale_chunk(&a0, &alpha);
        if (NC > 1u) {
            scale_chunk(&a1, &alpha);
        }
        if (NC > 2u) {
            scale_chunk(&a2, &alpha);
        }
        if (NC > 3u) {
            scale_chunk(&a3, &alpha);
        }
        let vb = vec4<u32>(p.v_shift + hd + lane);
        pv_pass(&a0, &a1, &pr, j0, vb, 0u);
        if (NC > 2u) {
            pv_pass(&a2, &a3, &pr, j0, vb, 2u);
        }
    }

    // Last key chunk: normalised rows (zeros where every key was masked). Otherwise the unnormalised rows and
    // (max, sum) for the next chunk.
    let last = (p.flags & 4u) != 0u;
    var inv: array<f32, TM>;
    for (var r = 0u; r < TM; r++) {
        let lt = subgroupAdd(l[r]);
        inv[r] = select(1.0, select(0.0, 1.0 / lt, lt > 0.0), last);
        if (!last && live[r] && lane == 0u) {
            st[so[r]] = m[r];
            st[so[r] + 1u] = lt;
        }
    }
    store_chunk(&a0, &oo, &inv, &live, 0u);
    if (NC > 1u) {
        store_chunk(&a1, &oo, &inv, &live, 1u);
    }
    if (NC > 2u) {
        store_chunk(&a2, &oo, &inv, &live, 2u);
    }
    if (NC > 3u) {
        store_chunk(&a3, &oo, &inv, &live, 3u);
    }
}
