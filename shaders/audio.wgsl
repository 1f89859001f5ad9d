// audio.wgsl — per-channel FIR resampling and the spectral front end of the vocoders (NAVA.md §7.3, §10.4).
//
// fir_up:   y[r, m] = gain · Σ_k f[k] · xp[(m + pad_left − k)/ratio], over the k where the division is exact and
//           the index lies in xp; xp is x[r] padded by `pad` samples per side (replicate, reflect or zeros), i.e. PyTorch's
//           F.pad + conv_transpose1d(stride = ratio) + crop of BigVGAN's UpSample1d. With FLAG_SNAKE the result
//           goes through SnakeBeta with log-scale α, β of channel (row0 + r) mod channels.
// fir_down: y[r, t] = Σ_j f[j] · x[r, stride·t + j − pad_left], outside samples replicated, reflected or zero:
//           LowPassFilter1d (replicate), torchaudio's sinc resampling (zeros), STFT centring (reflect).
// magnitude: spec [rows, 2n, F] (real rows, then imaginary rows) → [rows, n, F], √(re² + im²).
// log_mel:   mag [rows, n, F], basis [m, n] → [rows, m, F], log(max(basis · mag, 1e-5)).
// One invocation per output element; the launchers split rows so that no binding exceeds the adapter's limit.

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

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> filt: array<f32>;
@group(0) @binding(2) var<storage, read> alpha: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

override WG: u32 = 64u;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

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
    let id = linear_id(wid, nwg, lid);
    if (id >= p.rows * p.l_out) {
        return;
    }
    let r = id / p.l_out;
    let m = id % p.l_out;
    let n = m + p.pad_left;
    let xp_len = p.t_in + 2u * p.pad;
    var acc = 0.0;
    // Only taps k ≡ n (mod ratio) meet an input sample.
    for (var k = n % p.ratio; k < p.taps && k <= n; k = k + p.ratio) {
        let i = (n - k) / p.ratio;
        if (i < xp_len) {
            acc = acc + filt[k] * padded(r, i32(i), i32(p.pad)).x;
        }
    }
    var v = p.gain * acc;
    if ((p.flags & FLAG_SNAKE) != 0u) {
        let c = (p.row0 + r) % p.channels;
        let a = exp(alpha[c]);
        let b = exp(beta[c]);
        let s = sin(v * a);
        v = v + (1.0 / (b + 1e-9)) * (s * s);
    }
    y[p.y_off + id] = v;
}

@compute @workgroup_size(WG)
fn fir_down(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    if (id >= p.rows * p.l_out) {
        return;
    }
    let r = id / p.l_out;
    let t = id % p.l_out;
    let base = i32(p.ratio * t);
    var acc = 0.0;
    for (var j = 0u; j < p.taps; j = j + 1u) {
        acc = acc + filt[j] * padded(r, base + i32(j), i32(p.pad_left)).x;
    }
    y[p.y_off + id] = acc;
}

@compute @workgroup_size(WG)
fn magnitude(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    // rows = spectra, pad = n bins, t_in = frames.
    let per = p.pad * p.t_in;
    if (id >= p.rows * per) {
        return;
    }
    let r = id / per;
    let kf = id % per;
    let re = x[p.x_off + r * 2u * per + kf];
    let im = x[p.x_off + r * 2u * per + per + kf];
    y[p.y_off + id] = sqrt(re * re + im * im);
}

@compute @workgroup_size(WG)
fn log_mel(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let id = linear_id(wid, nwg, lid);
    // rows = spectra, pad = n bins, channels = m mel bins, t_in = frames; filt = basis [m, n].
    let frames = p.t_in;
    if (id >= p.rows * p.channels * frames) {
        return;
    }
    let f = id % frames;
    let j = (id / frames) % p.channels;
    let r = id / (frames * p.channels);
    var acc = 0.0;
    for (var k = 0u; k < p.pad; k = k + 1u) {
        acc = acc + filt[j * p.pad + k] * x[p.x_off + (r * p.pad + k) * frames + f];
    }
    y[p.y_off + id] = log(max(acc, 1e-5));
}
