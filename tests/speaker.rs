//! The ReDimNet speaker encoder outside its oracles: the M configuration's key table against the official one, a
//! seeded ReDimNet-M on a short input against an f64 CPU forward written from the reference modules (in the
//! reference's `[c, f, t]` layout), the front end against a plain DFT, `.pt` loading with the `model_config`
//! stored in the file, the WAV reader (every sample format, stereo, 8/16/44.1/48 kHz), the resampler (frequency,
//! amplitude, no aliasing) and the errors for bad voices and configurations.

#[path = "fixtures/torch_writer.rs"]
#[allow(dead_code)] // the writer serves several test binaries; this one uses part of it
mod torch_writer;

use std::path::PathBuf;
use std::sync::OnceLock;

use nava::gpu::{Gpu, GpuOptions, GpuTensor};
use nava::kernels::gemm::WeightFormat;
use nava::model::speaker::{read_voice, resample, MelBanks, RedimConfig, SpeakerEncoder, StageSetup};
use nava::model::KnownModel;
use nava::weights::{Checkpoint, KeyTable, SeededSource, TensorSource};
use torch_writer::{contiguous, torch_entries, zip_stored, GenTensor, Pkl};

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        Gpu::new_blocking(&GpuOptions::from_env()).unwrap_or_else(|e| panic!("needs a GPU adapter: {e}"))
    })
}

fn oracle_root() -> PathBuf {
    nava::oracle::root(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracles"))
}

fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nava-speaker-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn err<T>(r: Result<T, nava::model::ModelError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn sorted(t: &KeyTable) -> KeyTable {
    let mut t = t.clone();
    t.sort();
    t
}

/// A case's `keys_full.json` or meta.json `weights.keys`: `{name: shape}` or `{name: {shape}}`.
fn keys_of_map(v: &serde_json::Value) -> KeyTable {
    let mut t: KeyTable = v
        .as_object()
        .expect("a key map")
        .iter()
        .map(|(k, s)| {
            let s = if s.is_object() { &s["shape"] } else { s };
            (k.clone(), s.as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize).collect())
        })
        .collect();
    t.sort();
    t
}

fn read_json(path: PathBuf) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("json")
}

#[test]
fn key_tables_match_the_official_file_and_the_cases() {
    let m = RedimConfig::redimnet_m();
    let ours = m.key_table();
    assert_eq!(ours, KnownModel::Redimnet.key_table(), "the embedded table, in module order");
    let table_config: RedimConfig = serde_json::from_value(KnownModel::Redimnet.config()).expect("config");
    assert_eq!(table_config, m);
    let params: usize =
        ours.iter().filter(|(k, _)| !k.starts_with("spec.")).map(|(_, s)| s.iter().product::<usize>()).sum();
    let buffers: usize = ours.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    assert_eq!(buffers, 4_260_159, "state elements of ReDimNet-M (num_batches_tracked counted once each)");
    assert!(params > 4_000_000);
    let mut cases = 0;
    for kind in ["redimnet", "redimnet_m"] {
        for dir in nava::oracle::cases_of(&oracle_root(), kind) {
            let full = read_json(dir.join("keys_full.json"));
            assert_eq!(sorted(&ours), keys_of_map(&full["keys"]), "{}", dir.display());
            let meta = read_json(dir.join("meta.json"));
            let config: RedimConfig = serde_json::from_value(meta["config"].clone()).expect("case config");
            assert_eq!(sorted(&config.key_table()), keys_of_map(&meta["weights"]["keys"]), "{}", dir.display());
            if kind == "redimnet" {
                assert_eq!(config, RedimConfig::tiny(), "tiny() is the tiny case's config");
            }
            cases += 1;
        }
    }
    println!("{cases} cases checked");
}

#[test]
fn unsupported_configurations_are_named() {
    let bad = |c: RedimConfig| c.validate().expect_err("invalid").to_string();
    let m = RedimConfig::redimnet_m;
    assert!(bad(RedimConfig { block_1d_type: "conv".into(), ..m() }).contains("block_1d_type `conv`"));
    assert!(bad(RedimConfig { out_channels: Some(512), ..m() }).contains("out_channels"));
    assert!(bad(RedimConfig { pooling_func: "TSTP".into(), ..m() }).contains("pooling_func `TSTP`"));
    assert!(bad(RedimConfig { f: 36, ..m() }).contains("divide F = 9"));
    let mut c = m();
    c.stages_setup[0] = StageSetup(1, 2, 2, vec![vec![3, 3]], Some(12));
    assert!(bad(c).contains("conv_exp 2"));
    let mut c = m();
    c.stages_setup[0].4 = Some(5);
    assert!(bad(c).contains("4 heads"), "1152/5 = 230 does not split into 4 heads");
}

