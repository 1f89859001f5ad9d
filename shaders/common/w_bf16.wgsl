// Weight format bf16: two consecutive k of one column per word (low half first), words[(k / 2) * n_pad + n].
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(5) var<storage, read> w_scale: array<u32>;

fn bf16x2(u: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(u << 16u), bitcast<f32>(u & 0xffff0000u));
}

fn load_w(kg: u32, n0: u32) -> mat4x4<f32> {
    let a = p.w_shift + kg * 2u * p.n_pad + n0;
    let b = a + p.n_pad;
    var m: mat4x4<f32>;
    for (var j = 0u; j < 4u; j++) {
        m[j] = vec4<f32>(bf16x2(w[a + j]), bf16x2(w[b + j]));
    }
    return transpose(m);
}

fn col_scale(n: u32) -> f32 {
    return 1.0;
}
