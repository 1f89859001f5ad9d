//! The `nava_tokenizer` case: the umt5-xxl tokenizer as the reference calls it (`HuggingfaceTokenizer(seq_len=512,
//! clean='whitespace')` on `<S>`-rewritten prompts, `T5EncoderModel.__call__` speaker positions). Every string's ids
//! must match exactly; the rewriting, cleaned text, valid length and speaker positions are compared too.

use std::path::Path;

use serde_json::Value;

use super::{compare, Comparison, Io, OracleError};
use crate::model::tokenizer::{rewrite_speaker_spans, Tokenizer, TokenizerError};
use crate::model::ModelError;
use crate::weights::TensorSource;

/// Exact: ids, lengths and code points are integers.
fn exact(name: String, got: &[f32], want: &[f32]) -> Comparison {
    compare(&name, got, want, 0.0, 0.0)
}

fn code_points(s: &str) -> Vec<f32> {
    s.chars().map(|c| c as u32 as f32).collect()
}

pub(crate) fn run(dir: &Path, meta: &Value) -> Result<Vec<Comparison>, OracleError> {
    let case = |problem: String| OracleError::Case { dir: dir.to_path_buf(), problem };
    let file = ["tokenizer.json", "tokenizer.json.gz"]
        .into_iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| case("no tokenizer.json(.gz)".into()))?;
    let tok = Tokenizer::from_file(&file).map_err(ModelError::from)?;
    let io = Io::open(dir)?;
    let n = meta["n_strings"].as_u64().ok_or_else(|| case("meta.json has no n_strings".into()))? as usize;
    let ids_key = "out.ids";
    let [rows, width] = io.shape(ids_key).unwrap_or_default()[..] else {
        return Err(case(format!("{ids_key} is not [N, L]")));
    };
    if rows != n {
        return Err(case(format!("{ids_key} has {rows} rows for {n} strings")));
    }
    let tok = tok.with_max_len(width);
    let want_ids = io.get(ids_key).ok_or_else(|| case(format!("missing {ids_key}")))?;
    let want_lens = io.get("out.seq_lens").ok_or_else(|| case("missing out.seq_lens".into()))?;
    let spk = io.get("out.spk_token_id").and_then(|v| v.first().copied());
    // strings.json (optional): the cleaned text and truncation flag per string.
    let strings: Option<Vec<Value>> =
        std::fs::read_to_string(dir.join("strings.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    let text = |key: &str| -> Result<String, OracleError> {
        let bytes = io.src.bytes(key).map_err(OracleError::from)?;
        String::from_utf8(bytes.into_owned()).map_err(|e| case(format!("{key}: {e}")))
    };

    let mut out = Vec::new();
    if let Some(s) = spk {
        out.push(exact("spk_token_id".into(), &[tok.speaker_token_id() as f32], &[s]));
    }
    let mut lens = Vec::with_capacity(n);
    for i in 0..n {
        let raw = text(&format!("in.text_utf8.{i:02}"))?;
        let rewritten = text(&format!("in.text_rewritten_utf8.{i:02}"))?;
        out.push(exact(
            format!("rewrite[{i:02}]"),
            &code_points(&rewrite_speaker_spans(&raw)),
            &code_points(&rewritten),
        ));

        // The user path refuses an empty prompt; the reference tokenizes it to `</s>` alone, as the negative path.
        let t = match tok.encode(&raw) {
            Ok(t) => t,
            Err(TokenizerError::Prompt(_)) => tok.encode_negative(&raw).map_err(ModelError::from)?,
            Err(e) => return Err(ModelError::from(e).into()),
        };
        let got: Vec<f32> = t.padded(width).iter().map(|&v| v as f32).collect();
        let want = &want_ids[i * width..(i + 1) * width];
        out.push(exact(format!("ids[{i:02}]"), &got, want));
        lens.push(t.ids.len() as f32);

        // Speaker positions as `T5EncoderModel.__call__`: the spk token within the valid length.
        if let Some(s) = spk {
            let valid = want_lens.get(i).copied().unwrap_or(0.0) as usize;
            let want_pos: Vec<f32> =
                want[..valid.min(width)].iter().enumerate().filter(|(_, &v)| v == s).map(|(p, _)| p as f32).collect();
            let got_pos: Vec<f32> = t.speaker_positions.iter().map(|&p| p as f32).collect();
            out.push(exact(format!("speaker_positions[{i:02}]"), &got_pos, &want_pos));
        }
        if let Some(entry) = strings.as_ref().and_then(|s| s.get(i)) {
            if let Some(cleaned) = entry["cleaned"].as_str() {
                out.push(exact(format!("cleaned_text[{i:02}]"), &code_points(&t.cleaned), &code_points(cleaned)));
            }
            if let Some(tr) = entry["truncated"].as_bool() {
                out.push(exact(format!("truncated[{i:02}]"), &[t.truncated as u8 as f32], &[tr as u8 as f32]));
            }
        }
    }
    out.push(exact("out.seq_lens".into(), &lens, &want_lens));
    Ok(out)
}
