// matmul_sg.wgsl — matmul.wgsl's product, y[m, n] = alpha · Σ_k A[m, k] · B[k, n], for CPU drivers with
// subgroups, built like gemm_sg: each invocation owns 4 consecutive columns and TM rows of y, the rows shared by
// the workgroup; lane l of a subgroup loads A[m, k + l] for each row and the products take the values with
// x_lanes4 (common/lanes4.wgsl): one load per row for SG values of k, and no workgroup memory or barrier.
// B is read as vec4s: B[k, n .. n + 3] from a [K, N] tensor, or with TB, B[k .. k + 3, n] from an [N, K] one
// (four rows, transposed in registers), so ldb and b_shift are multiples of 4 (the launcher checks). TA reads A
// from a [K, M] tensor. Params: common/matmul_params.wgsl. SG: the adapter's fixed subgroup size, a multiple of 4 up to
// 64 dividing WG.

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

override SG: u32 = 8u;
override WG: u32 = 64u;
override TA: bool = false;
override TB: bool = false;
const TM: u32 = 8u;

// A[m, k].
fn mm_a(m: u32, k: u32) -> f32 {
    if (TA) {
        return a[p.a_shift + k * p.lda + m];
    }
    return a[p.a_shift + m * p.lda + k];
}

// Column i: B[k + i, n0 .. n0 + 3], for k a multiple of 4 below p.k (with TB, p.k a multiple of 4 too).
fn mm_b(k: u32, n0: u32) -> mat4x4<f32> {
    if (TB) {
        let i = (p.b_shift + n0 * p.ldb + k) / 4u;
        let r = p.ldb / 4u;
        return transpose(mat4x4<f32>(b[i], b[i + r], b[i + 2u * r], b[i + 3u * r]));
    }
    let i = (p.b_shift + k * p.ldb + n0) / 4u;
    let r = p.ldb / 4u;
    return mat4x4<f32>(b[i], b[i + r], b[i + 2u * r], b[i + 3u * r]);
}

// B[k, n0 .. n0 + 3] for one k (the tail).
fn mm_b1(k: u32, n0: u32) -> vec4<f32> {
    if (TB) {
        let i = p.b_shift + n0 * p.ldb + k;
        let r = p.ldb;
        return vec4<f32>(b[i / 4u][i % 4u], b[(i + r) / 4u][(i + r) % 4u], b[(i + 2u * r) / 4u][(i + 2u * r) % 4u],
                         b[(i + 3u * r) / 4u][(i + 3u * r) % 4u]);
    }
    return b[(p.b_shift + k * p.ldb + n0) / 4u];
}

@compute @workgroup_size(WG)
fn matmul_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let n0 = (wid.x * WG + lid) * 4u;
    let m0 = (wid.y + wid.z * nwg.y) * TM;
    if (m0 >= p.m) {
        return; // the whole workgroup
    }
    // Invocations past the last column stay (their lanes load A for the others) and read the last group of
    // columns; columns past n in a group read whatever follows, and none of it is stored.
    let nb = min(n0, (p.n - 1u) / 4u * 4u);
    var rows: array<u32, TM>;
    var acc: array<vec4<f32>, TM>;
    for (var r = 0u; r < TM; r++) {
        rows[r] = min(m0 + r, p.m - 1u);
        acc[r] = vec4<f32>(0.0);
    }
    let k_sg = p.k / SG * SG;
    for (var k = 0u; k < k_sg; k += SG) {
        var xr: array<f32, TM>;
        for (var r = 0u; r < TM; r++) {
            xr[r] = mm_a(rows[r], k + lane);
        }
        for (var g = 0u; g < SG / 4u; g++) {
            let bm = mm_b(k + 4u * g, nb);
            for (var r = 0u; r < TM; r++) {
                acc[r] += bm * x_lanes4(xr[r], g);
            }
        }
    }
    for (var k = k_sg; k < p.k; k++) {
        let bk = mm_b1(k, nb);
        for (var r = 0u; r < TM; r++) {
            acc[r] += bk * mm_a(rows[r], k);
        }
    }
    for (var r = 0u; r < TM; r++) {
        for (var j = 0u; j < 4u; j++) {
            if (m0 + r < p.m && n0 + j < p.n) {
                y[p.y_shift + (m0 + r) * p.ldy + n0 + j] = p.alpha * acc[r][j];
            }
        }
    }
}
