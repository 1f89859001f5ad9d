//! The LTX-2.3 vocoder outside its oracle: the real-size configuration names exactly the official file's keys,
//! a case's config names its weights file, a real-width vocoder (main stage 0 at 1536 → 768 channels, the whole
//! BWE generator at 512 → 16, the real STFT/mel front end) against a CPU computation written from the reference's
//! definitions, the output resampling, and the errors for bad inputs and files.

use std::path::PathBuf;

use nava::gpu::{Gpu, GpuOptions, GpuTensor};
use nava::kernels::gemm::WeightFormat;
use nava::model::audio_vae::AudioVaeConfig;
use nava::model::vocoder::{
    hann_upsample_filter, output_audio, peak_normalize, resample_filter, GeneratorConfig, Vocoder, VocoderConfig,
};
use nava::weights::{check_keys, Checkpoint, KeyTable, OfficialFile, SeededSource, TensorSource};

fn oracle_root() -> PathBuf {
    nava::oracle::root(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracles"))
}

fn gpu() -> Gpu {
    Gpu::new_blocking(&GpuOptions::from_env()).expect("a GPU adapter (lavapipe)")
}

fn err<T>(r: Result<T, nava::model::ModelError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn keys_of(json: &serde_json::Value) -> KeyTable {
    json["keys"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, s)| (k.clone(), s.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()))
        .collect()
}

#[test]
fn real_key_tables_match_the_official_file() {
    let table = OfficialFile::LtxAudioVae.table();
    let mut ours = AudioVaeConfig::ltx23().key_table();
    ours.extend(VocoderConfig::ltx23().key_table());
    assert_eq!(ours, table.keys, "audio VAE + vocoder, in file order");
    let v: VocoderConfig = serde_json::from_value(table.config.clone()).unwrap();
    assert_eq!(v, VocoderConfig::ltx23());
    let a: AudioVaeConfig = serde_json::from_value(table.config).unwrap();
    assert_eq!(a, AudioVaeConfig::ltx23());
    for dir in nava::oracle::cases_of(&oracle_root(), "ltx_vocoder_bwe") {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("keys_full.json")).unwrap()).unwrap();
        let mut want = keys_of(&v);
        want.sort();
        let mut got = VocoderConfig::ltx23().key_table();
        got.sort();
        assert_eq!(got, want, "{}", dir.display());
    }
}

#[test]
fn case_config_names_its_weights_file() {
    for dir in nava::oracle::cases_of(&oracle_root(), "ltx_vocoder_bwe") {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let c: VocoderConfig = serde_json::from_value(meta["config"].clone()).unwrap();
        let w = Checkpoint::open(dir.join("weights.safetensors")).unwrap();
        check_keys(&w, &c.key_table(), "tiny case").unwrap();
    }
    let tiny = VocoderConfig::tiny();
    tiny.validate().unwrap();
    assert_eq!(tiny.main().hop(), 160);
    assert_eq!(tiny.bwe().generator.hop(), 240);
}

// ---------------------------------------------------------------------------------------------------------------
// CPU reference, from the reference module definitions (f64).

struct Src<'a>(&'a dyn TensorSource);

impl Src<'_> {
    fn get(&self, k: &str) -> Vec<f64> {
        self.0.f32(k).unwrap().into_iter().map(|v| v as f64).collect()
    }
}

/// `nn.Conv1d` on `[C, T]` rows.
#[allow(clippy::too_many_arguments)]
fn conv1d(
    x: &[Vec<f64>],
    w: &[f64],
    b: Option<&[f64]>,
    cout: usize,
    k: usize,
    pad: usize,
    dil: usize,
    stride: usize,
) -> Vec<Vec<f64>> {
    let (cin, t) = (x.len(), x[0].len());
    let lo = (t + 2 * pad - dil * (k - 1) - 1) / stride + 1;
    (0..cout)
        .map(|co| {
            (0..lo)
                .map(|o| {
                    let mut s = b.map_or(0.0, |b| b[co]);
                    for (ci, row) in x.iter().enumerate() {
                        for kk in 0..k {
                            let i = (o * stride + kk * dil) as isize - pad as isize;
                            if i >= 0 && (i as usize) < t {
                                s += w[(co * cin + ci) * k + kk] * row[i as usize];
                            }
                        }
                    }
                    s
                })
                .collect()
        })
        .collect()
}

