//! The LTX-2.3 audio VAE decoder outside its oracle: its key table against the case files, the whole decoder at
//! the real widths (ch 128: 512 / 256 / 128 channels) on two latent steps against a CPU computation written from
//! the reference's definitions, the encoder's mel front end, and the errors for bad latents, waveforms and files.

use std::path::PathBuf;

use nava::gpu::{Gpu, GpuOptions};
use nava::kernels::gemm::WeightFormat;
use nava::model::audio_vae::{slaney_mel_basis, stft_basis, AudioDecoder, AudioEncoder, AudioVaeConfig};
use nava::model::vocoder::VocoderConfig;
use nava::weights::{check_keys, Checkpoint, KeyTable, SeededSource, TensorSource};

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

#[test]
fn key_tables_match_the_cases() {
    for dir in nava::oracle::cases_of(&oracle_root(), "ltx_audio_vae") {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("keys_full.json")).unwrap()).unwrap();
        let mut want: KeyTable = v["keys"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, s)| (k.clone(), s.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()))
            .collect();
        want.sort();
        let mut got = AudioVaeConfig::ltx23().key_table();
        got.sort();
        assert_eq!(got, want, "{}", dir.display());
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let c: AudioVaeConfig = serde_json::from_value(meta["config"].clone()).unwrap();
        let w = Checkpoint::open(dir.join("weights.safetensors")).unwrap();
        check_keys(&w, &c.key_table(), "tiny case").unwrap();
    }
    let tiny = AudioVaeConfig::tiny();
    tiny.validate().unwrap();
    assert_eq!(tiny.token_dim(), 128);
    assert_eq!(AudioVaeConfig::mel_frames(152), 605);
}

// ---------------------------------------------------------------------------------------------------------------
// CPU reference (f64), maps `[C][T][F]` as flat `[C, T, F]` vectors.

struct Map {
    c: usize,
    t: usize,
    f: usize,
    v: Vec<f64>,
}

impl Map {
    fn at(&self, c: usize, t: isize, f: isize) -> f64 {
        if t < 0 || f < 0 || t >= self.t as isize || f >= self.f as isize {
            0.0
        } else {
            self.v[(c * self.t + t as usize) * self.f + f as usize]
        }
    }
}

/// `CausalConv2d` (height = time causal): pad time (k − 1, 0), frequency ((k − 1)/2, (k − 1)/2).
fn conv(w: &dyn TensorSource, name: &str, x: &Map, cout: usize, k: usize) -> Map {
    let wt = w.f32(&format!("{name}.conv.weight")).unwrap();
    let b = w.f32(&format!("{name}.conv.bias")).unwrap();
    let (pt, pf) = ((k - 1) as isize, ((k - 1) / 2) as isize);
    let mut v = vec![0.0; cout * x.t * x.f];
    for co in 0..cout {
        for t in 0..x.t {
            for f in 0..x.f {
                let mut s = b[co] as f64;
                for ci in 0..x.c {
                    for i in 0..k {
                        for j in 0..k {
                            let wv = wt[((co * x.c + ci) * k + i) * k + j] as f64;
                            s += wv * x.at(ci, t as isize + i as isize - pt, f as isize + j as isize - pf);
                        }
                    }
                }
                v[(co * x.t + t) * x.f + f] = s;
            }
        }
    }
    Map { c: cout, t: x.t, f: x.f, v }
}

fn pn_silu(x: &Map) -> Map {
    let s = x.t * x.f;
    let mut v = x.v.clone();
    for p in 0..s {
        let ms: f64 = (0..x.c).map(|c| x.v[c * s + p].powi(2)).sum::<f64>() / x.c as f64;
        let r = 1.0 / (ms + 1e-6).sqrt();
        for c in 0..x.c {
            let y = x.v[c * s + p] * r;
            v[c * s + p] = y / (1.0 + (-y).exp());
        }
    }
    Map { v, ..*x }
}

fn resnet(w: &dyn TensorSource, name: &str, x: &Map, cout: usize) -> Map {
    let h = conv(w, &format!("{name}.conv1"), &pn_silu(x), cout, 3);
    let mut h = conv(w, &format!("{name}.conv2"), &pn_silu(&h), cout, 3);
    let s =
        if x.c != cout { conv(w, &format!("{name}.nin_shortcut"), x, cout, 1) } else { Map { v: x.v.clone(), ..*x } };
    h.v.iter_mut().zip(&s.v).for_each(|(a, b)| *a += b);
    h
}