// ------------------------------------------------------------------ CPU reference (reference layout, f64)

fn w(src: &dyn TensorSource, k: &str) -> Vec<f64> {
    src.f32(k).unwrap_or_else(|e| panic!("{e}")).iter().map(|&v| v as f64).collect()
}

fn erf(x: f64) -> f64 {
    if x.abs() > 6.0 {
        return x.signum();
    }
    let (mut sum, mut term, mut n) = (0.0, x, 0.0);
    while n < 300.0 {
        sum += term / (2.0 * n + 1.0);
        n += 1.0;
        term *= -x * x / n;
        if term.abs() < 1e-18 {
            break;
        }
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// `LayerNorm` over the channel dim of `x` `[ch, n]`.
fn ln_channels(x: &mut [f64], ch: usize, n: usize, g: &[f64], b: &[f64], eps: f64) {
    for j in 0..n {
        let mean = (0..ch).map(|c| x[c * n + j]).sum::<f64>() / ch as f64;
        let var = (0..ch).map(|c| (x[c * n + j] - mean).powi(2)).sum::<f64>() / ch as f64;
        for c in 0..ch {
            x[c * n + j] = (x[c * n + j] - mean) / (var + eps).sqrt() * g[c] + b[c];
        }
    }
}

/// `Conv2d(cin, cout, (kf, kt), padding='same', groups)` on `[cin, f, t]`.
#[allow(clippy::too_many_arguments)]
fn conv2d(
    x: &[f64],
    cin: usize,
    f: usize,
    t: usize,
    wt: &[f64],
    b: &[f64],
    cout: usize,
    groups: usize,
    kf: usize,
    kt: usize,
) -> Vec<f64> {
    let (gin, gout) = (cin / groups, cout / groups);
    let mut y = vec![0.0; cout * f * t];
    for o in 0..cout {
        for fi in 0..f {
            for ti in 0..t {
                let mut acc = b[o];
                for j in 0..gin {
                    let ci = (o / gout) * gin + j;
                    for a in 0..kf {
                        for c in 0..kt {
                            let (ff, tt) = (
                                fi as isize + a as isize - (kf as isize - 1) / 2,
                                ti as isize + c as isize - (kt as isize - 1) / 2,
                            );
                            if ff >= 0 && tt >= 0 && (ff as usize) < f && (tt as usize) < t {
                                acc +=
                                    wt[((o * gin + j) * kf + a) * kt + c] * x[(ci * f + ff as usize) * t + tt as usize];
                            }
                        }
                    }
                }
                y[(o * f + fi) * t + ti] = acc;
            }
        }
    }
    y
}

/// `y[o, j] = b[o] + Σ_i w[o, i] x[i, j]` (a 1×1 convolution / Linear over channels).
fn pointwise(x: &[f64], cin: usize, n: usize, wt: &[f64], b: &[f64], cout: usize) -> Vec<f64> {
    let mut y = vec![0.0; cout * n];
    for o in 0..cout {
        for j in 0..n {
            y[o * n + j] = b[o] + (0..cin).map(|i| wt[o * cin + i] * x[i * n + j]).sum::<f64>();
        }
    }
    y
}

fn weigth1d(src: &dyn TensorSource, key: &str, xs: &[Vec<f64>], cf: usize, t: usize) -> Vec<f64> {
    let raw = w(src, key);
    let n = xs.len();
    let per = raw.len() / n;
    let mut y = vec![0.0; cf * t];
    for ch in 0..cf {
        let s = if per == 1 { 0 } else { ch };
        let m = (0..n).map(|i| raw[i * per + s]).fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = (0..n).map(|i| (raw[i * per + s] - m).exp()).collect();
        let z: f64 = e.iter().sum();
        for j in 0..t {
            y[ch * t + j] = (0..n).map(|i| e[i] / z * xs[i][ch * t + j]).sum();
        }
    }
    y
}

/// [c, f, t] ↔ 1-D [f·c + c, t].
fn to1d(x: &[f64], c: usize, f: usize, t: usize) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for ci in 0..c {
        for fi in 0..f {
            y[(fi * c + ci) * t..(fi * c + ci + 1) * t].copy_from_slice(&x[(ci * f + fi) * t..(ci * f + fi + 1) * t]);
        }
    }
    y
}

fn to2d(x: &[f64], c: usize, f: usize, t: usize) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for ci in 0..c {
        for fi in 0..f {
            y[(ci * f + fi) * t..(ci * f + fi + 1) * t].copy_from_slice(&x[(fi * c + ci) * t..(fi * c + ci + 1) * t]);
        }
    }
    y
}

