// audio.wgsl — per-channel FIR resampling and the spectral front end of the vocoders (NAVA.md §7.3, §10.4).
//
// fir_up:   y[r, m] = gain · Σ_k f[k] · xp[(m + pad_left − k)/ratio], over the k where the division is exact and
//           the index lies in xp; xp is x[r] padded by `pad` samples per side (replicate, reflect or zeros), i.e. PyTorch's
//           F.pad + conv_transpose1d(stride = ratio) + crop of BigVGAN's UpSample1d. With FLAG_SNAKE the result
//           goes through SnakeBeta with log-scale α, β of channel (row0 + r) mod channels.
// fir_down: y[r, t] = Σ_j f[j] · x[r, stride·t + j − pad_left], outside samples replicated, reflected or zero:
//           LowPassFilter1d (replicate), torchaudio's sinc resampling (zeros), STFT centring (reflect).
// im2col:   cols[t, c·k + j] = x[c, t0 + t + j·dilation − pad_left] (zero outside) for t < l_out: the rows of a
//           convolution as a GEMM (x [channels = rows, t_in]; taps = k, pad = dilation, row0 = t0).
// im2col2d: cols[q, c·k² + i·k + j] = x[c, ho + i − pad_top, wo + j − pad_left] (zero outside) for output position
//           p0 + q = ho·Wo + wo < p0 + l_out (x [channels = rows, H = t_in, W = ratio]; taps = k, pad = pad_top,
//           channels = Wo, row0 = p0).
// to_channels: y[c, t0 + t] = src[t, c] + bias[c] for t < t_in (src [t_in, rows]; y rows of l_out samples; row0 = t0;
//           FLAG_SNAKE unused; bias in filt).
// magnitude: spec [rows, 2n, F] (real rows, then imaginary rows) → [rows, n, F], √(re² + im²).
// log_mel:   mag [rows, n, F], basis [m, n] → [rows, m, F], log(max(basis · mag, 1e-5)).
// Rows are workgroup y, positions a grid-stride loop over x; the launchers split rows so that no binding exceeds the
// adapter's limit.

