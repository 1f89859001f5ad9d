// Weight format f32: one value per word, words[k * n_pad + n].
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> w_scale: array<u32>;

fn load_w(kg: u32, n0: u32) -> mat4x4<f32> {
    // n_pad and the window shift are multiples of 4, so each k row of 4 columns is one aligned vec4.
    let i = (p.w_shift + kg * 4u * p.n_pad + n0) / 4u;
    let row = p.n_pad / 4u;
    return mat4x4<f32>(w[i], w[i + row], w[i + 2u * row], w[i + 3u * row]);
}

fn col_scale(n: u32) -> f32 {
    return 1.0;
}