fn time_context_block(src: &dyn TensorSource, p: &str, x: &mut [f64], cf: usize, h: usize, t: usize) {
    let mut r = pointwise(
        x,
        cf,
        t,
        &w(src, &format!("{p}.red_dim_conv.0.weight")),
        &w(src, &format!("{p}.red_dim_conv.0.bias")),
        h,
    );
    ln_channels(
        &mut r,
        h,
        t,
        &w(src, &format!("{p}.red_dim_conv.1.weight")),
        &w(src, &format!("{p}.red_dim_conv.1.bias")),
        1e-6,
    );
    let mut pc = conv2d(
        &r,
        h,
        1,
        t,
        &w(src, &format!("{p}.tcm.0.conv.weight")),
        &w(src, &format!("{p}.tcm.0.conv.bias")),
        h,
        h,
        1,
        59,
    );
    ln_channels(
        &mut pc,
        h,
        t,
        &w(src, &format!("{p}.tcm.0.norm.weight")),
        &w(src, &format!("{p}.tcm.0.norm.bias")),
        1e-6,
    );
    r.iter_mut().zip(&pc).for_each(|(a, b)| *a += b);
    // Transformer layer on [h, t] (channels first), 4 heads.
    let a = |n: &str| w(src, &format!("{p}.tcm.1.attention.{n}"));
    let hd = h / 4;
    let scaling = (hd as f64).powf(-0.5);
    let q: Vec<f64> =
        pointwise(&r, h, t, &a("q_proj.weight"), &a("q_proj.bias"), h).iter().map(|v| v * scaling).collect();
    let k = pointwise(&r, h, t, &a("k_proj.weight"), &a("k_proj.bias"), h);
    let v = pointwise(&r, h, t, &a("v_proj.weight"), &a("v_proj.bias"), h);
    let mut o = vec![0.0; h * t];
    for head in 0..4 {
        for i in 0..t {
            let s: Vec<f64> = (0..t)
                .map(|j| (0..hd).map(|d| q[(head * hd + d) * t + i] * k[(head * hd + d) * t + j]).sum())
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                o[(head * hd + d) * t + i] = (0..t).map(|j| e[j] / z * v[(head * hd + d) * t + j]).sum();
            }
        }
    }
    let att = pointwise(&o, h, t, &a("out_proj.weight"), &a("out_proj.bias"), h);
    r.iter_mut().zip(&att).for_each(|(x, y)| *x += y);
    let tl = |n: &str| w(src, &format!("{p}.tcm.1.{n}"));
    ln_channels(&mut r, h, t, &tl("layer_norm.weight"), &tl("layer_norm.bias"), 1e-6);
    let mut hid = pointwise(
        &r,
        h,
        t,
        &tl("feed_forward.intermediate_dense.weight"),
        &tl("feed_forward.intermediate_dense.bias"),
        2 * h,
    );
    for v in &mut hid {
        *v = 0.5 * *v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (*v + 0.044715 * v.powi(3))).tanh());
    }
    let ff =
        pointwise(&hid, 2 * h, t, &tl("feed_forward.output_dense.weight"), &tl("feed_forward.output_dense.bias"), h);
    r.iter_mut().zip(&ff).for_each(|(x, y)| *x += y);
    ln_channels(&mut r, h, t, &tl("final_layer_norm.weight"), &tl("final_layer_norm.bias"), 1e-6);
    let e = pointwise(
        &r,
        h,
        t,
        &w(src, &format!("{p}.exp_dim_conv.weight")),
        &w(src, &format!("{p}.exp_dim_conv.bias")),
        cf,
    );
    x.iter_mut().zip(&e).for_each(|(a, b)| *a += b);
}

