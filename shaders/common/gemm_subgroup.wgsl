// gemm.wgsl's entry point for adapters with subgroups (native only). On CPU drivers a load whose address is the
// same for every invocation still costs a bounds check and a branch per element, and those uniform x loads were
// most of gemm's time. Here each lane of a subgroup loads one x value per row, x[m, k + lane], and the products
// take them from registers with subgroup shuffles: one load per row for SG values of k, instead of SG.
// SG is the adapter's (fixed) subgroup size, a multiple of 4 up to 64; x_lanes4 comes from common/lanes4.wgsl.

override SG: u32 = 8u;

@compute @workgroup_size(WG)
fn gemm_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let n0 = (wid.x * WG + lid) * 4u;
    let m0 = (wid.y + wid.z * nwg.y) * TM;
    if (m0 >= p.m) {
        return; // the whole workgroup
    }
    // Invocations past the last column stay: their lanes load x for the others. They read the last stored
    // columns, and the epilogue writes nothing for them.
    let nw = min(n0, p.n_pad - 4u);
    var acc: array<vec4<f32>, TM>;
    var rows: array<u32, TM>;
    for (var r = 0u; r < TM; r++) {
        acc[r] = vec4<f32>(0.0);
        rows[r] = x_row(m0 + r);
    }
    let k_sg = p.k_begin + (p.k_end - p.k_begin) / SG * SG;
    var kg = 0u;
    for (var k = p.k_begin; k < k_sg; k += SG) {
        var xr: array<f32, TM>;
        for (var r = 0u; r < TM; r++) {
            xr[r] = load_x1(rows[r] + k + lane);
        }
        for (var g = 0u; g < SG / 4u; g++) {
            let wm = load_w(kg + g, nw);
            for (var r = 0u; r < TM; r++) {
                acc[r] += wm * x_lanes4(xr[r], g);
            }
        }
        kg += SG / 4u;
    }
    gemm_groups(&acc, &rows, nw, k_sg, kg);
    store_rows(&acc, m0, n0);
}
