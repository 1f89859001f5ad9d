//! The Wan2.2 video VAE outside its oracle: the built-in configuration names exactly the official file's keys, real
//! decoder widths (1024/512 channels) against a plain CPU computation on small frames (residual block with its
//! chunk cache, single-head attention, the temporal upsampler, the DupUp3D / AvgDown3D shortcuts), the memory
//! accounting of a 704×1280 decode, the tiny model end to end, and the errors for bad input.

#[path = "fixtures/torch_writer.rs"]
mod torch_writer;

use std::path::PathBuf;

use nava::gpu::{Gpu, GpuOptions};
use nava::kernels::conv::{avg_down3d, dup_up3d};
use nava::kernels::gemm::WeightFormat;
use nava::model::video_vae::blocks::{AttentionBlock, FeatCache, Resample, ResidualBlock};
use nava::model::video_vae::image::{resize_center_crop, resize_lanczos};
use nava::model::video_vae::{
    decode_peak_bytes, latents_from_thwc, Precision, Tiling, VaeConfig, VaeParts, VideoVae, LATENT_MEAN, LATENT_STD,
};
use nava::weights::{Blob, Checkpoint, KeyTable, OfficialFile, Scope, SeededSource, TensorSource};

fn gpu() -> Gpu {
    Gpu::new_blocking(&GpuOptions::from_env()).expect("these tests need a GPU adapter (lavapipe is enough)")
}

fn err<T>(r: Result<T, nava::model::ModelError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[track_caller]
fn close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * scale,
            "{what}: element {i} is {g}, expected {w} (tolerance {tol} × {scale})"
        );
    }
}

fn seeded(n: usize, seed: u64) -> Vec<f32> {
    nava::bench::seeded(seed, n)
}

// ------------------------------------------------------------------------------------------------ CPU reference

/// `CausalConv3d` (stride 1): x `[cin, t, h, w]`, `cache` `[cin, nc, h, w]` in place of the last nc of the 2·pt
/// zero frames.
#[allow(clippy::too_many_arguments)]
fn conv3d(
    x: &[f64],
    cache: Option<(&[f64], usize)>,
    [cin, t, h, w]: [usize; 4],
    wt: &[f32],
    b: &[f32],
    cout: usize,
    [kt, kh, kw]: [usize; 3],
    [pt, ph, pw]: [usize; 3],
) -> Vec<f64> {
    let nc = cache.map_or(0, |c| c.1);
    let tp = 2 * pt + t;
    let frame = |c: usize, f: usize, r: isize, col: isize| -> f64 {
        if r < 0 || col < 0 || r >= h as isize || col >= w as isize {
            return 0.0;
        }
        let (r, col) = (r as usize, col as usize);
        let zeros = 2 * pt - nc;
        if f < zeros {
            0.0
        } else if f < 2 * pt {
            let (cv, n) = cache.expect("cache frames");
            cv[((c * n + f - zeros) * h + r) * w + col]
        } else {
            x[((c * t + f - 2 * pt) * h + r) * w + col]
        }
    };
    let to = tp - kt + 1;
    let mut y = vec![0.0; cout * to * h * w];
    for o in 0..cout {
        for f in 0..to {
            for r in 0..h {
                for col in 0..w {
                    let mut acc = b[o] as f64;
                    for c in 0..cin {
                        for a in 0..kt {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let wv = wt[(((o * cin + c) * kt + a) * kh + i) * kw + j] as f64;
                                    acc += wv
                                        * frame(
                                            c,
                                            f + a,
                                            r as isize + i as isize - ph as isize,
                                            col as isize + j as isize - pw as isize,
                                        );
                                }
                            }
                        }
                    }
                    y[((o * to + f) * h + r) * w + col] = acc;
                }
            }
        }
    }
    y
}

/// `F.normalize(x, dim=C)·√C·γ`, then SiLU when asked: x `[c, n]`.
fn rms(x: &[f64], c: usize, gamma: &[f32], silu: bool) -> Vec<f64> {
    let n = x.len() / c;
    let mut y = vec![0.0; x.len()];
    for p in 0..n {
        let norm = (0..c).map(|k| x[k * n + p].powi(2)).sum::<f64>().sqrt().max(1e-12);
        for k in 0..c {
            let v = x[k * n + p] / norm * (c as f64).sqrt() * gamma[k] as f64;
            y[k * n + p] = if silu { v / (1.0 + (-v).exp()) } else { v };
        }
    }
    y
}

