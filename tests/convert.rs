//! `nava convert` and `nava inspect --expect` (src/weights/{convert,pack,manifest,tables,store}.rs): small bf16
//! and fp8 checkpoints written here are converted in every mode with a small shard limit, so arrays are split
//! across shards, and read back through `ManifestSource`.
//!
//! Value checks: plain tensors and `none`/`f32`/`f16`-of-bf16/fp8 pass-through are exact; packed words equal
//! `PackedWeight::quantize` of the source (so the kernels read them as they are); the stated bounds on
//! max |Wq − W| / max |W| are q8 1/254, q4 1/14 and fp8 1/16 (half a step of each format, relative to the
//! block or channel maximum), each with 1% for the f16 rounding of scales.

use std::path::{Path, PathBuf};

use nava::kernels::gemm::{f32_to_e4m3, PackedWeight, WeightFormat};
use nava::model::dit::DitConfig;
use nava::model::KnownModel;
use nava::weights::manifest::{packed_layout, Stored};
use nava::weights::pack::{quantize_fp8, E4m3Rounder};
use nava::weights::{
    compare_keys, convert, write_safetensors, ConvertOptions, Manifest, ManifestSource, ModelInput, ModelReport,
    OfficialFile, Quant, Safetensors, Scope, TensorData, TensorSource, WeightDType, WeightError,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------- helpers

fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nava-convert-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir is writable");
    d
}

fn oracles() -> PathBuf {
    nava::oracle::root(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles"))
}

fn rand_vec(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut r = SmallRng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.0f32..1.0) * scale).collect()
}

fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect()
}
fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A tensor to write: name, dtype, shape, bytes.
type Spec = (String, WeightDType, Vec<usize>, Vec<u8>);

fn write(path: &Path, specs: &[Spec]) {
    let data: Vec<TensorData<'_>> =
        specs.iter().map(|(n, d, s, b)| TensorData { name: n, dtype: *d, shape: s, bytes: b }).collect();
    write_safetensors(path, &data, &[]).expect("test file written");
}

/// A DiT-like bf16 file: block linears (sizes not multiples of the pack tiles), a conv, norms, biases, a
/// modulation table in f32, a small head that stays plain, and an embedding table that is never packed.
fn dit_like() -> Vec<Spec> {
    let bf = |name: &str, shape: &[usize], seed: u64, scale: f32| -> Spec {
        let n = shape.iter().product();
        (name.to_string(), WeightDType::BF16, shape.to_vec(), bf16_bytes(&rand_vec(seed, n, scale)))
    };
    vec![
        bf("backbone.token_embedding.weight", &[600, 256], 1, 1.0),
        bf("backbone.patch_embedding_audio.2.w1.weight", &[256, 40, 7], 2, 0.05),
        bf("backbone.double_blocks.0.self_attn.q.weight", &[258, 300], 3, 0.1),
        bf("backbone.double_blocks.0.self_attn.q.bias", &[258], 4, 0.1),
        bf("backbone.double_blocks.0.self_attn.norm_q.weight", &[300], 5, 1.0),
        bf("backbone.double_blocks.0.ffn.0.weight", &[512, 258], 6, 0.02),
        bf("backbone.double_blocks.0.ffn.0.bias", &[512], 7, 0.02),
        (
            "backbone.double_blocks.0.modulation.modulation".to_string(),
            WeightDType::F32,
            vec![1, 6, 258],
            f32_bytes(&rand_vec(8, 6 * 258, 0.5)),
        ),
        bf("backbone.head.head.weight", &[192, 258], 9, 0.1),
    ]
}

/// The fp8 checkpoint's layout: F8_E4M3 block linears with a bf16 `weight_scale` (per tensor and per channel).
fn fp8_like() -> Vec<Spec> {
    let mut r = SmallRng::seed_from_u64(11);
    let mut fp8 = |name: &str, n: usize, k: usize| -> Spec {
        let bytes = (0..n * k).map(|_| f32_to_e4m3(r.random_range(-448.0f32..448.0))).collect();
        (name.to_string(), WeightDType::F8E4M3, vec![n, k], bytes)
    };
    let q = fp8("backbone.single_blocks.0.self_attn.q.weight", 258, 300);
    let ffn = fp8("backbone.single_blocks.0.ffn.2.weight", 300, 512);
    vec![
        q,
        ("backbone.single_blocks.0.self_attn.q.weight_scale".into(), WeightDType::BF16, vec![], bf16_bytes(&[0.002])),
        ffn,
        (
            "backbone.single_blocks.0.ffn.2.weight_scale".into(),
            WeightDType::BF16,
            vec![300],
            bf16_bytes(&rand_vec(12, 300, 0.001).iter().map(|v| v.abs() + 1e-4).collect::<Vec<_>>()),
        ),
        (
            "backbone.single_blocks.0.norm3.weight".into(),
            WeightDType::BF16,
            vec![300],
            bf16_bytes(&rand_vec(13, 300, 1.0)),
        ),
    ]
}

