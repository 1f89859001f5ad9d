// conv_transpose.wgsl — ConvTranspose1d in polyphase form (launcher: src/kernels/conv.rs).
//
//   y[co, o] = bias[co] + Σ_{ci in co's group} Σ_{k : o = i·s − pad + k, 0 ≤ i < t_in} x[ci, i] · w[ci, co mod cout_g, k]
//
// with the weight in PyTorch's ConvTranspose1d layout [Cin, Cout/groups, K]. Outputs o = s·j + c of one class c
// use the taps k = r + s·m with r = (c + pad) mod s and read i = j + (c + pad) div s − m, so a workgroup holds one
// class: its taps, and therefore its weight loads, are the same for every invocation, and invocation `lid` owns
// j = lid, lid + WG, lid + 2·WG, lid + 3·WG of a tile, so x loads are consecutive across invocations.
// `conv_transpose` (groups = 1) keeps CO_B output channels per invocation; `conv_transpose_grouped` one.
// Indices are global element indices plus the `*_off` of each binding (see conv.wgsl).

const CO_B: u32 = 16u;  // output channels per invocation in `conv_transpose` (= CO_B in transpose.rs)
const PX: u32 = 4u;
override WG: u32 = 64u;

struct Params {
    cin_g: u32,     // input channels per group
    cout_g: u32,    // output channels per group
    t_in: u32,
    l_out: u32,     // (t_in − 1)·s − 2·pad + k
    k: u32,
    s: u32,
    pad: u32,
    tiles: u32,     // workgroups per output class
    co_begin: u32,  // this launch: output channels [co_begin, co_end)
    co_end: u32,
    ci_begin: u32,  // input channels [ci_begin, ci_end) inside each group
    ci_end: u32,
    flags: u32,     // bit 0: add bias; bit 1: add to y
    x_off: u32,
    w_off: u32,
    y_off: u32,
    b_off: u32,
    x_safe: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

struct Tile {
    block: u32,
    c: u32,          // output class: o ≡ c (mod s)
    r: u32,          // first tap of the class
    j: vec4<u32>,    // o = s·j + c
    ok: vec4<bool>,  // o < l_out
    q: vec4<i32>,    // input index of tap r
}

fn tile(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Tile {
    var t: Tile;
    let g = wid.x + wid.y * nwg.x;
    let rest = g / p.tiles;
    t.c = rest % p.s;
    t.block = rest / p.s;
    t.r = (t.c + p.pad) % p.s;
    let q0 = (t.c + p.pad) / p.s;
    let first = (g % p.tiles) * WG * PX + lid;
    for (var jj = 0u; jj < PX; jj++) {
        let j = first + jj * WG;
        t.j[jj] = j;
        t.ok[jj] = p.s * j + t.c < p.l_out;
        t.q[jj] = i32(j + q0);
    }
    return t;
}

fn load_x(ci: u32, i: vec4<i32>, ok: vec4<bool>) -> vec4<f32> {
    let m = ok & (vec4<u32>(i) < vec4<u32>(p.t_in));
    let idx = select(vec4<u32>(p.x_safe), vec4<u32>(ci * p.t_in + p.x_off) + vec4<u32>(i), m);
    return select(vec4<f32>(0.0), vec4<f32>(x[idx.x], x[idx.y], x[idx.z], x[idx.w]), m);
}

fn store(co: u32, t: Tile, v: vec4<f32>) {
    var b = 0.0;
    if ((p.flags & 1u) != 0u) {
        b = bias[co + p.b_off];
    }
    for (var jj = 0u; jj < PX; jj++) {
        if (t.ok[jj]) {
            let i = co * p.l_out + p.s * t.j[jj] + t.c + p.y_off;
            var o = v[jj] + b;
            if ((p.flags & 2u) != 0u) {
                o += y[i];
            }
            y[i] = o;
        }
    }
}

@compute @workgroup_size(WG)
fn conv_transpose(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let t = tile(wid, nwg, lid);
    let co0 = p.co_begin + t.block * CO_B;
    if (co0 >= p.co_end) {
        return;
    }
    var wcol: array<u32, CO_B>;
    for (var c = 0u; c < CO_B; c++) {
        wcol[c] = min(co0 + c, p.co_end - 1u) * p.k + p.w_off;
    }
    var acc: array<vec4<f32>, CO_B>;
    for (var c = 0u; c < CO_B; c++) {
        acc[c] = vec4<f32>(0.0);
    }
    for (var ci = p.ci_begin; ci < p.ci_end; ci++) {
        let wci = ci * p.cout_g * p.k;
        var m = 0;
        for (var k = t.r; k < p.k; k += p.s) {
            let xv = load_x(ci, t.q - vec4<i32>(m), t.ok);
            for (var c = 0u; c < CO_B; c++) {
                acc[c] += wt[wcol[c] + wci + k] * xv;
            }
            m += 1;
        }
    }
    for (var c = 0u; c < CO_B; c++) {
        let co = co0 + c;
        if (co < p.co_end) {
            store(co, t, acc[c]);
        }
    }
}

@compute @workgroup_size(WG)
fn conv_transpose_grouped(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let t = tile(wid, nwg, lid);
    let co = p.co_begin + t.block;
    if (co >= p.co_end) {
        return;
    }
    let group_ci = (co / p.cout_g) * p.cin_g;
    let wcol = (co % p.cout_g) * p.k + p.w_off;
    var acc = vec4<f32>(0.0);
    for (var ci = group_ci + p.ci_begin; ci < group_ci + p.ci_end; ci++) {
        let wci = ci * p.cout_g * p.k;
        var m = 0;
        for (var k = t.r; k < p.k; k += p.s) {
            acc += wt[wcol + wci + k] * load_x(ci, t.q - vec4<i32>(m), t.ok);
            m += 1;
        }
    }
    store(co, t, acc);
}
