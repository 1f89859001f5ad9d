// conv.wgsl — 1-D, 2-D and causal 3-D convolution as an implicit GEMM (launcher: src/kernels/conv.rs).
//
//   y[co, t, oh, ow] = bias[co] + Σ_{ci, dt, dh, dw} w[co, ci, dt, dh, dw]
//                                  · P[ci, t + dt, oh·sh − pad_top + dh·dil_h, ow·sw − pad_left + dw·dil_w]
//
// P is the input padded in time by `zp` zero frames, then `nc` frames of the cache, then the `t_in` frames of x
// (a causal left pad; the cache of chunked decoding replaces that many zero frames). Rows and columns outside the
// input read as zero. 2-D and 1-D convolutions are the case t_in = kt = 1 (and h = kh = 1).
//
// GEMM view: M = output positions, N = output channels, K = Cin·kt·kh·kw. The weight (PyTorch layout
// [Cout, Cin/groups, kt, kh, kw]) is the B operand: every weight load has the same address in all invocations of a
// workgroup. The im2col rows are built on the fly, and each x value feeds CO_B output channels held in registers
// (CO_B = 16 measured best on lavapipe: 4 and 8 leave it load-bound, 32 spills). A workgroup never spans two
// output frames, so whether a tap reads zeros, the cache or x is the same for the whole workgroup.
//
// Three entry points:
// - `conv_rows` (groups = 1, column stride 1, no column dilation — nearly every convolution of the decoders):
//   invocation `lid` owns four consecutive columns of one output row, so tap dw + 1 reuses three inputs of tap dw
//   and loads one.
// - `conv` (groups = 1, any stride and dilation): invocation `lid` owns positions lid, lid + WG, lid + 2·WG,
//   lid + 3·WG of a tile of the frame, so x loads are consecutive across invocations.
// - `conv_grouped`: like `conv` with one output channel per workgroup, for grouped and depthwise convolutions.
// Every index is a global element index plus the `*_off` of its binding (the launcher splits large tensors into
// windows and passes off = word_shift − window start, wrapping).

const CO_B: u32 = 16u;  // output channels per invocation in `conv` and `conv_rows`
const PX: u32 = 4u;     // output positions per invocation (the vec4 lanes of the accumulators)
override WG: u32 = 64u;

