// norm.wgsl — normalisations of f32 activations, f32 accumulation everywhere.
//
//   layer_norm   y = ((x - mean) / sqrt(var + eps)) (* w) (+ b), then (* (1 + scale) + shift)   over each row
//   rms_norm     y = x / sqrt(mean(x²) + eps) * w                                               over each row
//   chan_norm    over the channel axis of [B, C, S] (C strided by S):
//                  pixel:  y = x / sqrt(mean_C(x²) + eps)
//                  l2:     y = x / max(‖x‖₂, eps) * sqrt(C) (* gamma) (+ bias)      (Wan's F.normalize RMS_norm)
//                then SiLU when asked
//   chan_sumsq / chan_apply   the same channel norms in two launches per channel chunk, for tensors whose
//                channels do not fit one binding: sums of squares are accumulated into a [S] scratch row.
//
// Row norms: one workgroup owns R rows. Invocation t reads columns t, t + WG, … (neighbouring invocations read
// neighbouring words), computes its own sum and, in a second local pass, its own centred sum of squares; the
// partials meet in workgroup memory behind ONE barrier and every invocation combines them (Chan's parallel
// variance formula: exact, no E[x²] - mean² cancellation). LayerNorm works on x - x[row, 0] throughout, so that
// rows with a large mean keep f32 precision in the sums and in the output (x - x[row, 0] is exact for nearby
// values). Barriers are expensive on lavapipe, so there is one per workgroup whatever R is. Channel norms need no
// barrier at all: an invocation owns one position and walks C.
//
// All offsets, strides and lengths are in elements (= 32-bit words). `*_shift` are word offsets of a tensor
// inside its binding (windows of tensors larger than one binding start at an aligned offset before the data).

override WG: u32 = 64u;       // invocations per workgroup
override R: u32 = 1u;         // rows per workgroup (row norms); WG * R <= 256
override INPLACE: bool = false;  // row norms: read x from y's binding (y = x), so a norm can overwrite its input

const HAS_W: u32 = 1u;        // multiply by weight / gamma
const HAS_B: u32 = 2u;        // add bias
const HAS_MOD: u32 = 4u;      // adaLN modulation: * (1 + scale) + shift
const SILU: u32 = 8u;         // SiLU after everything (channel norms)
const PIXEL: u32 = 16u;       // channel norm: pixel (mean + eps) rather than l2 (max(norm, eps) * sqrt(C))
const ACCUMULATE: u32 = 32u;  // chan_sumsq: add to the scratch row instead of overwriting it

