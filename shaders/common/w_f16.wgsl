// Weight format f16: two consecutive k of one column per word, words[(k / 2) * n_pad + n]; read with
// unpack2x16float, so it needs no SHADER_F16.
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(5) var<storage, read> w_scale: array<u32>;

fn load_w(kg: u32, n0: u32) -> mat4x4<f32> {
    let a = p.w_shift + kg * 2u * p.n_pad + n0;   // k = 4kg, 4kg+1
    let b = a + p.n_pad;                           // k = 4kg+2, 4kg+3
    var m: mat4x4<f32>;
    for (var j = 0u; j < 4u; j++) {
        m[j] = vec4<f32>(unpack2x16float(w[a + j]), unpack2x16float(w[b + j]));
    }
    return transpose(m);
}

fn col_scale(n: u32) -> f32 {
    return 1.0;
}