/// `ReDimNetWrap.forward` after `spec`: features `[F, t]` → (1-D outputs of stem and stages, embedding).
fn cpu_forward(src: &dyn TensorSource, c: &RedimConfig, feats: &[f32], t: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let (cf, f0) = (c.width(), c.f);
    let x: Vec<f64> = feats.iter().map(|&v| v as f64).collect();
    let mut s = conv2d(&x, 1, f0, t, &w(src, "backbone.stem.0.weight"), &w(src, "backbone.stem.0.bias"), c.c, 1, 3, 3);
    ln_channels(&mut s, c.c, f0 * t, &w(src, "backbone.stem.1.weight"), &w(src, "backbone.stem.1.bias"), 1e-6);
    let mut outs = vec![to1d(&s, c.c, f0, t)];
    let (mut ch, mut f) = (c.c, f0);
    for (i, st) in c.stages_setup.iter().enumerate() {
        let p = format!("backbone.stage{i}");
        let x1 = weigth1d(src, &format!("{p}.0.w"), &outs, cf, t);
        let x2 = to2d(&x1, ch, f, t);
        let stride = st.stride();
        let (pw, pb) = (w(src, &format!("{p}.2.weight")), w(src, &format!("{p}.2.bias")));
        let (co, fo) = (stride * ch, f / stride);
        let mut y = vec![0.0; co * fo * t];
        for o in 0..co {
            for fi in 0..fo {
                for ti in 0..t {
                    let mut acc = pb[o];
                    for ci in 0..ch {
                        for k in 0..stride {
                            acc += pw[(o * ch + ci) * stride + k] * x2[(ci * f + fi * stride + k) * t + ti];
                        }
                    }
                    y[(o * fo + fi) * t + ti] = acc;
                }
            }
        }
        ch = co;
        f = fo;
        for b in 0..st.num_blocks() {
            let q = format!("{p}.{}.conv_block", 3 + b);
            let mut h = conv2d(
                &y,
                ch,
                f,
                t,
                &w(src, &format!("{q}.dwconvs.0.weight")),
                &w(src, &format!("{q}.dwconvs.0.bias")),
                ch,
                ch / c.group_divisor,
                3,
                3,
            );
            let (g, be, m, v) = (
                w(src, &format!("{q}.norm.weight")),
                w(src, &format!("{q}.norm.bias")),
                w(src, &format!("{q}.norm.running_mean")),
                w(src, &format!("{q}.norm.running_var")),
            );
            for o in 0..ch {
                for val in &mut h[o * f * t..(o + 1) * f * t] {
                    let bn = (*val - m[o]) / (v[o] + 1e-5).sqrt() * g[o] + be[o];
                    *val = 0.5 * bn * (1.0 + erf(bn / std::f64::consts::SQRT_2));
                }
            }
            let pwo = pointwise(
                &h,
                ch,
                f * t,
                &w(src, &format!("{q}.pwconv1.weight")),
                &w(src, &format!("{q}.pwconv1.bias")),
                ch,
            );
            y.iter_mut().zip(&pwo).for_each(|(a, b)| *a += b);
        }
        let mut y1 = to1d(&y, ch, f, t);
        if let Some(red) = st.att_block_red() {
            time_context_block(src, &format!("{p}.{}", 4 + st.num_blocks()), &mut y1, cf, cf / red, t);
        }
        outs.push(y1);
    }
    let x = weigth1d(src, "backbone.fin_wght1d.w", &outs, cf, t);
    let a: Vec<f64> = pointwise(&x, cf, t, &w(src, "pool.linear1.weight"), &w(src, "pool.linear1.bias"), 128)
        .iter()
        .map(|v| v.tanh())
        .collect();
    let z = pointwise(&a, 128, t, &w(src, "pool.linear2.weight"), &w(src, "pool.linear2.bias"), cf);
    let mut stats = vec![0.0; 2 * cf];
    for ch in 0..cf {
        let m = (0..t).map(|j| z[ch * t + j]).fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = (0..t).map(|j| (z[ch * t + j] - m).exp()).collect();
        let s: f64 = e.iter().sum();
        let mean: f64 = (0..t).map(|j| e[j] / s * x[ch * t + j]).sum();
        let sq: f64 = (0..t).map(|j| e[j] / s * x[ch * t + j].powi(2)).sum();
        stats[ch] = mean;
        stats[cf + ch] = (sq - mean * mean).max(1e-7).sqrt();
    }
    let (g, be, m, v) = (w(src, "bn.weight"), w(src, "bn.bias"), w(src, "bn.running_mean"), w(src, "bn.running_var"));
    let bn: Vec<f64> = (0..2 * cf).map(|i| (stats[i] - m[i]) / (v[i] + 1e-5).sqrt() * g[i] + be[i]).collect();
    let emb = pointwise(&bn, 2 * cf, 1, &w(src, "linear.weight"), &w(src, "linear.bias"), c.embed_dim);
    (outs, emb)
}

fn max_rel(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max) / scale
}

/// A chirp with harmonics and noise, like the oracle input.
fn voice(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let noise = (s >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
            let t = i as f64 / 16000.0;
            let ph = 2.0 * std::f64::consts::PI * (150.0 * t + 900.0 * t * t);
            (0.3 * ph.sin() + 0.1 * (2.0 * ph).sin() + 0.02 * noise) as f32
        })
        .collect()
}