/// The last two frames of `cat(cache, x)`.
fn next_cache(cache: Option<(&[f64], usize)>, x: &[f64], c: usize, t: usize, hw: usize) -> (Vec<f64>, usize) {
    let nc = cache.map_or(0, |c| c.1);
    let m = (nc + t).min(2);
    let mut out = vec![0.0; c * m * hw];
    for k in 0..c {
        for f in 0..m {
            let src = nc + t - m + f;
            let v = if src < nc {
                &cache.expect("cache").0[(k * nc + src) * hw..(k * nc + src + 1) * hw]
            } else {
                &x[(k * t + src - nc) * hw..(k * t + src - nc + 1) * hw]
            };
            out[(k * m + f) * hw..(k * m + f + 1) * hw].copy_from_slice(v);
        }
    }
    (out, m)
}

fn source(table: &KeyTable) -> SeededSource {
    SeededSource::new("seeded block", table, 7)
}

fn get(src: &SeededSource, key: &str) -> Vec<f32> {
    src.f32(key).unwrap()
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

// ------------------------------------------------------------------------------------------------ key tables

#[test]
fn wan22_key_table_matches_the_official_file() {
    let ours = VaeConfig::wan22().key_table();
    let table = OfficialFile::WanVae.table();
    assert_eq!(ours, table.keys, "the embedded table, in module order");
    let config: VaeConfig = serde_json::from_value(table.config).unwrap();
    assert_eq!(config, VaeConfig::wan22());
    let params: usize = ours.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    assert_eq!(params, 704_688_668);
    let root = nava::oracle::root(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracles"));
    for dir in nava::oracle::cases_of(&root, "wan22_vae") {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("keys_full.json")).unwrap()).unwrap();
        let config: VaeConfig = serde_json::from_value(v["config"].clone()).unwrap();
        assert_eq!(config, VaeConfig::wan22(), "{}", dir.display());
        // The case's own (tiny) config names exactly its weights file.
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let tiny: VaeConfig = serde_json::from_value(meta["config"].clone()).unwrap();
        let names: Vec<String> = tiny.key_table().into_iter().map(|(k, _)| k).collect();
        let want: Vec<String> = meta["weights"]["keys"].as_object().unwrap().keys().cloned().collect();
        let (mut a, mut b) = (names.clone(), want);
        a.sort();
        b.sort();
        assert_eq!(a, b, "{}", dir.display());
    }
    assert_eq!(LATENT_MEAN.len(), 48);
    assert_eq!(LATENT_STD.len(), 48);
}

// ------------------------------------------------------------------------------------------------ real widths

#[test]
fn residual_block_1024_to_512_with_cache_matches_cpu() {
    let (cin, cout, h, w) = (1024, 512, 2, 3);
    let mut t = KeyTable::new();
    ResidualBlock::keys(&mut t, "b", cin, cout);
    let src = source(&t);
    let g = gpu();
    let scope = Scope::root(&src, "b.");
    let block = ResidualBlock::load(&g, scope, cin, cout, Precision::F32).unwrap();
    let (w2, b2) = (get(&src, "b.residual.2.weight"), get(&src, "b.residual.2.bias"));
    let (w6, b6) = (get(&src, "b.residual.6.weight"), get(&src, "b.residual.6.bias"));
    let (ws, bs) = (get(&src, "b.shortcut.weight"), get(&src, "b.shortcut.bias"));
    let (g0, g3) = (get(&src, "b.residual.0.gamma"), get(&src, "b.residual.3.gamma"));
    let hw = h * w;
    let mut fc = FeatCache::new();
    let mut caches: [Option<(Vec<f64>, usize)>; 2] = [None, None];
    // Two chunks of one frame: the second convolves over the first's cached frames.
    for chunk in 0..2 {
        let x = seeded(cin * hw, 10 + chunk);
        let xg = g.upload_f32("x", &x, &[cin, 1, h, w]).unwrap();
        fc.rewind();
        let y = g.read_f32_blocking(&block.forward(&g, &xg, &mut fc).unwrap()).unwrap();
        let x64 = to64(&x);
        let sc = conv3d(&x64, None, [cin, 1, h, w], &ws, &bs, cout, [1; 3], [0; 3]);
        let a = rms(&x64, cin, &g0, true);
        let c0 = caches[0].as_ref().map(|(v, n)| (v.as_slice(), *n));
        let y1 = conv3d(&a, c0, [cin, 1, h, w], &w2, &b2, cout, [3; 3], [1; 3]);
        let new0 = next_cache(c0, &a, cin, 1, hw);
        let b = rms(&y1, cout, &g3, true);
        let c1 = caches[1].as_ref().map(|(v, n)| (v.as_slice(), *n));
        let y2 = conv3d(&b, c1, [cout, 1, h, w], &w6, &b6, cout, [3; 3], [1; 3]);
        let new1 = next_cache(c1, &b, cout, 1, hw);
        caches = [Some(new0), Some(new1)];
        let want: Vec<f64> = y2.iter().zip(&sc).map(|(a, b)| a + b).collect();
        close(&format!("residual block chunk {chunk}"), &y, &want, 1e-4);
    }
}

