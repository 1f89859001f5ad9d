// rope.wgsl — rotary position embedding on interleaved pairs, in place: for row r, head h and pair i,
//   (x[r,h,2i], x[r,h,2i+1]) ← (a·cos − b·sin, a·sin + b·cos),   (cos, sin) = table[r, i].
// The table is built on the host in f64 (the reference builds its tables in float64) and holds cos = 1, sin = 0
// for pairs that are not rotated. One invocation per pair.

struct Params {
    rows: u32,
    heads: u32,
    pairs: u32,   // head_dim / 2
    x_shift: u32, // word offsets inside the bindings
    t_shift: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(2) var<uniform> p: Params;

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = (wid.x + wid.y * nwg.x) * WG + lid;
    if (id >= p.rows * p.heads * p.pairs) {
        return;
    }
    let i = id % p.pairs;
    let r = id / (p.pairs * p.heads);
    let cs = table[p.t_shift / 2u + r * p.pairs + i];
    let j = p.x_shift + 2u * id; // [r, h, i] pairs are contiguous in x
    let a = x[j];
    let b = x[j + 1u];
    x[j] = a * cs.x - b * cs.y;
    x[j + 1u] = a * cs.y + b * cs.x;
}