struct Params {
    cin_g: u32,     // input channels per group (all of them for `conv`)
    t_in: u32,      // frames of x
    h: u32,
    w: u32,
    cout_g: u32,    // output channels per group
    t_out: u32,     // output frames (y's frame stride)
    ho: u32,
    wo: u32,
    kt: u32,
    kh: u32,
    kw: u32,
    nc: u32,        // frames in the cache (P frames zp .. zp + nc)
    zp: u32,        // zero frames before the cache
    pad_top: u32,
    pad_left: u32,
    sh: u32,
    sw: u32,
    dil_h: u32,
    dil_w: u32,
    tiles: u32,     // workgroups per output frame
    co_begin: u32,  // this launch: output channels [co_begin, co_end)
    co_end: u32,
    ci_begin: u32,  // input channels [ci_begin, ci_end) inside each group (a split K accumulates)
    ci_end: u32,
    t_begin: u32,   // output frames [t_begin, t_end)
    t_end: u32,
    flags: u32,     // bit 0: add bias; bit 1: add to y (a later K chunk)
    x_off: u32,
    c_off: u32,
    w_off: u32,
    y_off: u32,
    b_off: u32,
    x_safe: u32,    // an index inside the x binding, read (and discarded) by masked lanes
    c_safe: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> cache: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

// Where one invocation of `conv` / `conv_grouped` works: an output frame, a channel block and PX positions.
struct Tile {
    frame: u32,
    block: u32,       // index of the channel block (of CO_B channels in `conv`, of 1 in `conv_grouped`)
    r: vec4<u32>,     // positions inside the frame (oh·wo + ow)
    ok: vec4<bool>,   // r < ho·wo
    ih0: vec4<i32>,   // top-left input row and column of each position's window
    iw0: vec4<i32>,
}

fn tile(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Tile {
    var t: Tile;
    let g = wid.x + wid.y * nwg.x;
    let frames = p.t_end - p.t_begin;
    let rest = g / p.tiles;
    t.frame = p.t_begin + rest % frames;
    t.block = rest / frames;
    let first = (g % p.tiles) * WG * PX + lid;
    let hw = p.ho * p.wo;
    for (var j = 0u; j < PX; j++) {
        let r = first + j * WG;
        let oh = r / p.wo;
        let ow = r - oh * p.wo;
        t.r[j] = r;
        t.ok[j] = r < hw;
        t.ih0[j] = i32(oh * p.sh) - i32(p.pad_top);
        t.iw0[j] = i32(ow * p.sw) - i32(p.pad_left);
    }
    return t;
}

// The source of padded frame u for input channel ci: 0 zeros, 1 cache, 2 x; and the global index of its (0, 0).
fn frame_src(ci: u32, u: u32) -> vec2<u32> {
    let hw = p.h * p.w;
    if (u < p.zp) {
        return vec2<u32>(0u, 0u);
    }
    if (u < p.zp + p.nc) {
        return vec2<u32>(1u, (ci * p.nc + u - p.zp) * hw + p.c_off);
    }
    return vec2<u32>(2u, (ci * p.t_in + u - p.zp - p.nc) * hw + p.x_off);
}

// Input values for the four positions at one tap; zero outside the input. `src` is uniform.
fn gather(src: vec2<u32>, rowbase: vec4<u32>, rowok: vec4<bool>, iw: vec4<i32>) -> vec4<f32> {
    let ok = rowok & (vec4<u32>(iw) < vec4<u32>(p.w));
    let idx = rowbase + vec4<u32>(iw);
    var v = vec4<f32>(0.0);
    if (src.x == 1u) {
        let i = select(vec4<u32>(p.c_safe), idx, ok);
        v = vec4<f32>(cache[i.x], cache[i.y], cache[i.z], cache[i.w]);
    } else {
        let i = select(vec4<u32>(p.x_safe), idx, ok);
        v = vec4<f32>(x[i.x], x[i.y], x[i.z], x[i.w]);
    }
    return select(vec4<f32>(0.0), v, ok);
}

fn store(co: u32, t: Tile, v: vec4<f32>) {
    let base = (co * p.t_out + t.frame) * p.ho * p.wo + p.y_off;
    var b = 0.0;
    if ((p.flags & 1u) != 0u) {
        b = bias[co + p.b_off];
    }
    for (var j = 0u; j < PX; j++) {
        if (t.ok[j]) {
            let i = base + t.r[j];
            var o = v[j] + b;
            if ((p.flags & 2u) != 0u) {
                o += y[i];
            }
            y[i] = o;
        }
    }
}

@compute @workgroup_size(WG)
fn conv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = tile(wid, nwg, lid);
    let co0 = p.co_begin + t.block * CO_B;
    if (co0 >= p.co_end || t.frame >= p.t_end) {
        return;
    }
    let taps = p.kt * p.kh * p.kw;
    // Weight row of each channel of the block (past co_end: repeat the last one, results are dropped).
    var wrow: array<u32, CO_B>;
    for (var c = 0u; c < CO_B; c++) {
        wrow[c] = min(co0 + c, p.co_end - 1u) * p.cin_g * taps + p.w_off;
    }
    var acc: array<vec4<f32>, CO_B>;
    for (var c = 0u; c < CO_B; c++) {
        acc[c] = vec4<f32>(0.0);
    }
    for (var ci = p.ci_begin; ci < p.ci_end; ci++) {
        for (var dt = 0u; dt < p.kt; dt++) {
            let src = frame_src(ci, t.frame + dt);
            if (src.x == 0u) {
                continue;
            }
            for (var dh = 0u; dh < p.kh; dh++) {
                let ih = t.ih0 + vec4<i32>(i32(dh * p.dil_h));
                let rowok = t.ok & (vec4<u32>(ih) < vec4<u32>(p.h));
                let rowbase = vec4<u32>(src.y) + vec4<u32>(ih) * p.w;
                let k0 = ((ci * p.kt + dt) * p.kh + dh) * p.kw;
                for (var dw = 0u; dw < p.kw; dw++) {
                    let xv = gather(src, rowbase, rowok, t.iw0 + vec4<i32>(i32(dw * p.dil_w)));
                    let k = k0 + dw;
                    for (var c = 0u; c < CO_B; c++) {
                        acc[c] += wt[wrow[c] + k] * xv;
                    }
                }
            }
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
fn conv_grouped(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = tile(wid, nwg, lid);
    let co = p.co_begin + t.block;
    if (co >= p.co_end || t.frame >= p.t_end) {
        return;
    }
    let taps = p.kt * p.kh * p.kw;
    let group_ci = (co / p.cout_g) * p.cin_g;
    let wrow = co * p.cin_g * taps + p.w_off;
    var acc = vec4<f32>(0.0);
    for (var ci = p.ci_begin; ci < p.ci_end; ci++) {
        for (var dt = 0u; dt < p.kt; dt++) {
            let src = frame_src(group_ci + ci, t.frame + dt);
            if (src.x == 0u) {
                continue;
            }
            for (var dh = 0u; dh < p.kh; dh++) {
                let ih = t.ih0 + vec4<i32>(i32(dh * p.dil_h));
                let rowok = t.ok & (vec4<u32>(ih) < vec4<u32>(p.h));
                let rowbase = vec4<u32>(src.y) + vec4<u32>(ih) * p.w;
                let k0 = ((ci * p.kt + dt) * p.kh + dh) * p.kw;
                for (var dw = 0u; dw < p.kw; dw++) {
                    let xv = gather(src, rowbase, rowok, t.iw0 + vec4<i32>(i32(dw * p.dil_w)));
                    acc += wt[wrow + k0 + dw] * xv;
                }
            }
        }
    }
    store(co, t, acc);
}

// One input value of a row for one invocation; zero outside the input. `src` is uniform.
fn load1(src: vec2<u32>, rowbase: u32, rowok: bool, iw: i32) -> f32 {
    let ok = rowok && u32(iw) < p.w;
    var v = 0.0;
    if (src.x == 1u) {
        v = cache[select(p.c_safe, rowbase + u32(iw), ok)];
    } else {
        v = x[select(p.x_safe, rowbase + u32(iw), ok)];
    }
    return select(0.0, v, ok);
}

// Column stride 1 and no column dilation: invocation `lid` owns four consecutive outputs of a row, so tap dw + 1
// reuses three of tap dw's inputs and loads one (kw + 3 loads per row instead of 4·kw).
@compute @workgroup_size(WG)
fn conv_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    let frames = p.t_end - p.t_begin;
    let rest = g / p.tiles;
    let frame = p.t_begin + rest % frames;
    let co0 = p.co_begin + (rest / frames) * CO_B;
    if (co0 >= p.co_end) {
        return;
    }
    let quads = (p.wo + 3u) / 4u;  // per output row
    let q = (g % p.tiles) * WG + lid;
    let oh = q / quads;
    let ow0 = (q - oh * quads) * 4u;
    if (oh >= p.ho) {
        return;
    }
    let ih0 = i32(oh * p.sh) - i32(p.pad_top);
    let iw0 = i32(ow0) - i32(p.pad_left);
    let taps = p.kt * p.kh * p.kw;
    var wrow: array<u32, CO_B>;
    for (var c = 0u; c < CO_B; c++) {
        wrow[c] = min(co0 + c, p.co_end - 1u) * p.cin_g * taps + p.w_off;
    }
    var acc: array<vec4<f32>, CO_B>;
    for (var c = 0u; c < CO_B; c++) {
        acc[c] = vec4<f32>(0.0);
    }
    for (var ci = p.ci_begin; ci < p.ci_end; ci++) {
        for (var dt = 0u; dt < p.kt; dt++) {
            let src = frame_src(ci, frame + dt);
            if (src.x == 0u) {
                continue;
            }
            for (var dh = 0u; dh < p.kh; dh++) {
                let ih = ih0 + i32(dh * p.dil_h);
                let rowok = u32(ih) < p.h;
                let rowbase = src.y + u32(ih) * p.w;
                var xv = vec4<f32>(load1(src, rowbase, rowok, iw0), load1(src, rowbase, rowok, iw0 + 1),
                                   load1(src, rowbase, rowok, iw0 + 2), load1(src, rowbase, rowok, iw0 + 3));
                let k0 = ((ci * p.kt + dt) * p.kh + dh) * p.kw;
                for (var dw = 0u; dw < p.kw; dw++) {
                    if (dw > 0u) {
                        xv = vec4<f32>(xv.yzw, load1(src, rowbase, rowok, iw0 + 3 + i32(dw)));
                    }
                    for (var c = 0u; c < CO_B; c++) {
                        acc[c] += wt[wrow[c] + k0 + dw] * xv;
                    }
                }
            }
        }
    }
    for (var c = 0u; c < CO_B; c++) {
        let co = co0 + c;
        if (co >= p.co_end) {
            break;
        }
        let base = (co * p.t_out + frame) * p.ho * p.wo + oh * p.wo + ow0 + p.y_off;
        var b = 0.0;
        if ((p.flags & 1u) != 0u) {
            b = bias[co + p.b_off];
        }
        for (var j = 0u; j < PX; j++) {
            if (ow0 + j < p.wo) {
                let i = base + j;
                var o = acc[c][j] + b;
                if ((p.flags & 2u) != 0u) {
                    o += y[i];
                }
                y[i] = o;
            }
        }
    }
}