#[test]
fn redimnet_m_matches_a_cpu_forward_on_a_short_input() {
    let g = gpu();
    let c = RedimConfig::redimnet_m();
    let seed = 5;
    let enc = SpeakerEncoder::seeded(g, c.clone(), seed, WeightFormat::F32).expect("seeded M");
    let src = SeededSource::new("seeded ReDimNet", &c.key_table(), seed);
    let wave = voice(2400, 3); // 0.15 s: 16 frames
    let feats = enc.features(&wave).expect("features");
    assert_eq!(feats.frames, 16);
    let mut traces: Vec<(String, GpuTensor)> = Vec::new();
    let mut record = |name: &str, t: &GpuTensor| traces.push((name.to_string(), t.clone()));
    let emb = enc.forward_features(g, &feats, Some(&mut record)).expect("forward");
    let (outs, want) = cpu_forward(&src, &c, &feats.features, feats.frames);
    assert_eq!(emb.len(), 192);
    let r = max_rel(&emb, &want);
    assert!(r < 1e-4, "embedding: max error {r:e} of max |want|");
    let t = feats.frames;
    for (i, out) in outs.iter().enumerate() {
        let name = if i == 0 { "stem".to_string() } else { format!("stage{}", i - 1) };
        let (_, tensor) = traces.iter().find(|(n, _)| *n == name).expect("traced");
        let got = g.read_f32_blocking(tensor).expect("read"); // [t, C·F]
        let cf = c.width();
        let got_t: Vec<f32> = (0..cf * t).map(|k| got[(k % t) * cf + k / t]).collect();
        let r = max_rel(&got_t, out);
        assert!(r < 1e-4, "{name}: max error {r:e} of max |want|");
    }
}

#[test]
fn front_end_matches_a_plain_dft_and_the_stored_buffers() {
    let mel = MelBanks::standard(24, 160);
    let wave = voice(1000, 9);
    let f = mel.compute(&wave).expect("features");
    assert_eq!(f.frames, 1 + 1000 / 160);
    // Plain O(N²) DFT of the reflect-padded, pre-emphasised, windowed frames.
    let n = wave.len();
    let pre: Vec<f64> = (0..n).map(|i| wave[i] as f64 - 0.97 * wave[if i == 0 { 1 } else { i - 1 }] as f64).collect();
    let reflect = |p: isize| -> f64 {
        let q = p.unsigned_abs();
        pre[if q >= n { 2 * (n - 1) - q } else { q }]
    };
    let mut power = vec![0.0f64; 24 * f.frames];
    for t in 0..f.frames {
        let frame: Vec<f64> = (0..512)
            .map(|j| {
                let wv = if (56..456).contains(&j) { mel.window[j - 56] as f64 } else { 0.0 };
                wv * reflect((t * 160 + j) as isize - 256)
            })
            .collect();
        for k in 0..257 {
            let (mut re, mut im) = (0.0, 0.0);
            for (j, &v) in frame.iter().enumerate() {
                let a = -2.0 * std::f64::consts::PI * (k * j) as f64 / 512.0;
                re += v * a.cos();
                im += v * a.sin();
            }
            for m in 0..24 {
                power[m * f.frames + t] += mel.fb[k * 24 + m] as f64 * (re * re + im * im);
            }
        }
    }
    let r = max_rel(&f.power, &power);
    assert!(r < 1e-6, "mel power: {r:e}");
    for m in 0..24 {
        let logs: Vec<f64> = (0..f.frames).map(|t| (power[m * f.frames + t] + 1e-6).ln()).collect();
        let mean = logs.iter().sum::<f64>() / f.frames as f64;
        for (got, l) in f.features[m * f.frames..(m + 1) * f.frames].iter().zip(&logs) {
            assert!((*got as f64 - (l - mean)).abs() < 1e-4);
        }
    }
    // The standard buffers are the ones ReDimNet stores (Hamming, HTK mel 20–7600 Hz, [-0.97, 1]).
    for kind in ["redimnet", "redimnet_m"] {
        for dir in nava::oracle::cases_of(&oracle_root(), kind) {
            let ck = Checkpoint::open(dir.join("weights.safetensors")).expect("weights");
            let fb = ck.f32("spec.torchfbank.2.mel_scale.fb").expect("fb");
            let n_mels = fb.len() / 257;
            let std = MelBanks::standard(n_mels, 160);
            // torchaudio builds the mel matrix in f32: a few 1e-6 apart from this f64 one.
            let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
            assert!(close(&fb, &std.fb), "{}: mel matrix", dir.display());
            let win = ck.f32("spec.torchfbank.2.spectrogram.window").expect("window");
            assert!(close(&win, &std.window), "{}: window", dir.display());
            let filt = ck.f32("spec.torchfbank.1.flipped_filter").expect("filter");
            assert!(close(&filt, &std.flipped_filter), "{}: pre-emphasis", dir.display());
        }
    }
}