struct Params {
    rows: u32,
    t_in: u32,
    l_out: u32,
    ratio: u32,      // upsampling ratio or downsampling stride
    taps: u32,
    pad: u32,        // fir_up: padding per side of x; log_mel: n (frequency bins)
    pad_left: u32,   // fir_up: crop offset; fir_down: left padding
    flags: u32,
    channels: u32,   // for the per-channel SnakeBeta parameters; log_mel: m (mel bins)
    row0: u32,       // first row of this launch within the tensor
    x_off: u32,      // word offsets inside the windows
    y_off: u32,
    gain: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const FLAG_SNAKE: u32 = 1u;
const FLAG_REPLICATE: u32 = 2u;
const FLAG_REFLECT: u32 = 4u;
const FLAG_BIAS: u32 = 8u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> filt: array<f32>;
@group(0) @binding(2) var<storage, read> alpha: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

override WG: u32 = 64u;

// Sample i of row r of x after padding: i counts from the first padded sample; returns (value, inside).
fn padded(r: u32, i: i32, pad: i32) -> vec2<f32> {
    let t = i32(p.t_in);
    var j = i - pad;
    if (j < 0 || j >= t) {
        if ((p.flags & FLAG_REFLECT) != 0u) {
            // Mirror without repeating the edge (the launcher checks that the padding is shorter than x).
            j = select(j, -j, j < 0);
            j = select(j, 2 * (t - 1) - j, j >= t);
        } else if ((p.flags & FLAG_REPLICATE) != 0u) {
            j = clamp(j, 0, t - 1);
        } else {
            return vec2<f32>(0.0, 0.0);
        }
    }
    return vec2<f32>(x[p.x_off + r * p.t_in + u32(j)], 1.0);
}

@compute @workgroup_size(WG)
fn fir_up(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    // Row = workgroup y; positions in a grid-stride loop over x, so that no index needs a division by l_out.
    let r = wid.y;
    if (r >= p.rows) {
        return;
    }
    let xp_len = p.t_in + 2u * p.pad;
    var a = 1.0;
    var inv_b = 0.0;
    let snake = (p.flags & FLAG_SNAKE) != 0u;
    if (snake) {
        let c = (p.row0 + r) % p.channels;
        a = exp(alpha[c]);
        inv_b = 1.0 / (exp(beta[c]) + 1e-9);
    }
    let y_row = p.y_off + r * p.l_out;
    for (var m = wid.x * WG + lid; m < p.l_out; m = m + nwg.x * WG) {
        let n = m + p.pad_left;
        // Only taps k ≡ n (mod ratio) meet an input sample: k = n mod ratio + j·ratio reads xp[n/ratio − j].
        var k = n % p.ratio;
        var i = i32(n / p.ratio);
        var acc = 0.0;
        loop {
            if (k >= p.taps || i < 0) {
                break;
            }
            if (u32(i) < xp_len) {
                acc = acc + filt[k] * padded(r, i, i32(p.pad)).x;
            }
            k = k + p.ratio;
            i = i - 1;
        }
        var v = p.gain * acc;
        if (snake) {
            let s = sin(v * a);
            v = v + inv_b * (s * s);
        }
        y[y_row + m] = v;
    }
}

@compute @workgroup_size(WG)
fn fir_down(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let r = wid.y;
    if (r >= p.rows) {
        return;
    }
    let y_row = p.y_off + r * p.l_out;
    for (var t = wid.x * WG + lid; t < p.l_out; t = t + nwg.x * WG) {
        let base = i32(p.ratio * t) - i32(p.pad_left);
        var acc = 0.0;
        if (base >= 0 && base + i32(p.taps) <= i32(p.t_in)) {
            // Interior: no padding.
            let x0 = p.x_off + r * p.t_in + u32(base);
            for (var j = 0u; j < p.taps; j = j + 1u) {
                acc = acc + filt[j] * x[x0 + j];
            }
        } else {
            for (var j = 0u; j < p.taps; j = j + 1u) {
                acc = acc + filt[j] * padded(r, base + i32(j), 0).x;
            }
        }
        y[y_row + t] = acc;
    }
}

@compute @workgroup_size(WG)
fn magnitude(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    // rows = spectra (workgroup y), pad = n bins, t_in = frames.
    let r = wid.y;
    let per = p.pad * p.t_in;
    if (r >= p.rows) {
        return;
    }
    for (var kf = wid.x * WG + lid; kf < per; kf = kf + nwg.x * WG) {
        let re = x[p.x_off + r * 2u * per + kf];
        let im = x[p.x_off + r * 2u * per + per + kf];
        y[p.y_off + r * per + kf] = sqrt(re * re + im * im);
    }
}

@compute @workgroup_size(WG)
fn log_mel(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    // rows = spectra (workgroup y), pad = n bins, channels = m mel bins, t_in = frames; filt = basis [m, n].
    let r = wid.y;
    let frames = p.t_in;
    if (r >= p.rows) {
        return;
    }
    for (var jf = wid.x * WG + lid; jf < p.channels * frames; jf = jf + nwg.x * WG) {
        let f = jf % frames;
        let j = jf / frames;
        var acc = 0.0;
        for (var k = 0u; k < p.pad; k = k + 1u) {
            acc = acc + filt[j * p.pad + k] * x[p.x_off + (r * p.pad + k) * frames + f];
        }
        y[p.y_off + r * p.channels * frames + jf] = log(max(acc, 1e-5));
    }
}

@compute @workgroup_size(WG)
fn im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    // Workgroup y = output row t; x loops over (channel, tap) columns.
    let t = wid.y;
    if (t >= p.l_out) {
        return;
    }
    let width = p.rows * p.taps;
    let base = i32(p.row0 + t) - i32(p.pad_left);
    for (var col = wid.x * WG + lid; col < width; col = col + nwg.x * WG) {
        let c = col / p.taps;
        let j = col % p.taps;
        let i = base + i32(j * p.pad);
        var v = 0.0;
        if (i >= 0 && i < i32(p.t_in)) {
            v = x[p.x_off + c * p.t_in + u32(i)];
        }
        y[p.y_off + t * width + col] = v;
    }
}

@compute @workgroup_size(WG)
fn to_channels(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    // Workgroup y = channel c; x loops over the chunk's samples.
    let c = wid.y;
    if (c >= p.rows) {
        return;
    }
    var b = 0.0;
    if ((p.flags & FLAG_BIAS) != 0u) {
        b = filt[c];
    }
    for (var t = wid.x * WG + lid; t < p.t_in; t = t + nwg.x * WG) {
        y[p.y_off + c * p.l_out + p.row0 + t] = x[p.x_off + t * p.rows + c] + b;
    }
}

@compute @workgroup_size(WG)
fn im2col2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    // Workgroup y = output position q of the chunk; x loops over (channel, tap row, tap column) columns.
    let q = wid.y;
    if (q >= p.l_out) {
        return;
    }
    let h = i32(p.t_in);
    let w = i32(p.ratio);
    let k = p.taps;
    let pos = p.row0 + q;
    let ho = i32(pos / p.channels) - i32(p.pad);
    let wo = i32(pos % p.channels) - i32(p.pad_left);
    let width = p.rows * k * k;
    for (var col = wid.x * WG + lid; col < width; col = col + nwg.x * WG) {
        let c = col / (k * k);
        let rem = col % (k * k);
        let i = ho + i32(rem / k);
        let j = wo + i32(rem % k);
        var v = 0.0;
        if (i >= 0 && i < h && j >= 0 && j < w) {
            v = x[p.x_off + (c * p.t_in + u32(i)) * p.ratio + u32(j)];
        }
        y[p.y_off + q * width + col] = v;
    }
}