const LIMIT: u64 = 64 << 10;

fn run_convert(dir: &Path, src: &dyn TensorSource, quant: Quant) -> Result<Vec<ModelReport>, WeightError> {
    let input = ModelInput {
        name: "nava-dit".into(),
        source_name: "test.safetensors".into(),
        source: src,
        config: serde_json::json!({"dim": 258}),
        quant,
    };
    let opts = ConvertOptions { shard_limit_bytes: LIMIT, overwrite: false };
    let mut last = None;
    let r = convert(dir, &[input], &opts, &mut |p| last = Some((p.bytes_done, p.bytes_total)));
    if r.is_ok() {
        let (done, total) = last.expect("progress reported");
        assert_eq!(done, total, "progress ends at the total");
    }
    r
}

fn err_text<T>(r: Result<T, WeightError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// Each shard's data section stays within the limit unless it holds a single row of one array.
fn check_shards(dir: &Path) -> Manifest {
    let m = Manifest::read(dir).expect("manifest");
    for model in &m.models {
        for s in &model.shards {
            let st = Safetensors::open(dir.join(&s.file)).expect("shard opens");
            let data = s.bytes - st.header().data_start();
            assert!(data <= m.shard_limit_bytes, "{} holds {data} bytes", s.file);
        }
    }
    m
}

// ---------------------------------------------------------------- tables and packing

#[test]
fn embedded_tables_equal_the_oracle_tables() {
    for f in OfficialFile::ALL {
        let t = f.table();
        let mut keys = Vec::new();
        let mut config = serde_json::Map::new();
        for case in &t.oracles {
            let path = oracles().join(case).join("keys_full.json");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let j: serde_json::Value = serde_json::from_str(&text).expect("keys_full.json parses");
            match &j["keys"] {
                serde_json::Value::Object(m) => keys.extend(m.iter().map(|(k, v)| (k.clone(), v.clone()))),
                serde_json::Value::Array(a) => {
                    keys.extend(a.iter().map(|e| (e[0].as_str().expect("name").to_string(), e[1].clone())))
                }
                _ => panic!("{case}: keys is neither a map nor a list"),
            }
            config.extend(j["config"].as_object().expect("config object").clone());
        }
        // serde_json's map is sorted, so the tables are compared as sorted lists (key order carries no meaning).
        let mut want: Vec<(String, Vec<usize>)> = keys
            .into_iter()
            .map(|(k, s)| (k, s.as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize).collect()))
            .collect();
        let mut got = t.keys.clone();
        want.sort();
        got.sort();
        let only_here: Vec<_> = got.iter().filter(|k| !want.contains(k)).collect();
        let only_there: Vec<_> = want.iter().filter(|k| !got.contains(k)).collect();
        assert!(
            got == want,
            "{f:?} differs from {:?}: embedded only {only_here:?}, oracle only {only_there:?}",
            t.oracles
        );
        assert_eq!(t.config, serde_json::Value::Object(config), "{f:?}: config");
    }
    assert_eq!(KnownModel::NavaDit.key_table(), DitConfig::nava_6b().key_table("backbone."));
    let ltx = KnownModel::LtxAudioVae.key_table();
    assert!(ltx.iter().any(|(k, _)| k.starts_with("audio_vae.decoder.")));
    assert!(ltx.iter().any(|(k, _)| k.starts_with("vocoder.bwe_generator.")));
    for m in KnownModel::ALL {
        assert_eq!(KnownModel::parse(m.name()), Some(m));
        assert!(m.config().is_object(), "{m:?} config");
    }
}

