// matmul.wgsl — y[m, n] = alpha · Σ_k A[m, k] · B[k, n] between two activations in f32 (no packed weight). A is
// read as [M, K] with row stride lda or, with TRANS_A, from a [K, M] tensor; B as [K, N] with row stride ldb or,
// with TRANS_B, from [N, K]. One workgroup computes a 16 × 16 block of y through shared 16 × 16 tiles of A and B;
// partial tiles at the edges are zero-filled. Offsets (`*_shift`) and strides are in elements.

// Params: common/matmul_params.wgsl.

const TRANS_A: u32 = 1u;
const TRANS_B: u32 = 2u;
const TS: u32 = 16u;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> tile_a: array<f32, 256>;
var<workgroup> tile_b: array<f32, 256>;

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.y * TS + lid.y;
    let col = wid.x * TS + lid.x;
    let ta = (p.flags & TRANS_A) != 0u;
    let tb = (p.flags & TRANS_B) != 0u;
    var acc = 0.0;
    for (var k0 = 0u; k0 < p.k; k0 += TS) {
        let ka = k0 + lid.x;
        var va = 0.0;
        if (row < p.m && ka < p.k) {
            if (ta) {
                va = a[p.a_shift + ka * p.lda + row];
            } else {
                va = a[p.a_shift + row * p.lda + ka];
            }
        }
        tile_a[lid.y * TS + lid.x] = va;
        let kb = k0 + lid.y;
        var vb = 0.0;
        if (col < p.n && kb < p.k) {
            if (tb) {
                vb = b[p.b_shift + col * p.ldb + kb];
            } else {
                vb = b[p.b_shift + kb * p.ldb + col];
            }
        }
        tile_b[lid.y * TS + lid.x] = vb;
        workgroupBarrier();
        for (var i = 0u; i < TS; i++) {
            acc += tile_a[lid.y * TS + i] * tile_b[i * TS + lid.x];
        }
        workgroupBarrier();
    }
    if (row < p.m && col < p.n) {
        y[p.y_shift + row * p.ldy + col] = p.alpha * acc;
    }
}
