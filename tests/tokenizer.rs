//! The umt5-xxl tokenizer as NAVA calls it: every `nava_tokenizer` case string gives the reference's exact ids,
//! speaker positions and cleaned text; `<S>` rewriting, the 512-token cut and its warning, refused files and prompts,
//! HTML entities, mojibake and whitespace.

use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

use nava::model::tokenizer::clean::{clean_prompt, fix_text, html_unescape};
use nava::model::tokenizer::{
    rewrite_speaker_spans, Tokenizer, TokenizerError, MAX_TOKENS, UMT5_SPEAKER_ID, UMT5_VOCAB,
};

fn oracle_root() -> PathBuf {
    nava::oracle::root(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracles"))
}

fn cases() -> Vec<PathBuf> {
    nava::oracle::cases_of(&oracle_root(), "nava_tokenizer")
}

/// The first case's tokenizer file, loaded once (None when no case is present).
fn tokenizer() -> Option<&'static Tokenizer> {
    static TOK: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOK.get_or_init(|| {
        let dir = cases().into_iter().next()?;
        Some(Tokenizer::from_file(dir.join("tokenizer.json.gz")).expect("the case's tokenizer"))
    })
    .as_ref()
}

macro_rules! tokenizer_or_skip {
    () => {
        match tokenizer() {
            Some(t) => t,
            None => {
                println!("skipped: no nava_tokenizer case under {}", oracle_root().display());
                return;
            }
        }
    };
}

#[test]
fn oracle_strings_give_the_reference_ids() {
    for dir in cases() {
        let tok = Tokenizer::from_file(dir.join("tokenizer.json.gz")).unwrap();
        let strings: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("strings.json")).unwrap()).unwrap();
        assert!(!strings.is_empty());
        for s in &strings {
            let i = s["i"].as_u64().unwrap();
            let raw = s["raw"].as_str().unwrap();
            assert_eq!(rewrite_speaker_spans(raw), s["rewritten"].as_str().unwrap(), "string {i}");
            let t = if raw.trim().is_empty() { tok.encode_negative(raw) } else { tok.encode(raw) }.unwrap();
            let ids: Vec<u32> = s["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            assert_eq!(t.ids, ids, "string {i}: {raw:?}");
            let pos: Vec<usize> =
                s["spk_pos"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(t.speaker_positions, pos, "string {i}");
            assert_eq!(t.truncated, s["truncated"].as_bool().unwrap(), "string {i}");
            assert_eq!(t.cleaned, s["cleaned"].as_str().unwrap(), "string {i}");
        }
    }
}

#[test]
fn speaker_spans_are_rewritten_and_located() {
    let tok = tokenizer_or_skip!();
    assert_eq!(rewrite_speaker_spans("a <S>x<E> b <S>y<E>"), "a <S><extra_id_2>x<E> b <S><extra_id_2>y<E>");
    let t = tok.encode("Two people talk. <S>Hello!<E> Then <S>Bye.<E>").unwrap();
    assert_eq!(t.speaker_positions.len(), 2);
    for &p in &t.speaker_positions {
        assert_eq!(t.ids[p], UMT5_SPEAKER_ID);
    }
    assert!(t.speaker_positions[0] < t.speaker_positions[1]);
    assert_eq!(t.ids.iter().filter(|&&id| id == UMT5_SPEAKER_ID).count(), 2);
    assert_eq!(*t.ids.last().unwrap(), tok.eos_id());
    // No span, no speaker slot; `<E>` alone adds none.
    let t = tok.encode("rain on a window <E>").unwrap();
    assert!(t.speaker_positions.is_empty());
    // A slot cut off by truncation is not reported.
    let long = format!("{} <S>late speaker<E>", "word ".repeat(600));
    let t = tok.encode(&long).unwrap();
    assert!(t.truncated && t.speaker_positions.is_empty());
}

#[test]
fn long_prompts_are_cut_with_a_warning() {
    let tok = tokenizer_or_skip!();
    let t = tok.encode(&"The camera pans across the market. ".repeat(100)).unwrap();
    assert!(t.truncated);
    assert_eq!(t.ids.len(), MAX_TOKENS);
    assert_eq!(*t.ids.last().unwrap(), tok.eos_id());
    assert!(t.full_len > MAX_TOKENS);
    let w = t.warning().unwrap();
    assert!(w.contains(&format!("only the first {MAX_TOKENS}")), "{w}");
    assert_eq!(t.padded(MAX_TOKENS).len(), MAX_TOKENS);

    let short = tok.encode("a cat").unwrap();
    assert!(!short.truncated && short.warning().is_none());
    let padded = short.padded(8);
    assert_eq!(&padded[..short.ids.len()], &short.ids[..]);
    assert!(padded[short.ids.len()..].iter().all(|&p| p == 0));
}

