// Row norms with subgroup reductions (appended to norm.wgsl for adapters with SUBGROUP; native only: browsers'
// WebGPU does not reach wgpu's subgroups). Same layout as layer_norm / rms_norm: invocation t owns columns t,
// t + WG, …; but the partials meet in registers first: subgroupAdd within each subgroup, then one entry per
// subgroup in norm.wgsl's part_* arrays behind the one barrier, so each invocation combines WG / subgroup-size
// entries instead of WG. LayerNorm combines (count, sum, centred sum of squares) with Chan's formula at both
// levels: here within the subgroup, then norm.wgsl's combine_partials across subgroups.

@compute @workgroup_size(WG)
fn layer_norm_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) t: u32, @builtin(subgroup_id) sid: u32,
                 @builtin(num_subgroups) nsg: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = group_index(wid, nwg) * R;
    let cols = p.cols;
    let n_t = owned(t, cols);
    for (var rr = 0u; rr < R; rr++) {
        let row = row0 + rr;
        let sums = layer_norm_partials(row, rr, t, n_t);
        let s = sums.x;
        // Subgroup level: n, s, then the centred sums about the subgroup's mean.
        let n = f32(n_t);
        let n_sg = subgroupAdd(n);
        let s_sg = subgroupAdd(s);
        let mean_sg = s_sg / max(n_sg, 1.0);
        let d = s - n * mean_sg;  // n (mean_t - mean_sg)
        let m2_sg = subgroupAdd(sums.y + select(0.0, d * d / n, n_t > 0u));
        if (lane == 0u) {
            part_n[rr * nsg + sid] = n_sg;
            part_s[rr * nsg + sid] = s_sg;
            part_m[rr * nsg + sid] = m2_sg;
        }
    }
    workgroupBarrier();
    for (var rr = 0u; rr < R; rr++) {
        let row = row0 + rr;
        if (row >= p.rows) {
            break;
        }
        let mm = combine_partials(rr, nsg, nsg);
        layer_norm_store(row, row_k[rr], mm.x, inverseSqrt(mm.y / f32(cols) + p.eps), t);
    }
}

@compute @workgroup_size(WG)
fn rms_norm_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) t: u32, @builtin(subgroup_id) sid: u32,
               @builtin(num_subgroups) nsg: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = group_index(wid, nwg) * R;
    for (var rr = 0u; rr < R; rr++) {
        let s_sg = subgroupAdd(rms_partial(row0 + rr, t));
        if (lane == 0u) {
            part_s[rr * nsg + sid] = s_sg;
        }
    }
    workgroupBarrier();
    for (var rr = 0u; rr < R; rr++) {
        let row = row0 + rr;
        if (row >= p.rows) {
            break;
        }
        rms_norm_store(row, inverseSqrt(partials_total(rr, nsg, nsg) / f32(p.cols) + p.eps), t);
    }
}