#[test]
fn attention_block_1024_matches_cpu() {
    let (c, h, w) = (1024, 3, 2);
    let l = h * w;
    let mut t = KeyTable::new();
    AttentionBlock::keys(&mut t, "a", c);
    let src = source(&t);
    let g = gpu();
    let block = AttentionBlock::load(&g, Scope::root(&src, "a."), c, Precision::F32).unwrap();
    let x = seeded(c * l, 3);
    let y = block.forward(&g, &g.upload_f32("x", &x, &[c, 1, h, w]).unwrap()).unwrap();
    let y = g.read_f32_blocking(&y).unwrap();
    let x64 = to64(&x);
    let xn = rms(&x64, c, &get(&src, "a.norm.gamma"), false);
    let (wq, bq) = (get(&src, "a.to_qkv.weight"), get(&src, "a.to_qkv.bias"));
    let qkv: Vec<f64> = (0..3 * c)
        .flat_map(|o| {
            let (wq, bq, xn) = (&wq, &bq, &xn);
            (0..l).map(move |p| bq[o] as f64 + (0..c).map(|k| wq[o * c + k] as f64 * xn[k * l + p]).sum::<f64>())
        })
        .collect();
    let mut o = vec![0.0; c * l];
    for i in 0..l {
        let s: Vec<f64> = (0..l)
            .map(|j| (0..c).map(|k| qkv[k * l + i] * qkv[(c + k) * l + j]).sum::<f64>() / (c as f64).sqrt())
            .collect();
        let m = s.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
        let z: f64 = e.iter().sum();
        for k in 0..c {
            o[k * l + i] = (0..l).map(|j| e[j] / z * qkv[(2 * c + k) * l + j]).sum();
        }
    }
    let (wp, bp) = (get(&src, "a.proj.weight"), get(&src, "a.proj.bias"));
    let want: Vec<f64> = (0..c)
        .flat_map(|r| {
            let (wp, bp, o, x64) = (&wp, &bp, &o, &x64);
            (0..l).map(move |p| {
                x64[r * l + p] + bp[r] as f64 + (0..c).map(|k| wp[r * c + k] as f64 * o[k * l + p]).sum::<f64>()
            })
        })
        .collect();
    close("attention block", &y, &want, 1e-4);
}

