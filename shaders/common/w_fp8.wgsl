// Weight format fp8 (float8_e4m3fn, as NAVA_fp8.safetensors stores it) with an f32 scale per output column
// (a per-tensor scale is repeated). words[(k / 4) * n_pad + n] holds k..k+3 of column n, lowest byte first.
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(5) var<storage, read> w_scale: array<f32>;

fn e4m3(b: vec4<u32>) -> vec4<f32> {
    let e = (b >> vec4<u32>(3u)) & vec4<u32>(15u);
    let mant = b & vec4<u32>(7u);
    let normal = bitcast<vec4<f32>>(((e + 120u) << vec4<u32>(23u)) | (mant << vec4<u32>(20u)));
    let sub = vec4<f32>(mant) * 0.001953125; // mant * 2^-9
    let mag = select(normal, sub, e == vec4<u32>(0u));
    return select(mag, -mag, (b & vec4<u32>(128u)) != vec4<u32>(0u));
}

fn load_w(kg: u32, n0: u32) -> mat4x4<f32> {
    let a = p.w_shift + kg * p.n_pad + n0;
    var m: mat4x4<f32>;
    for (var j = 0u; j < 4u; j++) {
        let u = w[a + j];
        m[j] = e4m3(vec4<u32>(u, u >> 8u, u >> 16u, u >> 24u) & vec4<u32>(255u));
    }
    return transpose(m);
}

fn col_scale(n: u32) -> f32 {
    return w_scale[p.s_shift + n];
}
