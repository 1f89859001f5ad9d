// rope.wgsl — rotary position embedding as NAVA (and Wan) apply it to q and k: the head dim is cut into adjacent
// pairs (x[2i], x[2i+1]) (interleaved, GPT-J style), and each pair is rotated as a complex number by the angle
// pos·ω_i of its frequency group:
//   video rows (3D): pairs [0, n0) by the latent frame f, [n0, n0+n1) by the token row h, the rest by the column w;
//   audio rows (1D): pairs [0, n0) by the token index p (frequencies pre-scaled), the other pairs unrotated;
//   any other row: unrotated (copied when writing to a new tensor).
// The (cos, sin) of every (position, pair) come from host-built float64 tables (rounded to f32 once), so no
// angle is formed on the GPU. One invocation handles one pair of one row for every head (the rotation is shared
// by the heads); neighbouring invocations touch neighbouring pairs.

override WG: u32 = 64u;

struct Params {
    rows: u32,      // rows in this launch
    row0: u32,      // index of this launch's first row in the whole tensor
    heads: u32,
    pairs: u32,     // head dim / 2
    x_shift: u32,   // vec2 offsets of this launch's first row in x and y
    y_shift: u32,
    v_start: u32,   // video rows [v_start, v_start + v_len) of the whole tensor, on a grid of F × grid_h × grid_w
    v_len: u32,
    grid_h: u32,
    grid_w: u32,
    a_start: u32,   // audio rows [a_start, a_start + a_len)
    a_len: u32,
    n0: u32,        // pairs of the frame (and audio) group
    n1: u32,        // pairs of the row group, = pairs of the column group
    t_f: u32,       // vec2 offsets in `tab`: frames [F][n0], rows and columns [max(grid_h, grid_w)][n1],
    t_hw: u32,      // audio positions [a_len][n0]
    t_a: u32,
    in_place: u32,  // 1: rotate x in place (rows outside both ranges are left alone); 0: write y
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<vec2<f32>>;
@group(0) @binding(1) var<storage, read> tab: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec2<f32>>;
@group(0) @binding(3) var<uniform> p: Params;

// (cos, sin) of pair i of row `row` (whole-tensor index); (1, 0) when the pair is not rotated.
fn rotation(row: u32, i: u32) -> vec2<f32> {
    if (row >= p.v_start && row - p.v_start < p.v_len) {
        let r = row - p.v_start;
        if (i < p.n0) {
            return tab[p.t_f + r / (p.grid_h * p.grid_w) * p.n0 + i];
        }
        if (i < p.n0 + p.n1) {
            return tab[p.t_hw + (r / p.grid_w) % p.grid_h * p.n1 + (i - p.n0)];
        }
        return tab[p.t_hw + r % p.grid_w * p.n1 + (i - p.n0 - p.n1)];
    }
    if (row >= p.a_start && row - p.a_start < p.a_len && i < p.n0) {
        return tab[p.t_a + (row - p.a_start) * p.n0 + i];
    }
    return vec2<f32>(1.0, 0.0);
}

@compute @workgroup_size(WG)
fn rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let n = (wid.x + wid.y * nwg.x) * WG + lid;
    if (n >= p.rows * p.pairs) {
        return;
    }
    let r = n / p.pairs;
    let i = n % p.pairs;
    let row = p.row0 + r;
    let cs = rotation(row, i);
    let video = row >= p.v_start && row - p.v_start < p.v_len;
    let audio = row >= p.a_start && row - p.a_start < p.a_len;
    if (p.in_place != 0u && !video && !audio) {
        return;
    }
    for (var h = 0u; h < p.heads; h++) {
        let e = (r * p.heads + h) * p.pairs + i;
        let z = x[p.x_shift + e];
        let w = vec2<f32>(z.x * cs.x - z.y * cs.y, z.x * cs.y + z.y * cs.x);
        if (p.in_place != 0u) {
            x[p.x_shift + e] = w;
        } else {
            y[p.y_shift + e] = w;
        }
    }
}