#[test]
fn temporal_upsample_1024_over_three_chunks_matches_cpu() {
    let (c, h, w) = (1024, 2, 2);
    let hw = h * w;
    let mut t = KeyTable::new();
    Resample::keys(&mut t, "r", c, true, true);
    let src = source(&t);
    let g = gpu();
    let r = Resample::load(&g, Scope::root(&src, "r."), c, true, true, Precision::F32).unwrap();
    let (wt, bt) = (get(&src, "r.time_conv.weight"), get(&src, "r.time_conv.bias"));
    let (wr, br) = (get(&src, "r.resample.1.weight"), get(&src, "r.resample.1.bias"));
    let mut fc = FeatCache::new();
    let mut cache: Option<(Vec<f64>, usize)> = None;
    for chunk in 0..3u64 {
        let x = seeded(c * hw, 20 + chunk);
        fc.rewind();
        let y = r.forward(&g, &g.upload_f32("x", &x, &[c, 1, h, w]).unwrap(), &mut fc).unwrap();
        let y = g.read_f32_blocking(&y).unwrap();
        let x64 = to64(&x);
        // Chunk 0 skips time_conv; chunk 1 convolves over zero padding; chunk 2 over the cached frame.
        let (frames, nf) = if chunk == 0 {
            (x64.clone(), 1)
        } else {
            let cv = cache.as_ref().map(|(v, n)| (v.as_slice(), *n));
            let tc = conv3d(&x64, cv, [c, 1, h, w], &wt, &bt, 2 * c, [3, 1, 1], [1, 0, 0]);
            cache = Some(next_cache(cv, &x64, c, 1, hw));
            // [2, C, 1, hw] → [C, 2, hw]
            let mut inter = vec![0.0; 2 * c * hw];
            for half in 0..2 {
                for k in 0..c {
                    inter[(k * 2 + half) * hw..(k * 2 + half + 1) * hw]
                        .copy_from_slice(&tc[(half * c + k) * hw..(half * c + k + 1) * hw]);
                }
            }
            (inter, 2)
        };
        // nearest ×2 then Conv2d 3×3 (pad 1), per frame.
        let (h2, w2) = (2 * h, 2 * w);
        let mut up = vec![0.0; c * nf * h2 * w2];
        for k in 0..c * nf {
            for rr in 0..h2 {
                for cc in 0..w2 {
                    up[(k * h2 + rr) * w2 + cc] = frames[(k * h + rr / 2) * w + cc / 2];
                }
            }
        }
        let w3: Vec<f32> = wr.clone(); // [C, C, 3, 3] as a (1, 3, 3) 3-D kernel
        let want = conv3d(&up, None, [c, nf, h2, w2], &w3, &br, c, [1, 3, 3], [0, 1, 1]);
        close(&format!("upsample3d chunk {chunk}"), &y, &want, 1e-4);
    }
}

#[test]
fn dup_up_and_avg_down_shortcuts_match_cpu() {
    let g = gpu();
    // DupUp3D: repeat_interleave then (time, row, column) offsets, as the reference's view/permute.
    for (cin, cout, ft, first) in
        [(1024, 1024, 2, false), (1024, 1024, 2, true), (1024, 512, 1, false), (6, 3, 2, false)]
    {
        let (t, h, w, fs) = (2, 2, 3, 2);
        let x = seeded(cin * t * h * w, 5);
        let y = dup_up3d(&g, &g.upload_f32("x", &x, &[cin, t, h, w]).unwrap(), cout, ft, fs, first).unwrap();
        let y = g.read_f32_blocking(&y).unwrap();
        let f = ft * fs * fs;
        let rep = cout * f / cin;
        let (t2, h2, w2) = (t * ft, h * fs, w * fs);
        let mut full = vec![0.0f64; cout * t2 * h2 * w2];
        for o in 0..cout {
            for j in 0..f {
                let src = (o * f + j) / rep;
                let (a, b, cc) = (j / (fs * fs), (j / fs) % fs, j % fs);
                for tt in 0..t {
                    for r in 0..h {
                        for col in 0..w {
                            full[((o * t2 + tt * ft + a) * h2 + r * fs + b) * w2 + col * fs + cc] =
                                x[((src * t + tt) * h + r) * w + col] as f64;
                        }
                    }
                }
            }
        }
        let drop = if first { ft - 1 } else { 0 };
        let want: Vec<f64> =
            (0..cout).flat_map(|o| full[(o * t2 + drop) * h2 * w2..(o + 1) * t2 * h2 * w2].to_vec()).collect();
        close(&format!("dup_up3d {cin}→{cout} ft {ft} first {first}"), &y, &want, 1e-6);
    }
    // AvgDown3D with a frame count that needs front padding.
    for (cin, cout, ft, t) in [(320, 640, 2, 3), (4, 8, 2, 4), (4, 4, 1, 1)] {
        let (h, w, fs) = (4, 2, 2);
        let x = seeded(cin * t * h * w, 6);
        let y = avg_down3d(&g, &g.upload_f32("x", &x, &[cin, t, h, w]).unwrap(), cout, ft, fs).unwrap();
        let y = g.read_f32_blocking(&y).unwrap();
        let pad = (ft - t % ft) % ft;
        let (t2, h2, w2) = ((t + pad) / ft, h / fs, w / fs);
        let f = ft * fs * fs;
        let group = cin * f / cout;
        let mut want = vec![0.0f64; cout * t2 * h2 * w2];
        for o in 0..cout {
            for tt in 0..t2 {
                for r in 0..h2 {
                    for col in 0..w2 {
                        let mut s = 0.0;
                        for gi in 0..group {
                            let k = o * group + gi;
                            let (c, j) = (k / f, k % f);
                            let (a, b, cc) = (j / (fs * fs), (j / fs) % fs, j % fs);
                            let fr = (tt * ft + a) as isize - pad as isize;
                            if fr >= 0 {
                                s += x[((c * t + fr as usize) * h + r * fs + b) * w + col * fs + cc] as f64;
                            }
                        }
                        want[((o * t2 + tt) * h2 + r) * w2 + col] = s / group as f64;
                    }
                }
            }
        }
        close(&format!("avg_down3d {cin}→{cout} ft {ft} T {t}"), &y, &want, 1e-6);
    }
    let bad = g.upload_f32("x", &[0.0; 24], &[2, 1, 3, 4]).unwrap();
    assert!(dup_up3d(&g, &bad, 3, 2, 2, false).unwrap_err().to_string().contains("multiple"));
}