fn decoder_ref(w: &dyn TensorSource, c: &AudioVaeConfig, tokens: &[f32], t: usize) -> Map {
    let d = c.dd();
    let n = c.token_dim();
    let std = w.f32("audio_vae.per_channel_statistics.std-of-means").unwrap();
    let mean = w.f32("audio_vae.per_channel_statistics.mean-of-means").unwrap();
    let bins = c.latent_bins();
    let mut v = vec![0.0; n * t];
    for s in 0..t {
        for k in 0..n {
            // token feature k = channel · bins + bin.
            v[((k / bins) * t + s) * bins + k % bins] = tokens[s * n + k] as f64 * std[k] as f64 + mean[k] as f64;
        }
    }
    let p = "audio_vae.decoder";
    let top = d.ch * d.ch_mult[2];
    let mut x = conv(w, &format!("{p}.conv_in"), &Map { c: d.z_channels, t, f: bins, v }, top, 3);
    x = resnet(w, &format!("{p}.mid.block_1"), &x, top);
    x = resnet(w, &format!("{p}.mid.block_2"), &x, top);
    for l in (0..3).rev() {
        let out = d.ch * d.ch_mult[l];
        for j in 0..=d.num_res_blocks {
            x = resnet(w, &format!("{p}.up.{l}.block.{j}"), &x, out);
        }
        if l != 0 {
            // Nearest ×2 on (time, freq), causal conv, drop the first time row.
            let mut v = vec![0.0; x.c * 4 * x.t * x.f];
            for ch in 0..x.c {
                for tt in 0..2 * x.t {
                    for ff in 0..2 * x.f {
                        v[(ch * 2 * x.t + tt) * 2 * x.f + ff] = x.v[(ch * x.t + tt / 2) * x.f + ff / 2];
                    }
                }
            }
            let u = conv(w, &format!("{p}.up.{l}.upsample.conv"), &Map { c: x.c, t: 2 * x.t, f: 2 * x.f, v }, out, 3);
            let (tt, ff) = (u.t - 1, u.f);
            let v = (0..out).flat_map(|ch| u.v[(ch * u.t + 1) * ff..(ch * u.t + u.t) * ff].to_vec()).collect();
            x = Map { c: out, t: tt, f: ff, v };
        }
    }
    conv(w, &format!("{p}.conv_out"), &pn_silu(&x), d.out_ch, 3)
}

#[test]
fn real_width_decoder_matches_cpu() {
    let g = gpu();
    let c = AudioVaeConfig::ltx23();
    let src = SeededSource::new("seeded real audio VAE", &c.key_table(), 3);
    let dec = AudioDecoder::load(&g, &src, c.clone(), WeightFormat::F32).unwrap();
    let t = 2;
    let tokens: Vec<f32> = (0..t * 128).map(|i| ((i * 53 % 97) as f32 - 48.0) / 30.0).collect();
    let x = g.upload_f32("tokens", &tokens, &[t, 128]).unwrap();
    let mel = dec.decode(&g, &x, None).unwrap();
    assert_eq!(mel.shape(), &[2, 5, 64]);
    let got = g.read_f32_blocking(&mel).unwrap();
    let want = decoder_ref(&src, &c, &tokens, t);
    let scale = want.v.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(&want.v).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
    assert!(worst <= 1e-4 * (1.0 + scale), "max |err| {worst} at scale {scale}");
}

