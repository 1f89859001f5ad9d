// Weight format q4: 4-bit values (stored value - 8) in blocks of 32 along k with one f16 scale per block and
// column. words[(k / 8) * n_pad + n] holds k..k+7 of column n, lowest nibble first; scales as in q8. n_pad, n0
// and the window shifts are multiples of 4, so the words of four columns are one aligned vec4 and their scales
// two whole words.
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> w_scale: array<u32>;

// The scales of columns n0 .. n0 + 3 for the block that holds k group kg.
fn block_scales(kg: u32, n0: u32) -> vec4<f32> {
    let s = p.s_shift + ((kg / 8u) * p.n_pad + n0) / 2u;
    return vec4<f32>(unpack2x16float(w_scale[s]), unpack2x16float(w_scale[s + 1u]));
}

fn load_w(kg: u32, n0: u32) -> mat4x4<f32> {
    let u = w[(p.w_shift + (kg / 2u) * p.n_pad + n0) / 4u] >> vec4<u32>((kg & 1u) * 16u);
    let sc = block_scales(kg, n0);
    // Column i is nibble i of each column's (shifted) word.
    let f = vec4<u32>(15u);
    return mat4x4<f32>(
        (vec4<f32>(u & f) - 8.0) * sc,
        (vec4<f32>((u >> vec4<u32>(4u)) & f) - 8.0) * sc,
        (vec4<f32>((u >> vec4<u32>(8u)) & f) - 8.0) * sc,
        (vec4<f32>((u >> vec4<u32>(12u)) & f) - 8.0) * sc,
    );
}

fn col_scale(n: u32) -> f32 {
    return 1.0;
}