// ------------------------------------------------------------------------------------------------ memory

#[test]
fn decoding_704x1280_with_37_latent_frames_fits_4_gib_when_tiled() {
    const GIB: u64 = 1 << 30;
    let c = VaeConfig::wan22();
    let untiled = decode_peak_bytes(&c, [44, 80], 37, None);
    assert!(untiled.total > 4 * GIB, "untiled needs {untiled:?}");
    let tiling = Tiling::for_budget(&c, [44, 80], 37, 4 * GIB).unwrap().expect("tiling is needed");
    let tiled = decode_peak_bytes(&c, [44, 80], 37, Some(&tiling));
    println!("untiled {untiled:?}\ntiled {tiling:?}: {tiled:?}");
    assert!(tiled.total <= 4 * GIB, "{tiled:?}");
    assert!(tiled.weights > 2 * GIB, "f32 decoder weights alone are ~2.2 GB: {tiled:?}");
    // The CLI default tile is the reference's; its tiles cover the frame.
    let tasks = Tiling::CLI_DEFAULT.tasks(44, 80);
    assert_eq!(tasks.first(), Some(&(0, 22, 0, 40)));
    assert!(tasks.iter().any(|t| t.1 == 44) && tasks.iter().any(|t| t.3 == 80));
    // Thin latents still get a tile (or an error), never a panic.
    for hw in [[1, 80], [44, 1], [1, 1]] {
        let _ = Tiling::for_budget(&c, hw, 37, 4 * GIB);
    }
    // Too little memory is an error that says how much is needed.
    let e = err(Tiling::for_budget(&c, [44, 80], 37, GIB));
    assert!(e.contains("GiB"), "{e}");
}