#[test]
fn bad_tokenizer_files_are_refused() {
    let e = Tokenizer::from_file("/nonexistent/tokenizer.json").err().unwrap();
    assert!(matches!(e, TokenizerError::Read { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/tokenizer.json"), "{e}");

    let e = Tokenizer::from_bytes(b"\x0a\x05hello sentencepiece protobuf").err().unwrap();
    assert!(e.to_string().contains("not a JSON file") && e.to_string().contains("spiece.model"), "{e}");
    let e = Tokenizer::from_bytes(b"{\"not\": \"a tokenizer\"}").err().unwrap();
    assert!(e.to_string().contains("not a tokenizers-library tokenizer.json"), "{e}");
    let e = Tokenizer::from_bytes(&[0x1F, 0x8B, 0, 1, 2]).err().unwrap();
    assert!(e.to_string().contains("gzip"), "{e}");

    // A valid tokenizer.json of another model.
    let other = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
        "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"<unk>":0,"a":1,"b":2},"unk_token":"<unk>"}}"#;
    let e = Tokenizer::from_bytes(other.as_bytes()).err().unwrap();
    let m = e.to_string();
    assert!(matches!(e, TokenizerError::NotUmt5(_)), "{m}");
    assert!(m.contains("it has 3 pieces") && m.contains(&UMT5_VOCAB.to_string()) && m.contains("umt5-xxl"), "{m}");
}

#[test]
fn plain_and_gzipped_files_agree() {
    let Some(dir) = cases().into_iter().next() else {
        return;
    };
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(dir.join("tokenizer.json.gz")).unwrap())
        .read_to_end(&mut json)
        .unwrap();
    let plain = Tokenizer::from_bytes(&json).unwrap();
    let tok = tokenizer_or_skip!();
    let p = "中英混合 text <S>你好<E>";
    assert_eq!(plain.encode(p).unwrap(), tok.encode(p).unwrap());
}

#[test]
fn empty_prompts_are_refused_but_not_empty_negatives() {
    let tok = tokenizer_or_skip!();
    for p in ["", "   ", "\n\t \u{3000}"] {
        let e = tok.encode(p).err().unwrap();
        assert!(e.to_string().contains("the prompt is empty"), "{e}");
    }
    // The reference encodes an empty negative prompt as `</s>` alone.
    assert_eq!(tok.encode_negative("").unwrap().ids, [tok.eos_id()]);
}

#[test]
fn html_entities_are_decoded_twice() {
    assert_eq!(clean_prompt("A&amp;B &lt;tag&gt;"), "A&B <tag>");
    // Two rounds: `&amp;lt;` → `&lt;` → `<`.
    assert_eq!(clean_prompt("&amp;lt;b&amp;gt;"), "<b>");
    // Python's html.unescape: legacy names without `;` by longest prefix, numeric references, invalid ones.
    assert_eq!(html_unescape("&notit; &copy 2024 &eacute;t&eacute;"), "¬it; © 2024 été");
    assert_eq!(html_unescape("&#65;&#x42;&#X43;&#0;&#128;&#x110000;&#1;"), "ABC\u{FFFD}€\u{FFFD}");
    assert_eq!(html_unescape("&unknown; & &# &ampx"), "&unknown; & &# &x");
    assert_eq!(html_unescape("&NotNestedGreaterGreater;"), "\u{2AA2}\u{338}");
    // ftfy's own step decodes upper-cased names too (only while the line has no `<`).
    assert_eq!(fix_text("&EACUTE;t&EACUTE;"), "ÉtÉ");
}

#[test]
fn mojibake_quotes_and_widths_are_fixed() {
    assert_eq!(clean_prompt("The Mona Lisa doesnâ€™t have eyebrows."), "The Mona Lisa doesn't have eyebrows.");
    assert_eq!(fix_text("cafÃ© au lait"), "café au lait");
    // Mojibake next to text no single-byte code page holds is fixed in place.
    assert_eq!(fix_text("ðŸ˜€ 中文 and cafÃ©"), "😀 中文 and café");
    assert_eq!(fix_text("Ã¢â‚¬â„¢ twice"), "' twice");
    assert_eq!(fix_text("Ã  la carte"), "à la carte");
    assert_eq!(fix_text("ＬＯＵＤ　ＮＯＩＳＥＳ，ｈｉ！"), "LOUD NOISES,hi!");
    assert_eq!(fix_text("“curly” ‘single’ ﬁne"), "\"curly\" 'single' fine");
    assert_eq!(fix_text("e\u{301}\x1b[31m red\x1b[0m\u{7}"), "é red");
    // Legitimate non-ASCII text is left alone.
    for s in ["Ça va? Привет, мир!", "€100 ½ ² №", "東京の夜景"] {
        assert_eq!(fix_text(s), s);
    }
}

#[test]
fn whitespace_is_collapsed() {
    assert_eq!(clean_prompt("  a\t\tb\n\n c\u{a0}d\u{3000}e  "), "a b c d e");
    // Zero-width space is not whitespace (Python's `\s` agrees).
    assert_eq!(clean_prompt("a\u{200b}b"), "a\u{200b}b");
    assert_eq!(clean_prompt("line\r\nbreak\u{2028}x"), "line break x");
}

/// Prompts (the case strings, common non-ASCII text, its UTF-8 mojibake read as Windows-1252 or Latin-1 once or
/// twice, words mixing fixed and broken spellings, entities, width forms) with the outputs of ftfy 6.3.1's
/// `fix_text` and of the whole cleaning, as the reference runs them.
#[test]
fn cleaning_matches_ftfy_on_realistic_prompts() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ftfy_6.3.1_cases.json");
    let cases: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut failures = Vec::new();
    for c in &cases {
        let input = c["input"].as_str().unwrap();
        if fix_text(input) != c["fix_text"].as_str().unwrap() {
            failures.push(format!("fix_text({input:?}) = {:?}, ftfy {:?}", fix_text(input), c["fix_text"]));
        }
        if clean_prompt(input) != c["cleaned"].as_str().unwrap() {
            failures.push(format!("clean({input:?}) = {:?}, reference {:?}", clean_prompt(input), c["cleaned"]));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