#[test]
fn packed_layout_matches_packed_weight() {
    for format in WeightFormat::ALL {
        for (n, k) in [(1, 1), (5, 33), (258, 300), (256, 448)] {
            let w = rand_vec(n as u64 * 7 + k as u64, n * k, 1.0);
            let p = PackedWeight::quantize(format, n, k, &w);
            let (words, scales) = packed_layout(format, n, k);
            assert_eq!(words.iter().product::<usize>(), p.words.len(), "{format:?} {n}x{k} words");
            assert_eq!(scales.map_or(0, |s| s.iter().product()), p.scales.len(), "{format:?} {n}x{k} scales");
        }
    }
}

#[test]
fn fast_fp8_rounding_matches_the_reference() {
    let r = E4m3Rounder::new();
    let mut values: Vec<f32> = vec![0.0, -0.0, 448.0, -448.0, 464.0, 1e9, -1e9, f32::MIN_POSITIVE, 1e-9, f32::NAN];
    let mags: Vec<f32> = (0u8..=0x7e).map(nava::kernels::gemm::e4m3_to_f32).collect();
    for p in mags.windows(2) {
        let mid = (p[0] + p[1]) / 2.0;
        values.extend([p[0], mid, f32::from_bits(mid.to_bits() + 1), f32::from_bits(mid.to_bits() - 1), -mid]);
    }
    values.extend(rand_vec(21, 20000, 500.0));
    values.extend(rand_vec(22, 20000, 0.05));
    for v in values {
        assert_eq!(r.round(v), f32_to_e4m3(v), "{v:e}");
    }
    let w = rand_vec(23, 37 * 41, 3.0);
    let (a, b) = (quantize_fp8(37, 41, &w), PackedWeight::quantize(WeightFormat::Fp8, 37, 41, &w));
    assert_eq!((a.words, a.scales), (b.words, b.scales));
}

// ---------------------------------------------------------------- conversion round trips

fn bound(format: WeightFormat) -> f32 {
    match format {
        WeightFormat::Q8 => 1.0 / 254.0 * 1.01,
        WeightFormat::Q4 => 1.0 / 14.0 * 1.01,
        WeightFormat::Fp8 => 1.0 / 16.0 * 1.01,
        WeightFormat::F16 => 1.0 / 2048.0,
        WeightFormat::F32 | WeightFormat::BF16 => 0.0,
    }
}