// ------------------------------------------------------------------ .pt files

/// A pickled `model_config` value.
fn pickle_json(p: &mut Pkl, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => p.op(b'N'),
        Value::Bool(b) => p.op(if *b { 0x88 } else { 0x89 }),
        Value::Number(n) => p.int(n.as_i64().expect("integer config values")),
        Value::String(s) => p.str(s),
        Value::Array(items) => {
            // Tuples, as Python writes stages_setup entries.
            p.op(b'(');
            for it in items {
                pickle_json(p, it);
            }
            p.op(b't');
            p.put();
        }
        Value::Object(m) => {
            p.op(b'}');
            p.put();
            p.op(b'(');
            for (k, it) in m {
                p.str(k);
                pickle_json(p, it);
            }
            p.op(b'u');
        }
    }
}

/// `torch.save({'model_config': config, 'state_dict': tensors})` with `config` omitted when `None`.
fn redimnet_pt(config: Option<&serde_json::Value>, tensors: &[GenTensor]) -> Vec<u8> {
    let mut p = Pkl::new();
    p.op(b'}');
    p.put();
    p.op(b'(');
    if let Some(c) = config {
        p.str("model_config");
        pickle_json(&mut p, c);
    }
    p.str("state_dict");
    p.global("collections", "OrderedDict");
    p.op(b')');
    p.op(b'R');
    p.put();
    p.op(b'(');
    for t in tensors {
        p.str(&t.name);
        p.tensor(t);
    }
    p.op(b'u');
    p.op(b'u');
    p.op(b'.');
    zip_stored(&torch_entries("M-vb2+vox2+cnc-ft_mix", p.b, tensors), false)
}

fn case_tensors(dir: &std::path::Path) -> Vec<GenTensor> {
    let ck = Checkpoint::open(dir.join("weights.safetensors")).expect("weights");
    ck.tensors()
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let v = ck.view(&info.name).expect("view");
            let class = match info.dtype {
                nava::weights::WeightDType::F32 => "FloatStorage",
                nava::weights::WeightDType::F16 => "HalfStorage",
                nava::weights::WeightDType::I64 => "LongStorage",
                d => panic!("unexpected dtype {d}"),
            };
            GenTensor::new(&info.name, class, &i.to_string(), v.bytes.to_vec()).view(
                0,
                &info.shape,
                &contiguous(&info.shape),
            )
        })
        .collect()
}

#[test]
fn pt_checkpoint_loads_with_its_stored_config() {
    let g = gpu();
    let dir = scratch("pt");
    let mut checked = 0;
    for kind in ["redimnet", "redimnet_m"] {
        for case in nava::oracle::cases_of(&oracle_root(), kind) {
            let meta = read_json(case.join("meta.json"));
            let tensors = case_tensors(&case);
            let path = dir.join(format!("{kind}.pt"));
            std::fs::write(&path, redimnet_pt(Some(&meta["config"]), &tensors)).expect("write");
            let enc = SpeakerEncoder::open(g, &path, WeightFormat::F32).unwrap_or_else(|e| panic!("{e}"));
            let want_config: RedimConfig = serde_json::from_value(meta["config"].clone()).expect("config");
            assert_eq!(enc.config, want_config, "the config comes from the file");
            let io = Checkpoint::open(case.join("io.safetensors")).expect("io");
            let wave = io.f32("in.waveform").expect("waveform");
            let want = io.f32("out.embedding").expect("embedding");
            let got = enc.embed(g, &wave).expect("embed");
            let want64: Vec<f64> = want.iter().map(|&v| v as f64).collect();
            assert!(max_rel(&got, &want64) < 1e-4, "{kind}: embedding from the .pt");
            if kind == "redimnet_m" {
                // F16 values stay F16 in the file and in an f16 weight format.
                let info = Checkpoint::open(&path).expect("open");
                let Checkpoint::Pth(p) = info else { panic!("a .pt") };
                let sd = p.select("state_dict").expect("state_dict");
                assert_eq!(sd.info("linear.weight").expect("linear").dtype, nava::weights::WeightDType::F16);
                let half = SpeakerEncoder::open(g, &path, WeightFormat::F16).expect("f16");
                assert!(max_rel(&half.embed(g, &wave).expect("embed"), &want64) < 1e-3);
            }
            // Without its model_config the file cannot say how to build the model.
            std::fs::write(&path, redimnet_pt(None, &tensors)).expect("write");
            let e = err(SpeakerEncoder::open(g, &path, WeightFormat::F32));
            assert!(e.contains("model_config"), "{e}");
            // A config that disagrees with the tensors: every mismatch is named.
            let mut other = meta["config"].clone();
            other["C"] = serde_json::json!(8);
            std::fs::write(&path, redimnet_pt(Some(&other), &tensors)).expect("write");
            let e = err(SpeakerEncoder::open(g, &path, WeightFormat::F32));
            assert!(e.contains("backbone.stem.0.weight") && e.contains("ReDimNet"), "{e}");
            checked += 1;
        }
    }
    std::fs::remove_dir_all(dir).ok();
    assert!(checked > 0, "no redimnet cases under {}", oracle_root().display());
}