#[test]
fn tiny_decode_peak_stays_within_the_computed_bound() {
    let g = gpu();
    let c = VaeConfig::tiny();
    let src = SeededSource::new("seeded tiny VAE", &c.key_table(), 3);
    let vae = VideoVae::load_parts(&g, &src, c.clone(), WeightFormat::F32, VaeParts::DECODER).unwrap();
    let (f, h, w) = (3, 4, 6);
    let z = g.upload_f32("z", &seeded(48 * f * h * w, 4), &[48, f, h, w]).unwrap();
    g.wait().unwrap();
    g.reset_peak_memory();
    let frames = vae.decode_all(&g, &z, None).unwrap();
    assert_eq!(frames.len(), 4 * (f - 1) + 1);
    assert!(frames.iter().all(|fr| fr.height == 64 && fr.width == 96 && fr.data.iter().all(|v| v.abs() <= 1.0)));
    let measured = g.memory().peak_bytes;
    let bound = decode_peak_bytes(&c, [h, w], f, None);
    println!("measured {measured} bytes, computed {bound:?}");
    assert!(measured <= bound.total, "measured {measured} > computed {bound:?}");
    assert!(bound.total <= 3 * measured, "the bound is loose: {bound:?} vs {measured}");
    // Tiled: same frame count, all clamped.
    let t = Tiling::new([2, 4], [1, 2]).unwrap();
    g.wait().unwrap();
    g.reset_peak_memory();
    let tiled = vae.decode_all(&g, &z, Some(&t)).unwrap();
    assert_eq!(tiled.len(), frames.len());
    let measured = g.memory().peak_bytes;
    let bound = decode_peak_bytes(&c, [h, w], f, Some(&t));
    println!("tiled: measured {measured} bytes, computed {bound:?}");
    assert!(measured <= bound.total, "tiled: measured {measured} > computed {bound:?}");
    // The channels-last latent of the pipeline decodes the same.
    let zh = g.read_f32_blocking(&z).unwrap();
    let thwc: Vec<f32> =
        (0..f * h * w).flat_map(|p| (0..48).map(move |c| (c, p))).map(|(c, p)| zh[c * f * h * w + p]).collect();
    let zt = latents_from_thwc(&g, &g.upload_f32("z", &thwc, &[f, h, w, 48]).unwrap()).unwrap();
    assert_eq!(vae.decode_all(&g, &zt, None).unwrap(), frames);
    // One latent frame decodes to one frame (the first chunk skips the temporal upsample).
    let z1 = g.upload_f32("z", &seeded(48 * h * w, 8), &[48, 1, h, w]).unwrap();
    assert_eq!(vae.decode_all(&g, &z1, None).unwrap().len(), 1);
    assert_eq!(vae.decode_all(&g, &z1, Some(&t)).unwrap().len(), 1);
}

// ------------------------------------------------------------------------------------------------ bad input

#[test]
fn bad_inputs_get_clear_errors() {
    let g = gpu();
    let c = VaeConfig::tiny();
    let src = SeededSource::new("seeded tiny VAE", &c.key_table(), 3);
    let vae = VideoVae::load(&g, &src, c.clone(), WeightFormat::F32).unwrap();
    let z16 = g.upload_f32("z", &[0.0; 16 * 2 * 2 * 2], &[16, 2, 2, 2]).unwrap();
    let e = err(vae.decode_all(&g, &z16, None));
    assert!(e.contains("16 channels") && e.contains("48"), "{e}");
    let bad = Tiling { tile: [2, 2], stride: [0, 3] };
    let zt = g.upload_f32("z", &[0.0; 48 * 4], &[48, 1, 2, 2]).unwrap();
    assert!(err(vae.decode_all(&g, &zt, Some(&bad))).contains("stride"));
    let z3 = g.upload_f32("z", &[0.0; 48 * 4], &[48, 2, 2]).unwrap();
    assert!(err(vae.decode_all(&g, &z3, None)).contains("[48, F, h, w]"));
    let video = g.upload_f32("v", &vec![0.0; 3 * 48 * 40], &[3, 1, 48, 40]).unwrap();
    let e = err(vae.encode(&g, &video, None));
    assert!(e.contains("multiples of 32"), "{e}");
    let video = g.upload_f32("v", &vec![0.0; 3 * 2 * 32 * 32], &[3, 2, 32, 32]).unwrap();
    assert!(err(vae.encode(&g, &video, None)).contains("1 + 4·k frames"));
    let e = err(resize_center_crop(&[0; 3 * 8 * 8], 8, 8, 100, 64));
    assert!(e.contains("multiples of 32"), "{e}");
    // Another model's file: the Wan2.1 VAE (16 latent channels) and the UMT5 encoder.
    let wan21 = VaeConfig { z_dim: 16, ..VaeConfig::wan22() };
    for table in [wan21.key_table(), OfficialFile::Umt5.table().keys] {
        let other = SeededSource::new("other.pth", &table, 1);
        let e = err(VideoVae::load(&g, &other, VaeConfig::wan22(), WeightFormat::F32));
        assert!(e.contains("Wan2.2 VAE"), "{e}");
    }
    // A torch.save archive of the Wan2.1 VAE's layout (16 latent channels), read like the official `.pth`.
    let small = VaeConfig { z_dim: 16, ..VaeConfig::tiny() };
    let tensors: Vec<torch_writer::GenTensor> = small
        .key_table()
        .iter()
        .enumerate()
        .map(|(i, (k, shape))| {
            let n: usize = shape.iter().product();
            let bytes = vec![0u8; 4 * n];
            torch_writer::GenTensor::new(k, "FloatStorage", &i.to_string(), bytes).view(
                0,
                shape,
                &torch_writer::contiguous(shape),
            )
        })
        .collect();
    let pth =
        Checkpoint::from_blob("Wan2.1_VAE.pth", Blob::from_vec(torch_writer::torch_save("archive", &tensors, false)))
            .unwrap();
    let e = err(VideoVae::load(&g, &pth, VaeConfig::tiny(), WeightFormat::F32));
    assert!(e.contains("Wan2.1_VAE.pth") && e.contains("Wan2.2 VAE"), "{e}");
    // Any other checkpoint, e.g. the reader's fixture state dict.
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_state_dict.pth");
    let other = Checkpoint::open(&fixture).unwrap();
    let e = err(VideoVae::load(&g, &other, VaeConfig::wan22(), WeightFormat::F32));
    assert!(e.contains("tiny_state_dict.pth") && e.contains("Wan2.2 VAE"), "{e}");
    let e = err(VaeConfig::from_json(
        r#"{"dim": 8, "dec_dim": 8, "z_dim": 48, "dim_mult": [1, 3, 4, 4], "num_res_blocks": 2, "temperal_downsample": [false, true, true]}"#,
    ));
    assert!(e.contains("whole factors"), "{e}");
}

