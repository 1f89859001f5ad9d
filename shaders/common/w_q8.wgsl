// Weight format q8: int8 values in blocks of 32 along k with one f16 scale per block and column.
// words[(k / 4) * n_pad + n] holds k..k+3 of column n (lowest byte first); scales[(k / 32) * n_pad + n] are f16,
// two per word. n_pad, n0 and the window shifts are multiples of 4, so the words of four columns are one aligned
// vec4 and their scales two whole words.
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> w_scale: array<u32>;

// The scales of columns n0 .. n0 + 3 for the block that holds k group kg.
fn block_scales(kg: u32, n0: u32) -> vec4<f32> {
    let s = p.s_shift + ((kg / 8u) * p.n_pad + n0) / 2u;
    return vec4<f32>(unpack2x16float(w_scale[s]), unpack2x16float(w_scale[s + 1u]));
}

fn load_w(kg: u32, n0: u32) -> mat4x4<f32> {
    let u = w[(p.w_shift + kg * p.n_pad + n0) / 4u];
    let sc = block_scales(kg, n0);
    // Column i is byte i of each column's word, sign-extended.
    let b = vec4<u32>(24u);
    return mat4x4<f32>(
        vec4<f32>(bitcast<vec4<i32>>(u << b) >> b) * sc,
        vec4<f32>(bitcast<vec4<i32>>(u << vec4<u32>(16u)) >> b) * sc,
        vec4<f32>(bitcast<vec4<i32>>(u << vec4<u32>(8u)) >> b) * sc,
        vec4<f32>(bitcast<vec4<i32>>(u) >> b) * sc,
    );
}

fn col_scale(n: u32) -> f32 {
    return 1.0;
}