#[test]
fn bad_latents_and_files_are_refused() {
    let g = gpu();
    let c = AudioVaeConfig::tiny();
    let src = SeededSource::new("seeded tiny audio VAE", &c.key_table(), 1);
    let dec = AudioDecoder::load(&g, &src, c.clone(), WeightFormat::F32).unwrap();
    for shape in [&[4, 64][..], &[2, 4, 128], &[128], &[1, 128, 4]] {
        let x = g.upload_f32("tokens", &vec![0.0; shape.iter().product()], shape).unwrap();
        let e = err(dec.decode(&g, &x, None));
        assert!(e.contains("audio latent tokens") && e.contains("expected [T, 128]"), "{shape:?}: {e}");
    }
    // A single step decodes to one mel frame.
    let one = g.upload_f32("tokens", &[0.1; 128], &[1, 128]).unwrap();
    assert_eq!(dec.decode(&g, &one, None).unwrap().shape(), &[2, 1, 64]);
    // A vocoder-only file.
    let v = SeededSource::new("vocoder only", &VocoderConfig::tiny().key_table(), 1);
    let e = err(AudioDecoder::load(&g, &v, c.clone(), WeightFormat::F32));
    assert!(
        e.contains("missing (e.g. audio_vae.per_channel_statistics") && e.contains("LTX-2.3 audio VAE file"),
        "{e}"
    );
    // The real config on the tiny file: mis-shaped keys.
    let e = err(AudioDecoder::load(&g, &src, AudioVaeConfig::ltx23(), WeightFormat::F32));
    assert!(e.contains("audio_vae.decoder.conv_in.conv.weight"), "{e}");
    let mut wrong = c.clone();
    wrong.audio_vae.model.params.ddconfig.norm_type = "group".into();
    let e = err(AudioDecoder::load(&g, &src, wrong, WeightFormat::F32));
    assert!(e.contains("pixel"), "{e}");
}

/// The encoder's front end: the slaney filterbank's triangles (peak 2/(f₊ − f₋) at the centre frequencies, zero
/// outside), the DFT basis, and a pure tone landing in the mel bin that holds its frequency.
#[test]
fn encoder_front_end_and_bad_waveforms() {
    let fb = slaney_mel_basis(513, 8000.0, 64, 16000.0);
    assert!(fb.iter().all(|&v| v >= 0.0));
    for m in 0..64 {
        assert!(fb[m * 513..(m + 1) * 513].iter().any(|&v| v > 0.0), "mel bin {m} is empty");
    }
    let b = stft_basis(8);
    // Row k = 0 is the window; row bins + 0 (the imaginary part of DC) is zero.
    let w: Vec<f32> = (0..8).map(|t| 0.5 - 0.5 * (std::f32::consts::PI * t as f32 / 4.0).cos()).collect();
    for t in 0..8 {
        assert!((b[t] - w[t]).abs() < 1e-6 && b[5 * 8 + t].abs() < 1e-6);
    }

    let g = gpu();
    let c = AudioVaeConfig::tiny();
    let src = SeededSource::new("seeded tiny audio VAE", &c.key_table(), 1);
    let enc = AudioEncoder::load(&g, &src, c.clone(), WeightFormat::F32).unwrap();
    // A 1 kHz tone: the strongest mel bin is the one whose triangle peaks nearest 1 kHz.
    let l = 3200;
    let tone: Vec<f32> =
        (0..2 * l).map(|i| (2.0 * std::f32::consts::PI * 1000.0 * (i % l) as f32 / 16000.0).sin() * 0.5).collect();
    let wave = g.upload_f32("tone", &tone, &[2, l]).unwrap();
    let mel = g.read_f32_blocking(&enc.waveform_to_mel(&g, &wave).unwrap()).unwrap();
    assert_eq!(mel.len(), 2 * 21 * 64);
    let frame = &mel[10 * 64..11 * 64];
    let best = (0..64).max_by(|&a, &b| frame[a].total_cmp(&frame[b])).unwrap();
    let col = 1000 * 1024 / 16000; // DFT bin of 1 kHz
    let peak = (0..64).max_by(|&a, &b| fb[a * 513 + col].total_cmp(&fb[b * 513 + col])).unwrap();
    assert!(best.abs_diff(peak) <= 1, "tone in mel bin {best}, filterbank peak at {peak}");
    let tokens = enc.encode(&g, &wave, None).unwrap();
    assert_eq!(tokens.shape(), &[6, 128]);

    for shape in [&[1, 3200][..], &[2, 100], &[3200]] {
        let x = g.upload_f32("wave", &vec![0.0; shape.iter().product()], shape).unwrap();
        let e = err(enc.encode(&g, &x, None));
        assert!(e.contains("waveform") && e.contains("expected [2, samples]"), "{shape:?}: {e}");
    }
}
