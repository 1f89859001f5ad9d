// Weight format q8: int8 values in blocks of 32 along k with one f16 scale per block and column.
// words[(k / 4) * n_pad + n] holds k..k+3 of column n (lowest byte first); scales[(k / 32) * n_pad + n] are f16,
// two per word.
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(5) var<storage, read> w_scale: array<u32>;

fn block_scale(kg: u32, n: u32) -> f32 {
    let s = (kg / 8u) * p.n_pad + n;
    return unpack2x16float(w_scale[p.s_shift + s / 2u])[s & 1u];
}

fn load_w(kg: u32, n0: u32) -> mat4x4<f32> {
    let a = p.w_shift + kg * p.n_pad + n0;
    var m: mat4x4<f32>;
    for (var j = 0u; j < 4u; j++) {
        let u = w[a + j];
        let q = bitcast<vec4<i32>>(vec4<u32>(u << 24u, u << 16u, u << 8u, u)) >> vec4<u32>(24u);
        m[j] = vec4<f32>(q) * block_scale(kg, n0 + j);
    }
    return transpose(m);
}

fn col_scale(n: u32) -> f32 {
    return 1.0;
}
