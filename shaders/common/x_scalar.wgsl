// GEMM activations read one element at a time (any k, any offset).
@group(0) @binding(0) var<storage, read> x: array<T>;

fn load_x4(i: u32) -> vec4<f32> {
    return vec4<f32>(f32(x[i]), f32(x[i + 1u]), f32(x[i + 2u]), f32(x[i + 3u]));
}

fn load_x1(i: u32) -> f32 {
    return f32(x[i]);
}
