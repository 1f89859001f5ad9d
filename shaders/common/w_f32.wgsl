// Weight format f32: one value per word, words[k * n_pad + n].
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(5) var<storage, read> w_scale: array<u32>;

fn load_w(kg: u32, n0: u32) -> mat4x4<f32> {
    let i = p.w_shift + kg * 4u * p.n_pad + n0;
    let r0 = vec4<f32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]);
    let i1 = i + p.n_pad;
    let r1 = vec4<f32>(w[i1], w[i1 + 1u], w[i1 + 2u], w[i1 + 3u]);
    let i2 = i1 + p.n_pad;
    let r2 = vec4<f32>(w[i2], w[i2 + 1u], w[i2 + 2u], w[i2 + 3u]);
    let i3 = i2 + p.n_pad;
    let r3 = vec4<f32>(w[i3], w[i3 + 1u], w[i3 + 2u], w[i3 + 3u]);
    // rows are k, columns n: transpose so that column j holds output column n0 + j.
    return transpose(mat4x4<f32>(r0, r1, r2, r3));
}

fn col_scale(n: u32) -> f32 {
    return 1.0;
}