struct Params {
    rows: u32,      // row norms: rows in this launch; channel norms: channels in this launch
    cols: u32,      // row norms: columns; channel norms: positions S per batch item
    eps: f32,
    flags: u32,
    x_shift: u32,
    y_shift: u32,
    sc_shift: u32,  // scale (row norms) or the sums-of-squares scratch (chan_apply)
    sc_ld: u32,     // elements between scale rows; 0 broadcasts one row
    sh_shift: u32,
    sh_ld: u32,
    batch: u32,     // channel norms: batch items in this launch
    c_total: u32,   // channel norms: all channels (the mean and sqrt(C) use it)
    c_begin: u32,   // channel norms: first channel of this launch (indexes gamma and bias)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> scale: array<f32>;
@group(0) @binding(4) var<storage, read> shift: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

var<workgroup> part_s: array<f32, 256>;  // per invocation: sum of x - x[row, 0] (layer norm) or of x² (rms norm)
var<workgroup> part_m: array<f32, 256>;  // per invocation: centred sum of squares (layer norm)
var<workgroup> part_n: array<f32, 256>;  // per invocation: values its partials count (layer norm)
var<workgroup> row_k: array<f32, 256>;   // per row: x[row, 0], the shift of the layer norm sums

fn ld(i: u32) -> f32 {
    if (INPLACE) {
        return y[i];
    }
    return x[i];
}

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

// Columns that invocation t owns: t, t + WG, … below cols.
fn owned(t: u32, cols: u32) -> u32 {
    return select(0u, (cols - 1u - t) / WG + 1u, t < cols);
}

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Invocation t's partials of row `row` over the n_t columns it owns: (sum of x - k, sum of squares about its own
// mean of x - k), with k = x[row, 0], which invocation 0 also keeps in row_k[rr] for after the barrier (in place,
// x[row, 0] is overwritten by then). Zeros for a row past the end or an invocation that owns no column.
fn layer_norm_partials(row: u32, rr: u32, t: u32, n_t: u32) -> vec2<f32> {
    var s = 0.0;
    var m2 = 0.0;
    if (row < p.rows && n_t > 0u) {
        let cols = p.cols;
        let base = p.x_shift + row * cols;
        let k = ld(base);
        if (t == 0u) {
            row_k[rr] = k;
        }
        for (var c = t; c < cols; c += WG) {
            s += ld(base + c) - k;
        }
        let mean_t = s / f32(n_t);
        for (var c = t; c < cols; c += WG) {
            let d = (ld(base + c) - k) - mean_t;
            m2 += d * d;
        }
    }
    return vec2<f32>(s, m2);
}

// Invocation t's sum of squares of row `row` (zero past the end).
fn rms_partial(row: u32, t: u32) -> f32 {
    var s = 0.0;
    if (row < p.rows) {
        let base = p.x_shift + row * p.cols;
        for (var c = t; c < p.cols; c += WG) {
            let v = ld(base + c);
            s += v * v;
        }
    }
    return s;
}

// The sum of the `count` partials of row slot rr, stored at part_s[rr * stride + i] (after the barrier).
fn partials_total(rr: u32, stride: u32, count: u32) -> f32 {
    var total = 0.0;
    for (var i = 0u; i < count; i++) {
        total += part_s[rr * stride + i];
    }
    return total;
}

// The mean of x - x[row, 0] over the row and its centred sum of squares, from `count` partials (n, s, m2) of row
// slot rr at part_*[rr * stride + i], combined with Chan's formula; partials that count nothing are skipped.
fn combine_partials(rr: u32, stride: u32, count: u32) -> vec2<f32> {
    let mean = partials_total(rr, stride, count) / f32(p.cols);
    var m2 = 0.0;
    for (var i = 0u; i < count; i++) {
        let n_i = part_n[rr * stride + i];
        if (n_i > 0.0) {
            let d = part_s[rr * stride + i] - n_i * mean;  // n_i (mean_i - mean)
            m2 += part_m[rr * stride + i] + d * d / n_i;
        }
    }
    return vec2<f32>(mean, m2);
}

// Writes row `row` of y, normalised: ((x - k) - mean) · rstd, then weight, bias and modulation as the flags say.
// `k` is x[row, 0], the shift the sums were taken about. Invocation t writes columns t, t + WG, ….
fn layer_norm_store(row: u32, k: f32, mean: f32, rstd: f32, t: u32) {
    let cols = p.cols;
    let xb = p.x_shift + row * cols;
    let yb = p.y_shift + row * cols;
    let scb = p.sc_shift + row * p.sc_ld;
    let shb = p.sh_shift + row * p.sh_ld;
    let f = p.flags;
    for (var c = t; c < cols; c += WG) {
        var v = ((ld(xb + c) - k) - mean) * rstd;
        if ((f & HAS_W) != 0u) {
            v *= w[c];
        }
        if ((f & HAS_B) != 0u) {
            v += b[c];
        }
        if ((f & HAS_MOD) != 0u) {
            v = v * (1.0 + scale[scb + c]) + shift[shb + c];
        }
        y[yb + c] = v;
    }
}

// Writes row `row` of y: x · rstd (· weight).
fn rms_norm_store(row: u32, rstd: f32, t: u32) {
    let cols = p.cols;
    let xb = p.x_shift + row * cols;
    let yb = p.y_shift + row * cols;
    for (var c = t; c < cols; c += WG) {
        var v = ld(xb + c) * rstd;
        if ((p.flags & HAS_W) != 0u) {
            v *= w[c];
        }
        y[yb + c] = v;
    }
}

@compute @workgroup_size(WG)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) t: u32) {
    let row0 = group_index(wid, nwg) * R;
    let cols = p.cols;
    let n_t = owned(t, cols);
    for (var rr = 0u; rr < R; rr++) {
        let row = row0 + rr;
        let sums = layer_norm_partials(row, rr, t, n_t);
        part_n[rr * WG + t] = f32(n_t);
        part_s[rr * WG + t] = sums.x;
        part_m[rr * WG + t] = sums.y;
    }
    workgroupBarrier();
    let used = min(WG, cols);
    for (var rr = 0u; rr < R; rr++) {
        let row = row0 + rr;
        if (row >= p.rows) {
            break;
        }
        let mm = combine_partials(rr, WG, used);
        layer_norm_store(row, row_k[rr], mm.x, inverseSqrt(mm.y / f32(cols) + p.eps), t);
    }
}

