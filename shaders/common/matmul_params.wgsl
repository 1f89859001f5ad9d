// The parameters of matmul.wgsl and matmul_sg.wgsl (kernels/matmul.rs: MatmulParams). Offsets (`*_shift`) and
// strides are in elements; flags: bit 0 A transposed, bit 1 B transposed (matmul.wgsl; matmul_sg.wgsl takes the
// transposes as override constants).
struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldy: u32,
    a_shift: u32,
    b_shift: u32,
    y_shift: u32,
    flags: u32,
    alpha: f32,
    _pad: u32,
}
