// gemm_coop.wgsl — y[m, n] = epilogue( sum_k x[m, k] * W[n, k] ) on cooperative matrices (tensor cores).
//
// For adapters that offer a subgroup-scoped 16x16x16 product with f16 inputs and an f32 accumulator. Same
// bindings, parameters and epilogue as gemm.wgsl, and the same weight snippets (`load_w`, `col_scale`), so every
// stored format works: a workgroup stages a BM x BK tile of x and a BK x BN tile of W in workgroup memory as f16
// (x rounded from f32 here; W dequantised by its snippet), then each of its 8 subgroups multiplies its 32 x 64
// part (2 x 4 fragments) with the cooperative product, accumulating in f32 over k. The epilogue goes through a
// 16 x 16 scratch per subgroup so bias, activation, gate and accumulation match the plain kernel.
//
// x rounded to f16 bounds the relative error of each product term by 2^-11; values beyond ±65504 would overflow,
// which the DiT's normalised activations do not reach. The launcher uses this kernel only for weight formats
// narrower than f32 (f32 weights keep the exact f32 kernel).
//
// Needs a fixed subgroup size SG (workgroup = 8 subgroups); the launcher checks it. Measured on an H100 and kept
// out: loading the next tile into register arrays during the products (3x slower: the arrays went to local
// memory), and room for 64 k per tile (half the speed at 32 k: fewer workgroups fit per multiprocessor, and 64 k
// was no faster).

alias T = f32;
override SG: u32 = 32u;
override WG: u32 = 256u; // 8 * SG, set by the launcher
const BM: u32 = 128u;
const BN: u32 = 128u;
const BK: u32 = 32u;

var<workgroup> xs: array<f16, BM * BK>;     // [m][k]
var<workgroup> ws: array<f16, BK * BN>;     // [k][n]
var<workgroup> scratch: array<f32, 2048>;   // 8 subgroups x one 16 x 16 fragment

// Applies the epilogue to the fragment subgroup `sid` left in its scratch: rows m0.., columns n0...
fn flush(sid: u32, lane: u32, m0: u32, n0: u32) {
    workgroupBarrier();
    for (var e = lane; e < 256u; e += SG) {
        epilogue(m0 + e / 16u, n0 + e % 16u, scratch[sid * 256u + e]);
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn gemm_coop(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sid: u32,
             @builtin(subgroup_invocation_id) lane: u32) {
    // No early return: every invocation reaches every barrier and cooperative operation.
    let m_base = (wid.y + wid.z * nwg.y) * BM;
    let n_base = wid.x * BN;
    let sm = (sid / 2u) * 32u;   // this subgroup's 32 x 64 part of the tile
    let sn = (sid % 2u) * 64u;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c02 = coop_mat16x16<f32, C>();
    var c03 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c12 = coop_mat16x16<f32, C>();
    var c13 = coop_mat16x16<f32, C>();
    for (var k0 = p.k_begin; k0 < p.k_end; k0 += BK) {
        for (var i = lid; i < BM * BK; i += WG) {
            let m = m_base + i / BK;
            let k = k0 + i % BK;
            var v = 0.0;
            if (m < p.m && k < p.k_end) {
                v = load_x1(p.x_shift + m * p.x_ld + k);
            }
            xs[i] = f16(v);
        }
        for (var b = lid; b < (BK / 4u) * (BN / 4u); b += WG) {
            let kb = b / (BN / 4u);
            let nb = b % (BN / 4u);
            let n0 = n_base + nb * 4u;
            var wm = mat4x4<f32>();
            if (n0 < p.n_pad && k0 + kb * 4u < p.k_end) {
                // The weight binding starts at k_begin; load_w's column i is W[n0 .. n0 + 3, 4kg + i].
                wm = load_w((k0 - p.k_begin) / 4u + kb, n0);
            }
            for (var i = 0u; i < 4u; i++) {
                let row = (kb * 4u + i) * BN + nb * 4u;
                ws[row] = f16(wm[i][0]);
                ws[row + 1u] = f16(wm[i][1]);
                ws[row + 2u] = f16(wm[i][2]);
                ws[row + 3u] = f16(wm[i][3]);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk += 16u) {
            let bk = BK;
            let bn = BN;
            let ia0 = sm * BK + kk;
            let ia1 = (sm + 16u) * BK + kk;
            let ib = kk * BN + sn;
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[ia0], bk);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[ia1], bk);
            let b0 = coopLoadT<coop_mat16x16<f16, B>>(&ws[ib], bn);
            let b1 = coopLoadT<coop_mat16x16<f16, B>>(&ws[ib + 16u], bn);
            let b2 = coopLoadT<coop_mat16x16<f16, B>>(&ws[ib + 32u], bn);
            let b3 = coopLoadT<coop_mat16x16<f16, B>>(&ws[ib + 48u], bn);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c02 = coopMultiplyAdd(a0, b2, c02);
            c03 = coopMultiplyAdd(a0, b3, c03);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
            c12 = coopMultiplyAdd(a1, b2, c12);
            c13 = coopMultiplyAdd(a1, b3, c13);
        }
        workgroupBarrier();
    }
    let s16 = 16u;
    let at = sid * 256u;
    let m0 = m_base + sm;
    let n0 = n_base + sn;
    coopStoreT(c00, &scratch[at], s16);
    flush(sid, lane, m0, n0);
    coopStoreT(c01, &scratch[at], s16);
    flush(sid, lane, m0, n0 + 16u);
    coopStoreT(c02, &scratch[at], s16);
    flush(sid, lane, m0, n0 + 32u);
    coopStoreT(c03, &scratch[at], s16);
    flush(sid, lane, m0, n0 + 48u);
    coopStoreT(c10, &scratch[at], s16);
    flush(sid, lane, m0 + 16u, n0);
    coopStoreT(c11, &scratch[at], s16);
    flush(sid, lane, m0 + 16u, n0 + 16u);
    coopStoreT(c12, &scratch[at], s16);
    flush(sid, lane, m0 + 16u, n0 + 32u);
    coopStoreT(c13, &scratch[at], s16);
    flush(sid, lane, m0 + 16u, n0 + 48u);
}
