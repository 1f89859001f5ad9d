// gemm.wgsl — y[m, n] = epilogue( sum_k x[m, k] * W[n, k] ).
//
// Weights are stored k-major in 32-bit words, `words[(k / PER_WORD) * n_pad + n]` (see kernels/gemm.rs), so the
// four columns an invocation owns are four consecutive words and neighbouring invocations read neighbouring
// words. Each invocation computes a TM x 4 block: TM rows shared by the whole workgroup (the x loads are uniform)
// and 4 consecutive columns. The format snippet appended from shaders/common/ provides
//   fn load_w(kg: u32, n0: u32) -> mat4x4<f32>   // column i = W[n0 .. n0 + 3, 4kg + i]
//   fn col_scale(n: u32) -> f32                   // per-output-channel factor (fp8), else 1
// and declares binding 1 (and 5 for block scales); an x snippet declares binding 0 and provides
//   fn load_x4(i: u32) -> vec4<f32>   // x[i .. i + 3], i a multiple of 4 in the vec4 variant
//   fn load_x1(i: u32) -> f32
// f32 accumulation in every variant; activations x and y are `T`: f32, or f16 in the variants for adapters with
// SHADER_F16 (bias and gate stay f32). Parameters, bindings 2, 3, 4, 6 and the epilogue: common/gemm_epilogue.wgsl.
// Where the adapter has subgroups, common/gemm_subgroup.wgsl adds the entry point `gemm_sg`, which shares
// gemm_groups and store_rows below.

alias T = f32;
// 8 rows per workgroup: each weight load serves 8 rows. On lavapipe 1.2-1.3x the speed of 4; 16 is slower.
const TM: u32 = 8u;
override WG: u32 = 64u;

fn x_row(m: u32) -> u32 {
    return p.x_shift + min(m, p.m - 1u) * p.x_ld;
}

// Adds the products over k in [k_from, p.k_end) to acc, four k per step with uniform x loads; kg_from is the
// weight group of k_from (the weight binding starts at k_begin).
fn gemm_groups(acc: ptr<function, array<vec4<f32>, TM>>, rows: ptr<function, array<u32, TM>>, n0: u32,
               k_from: u32, kg_from: u32) {
    let k_full = k_from + (p.k_end - k_from) / 4u * 4u;
    var kg = kg_from;
    for (var k = k_from; k < k_full; k += 4u) {
        let wm = load_w(kg, n0);
        for (var r = 0u; r < TM; r++) {
            (*acc)[r] += wm * load_x4((*rows)[r] + k);
        }
        kg += 1u;
    }
    if (k_full < p.k_end) {
        // Tail group: the stored weights are zero-padded; x past the end is masked.
        let wm = load_w(kg, n0);
        let left = p.k_end - k_full;
        for (var r = 0u; r < TM; r++) {
            let i = (*rows)[r] + k_full;
            var xv = vec4<f32>(0.0);
            for (var j = 0u; j < left; j++) {
                xv[j] = load_x1(i + j);
            }
            (*acc)[r] += wm * xv;
        }
    }
}

fn store_rows(acc: ptr<function, array<vec4<f32>, TM>>, m0: u32, n0: u32) {
    for (var r = 0u; r < TM; r++) {
        for (var j = 0u; j < 4u; j++) {
            epilogue(m0 + r, n0 + j, (*acc)[r][j]);
        }
    }
}

@compute @workgroup_size(WG)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let n0 = (wid.x * WG + lid) * 4u;
    let m0 = (wid.y + wid.z * nwg.y) * TM;
    if (n0 >= p.n || m0 >= p.m) {
        return;
    }
    var acc: array<vec4<f32>, TM>;
    var rows: array<u32, TM>;
    for (var r = 0u; r < TM; r++) {
        acc[r] = vec4<f32>(0.0);
        rows[r] = x_row(m0 + r);
    }
    gemm_groups(&acc, &rows, n0, p.k_begin, 0u);
    store_rows(&acc, m0, n0);
}
