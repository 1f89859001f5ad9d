// reduce.wgsl — per-row reductions over the last dim of an f32 tensor seen as [rows, cols], and the row softmax.
// One workgroup per row. Each invocation folds the columns lid, lid + WG, … (neighbouring invocations read
// neighbouring words), then the WG partials meet in workgroup memory. They are combined by every invocation in
// the same order after one barrier, rather than by a log2(WG)-step tree: barriers are the expensive part on CPU
// adapters, and the result is then identical in every invocation without a second broadcast.
// OP (an override, one pipeline per op):
//   0 sum   y[r] = Σ x[r, :]            1 mean  y[r] = Σ x[r, :] / cols
//   2 max   y[r] = max x[r, :]          3 sum of squares  y[r] = Σ x[r, :]²
//   4 softmax  y[r, c] = e^(x[r, c] − m) / Σ_c' e^(x[r, c'] − m),  m = max x[r, :]  (y may be x: in place)
// f32 accumulation. Offsets are in elements; shifts are word offsets inside each binding.

override WG: u32 = 32u;  // ≤ 256 (the size of `partial`)
override OP: u32 = 0u;

struct Params {
    rows: u32,     // rows in this launch
    cols: u32,
    x_shift: u32,
    y_shift: u32,
    src_y: u32,    // softmax in place: read x from y
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> partial: array<f32, 256>;

fn load(i: u32) -> f32 {
    if (p.src_y != 0u) {
        return y[p.y_shift + i];
    }
    return x[p.x_shift + i];
}

// Combines one value per invocation: the maximum when `is_max`, else the sum. Every invocation must call it.
fn combine(v: f32, lid: u32, is_max: bool) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    var r = partial[0];
    for (var k = 1u; k < WG; k++) {
        if (is_max) {
            r = max(r, partial[k]);
        } else {
            r += partial[k];
        }
    }
    // `partial` is written again by the next call.
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG)
fn row_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    if (OP == 4u) {
        var m = -3.4028234663852886e38;
        for (var c = lid; c < p.cols; c += WG) {
            m = max(m, load(base + c));
        }
        m = combine(m, lid, true);
        var s = 0.0;
        for (var c = lid; c < p.cols; c += WG) {
            s += exp(load(base + c) - m);
        }
        let inv = 1.0 / combine(s, lid, false);
        // e^(x − m) is recomputed rather than stored in pass 2 and rescaled: as fast on lavapipe, less traffic on
        // GPUs. Each invocation reads and writes only its own columns, so in place needs no extra barrier.
        for (var c = lid; c < p.cols; c += WG) {
            y[p.y_shift + base + c] = exp(load(base + c) - m) * inv;
        }
        return;
    }
    var acc = 0.0;
    if (OP == 2u) {
        acc = -3.4028234663852886e38;
    }
    for (var c = lid; c < p.cols; c += WG) {
        let v = x[p.x_shift + base + c];
        if (OP == 2u) {
            acc = max(acc, v);
        } else if (OP == 3u) {
            acc += v * v;
        } else {
            acc += v;
        }
    }
    var r = combine(acc, lid, OP == 2u);
    if (OP == 1u) {
        r /= f32(p.cols);
    }
    if (lid == 0u) {
        y[p.y_shift + row] = r;
    }
}
