//! The DiT's key table: the built-in NAVA_6B configuration names exactly the keys and shapes of the official
//! checkpoint (the `keys_full.json` of every `nava_dit` case), and a case's own config names its weights file.

use std::path::PathBuf;

use nava::model::dit::{DitConfig, PREFIX};
use nava::weights::{check_keys, Checkpoint};

fn oracle_root() -> PathBuf {
    std::env::var_os("NAVA_ORACLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracles"))
}

fn dit_cases() -> Vec<PathBuf> {
    nava::oracle::case_dirs(&oracle_root())
        .into_iter()
        .filter(|d| nava::oracle::case_kind(d).map(|k| k == "nava_dit").unwrap_or(false))
        .collect()
}

#[test]
fn nava_6b_key_table_matches_the_official_checkpoint() {
    let cases = dit_cases();
    if cases.is_empty() {
        println!("skipped: no nava_dit case under {}", oracle_root().display());
        return;
    }
    let mut ours = DitConfig::nava_6b().key_table(PREFIX);
    ours.sort();
    for dir in cases {
        let text = std::fs::read_to_string(dir.join("keys_full.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut theirs: Vec<(String, Vec<usize>)> = v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let shape = e[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                (e[0].as_str().unwrap().to_string(), shape)
            })
            .collect();
        theirs.sort();
        assert_eq!(ours.len(), theirs.len(), "{}", dir.display());
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a, b, "{}", dir.display());
        }
    }
}

#[test]
fn case_weights_match_their_config_and_mismatches_are_named() {
    for dir in dit_cases() {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let config: DitConfig = serde_json::from_value(meta["config"].clone()).unwrap();
        let ck = Checkpoint::open(dir.join("weights.safetensors")).unwrap();
        check_keys(&ck, &config.key_table(PREFIX), "hint").unwrap();
        // The same file against the full-size table: every shape differs, nothing is missing.
        let e = check_keys(&ck, &DitConfig::nava_6b().key_table(PREFIX), "is this the tiny model?")
            .unwrap_err()
            .to_string();
        assert!(e.contains("with another shape") && e.contains("is this the tiny model?"), "{e}");
        assert!(e.contains("backbone.double_blocks.2.") || e.contains("missing"), "{e}");
    }
}