// ------------------------------------------------------------------ WAV reader and resampler

/// Amplitude of the `freq` component of `x` at `rate` (single-bin DFT).
fn tone_amplitude(x: &[f32], rate: f64, freq: f64) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (i, &v) in x.iter().enumerate() {
        let a = 2.0 * std::f64::consts::PI * freq * i as f64 / rate;
        re += v as f64 * a.cos();
        im += v as f64 * a.sin();
    }
    2.0 * (re * re + im * im).sqrt() / x.len() as f64
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

#[test]
fn resampler_keeps_frequency_and_amplitude_and_removes_what_cannot_be_kept() {
    for (rate, len) in [(48000u32, 48000usize), (44100, 44100), (8000, 8000), (22050, 11025)] {
        let tone = |f: f64| -> Vec<f32> {
            (0..len).map(|i| (0.5 * (2.0 * std::f64::consts::PI * f * i as f64 / rate as f64).sin()) as f32).collect()
        };
        let y = resample(&tone(1000.0), rate, 16000);
        assert_eq!(y.len(), (16000 * len as u64).div_ceil(rate as u64) as usize, "{rate}");
        // Away from the edges (the filter's zero padding), the tone keeps its amplitude and frequency.
        let mid = &y[400..y.len() - 400];
        let a = tone_amplitude(mid, 16000.0, 1000.0);
        assert!((a - 0.5).abs() < 0.01, "{rate} Hz: 1 kHz amplitude {a}");
        assert!(tone_amplitude(mid, 16000.0, 1100.0) < 0.01, "{rate} Hz: energy moved off 1 kHz");
        if rate > 16000 {
            // Above the output's 8 kHz Nyquist a tone must vanish, not alias (12 kHz would fold to 4 kHz). The
            // reference's Hann-windowed sinc (6 zero crossings, cutoff 7.92 kHz) rejects it by over 40 dB at
            // 10 kHz, 50 dB at 12 kHz and 80 dB from 14 kHz (tones below the input's own Nyquist).
            let tones = [(10000.0, 3e-3), (12000.0, 1e-3), (14000.0, 5e-5), (20000.0, 5e-5)];
            for (f, max_rms) in tones.into_iter().filter(|&(f, _)| f < rate as f64 / 2.0) {
                let y = resample(&tone(f), rate, 16000);
                let mid = &y[400..y.len() - 400];
                assert!(rms(mid) < max_rms, "{rate} Hz: {f} Hz leaks {} rms", rms(mid));
                assert!(tone_amplitude(mid, 16000.0, 16000.0 - f) < max_rms * 2.0, "{rate} Hz: alias of {f} Hz");
            }
        }
    }
    assert_eq!(resample(&[0.25, -0.5], 16000, 16000), [0.25, -0.5]);
}

enum Fmt {
    Int(u16),
    Float,
}

/// Writes a WAV with `channels` of `seconds` s; channel c holds `(1 − 0.5c)·0.5·sin(2π·440t)`.
fn write_wav(path: &std::path::Path, rate: u32, channels: u16, fmt: Fmt, seconds: f64, gain: f64) {
    let (bits, sample_format) = match fmt {
        Fmt::Int(b) => (b, hound::SampleFormat::Int),
        Fmt::Float => (32, hound::SampleFormat::Float),
    };
    let spec = hound::WavSpec { channels, sample_rate: rate, bits_per_sample: bits, sample_format };
    let mut wr = hound::WavWriter::create(path, spec).expect("create wav");
    let n = (seconds * rate as f64) as usize;
    for i in 0..n {
        let s = gain * 0.5 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / rate as f64).sin();
        for c in 0..channels {
            let v = s * (1.0 - 0.5 * c as f64);
            match sample_format {
                hound::SampleFormat::Float => wr.write_sample(v as f32).expect("write"),
                hound::SampleFormat::Int => {
                    let full = (1i64 << (bits - 1)) as f64;
                    wr.write_sample((v * full).round().clamp(-full, full - 1.0) as i32).expect("write")
                }
            }
        }
    }
    wr.finalize().expect("finalize");
}