@compute @workgroup_size(WG)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) t: u32) {
    let row0 = group_index(wid, nwg) * R;
    for (var rr = 0u; rr < R; rr++) {
        part_s[rr * WG + t] = rms_partial(row0 + rr, t);
    }
    workgroupBarrier();
    let used = min(WG, p.cols);
    for (var rr = 0u; rr < R; rr++) {
        let row = row0 + rr;
        if (row >= p.rows) {
            break;
        }
        rms_norm_store(row, inverseSqrt(partials_total(rr, WG, used) / f32(p.cols) + p.eps), t);
    }
}

// The factor that normalises a position with sum of squares `ss` over `c_total` channels.
fn chan_factor(ss: f32) -> f32 {
    if ((p.flags & PIXEL) != 0u) {
        return inverseSqrt(ss / f32(p.c_total) + p.eps);
    }
    return sqrt(f32(p.c_total)) / max(sqrt(ss), p.eps);
}

// y[c] for one position: x[c] * factor, then gamma, bias, SiLU. `c` is relative to this launch.
fn chan_out(v: f32, c: u32) -> f32 {
    var o = v;
    let f = p.flags;
    if ((f & HAS_W) != 0u) {
        o *= w[p.c_begin + c];
    }
    if ((f & HAS_B) != 0u) {
        o += b[p.c_begin + c];
    }
    if ((f & SILU) != 0u) {
        o = silu(o);
    }
    return o;
}

// All channels of `batch` items in one binding: invocation = one (item, position).
@compute @workgroup_size(WG)
fn chan_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) t: u32) {
    let pos = group_index(wid, nwg) * WG + t;
    let S = p.cols;
    if (pos >= p.batch * S) {
        return;
    }
    let item = pos / S;
    let off = item * p.rows * S + pos % S;
    var ss = 0.0;
    for (var c = 0u; c < p.rows; c++) {
        let v = x[p.x_shift + off + c * S];
        ss += v * v;
    }
    let k = chan_factor(ss);
    for (var c = 0u; c < p.rows; c++) {
        y[p.y_shift + off + c * S] = chan_out(x[p.x_shift + off + c * S] * k, c);
    }
}

// Sums of squares of one channel chunk of one item, into (or onto) the scratch row y[S].
@compute @workgroup_size(WG)
fn chan_sumsq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) t: u32) {
    let s = group_index(wid, nwg) * WG + t;
    let S = p.cols;
    if (s >= S) {
        return;
    }
    var ss = 0.0;
    for (var c = 0u; c < p.rows; c++) {
        let v = x[p.x_shift + s + c * S];
        ss += v * v;
    }
    if ((p.flags & ACCUMULATE) != 0u) {
        ss += y[p.y_shift + s];
    }
    y[p.y_shift + s] = ss;
}

// Applies the norm to one channel chunk of one item, with the sums of squares from the scratch row `scale`.
@compute @workgroup_size(WG)
fn chan_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) t: u32) {
    let s = group_index(wid, nwg) * WG + t;
    let S = p.cols;
    if (s >= S) {
        return;
    }
    let k = chan_factor(scale[p.sc_shift + s]);
    for (var c = 0u; c < p.rows; c++) {
        y[p.y_shift + s + c * S] = chan_out(x[p.x_shift + s + c * S] * k, c);
    }
}