#[test]
fn lanczos_resize_keeps_flat_images_and_crops_the_centre() {
    // A flat image stays flat through Pillow's normalised Lanczos filter; a ramp stays monotonic.
    let flat = vec![200u8; 30 * 20 * 3];
    assert!(resize_lanczos(&flat, 30, 20, 13, 7).iter().all(|&v| v == 200));
    let ramp: Vec<u8> = (0..20).flat_map(|_| (0..30).flat_map(|x| [(x * 8) as u8; 3])).collect();
    let r = resize_lanczos(&ramp, 30, 20, 64, 20);
    let row: Vec<u8> = (0..64).map(|x| r[x * 3]).collect();
    assert!(row.windows(2).all(|p| p[1] as i32 >= p[0] as i32 - 2), "{row:?}");
    // 100×50 into 64×64: scaled to 128×64, the middle 64 columns kept.
    let img: Vec<u8> = (0..50).flat_map(|_| (0..100).flat_map(|x| [if x < 50 { 0 } else { 255 }; 3])).collect();
    let out = resize_center_crop(&img, 100, 50, 64, 64).unwrap();
    assert_eq!(out.len(), 3 * 64 * 64);
    assert!((out[0] + 1.0).abs() < 1e-6 && (out[63] - 1.0).abs() < 1e-6);
}

/// The formula image of `tests/fixtures/make_lanczos_fixture.py`.
fn formula_image(w: usize, h: usize) -> Vec<u8> {
    (0..h)
        .flat_map(|y| {
            (0..w).flat_map(move |x| (0..3).map(move |c| ((x * 37 + y * 91 + c * 53 + (x * y) % 17 * 7) % 256) as u8))
        })
        .collect()
}

#[test]
fn lanczos_resize_and_centre_crop_equal_pillow() {
    let want = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lanczos_pil.bin")).unwrap();
    let mut at = 0;
    let img = formula_image(37, 23);
    for (ow, oh) in [(16, 10), (64, 40), (37, 9), (100, 23)] {
        let got = resize_lanczos(&img, 37, 23, ow, oh);
        let n = ow * oh * 3;
        let diff = got.iter().zip(&want[at..at + n]).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "37×23 → {ow}×{oh}: {diff} of {n} bytes differ from Pillow");
        at += n;
    }
    // `_resize_center_crop(image, 64, 96)` then v / 255 · 2 − 1.
    let got = resize_center_crop(&formula_image(100, 45), 100, 45, 64, 96).unwrap();
    let bytes = &want[at..];
    assert_eq!(bytes.len(), 64 * 96 * 3);
    for y in 0..64 {
        for x in 0..96 {
            for c in 0..3 {
                let v = bytes[(y * 96 + x) * 3 + c] as f32 / 255.0 * 2.0 - 1.0;
                assert_eq!(got[(c * 64 + y) * 96 + x], v, "pixel ({x}, {y}) channel {c}");
            }
        }
    }
}