/// `nn.ConvTranspose1d(stride, padding)`, weight `[Cin, Cout, k]`.
fn conv_t(x: &[Vec<f64>], w: &[f64], b: &[f64], cout: usize, k: usize, s: usize, pad: usize) -> Vec<Vec<f64>> {
    let t = x[0].len();
    let full = (t - 1) * s + k;
    let mut y = vec![vec![0.0; full]; cout];
    for (ci, row) in x.iter().enumerate() {
        for (i, &v) in row.iter().enumerate() {
            for (co, yr) in y.iter_mut().enumerate() {
                for kk in 0..k {
                    yr[i * s + kk] += v * w[(ci * cout + co) * k + kk];
                }
            }
        }
    }
    y.into_iter().enumerate().map(|(co, r)| r[pad..full - pad].iter().map(|v| v + b[co]).collect()).collect()
}

fn rep(x: &[f64], i: isize) -> f64 {
    x[i.clamp(0, x.len() as isize - 1) as usize]
}

/// `UpSample1d(ratio)` of one row with filter `f`: replicate pad, transposed conv, · ratio, crop.
fn upsample(x: &[f64], f: &[f64], ratio: usize, pad: usize, pl: usize, pr: usize) -> Vec<f64> {
    let xp: Vec<f64> = (0..x.len() + 2 * pad).map(|i| rep(x, i as isize - pad as isize)).collect();
    let full = (xp.len() - 1) * ratio + f.len();
    let mut y = vec![0.0; full];
    for (i, &v) in xp.iter().enumerate() {
        for (k, &w) in f.iter().enumerate() {
            y[i * ratio + k] += v * w;
        }
    }
    y[pl..full - pr].iter().map(|v| v * ratio as f64).collect()
}

/// `Activation1d(SnakeBeta)` over `[C, T]` under key prefix `p`.
fn act1d(w: &Src, p: &str, x: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let (alpha, beta) = (w.get(&format!("{p}.act.alpha")), w.get(&format!("{p}.act.beta")));
    let (fu, fd) = (w.get(&format!("{p}.upsample.filter")), w.get(&format!("{p}.downsample.lowpass.filter")));
    x.iter()
        .enumerate()
        .map(|(c, row)| {
            let u: Vec<f64> = upsample(row, &fu, 2, 5, 15, 15)
                .into_iter()
                .map(|v| {
                    let (a, b) = (alpha[c].exp(), beta[c].exp());
                    v + 1.0 / (b + 1e-9) * (v * a).sin().powi(2)
                })
                .collect();
            (0..row.len()).map(|t| (0..12).map(|j| fd[j] * rep(&u, (2 * t + j) as isize - 5)).sum()).collect()
        })
        .collect()
}

fn add(a: &mut [Vec<f64>], b: &[Vec<f64>]) {
    a.iter_mut().zip(b).for_each(|(r, s)| r.iter_mut().zip(s).for_each(|(x, y)| *x += y));
}

/// `Vocoder.forward` on `[128, T]`.
fn generator(w: &Src, p: &str, c: &GeneratorConfig, x: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let c0 = c.upsample_initial_channel;
    let mut x =
        conv1d(x, &w.get(&format!("{p}conv_pre.weight")), Some(&w.get(&format!("{p}conv_pre.bias"))), c0, 7, 3, 1, 1);
    let nk = c.resblock_kernel_sizes.len();
    for (i, (&s, &k)) in c.upsample_rates.iter().zip(&c.upsample_kernel_sizes).enumerate() {
        let ch = c.channels(i);
        let up = conv_t(
            &x,
            &w.get(&format!("{p}ups.{i}.weight")),
            &w.get(&format!("{p}ups.{i}.bias")),
            ch,
            k,
            s,
            (k - s) / 2,
        );
        let mut sum = vec![vec![0.0; up[0].len()]; ch];
        for (j, (&kr, dil)) in c.resblock_kernel_sizes.iter().zip(&c.resblock_dilation_sizes).enumerate() {
            let rb = format!("{p}resblocks.{}", i * nk + j);
            let mut h = up.clone();
            for (m, &d) in dil.iter().enumerate() {
                let conv = |name: &str, x: &[Vec<f64>], d: usize| {
                    let (wt, b) = (w.get(&format!("{rb}.{name}.{m}.weight")), w.get(&format!("{rb}.{name}.{m}.bias")));
                    conv1d(x, &wt, Some(&b), ch, kr, d * (kr - 1) / 2, d, 1)
                };
                let t = act1d(w, &format!("{rb}.acts1.{m}"), &h);
                let t = conv("convs1", &t, d);
                let t = act1d(w, &format!("{rb}.acts2.{m}"), &t);
                let t = conv("convs2", &t, 1);
                add(&mut h, &t);
            }
            add(&mut sum, &h);
        }
        x = sum.into_iter().map(|r| r.into_iter().map(|v| v / nk as f64).collect()).collect();
    }
    let x = act1d(w, &format!("{p}act_post"), &x);
    let y = conv1d(&x, &w.get(&format!("{p}conv_post.weight")), None, 2, 7, 3, 1, 1);
    if c.apply_final_activation {
        y.into_iter().map(|r| r.into_iter().map(|v| v.clamp(-1.0, 1.0)).collect()).collect()
    } else {
        y
    }
}

