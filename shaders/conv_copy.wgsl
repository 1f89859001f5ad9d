// conv_copy.wgsl — strided copy over up to six dims (launcher: src/kernels/conv.rs):
//
//   dst[dst_off + Σ_d i_d·ds_d] = src[src_off + Σ_d i_d·ss_d]   for every index (i_0 .. i_5) < (n_0 .. n_5)
//
// One kernel for the data movement around the convolutions: nearest ×2 upsampling (source stride 0 on the
// repeated axes), 2×2 unpatchify / patchify (a pixel shuffle), permutes, and the frame cache of chunked causal
// convolution (slices and concatenation along time). Dim 5 is the innermost; the launcher orders dims so that
// dst is written at consecutive addresses by consecutive invocations where it can.

const PX: u32 = 4u;   // elements per invocation, WG apart
override WG: u32 = 64u;

struct Params {
    n_lo: vec4<u32>,   // extents of dims 0..3
    n_hi: vec4<u32>,   // extents of dims 4, 5 (z, w unused)
    ss_lo: vec4<u32>,  // source strides, elements
    ss_hi: vec4<u32>,
    ds_lo: vec4<u32>,  // destination strides, elements
    ds_hi: vec4<u32>,
    count: u32,        // Π n_d
    src_off: u32,
    dst_off: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let first = (wid.x + wid.y * nwg.x) * WG * PX + lid;
    for (var e = 0u; e < PX; e++) {
        var rest = first + e * WG;
        if (rest >= p.count) {
            return;
        }
        var si = p.src_off;
        var di = p.dst_off;
        // Peel indices from the innermost dim outwards.
        let i5 = rest % p.n_hi.y;
        rest /= p.n_hi.y;
        let i4 = rest % p.n_hi.x;
        rest /= p.n_hi.x;
        si += i5 * p.ss_hi.y + i4 * p.ss_hi.x;
        di += i5 * p.ds_hi.y + i4 * p.ds_hi.x;
        for (var d = 3; d >= 1; d--) {
            let i = rest % p.n_lo[d];
            rest /= p.n_lo[d];
            si += i * p.ss_lo[d];
            di += i * p.ds_lo[d];
        }
        si += rest * p.ss_lo.x;
        di += rest * p.ds_lo.x;
        dst[di] = src[si];
    }
}