#[test]
fn bf16_dit_like_file_in_every_mode() {
    let dir = scratch("bf16");
    let file = dir.join("dit.safetensors");
    write(&file, &dit_like());
    let src = Safetensors::open(&file).expect("source");
    for quant in Quant::ALL {
        let out = dir.join(format!("out-{}", quant.name()));
        let reports = run_convert(&out, &src, quant).unwrap_or_else(|e| panic!("{quant:?}: {e}"));
        let m = check_shards(&out);
        let model = &m.models[0];
        assert_eq!(
            (model.name.as_str(), model.quant.as_str(), model.source.as_str()),
            ("nava-dit", quant.name(), "test.safetensors")
        );
        assert_eq!(model.config, serde_json::json!({"dim": 258}));
        assert!(model.shards.len() > 2, "{quant:?}: the small limit spreads the file over shards");
        assert!(model.tensors.iter().any(|t| t.parts.len() > 1), "{quant:?}: an array is split across shards");
        let emb = model.tensors.iter().find(|t| t.name == "backbone.token_embedding.weight").expect("embedding");
        assert!(emb.parts.len() > 1 && emb.packed_format().is_none(), "the embedding is split by rows, never packed");

        let conv = ManifestSource::open(&out, "nava-dit").expect("open converted");
        assert_eq!(
            conv.tensors().iter().map(|t| (&t.name, &t.shape)).collect::<Vec<_>>(),
            src.tensors().iter().map(|t| (&t.name, &t.shape)).collect::<Vec<_>>(),
            "{quant:?}: names and shapes"
        );
        let mut packed = 0;
        for t in src.tensors() {
            let want = src.f32(&t.name).expect("source values");
            let got = conv.f32(&t.name).expect("converted values");
            match conv.packed(&t.name).expect("packed reads") {
                None => {
                    assert_eq!(got, want, "{quant:?} {}: plain tensors are exact", t.name);
                    let stored = conv.info(&t.name).expect("info").dtype;
                    assert_eq!(stored, if quant == Quant::F32 { WeightDType::F32 } else { t.dtype }, "{}", t.name);
                }
                Some(p) => {
                    packed += 1;
                    let expected_format = match quant {
                        Quant::F16 => WeightFormat::BF16, // bf16 weights keep their bits
                        q => WeightFormat::parse(q.name()).expect("a packed mode"),
                    };
                    assert_eq!(p.format, expected_format);
                    let reference = PackedWeight::quantize(p.format, p.n, p.k, &want);
                    assert!(
                        p.words == reference.words && p.scales == reference.scales,
                        "{quant:?} {}: GPU words",
                        t.name
                    );
                    assert_eq!(got, p.dequantize(), "view() gives the dequantised values");
                    let e = conv.entry(&t.name).and_then(|e| e.max_rel_err).expect("error recorded");
                    let amax = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let dmax = want.iter().zip(&got).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                    assert!((e - dmax / amax).abs() <= 1e-6 && e <= bound(p.format), "{quant:?} {}: {e}", t.name);
                }
            }
        }
        let want_packed = if matches!(quant, Quant::None) { 0 } else { 3 }; // q, ffn.0, the conv
        assert_eq!((packed, reports[0].packed), (want_packed, want_packed), "{quant:?}: packed tensors");
        assert_eq!(reports[0].tensors, src.tensors().len());
        let s = Scope::root(&conv, "backbone.");
        assert_eq!(
            s.f32("double_blocks.0.self_attn.norm_q.weight", &[300]).expect("scope"),
            src.f32("backbone.double_blocks.0.self_attn.norm_q.weight").expect("src")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fp8_checkpoint_passes_through_without_a_round_trip() {
    let dir = scratch("fp8");
    let file = dir.join("fp8.safetensors");
    write(&file, &fp8_like());
    let src = Safetensors::open(&file).expect("source");
    let weights = ["backbone.single_blocks.0.self_attn.q.weight", "backbone.single_blocks.0.ffn.2.weight"];
    for quant in Quant::ALL {
        let out = dir.join(format!("out-{}", quant.name()));
        let reports = run_convert(&out, &src, quant).unwrap_or_else(|e| panic!("{quant:?}: {e}"));
        let m = check_shards(&out);
        let conv = ManifestSource::open(&out, "nava-dit").expect("open");
        if quant == Quant::None {
            for t in src.tensors() {
                assert_eq!(conv.bytes(&t.name).expect("bytes"), src.bytes(&t.name).expect("bytes"), "{}", t.name);
            }
            continue;
        }
        assert_eq!(conv.tensors().len(), 3, "{quant:?}: the weight_scale tensors are folded into their weights");
        for w in weights {
            let p = conv.packed(w).expect("read").expect("fp8 weights are packed in every quantising mode");
            let bytes = src.bytes(w).expect("fp8 bytes");
            let scale = src.f32(&format!("{w}_scale")).expect("scale");
            let per_col: Vec<f32> = if scale.len() == 1 { vec![scale[0]; p.n] } else { scale };
            let reference = PackedWeight::from_fp8(p.n, p.k, &bytes, &per_col);
            assert!(p.format == WeightFormat::Fp8 && p.words == reference.words && p.scales == reference.scales, "{w}");
            let want: Vec<f32> = bytes
                .iter()
                .enumerate()
                .map(|(i, &b)| nava::kernels::gemm::e4m3_to_f32(b) * per_col[i / p.k])
                .collect();
            assert_eq!(conv.f32(w).expect("values"), want, "{quant:?} {w}: exact");
        }
        assert_eq!(reports[0].worst.as_ref().map(|w| w.rel_err), Some(0.0), "{quant:?}");
        let stored = &m.models[0].tensors.iter().find(|t| t.name.ends_with("norm3.weight")).expect("norm").stored;
        let want = if quant == Quant::F32 { "F32" } else { "BF16" };
        assert_eq!(stored, &Stored::Dtype(want.to_string()), "{quant:?}: norms keep their dtype");
        // The converted model matches the same table as the official file (which `check_keys` accepts with scales).
        let table: Vec<(String, Vec<usize>)> =
            conv.tensors().iter().map(|t| (t.name.clone(), t.shape.clone())).collect();
        assert!(compare_keys(&src, &table).is_clean() && compare_keys(&conv, &table).is_clean());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- bad inputs

#[test]
fn missing_truncated_and_corrupt_outputs_are_named() {
    let dir = scratch("bad");
    let file = dir.join("dit.safetensors");
    write(&file, &dit_like());
    let src = Safetensors::open(&file).expect("source");
    let out = dir.join("out");
    run_convert(&out, &src, Quant::Q8).expect("convert");
    let m = Manifest::read(&out).expect("manifest");
    let model = &m.models[0];
    let q = "backbone.double_blocks.0.self_attn.q.weight";
    let entry = model.tensors.iter().find(|t| t.name == q).expect("q");
    let shard = &model.shards[entry.parts[0].shard].file;

    // A missing shard: opening is lazy, reading names the file and the fix.
    let backup = dir.join("shard.bak");
    std::fs::rename(out.join(shard), &backup).expect("move shard");
    let conv = ManifestSource::open(&out, "nava-dit").expect("the manifest alone opens");
    let e = err_text(conv.f32(q));
    assert!(
        e.contains(&format!(
            "shard {shard} listed in manifest.json is missing: re-run nava convert or download it again"
        )),
        "{e}"
    );
    std::fs::rename(&backup, out.join(shard)).expect("restore");

    // A truncated shard.
    let bytes = std::fs::read(out.join(shard)).expect("read");
    std::fs::write(out.join(shard), &bytes[..bytes.len() - 100]).expect("truncate");
    let e = err_text(ManifestSource::open(&out, "nava-dit").expect("open").f32(q));
    assert!(e.contains(shard.as_str()) && e.contains("truncated") && e.contains("re-run nava convert"), "{e}");
    std::fs::write(out.join(shard), &bytes).expect("restore");
    assert!(ManifestSource::open(&out, "nava-dit").expect("open").f32(q).is_ok());

    // A corrupt manifest: not JSON, then JSON whose parts do not tile the rows.
    let manifest = out.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(&manifest, &text[..text.len() / 2]).expect("cut");
    let e = err_text(ManifestSource::open(&out, "nava-dit"));
    assert!(e.contains("corrupt manifest") && e.contains("invalid JSON") && e.contains("re-run nava convert"), "{e}");
    let mut bad = m.clone();
    bad.models[0].tensors.iter_mut().find(|t| t.name == q).expect("q").parts[0].rows[1] += 1;
    std::fs::write(&manifest, serde_json::to_string(&bad).expect("json")).expect("write");
    let e = err_text(Manifest::read(&out));
    assert!(e.contains("corrupt manifest") && e.contains(q), "{e}");
    let mut bad = m.clone();
    bad.models[0].shards[0].file = "../elsewhere.safetensors".into();
    std::fs::write(&manifest, serde_json::to_string(&bad).expect("json")).expect("write");
    assert!(err_text(Manifest::read(&out)).contains("not a plain file name"));
    std::fs::write(&manifest, &text).expect("restore");
    let e = err_text(ManifestSource::open(&out, "umt5"));
    assert!(e.contains("umt5") && e.contains("nava-dit"), "{e}");
    assert!(err_text(Manifest::read(&dir)).contains("without manifest.json"));

    // An existing output is left alone unless --overwrite.
    let e = err_text(run_convert(&out, &src, Quant::Q4));
    assert!(e.contains("not empty") && e.contains("--overwrite"), "{e}");
    assert_eq!(Manifest::read(&out).expect("untouched").models[0].quant, "q8");
    let input = ModelInput {
        name: "nava-dit".into(),
        source_name: "x".into(),
        source: &src,
        config: serde_json::json!({}),
        quant: Quant::Q4,
    };
    convert(&out, &[input], &ConvertOptions { shard_limit_bytes: LIMIT, overwrite: true }, &mut |_| {})
        .expect("overwrite");
    assert_eq!(Manifest::read(&out).expect("replaced").models[0].quant, "q4");

    // A failure half-way (an fp8 scale of the wrong length, after other tensors were written) leaves nothing.
    let mut specs = dit_like();
    let mut fp8 = fp8_like();
    fp8[3].2 = vec![7];
    fp8[3].3 = bf16_bytes(&[0.1; 7]);
    specs.extend(fp8);
    let file2 = dir.join("bad-scale.safetensors");
    write(&file2, &specs);
    let src2 = Safetensors::open(&file2).expect("source");
    let out2 = dir.join("out2");
    let e = err_text(run_convert(&out2, &src2, Quant::Q8));
    assert!(e.contains("ffn.2.weight_scale") && e.contains("[7]"), "{e}");
    let left: Vec<String> = std::fs::read_dir(&dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!out2.exists() && !left.iter().any(|n| n.contains("out2")), "left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- inspect --expect

#[test]
fn expect_reports_every_missing_unexpected_and_misshaped_key() {
    // The ReDimNet-M oracle weights carry the real key table (as F16 values).
    let real = Safetensors::open(oracles().join("redimnet_m/weights.safetensors")).expect("oracle weights");
    let table = KnownModel::Redimnet.key_table();
    assert!(compare_keys(&real, &table).is_clean(), "{:?}", compare_keys(&real, &table).lines());

    let dir = scratch("expect");
    let drop = [table[3].0.clone(), table[100].0.clone()];
    let (reshape, want_shape) = table.iter().skip(10).find(|(_, s)| s.len() >= 2).expect("a 2-D key").clone();
    let mut specs: Vec<Spec> = Vec::new();
    for t in real.tensors() {
        if drop.contains(&t.name) {
            continue;
        }
        let shape = if t.name == reshape { vec![t.numel()] } else { t.shape.clone() };
        specs.push((t.name.clone(), t.dtype, shape, real.bytes(&t.name).expect("bytes").into_owned()));
    }
    specs.push(("extra.weight".into(), WeightDType::F32, vec![2], f32_bytes(&[1.0, 2.0])));
    let file = dir.join("redimnet.safetensors");
    write(&file, &specs);
    let r = compare_keys(&KnownModel::Redimnet.open(&file).expect("open"), &table);
    assert_eq!(r.missing, drop);
    assert_eq!(r.unexpected, ["extra.weight"]);
    assert_eq!(r.misshaped, [(reshape.clone(), want_shape.clone(), vec![want_shape.iter().product()])]);
    let lines = r.lines();
    assert_eq!(lines.len(), 4, "one line per problem: {lines:?}");
    assert!(lines.iter().any(|l| l.contains(&reshape) && l.contains("mis-shaped")), "{lines:?}");

    // A ReDimNet `.pt` ({"model_config", "state_dict"}) is read through its state_dict, whose keys are the table's.
    let pt = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/redimnet_like.pt");
    let names: Vec<String> =
        KnownModel::Redimnet.open(&pt).expect("pt").tensors().iter().map(|t| t.name.clone()).collect();
    assert_eq!(names, ["stem.0.weight", "stem.0.bias"]);

    // Against the DiT table a small DiT-like file is missing almost everything, all of it listed.
    write(&dir.join("dit.safetensors"), &dit_like());
    let dit = Safetensors::open(dir.join("dit.safetensors")).expect("dit");
    let r = compare_keys(&dit, &KnownModel::NavaDit.key_table());
    assert_eq!(r.lines().len(), r.missing.len() + r.unexpected.len() + r.misshaped.len());
    assert!(r.missing.len() > 1000 && r.unexpected.contains(&"backbone.token_embedding.weight".to_string()));
    let e = nava::weights::check_keys(&dit, &KnownModel::NavaDit.key_table(), &KnownModel::NavaDit.hint()).map(drop_ok);
    assert!(err_text(e).contains("NAVA.safetensors"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn drop_ok(_: ()) {}

/// Loading from a converted directory uploads the packed words as they are: a q8 weight stays q8 even when the
/// loader asks for f32, and computes exactly what the stored values give.
#[test]
fn packed_weights_upload_without_repacking() {
    use nava::gpu::{Gpu, GpuOptions};
    use nava::kernels::gemm::{gemm, Epilogue, Weight, WeightFormat};
    let dir = scratch("upload");
    let file = dir.join("dit.safetensors");
    write(&file, &dit_like());
    let src = Safetensors::open(&file).expect("source");
    let out = dir.join("q8");
    run_convert(&out, &src, Quant::Q8).expect("convert");
    let conv = ManifestSource::open(&out, "nava-dit").expect("open");
    let g = Gpu::new_blocking(&GpuOptions::from_env()).expect("a GPU adapter");
    let key = "double_blocks.0.self_attn.q.weight";
    let w = Scope::root(&conv, "backbone.").weight(&g, key, &[258, 300], WeightFormat::F32).expect("load");
    assert_eq!((w.format, w.n, w.k), (WeightFormat::Q8, 258, 300));
    let p = conv.packed(&format!("backbone.{key}")).expect("read").expect("stored packed");
    let direct = Weight::upload(&g, "direct", &p).expect("upload");
    let x = g.upload_f32("x", &(0..600).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(), &[2, 300]).unwrap();
    let a = g.read_f32_blocking(&gemm(&g, &x, &w, Epilogue::default()).unwrap()).unwrap();
    let b = g.read_f32_blocking(&gemm(&g, &x, &direct, Epilogue::default()).unwrap()).unwrap();
    assert_eq!(a, b);
    let _ = std::fs::remove_dir_all(&dir);
}