/// `VocoderWithBWE.forward` on one mel `[2, T, 64]`: (main, 48 kHz output).
fn vocoder_ref(w: &Src, c: &VocoderConfig, mel: &[f32], t: usize) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let x: Vec<Vec<f64>> =
        (0..128).map(|ch| (0..t).map(|f| mel[((ch / 64) * t + f) * 64 + ch % 64] as f64).collect()).collect();
    let main = generator(w, "vocoder.vocoder.", c.main(), &x);
    let b = c.bwe();
    let len = main[0].len();
    let padded: Vec<Vec<f64>> = main
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.resize(len.div_ceil(b.hop_length) * b.hop_length, 0.0);
            r
        })
        .collect();
    let basis = w.get("vocoder.mel_stft.stft_fn.forward_basis");
    let mel_basis = w.get("vocoder.mel_stft.mel_basis");
    let bins = b.n_fft / 2 + 1;
    let mut bwe_in = Vec::new();
    for row in &padded {
        // Causal: the reference pads only the left, by n_fft − hop.
        let mut xp = vec![0.0; b.n_fft - b.hop_length];
        xp.extend_from_slice(row);
        let spec = conv1d(&[xp], &basis, None, 2 * bins, b.n_fft, 0, 1, b.hop_length);
        let frames = spec[0].len();
        for m in 0..b.num_mels {
            bwe_in.push(
                (0..frames)
                    .map(|f| {
                        let s: f64 = (0..bins)
                            .map(|k| mel_basis[m * bins + k] * (spec[k][f].powi(2) + spec[bins + k][f].powi(2)).sqrt())
                            .sum();
                        s.max(1e-5).ln()
                    })
                    .collect(),
            );
        }
    }
    let residual = generator(w, "vocoder.bwe_generator.", &b.generator, &bwe_in);
    let ratio = b.output_sampling_rate / b.input_sampling_rate;
    let (f, width) = hann_upsample_filter(ratio);
    let f: Vec<f64> = f.into_iter().map(|v| v as f64).collect();
    let out = padded
        .iter()
        .zip(&residual)
        .map(|(row, res)| {
            let skip = upsample(row, &f, ratio, width, 2 * width * ratio, f.len() - ratio);
            skip.iter().zip(res).take(len * ratio).map(|(s, r)| (s + r).clamp(-1.0, 1.0)).collect()
        })
        .collect();
    (main, out)
}

fn flat(v: &[Vec<f64>]) -> Vec<f32> {
    v.iter().flatten().map(|&x| x as f32).collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0, f32::max);
    assert!(worst <= tol * (1.0 + scale), "{what}: max |err| {worst} (scale {scale})");
}

/// Main stage 0 at the real widths (conv_pre 128 → 1536, ups 1536 → 768 k11 s5, three AMP blocks of 768
/// channels) and the real BWE (512 → 16 channels, n_fft 512, 64 mels), on 4 mel frames: the main output (20
/// samples) is not a whole hop, so the BWE's zero padding and final cut run too.
#[test]
fn real_width_vocoder_matches_cpu() {
    let g = gpu();
    let mut c = VocoderConfig::ltx23();
    c.vocoder.vocoder.upsample_rates = vec![5];
    c.vocoder.vocoder.upsample_kernel_sizes = vec![11];
    let src = SeededSource::new("seeded real-width vocoder", &c.key_table(), 7);
    let voc = Vocoder::load(&g, &src, c.clone(), WeightFormat::F32).unwrap();
    let t = 4;
    let mel: Vec<f32> = (0..2 * t * 64).map(|i| -4.0 + ((i * 37 % 101) as f32) / 25.0).collect();
    let mel_t = g.upload_f32("mel", &mel, &[2, t, 64]).unwrap();
    let parts = voc.forward_parts(&g, &mel_t, None).unwrap();
    let (main, out) = vocoder_ref(&Src(&src), &c, &mel, t);
    assert_eq!(parts.main.shape(), &[2, 5 * t]);
    assert_close("main", &g.read_f32_blocking(&parts.main).unwrap(), &flat(&main), 1e-4);
    assert_eq!(parts.wave.shape(), &[2, 15 * t]);
    assert_close("48 kHz", &g.read_f32_blocking(&parts.wave).unwrap(), &flat(&out), 1e-4);
}

