// Values held one per lane of a subgroup, handed round: x_lanes4(v, g) is v from lanes 4g .. 4g + 3 (a uniform
// g). Shuffles by a uniform lane measure on lavapipe like subgroupBroadcast by a constant one, which would need a
// switch over g (that made gemm_sg's loop too large for the driver to unroll: 8 instead of 24 GFLOP/s).
fn x_lanes4(v: f32, g: u32) -> vec4<f32> {
    let l = 4u * g;
    return vec4<f32>(subgroupShuffle(v, l), subgroupShuffle(v, l + 1u), subgroupShuffle(v, l + 2u),
                     subgroupShuffle(v, l + 3u));
}
