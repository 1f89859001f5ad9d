// gemm_tiled.wgsl — y[m, n] = epilogue( sum_k x[m, k] * W[n, k] ) for GPUs: the classic shared-memory tiling.
//
// gemm.wgsl suits CPU drivers (no barriers, no workgroup memory, uniform x loads). On a GPU its 4-row blocks
// re-read every weight once per 4 rows. Here a workgroup of 256 invocations owns a 128 x 128 tile of y: each k
// tile of 8 is staged once in workgroup memory (x transposed to [k][m], W as [k][n], dequantised by the same
// format snippets as gemm.wgsl, so every stored format works), and each invocation accumulates an 8 x 8 block
// (rows ty·4.. and 64 + ty·4.., columns tx·4.. and 64 + tx·4..: vec4 reads from workgroup memory that neighbouring
// invocations take from neighbouring addresses). The next k tile is loaded into registers while the current one
// is multiplied. 8.3 KB of workgroup memory: within WebGPU's default 16 KB. No f16, no subgroups. Same bindings,
// parameters and epilogue as gemm.wgsl (common/gemm_epilogue.wgsl); f32 activations.

alias T = f32;
const BM: u32 = 128u;
const BN: u32 = 128u;
const BK: u32 = 8u;
const XS: u32 = 132u;    // row stride of xs: BM + 4 spreads the transposed stores over the banks
const WG: u32 = 256u;

var<workgroup> xs: array<vec4<f32>, BK * XS / 4u>;  // [k][m]
var<workgroup> ws: array<vec4<f32>, BK * BN / 4u>;  // [k][n]

// One invocation's share of a k tile: 4 consecutive k of one x row, and (for the first 64) one 4 x 4 weight block.
// Every index into registers below is a constant: a run-time index can push an array to local memory on GPUs.
struct Tile {
    x: vec4<f32>,
    w: mat4x4<f32>,
}

fn x_at(row: u32, k: u32) -> f32 {
    return select(0.0, load_x1(row + k), k < p.k_end);
}

fn load_tile(k0: u32, m_base: u32, n_base: u32, lid: u32) -> Tile {
    var t = Tile(vec4<f32>(0.0), mat4x4<f32>());
    let m = m_base + lid / 2u;
    let k = k0 + (lid % 2u) * 4u;
    if (m < p.m) {
        let row = p.x_shift + m * p.x_ld;
        t.x = vec4<f32>(x_at(row, k), x_at(row, k + 1u), x_at(row, k + 2u), x_at(row, k + 3u));
    }
    if (lid < 64u) {
        let kb = lid / 32u;
        let n0 = n_base + (lid % 32u) * 4u;
        if (n0 < p.n_pad && k0 + kb * 4u < p.k_end) {
            // The weight binding starts at k_begin; load_w's column i is W[n0 .. n0 + 3, 4kg + i].
            t.w = load_w((k0 - p.k_begin) / 4u + kb, n0);
        }
    }
    return t;
}

fn store_tile(t: Tile, lid: u32) {
    let m = lid / 2u;
    let k = (lid % 2u) * 4u;
    // xs is vec4 along m: each value is one lane of a vec4 of workgroup memory.
    let v = (k * XS + m) / 4u;
    let lane = m % 4u;
    xs[v][lane] = t.x.x;
    xs[v + XS / 4u][lane] = t.x.y;
    xs[v + 2u * XS / 4u][lane] = t.x.z;
    xs[v + 3u * XS / 4u][lane] = t.x.w;
    if (lid < 64u) {
        let kb = lid / 32u;
        let at = kb * 4u * (BN / 4u) + lid % 32u;
        ws[at] = t.w[0];
        ws[at + BN / 4u] = t.w[1];
        ws[at + 2u * BN / 4u] = t.w[2];
        ws[at + 3u * BN / 4u] = t.w[3];
    }
}

fn store4(m: u32, n0: u32, v: vec4<f32>) {
    epilogue(m, n0, v.x);
    epilogue(m, n0 + 1u, v.y);
    epilogue(m, n0 + 2u, v.z);
    epilogue(m, n0 + 3u, v.w);
}

@compute @workgroup_size(WG)
fn gemm_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    // No early return: every invocation reaches every barrier.
    let m_base = (wid.y + wid.z * nwg.y) * BM;
    let n_base = wid.x * BN;
    let tx = lid % 16u;
    let ty = lid / 16u;
    // The 8 x 8 block as 16 vec4s: acc[r] holds columns tx·4.. and acc[8 + r] columns 64 + tx·4.. of row r of
    // the invocation's rows (ty·4 .. ty·4 + 3, then 64 + ty·4 .. 64 + ty·4 + 3).
    var acc: array<vec4<f32>, 16>;
    var next = load_tile(p.k_begin, m_base, n_base, lid);
    for (var k0 = p.k_begin; k0 < p.k_end; k0 += BK) {
        workgroupBarrier();  // the previous tile's products are done with xs and ws
        store_tile(next, lid);
        workgroupBarrier();
        if (k0 + BK < p.k_end) {
            next = load_tile(k0 + BK, m_base, n_base, lid);
        }
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = xs[(kk * XS) / 4u + ty];
            let a1 = xs[(kk * XS) / 4u + 16u + ty];
            let b0 = ws[kk * (BN / 4u) + tx];
            let b1 = ws[kk * (BN / 4u) + 16u + tx];
            acc[0] += a0.x * b0;
            acc[1] += a0.y * b0;
            acc[2] += a0.z * b0;
            acc[3] += a0.w * b0;
            acc[4] += a1.x * b0;
            acc[5] += a1.y * b0;
            acc[6] += a1.z * b0;
            acc[7] += a1.w * b0;
            acc[8] += a0.x * b1;
            acc[9] += a0.y * b1;
            acc[10] += a0.z * b1;
            acc[11] += a0.w * b1;
            acc[12] += a1.x * b1;
            acc[13] += a1.y * b1;
            acc[14] += a1.z * b1;
            acc[15] += a1.w * b1;
        }
    }
    let r0 = m_base + ty * 4u;
    let r1 = m_base + 64u + ty * 4u;
    let c0 = n_base + tx * 4u;
    let c1 = n_base + 64u + tx * 4u;
    store4(r0, c0, acc[0]);
    store4(r0 + 1u, c0, acc[1]);
    store4(r0 + 2u, c0, acc[2]);
    store4(r0 + 3u, c0, acc[3]);
    store4(r1, c0, acc[4]);
    store4(r1 + 1u, c0, acc[5]);
    store4(r1 + 2u, c0, acc[6]);
    store4(r1 + 3u, c0, acc[7]);
    store4(r0, c1, acc[8]);
    store4(r0 + 1u, c1, acc[9]);
    store4(r0 + 2u, c1, acc[10]);
    store4(r0 + 3u, c1, acc[11]);
    store4(r1, c1, acc[12]);
    store4(r1 + 1u, c1, acc[13]);
    store4(r1 + 2u, c1, acc[14]);
    store4(r1 + 3u, c1, acc[15]);
}
