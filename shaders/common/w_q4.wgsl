// Weight format q4: 4-bit values (stored value - 8) in blocks of 32 along k with one f16 scale per block and
// column. words[(k / 8) * n_pad + n] holds k..k+7 of column n, lowest nibble first; scales as in q8.
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(5) var<storage, read> w_scale: array<u32>;

fn block_scale(kg: u32, n: u32) -> f32 {
    let s = (kg / 8u) * p.n_pad + n;
    return unpack2x16float(w_scale[p.s_shift + s / 2u])[s & 1u];
}

fn load_w(kg: u32, n0: u32) -> mat4x4<f32> {
    let a = p.w_shift + (kg / 2u) * p.n_pad + n0;
    let shift = (kg & 1u) * 16u;
    var m: mat4x4<f32>;
    for (var j = 0u; j < 4u; j++) {
        let u = w[a + j] >> shift;
        let q = (vec4<u32>(u, u >> 4u, u >> 8u, u >> 12u) & vec4<u32>(15u));
        m[j] = (vec4<f32>(q) - 8.0) * block_scale(kg, n0 + j);
    }
    return transpose(m);
}

fn col_scale(n: u32) -> f32 {
    return 1.0;
}