/// `torchaudio.functional.resample(48000 → 16000)` on a CPU: zero pad (width, width + 3), stride 3, then ±0.99.
#[test]
fn output_resampling_matches_cpu() {
    let g = gpu();
    let n = 301;
    let x: Vec<f32> = (0..2 * n).map(|i| (i as f32 * 0.37).sin() * 1.2).collect();
    let wave = g.upload_f32("wave", &x, &[2, n]).unwrap();
    let y = g.read_f32_blocking(&output_audio(&g, &wave, 48000, 16000).unwrap()).unwrap();
    let (f, width) = resample_filter(3);
    assert_eq!((f.len(), width), (41, 19));
    let m = n.div_ceil(3);
    let mut want = Vec::new();
    for r in 0..2 {
        let row = &x[r * n..(r + 1) * n];
        for o in 0..m {
            let s: f64 = f
                .iter()
                .enumerate()
                .map(|(j, &w)| {
                    let i = (3 * o + j) as isize - width as isize;
                    if (0..n as isize).contains(&i) {
                        w as f64 * row[i as usize] as f64
                    } else {
                        0.0
                    }
                })
                .sum();
            want.push(s.clamp(-0.99, 0.99) as f32);
        }
    }
    assert_close("16 kHz", &y, &want, 1e-5);
    // 48 kHz output: clamp only.
    let y48 = g.read_f32_blocking(&output_audio(&g, &wave, 48000, 48000).unwrap()).unwrap();
    assert!(y48.iter().all(|v| v.abs() <= 0.99));
    let e = err(output_audio(&g, &wave, 48000, 44100));
    assert!(e.contains("44100 Hz") && e.contains("integer factors"), "{e}");
    let mut s = vec![0.5, -2.0, 1.0];
    peak_normalize(&mut s);
    assert_eq!(s, vec![0.2375, -0.95, 0.475]);
}

#[test]
fn bad_inputs_and_files_are_refused() {
    let g = gpu();
    let c = VocoderConfig::tiny();
    let src = SeededSource::new("seeded tiny vocoder", &c.key_table(), 1);
    let voc = Vocoder::load(&g, &src, c.clone(), WeightFormat::F32).unwrap();
    let bad =
        |shape: &[usize]| -> GpuTensor { g.upload_f32("mel", &vec![0.0; shape.iter().product()], shape).unwrap() };
    for shape in [&[2, 5, 80][..], &[3, 5, 64], &[5, 64], &[1, 1, 2, 5, 64]] {
        let e = err(voc.forward(&g, &bad(shape)));
        assert!(e.contains("vocoder mel") && e.contains("[2, frames, 64]"), "{shape:?}: {e}");
    }
    // The audio VAE's decoder keys are not a vocoder.
    let a = AudioVaeConfig::tiny();
    let other = SeededSource::new("audio vae only", &a.key_table(), 1);
    let e = err(Vocoder::load(&g, &other, c.clone(), WeightFormat::F32));
    assert!(e.contains("vocoder.vocoder.conv_pre.weight") && e.contains("LTX-2.3 audio VAE file"), "{e}");
    // Real-size config on the tiny file: mis-shaped keys.
    let e = err(Vocoder::load(&g, &src, VocoderConfig::ltx23(), WeightFormat::F32));
    assert!(e.contains("conv_pre.weight"), "{e}");
    let mut wrong = c.clone();
    wrong.vocoder.vocoder.activation = "snake".into();
    let e = err(Vocoder::load(&g, &src, wrong, WeightFormat::F32));
    assert!(e.contains("snakebeta"), "{e}");
}
