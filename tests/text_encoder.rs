//! The UMT5 encoder outside its oracle: the built-in `umt5_xxl` configuration names exactly the keys and shapes of
//! the official file (the embedded table and every `nava_t5` case's `keys_full.json`), a case's config names its
//! weights file, the bucket table's exact and log-spaced ranges, and the errors for bad token ids.

use std::path::PathBuf;

use nava::gpu::{Gpu, GpuOptions};
use nava::kernels::gemm::WeightFormat;
use nava::model::text_encoder::{relative_position_buckets, T5Config, TextEncoder, MAX_DIST};
use nava::weights::{check_keys, Checkpoint, KeyTable, OfficialFile};

fn oracle_root() -> PathBuf {
    nava::oracle::root(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracles"))
}

fn t5_cases() -> Vec<PathBuf> {
    nava::oracle::cases_of(&oracle_root(), "nava_t5")
}

/// The message of an expected error (the encoder and its outputs have no `Debug`, so no `expect_err`).
fn err<T>(r: Result<T, nava::model::ModelError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn keys_of(json: &serde_json::Value) -> KeyTable {
    json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let shape = e[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            (e[0].as_str().unwrap().to_string(), shape)
        })
        .collect()
}

#[test]
fn umt5_xxl_key_table_matches_the_official_file() {
    let ours = T5Config::umt5_xxl().key_table();
    let table = OfficialFile::Umt5.table();
    assert_eq!(ours, table.keys, "the embedded table, in module order");
    let config: T5Config = serde_json::from_value(table.config).unwrap();
    assert_eq!(config, T5Config::umt5_xxl());
    assert_eq!(ours.len(), 242);
    let params: usize = ours.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    assert_eq!(params, 5_680_910_336);
    for dir in t5_cases() {
        let text = std::fs::read_to_string(dir.join("keys_full.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(ours, keys_of(&v), "{}", dir.display());
    }
}

#[test]
fn shared_pos_moves_the_bucket_embedding_to_the_top() {
    let c = T5Config { shared_pos: true, encoder_layers: 2, ..T5Config::umt5_xxl() };
    let keys: Vec<String> = c.key_table().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys[1], "pos_embedding.embedding.weight");
    assert!(!keys.iter().any(|k| k.starts_with("blocks.") && k.contains("pos_embedding")));
}

#[test]
fn case_config_names_its_weights_file() {
    for dir in t5_cases() {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let c: T5Config = serde_json::from_value(meta["config"].clone()).unwrap();
        let w = Checkpoint::open(dir.join("weights.safetensors")).unwrap();
        check_keys(&w, &c.key_table(), "tiny case").unwrap();
    }
}

#[test]
fn buckets_are_exact_near_and_log_spaced_far() {
    let l = 300;
    let b = relative_position_buckets(l, 32, MAX_DIST);
    let at = |q: usize, k: usize| b[q * l + k];
    // Keys before the query (offset ≤ 0) use buckets 0..16, keys after it 16..32; offsets below 8 are exact.
    for d in 0..8 {
        assert_eq!(at(150, 150 - d), d as u32);
        if d > 0 {
            assert_eq!(at(150, 150 + d), 16 + d as u32);
        }
    }
    // Log-spaced: 8 + ⌊2·log2(r/8)⌋ (the reference's f32 arithmetic gives 10 at r = 16), the last at ≥ 128.
    assert_eq!(at(0, 15), 16 + 9);
    assert_eq!(at(0, 16), 16 + 10);
    assert_eq!(at(150, 150 - 16), 10);
    assert_eq!(at(0, 127), 16 + 15);
    assert_eq!(at(0, 299), 16 + 15);
    assert_eq!(at(299, 0), 15);
}

#[test]
fn bad_token_ids_are_refused() {
    let Some(dir) = t5_cases().into_iter().next() else {
        println!("skipped: no nava_t5 case under {}", oracle_root().display());
        return;
    };
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let c: T5Config = serde_json::from_value(meta["config"].clone()).unwrap();
    let g = Gpu::new_blocking(&GpuOptions::from_env()).expect("this test needs a GPU adapter (lavapipe works)");
    let w = Checkpoint::open(dir.join("weights.safetensors")).unwrap();
    let enc = TextEncoder::load(&g, &w, c.clone(), WeightFormat::F32).unwrap();

    let vocab = c.vocab_size as u32;
    let e = err(enc.encode(&g, &[&[3, vocab, 1]]));
    assert!(e.contains(&format!("id {vocab} at position 1 is outside the vocabulary of {vocab}")), "{e}");
    let e = err(enc.encode(&g, &[&[]]));
    assert!(e.contains("the prompt is empty"), "{e}");
    let e = err(enc.forward(&g, &[1, 2], Some(&[false, false]), None));
    assert!(e.contains("hides every token"), "{e}");
    let e = err(enc.forward(&g, &[1, 2], Some(&[true]), None));
    assert!(e.contains("has 1 values for 2 token ids"), "{e}");

    // Two prompts of different lengths come back with their own row counts.
    let out = enc.encode(&g, &[&[5, 6, 1], &[7, 1]]).unwrap();
    assert_eq!(out[0].shape(), [3, c.dim]);
    assert_eq!(out[1].shape(), [2, c.dim]);

    // A file of another model is refused with the whole key report.
    let other = T5Config { encoder_layers: 3, ..c };
    let e = err(TextEncoder::load(&g, &w, other, WeightFormat::F32));
    assert!(e.contains("missing") && e.contains("UMT5"), "{e}");
}
