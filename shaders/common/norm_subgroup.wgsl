// Row norms with subgroup reductions (appended to norm.wgsl for adapters with SUBGROUP; native only: browsers'
// WebGPU does not reach wgpu's subgroups). Same layout as layer_norm / rms_norm: invocation t owns columns t,
// t + WG, …; but the partials meet in registers first: subgroupAdd within each subgroup, then one entry per
// subgroup in workgroup memory behind the one barrier, so each invocation combines WG / subgroup-size entries
// instead of WG. LayerNorm combines (count, sum, centred sum of squares) with Chan's formula at both levels.

var<workgroup> sg_n: array<f32, 256>;   // per row and subgroup: values counted
var<workgroup> sg_s: array<f32, 256>;   // sum of x - x[row, 0] (layer norm) or of x² (rms norm)
var<workgroup> sg_m: array<f32, 256>;   // centred sum of squares (layer norm)

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
        let m2 = sums.y;
        // Subgroup level: n, s, then the centred sums about the subgroup's mean.
        let n = f32(n_t);
        let n_sg = subgroupAdd(n);
        let s_sg = subgroupAdd(s);
        let mean_sg = s_sg / max(n_sg, 1.0);
        let d = s - n * mean_sg;  // n (mean_t - mean_sg)
        let m2_sg = subgroupAdd(m2 + select(0.0, d * d / n, n_t > 0u));
        if (lane == 0u) {
            sg_n[rr * nsg + sid] = n_sg;
            sg_s[rr * nsg + sid] = s_sg;
            sg_m[rr * nsg + sid] = m2_sg;
        }
    }
    workgroupBarrier();
    let inv_cols = 1.0 / f32(cols);
    for (var rr = 0u; rr < R; rr++) {
        let row = row0 + rr;
        if (row >= p.rows) {
            break;
        }
        var total = 0.0;
        for (var i = 0u; i < nsg; i++) {
            total += sg_s[rr * nsg + i];
        }
        let mean = total * inv_cols;  // of x - x[row, 0]
        var m2 = 0.0;
        for (var i = 0u; i < nsg; i++) {
            let n_i = sg_n[rr * nsg + i];
            if (n_i > 0.0) {
                let d = sg_s[rr * nsg + i] - n_i * mean;
                m2 += sg_m[rr * nsg + i] + d * d / n_i;
            }
        }
        layer_norm_store(row, row_k[rr], mean, inverseSqrt(m2 * inv_cols + p.eps), t);
    }
}

@compute @workgroup_size(WG)
fn rms_norm_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) t: u32, @builtin(subgroup_id) sid: u32,
               @builtin(num_subgroups) nsg: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = group_index(wid, nwg) * R;
    let cols = p.cols;
    for (var rr = 0u; rr < R; rr++) {
        let row = row0 + rr;
        var s = 0.0;
        if (row < p.rows) {
            let base = p.x_shift + row * cols;
            for (var c = t; c < cols; c += WG) {
                let v = ld(base + c);
                s += v * v;
            }
        }
        let s_sg = subgroupAdd(s);
        if (lane == 0u) {
            sg_s[rr * nsg + sid] = s_sg;
        }
    }
    workgroupBarrier();
    for (var rr = 0u; rr < R; rr++) {
        let row = row0 + rr;
        if (row >= p.rows) {
            break;
        }
        var total = 0.0;
        for (var i = 0u; i < nsg; i++) {
            total += sg_s[rr * nsg + i];
        }
        rms_norm_store(row, inverseSqrt(total / f32(cols) + p.eps), t);
    }
}
