// GEMM activations read four at a time: k and the offset of x are multiples of 4, so every row starts a vec4.
@group(0) @binding(0) var<storage, read> x: array<vec4<T>>;

fn load_x4(i: u32) -> vec4<f32> {
    return vec4<f32>(x[i / 4u]);
}

fn load_x1(i: u32) -> f32 {
    return f32(x[i / 4u][i % 4u]);
}