#[test]
fn wav_reader_reads_every_format_as_16k_mono() {
    let dir = scratch("wav");
    let cases: [(u32, u16, Fmt, f64); 8] = [
        (16000, 1, Fmt::Int(16), 1e-4),
        (48000, 1, Fmt::Int(8), 2e-2),
        (44100, 2, Fmt::Int(16), 1e-3),
        (8000, 1, Fmt::Int(24), 1e-3),
        (48000, 2, Fmt::Int(32), 1e-3),
        (22050, 1, Fmt::Float, 1e-3),
        (16000, 2, Fmt::Float, 1e-4),
        (44100, 1, Fmt::Int(24), 1e-3),
    ];
    for (i, (rate, channels, fmt, tol)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("v{i}.wav"));
        write_wav(&path, rate, channels, fmt, 1.0, 1.0);
        let v = read_voice(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.len(), 16000, "case {i}");
        // Mono is the channel mean: 0.5 for one channel, (0.5 + 0.25) / 2 for two.
        let want = if channels == 1 { 0.5 } else { 0.375 };
        let a = tone_amplitude(&v[400..15600], 16000.0, 440.0);
        assert!((a - want).abs() < tol + 2e-3, "case {i}: 440 Hz amplitude {a}, expected {want}");
    }
    // Longer than 30 s: the first 30 s.
    let path = dir.join("long.wav");
    write_wav(&path, 8000, 1, Fmt::Int(16), 31.0, 1.0);
    assert_eq!(read_voice(&path).expect("long").len(), 30 * 16000);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_voices_and_inputs_are_named() {
    let dir = scratch("bad");
    let short = dir.join("short.wav");
    write_wav(&short, 16000, 1, Fmt::Int(16), 0.3, 1.0);
    let e = err(read_voice(&short));
    assert!(e.contains("short.wav") && e.contains("0.300 s") && e.contains("at least 0.5 s"), "{e}");
    let silent = dir.join("silent.wav");
    write_wav(&silent, 16000, 2, Fmt::Float, 1.0, 0.0);
    let e = err(read_voice(&silent));
    assert!(e.contains("silent"), "{e}");
    let text = dir.join("notes.wav");
    std::fs::write(&text, "not audio").expect("write");
    let e = err(read_voice(&text));
    assert!(e.contains("notes.wav") && e.contains("cannot be read as a WAV"), "{e}");
    let e = err(read_voice(dir.join("missing.wav")));
    assert!(e.contains("missing.wav"), "{e}");
    // A WAV cut in the middle of its data.
    let good = dir.join("good.wav");
    write_wav(&good, 16000, 1, Fmt::Int(16), 1.0, 1.0);
    let bytes = std::fs::read(&good).expect("read");
    let cut = dir.join("cut.wav");
    std::fs::write(&cut, &bytes[..bytes.len() / 2 + 1]).expect("write");
    assert!(read_voice(&cut).is_err());
    std::fs::remove_dir_all(dir).ok();

    let g = gpu();
    let enc = SpeakerEncoder::seeded(g, RedimConfig::tiny(), 1, WeightFormat::F32).expect("tiny");
    let e = err(enc.embed(g, &[0.1; 200]));
    assert!(e.contains("200 samples is too short"), "{e}");
    let mut nan = voice(4000, 1);
    nan[17] = f32::NAN;
    let e = err(enc.embed(g, &nan));
    assert!(e.contains("sample 17 is not finite"), "{e}");
    let e = err(enc.embed(g, &vec![0.1; 30 * 16000 + 1]));
    assert!(e.contains("longer than 30 s"), "{e}");
    let emb = enc.embed(g, &voice(16000, 2)).expect("tiny embed");
    assert_eq!(emb.len(), 192);
    assert!(emb.iter().all(|v| v.is_finite()));
    // A file of another model.
    let other = SeededSource::new("other", &vec![("encoder.weight".to_string(), vec![4, 4])], 1);
    let e = err(SpeakerEncoder::load(g, &other, RedimConfig::tiny(), WeightFormat::F32));
    assert!(e.contains("missing") && e.contains("ReDimNet"), "{e}");
}
