//! The prompt side of conditioning: the umt5-xxl tokenizer as NAVA calls it (NAVA.md §5.1, §5.2) — reference
//! `nava_src/data/t2v.py` (`<S>` → `<S><extra_id_2>`), `nava_src/models/nava/modules/t5.py` (`T5EncoderModel.__call__`:
//! speaker positions) and the tokenizer wrapper of Wan2.2 `wan/modules/tokenizers.py` (`clean='whitespace'`,
//! `seq_len=512`, `</s>` appended).
//!
//! The official `google/umt5-xxl` `tokenizer.json` (Unigram, 256 300 pieces; plain or gzipped) runs through the
//! `tokenizers` library, which gives the reference's ids exactly. Cleaning is in [`clean`].

pub mod clean;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use clean::clean_prompt;

/// The reference's `seq_len`: longer prompts are cut to this many ids, the last one `</s>`.
pub const MAX_TOKENS: usize = 512;
/// The token that marks a speaker slot; its context rows are replaced by speaker embeddings (§5.2).
pub const SPEAKER_TOKEN: &str = "<extra_id_2>";
/// Pieces of the umt5-xxl tokenizer (the encoder's embedding has 256 384 rows, the rest unused).
pub const UMT5_VOCAB: usize = 256_300;
/// `<extra_id_2>`'s id in the umt5-xxl vocabulary.
pub const UMT5_SPEAKER_ID: u32 = 256_297;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer file {}: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("tokenizer: {0}")]
    Parse(String),
    #[error(
        "tokenizer: not the umt5-xxl tokenizer ({0}); use google/umt5-xxl's tokenizer.json \
         ({UMT5_VOCAB} pieces, {SPEAKER_TOKEN} = {UMT5_SPEAKER_ID})"
    )]
    NotUmt5(String),
    #[error("prompt: {0}")]
    Prompt(String),
}

impl From<TokenizerError> for super::ModelError {
    fn from(e: TokenizerError) -> Self {
        super::ModelError::Input { what: "tokenizer".into(), problem: e.to_string() }
    }
}

/// One tokenized prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// The valid ids, `</s>` last; at most [`MAX_TOKENS`] (the reference pads them with `<pad>` = 0 to 512).
    pub ids: Vec<u32>,
    /// Indices into `ids` of every `<extra_id_2>`, in order: the i-th speaker embedding replaces row i.
    pub speaker_positions: Vec<usize>,
    /// The prompt was longer than [`MAX_TOKENS`] ids and was cut (also logged as a warning).
    pub truncated: bool,
    /// The id count before truncation, `</s>` included.
    pub full_len: usize,
    /// The text the tokenizer saw (rewritten and cleaned).
    pub cleaned: String,
}

impl Tokens {
    /// The ids padded with `<pad>` (0) to `len`, as the reference's `[B, 512]` batch.
    pub fn padded(&self, len: usize) -> Vec<u32> {
        let mut v = self.ids.clone();
        v.resize(len.max(v.len()), 0);
        v
    }

    /// A warning for the user when the prompt was cut.
    pub fn warning(&self) -> Option<String> {
        self.truncated.then(|| {
            format!(
                "the prompt has {} tokens; only the first {} are used (the text encoder's limit, `</s>` included)",
                self.full_len,
                self.ids.len()
            )
        })
    }
}

/// `<S>` → `<S><extra_id_2>` (the reference's `t2v.py` preprocessing): one speaker slot after every span opener.
pub fn rewrite_speaker_spans(prompt: &str) -> String {
    prompt.replace("<S>", "<S><extra_id_2>")
}

/// The umt5-xxl tokenizer with NAVA's rewriting and cleaning.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    speaker_id: u32,
    eos_id: u32,
    max_len: usize,
}

impl Tokenizer {
    /// Reads `tokenizer.json` or `tokenizer.json.gz`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Read { path: path.to_path_buf(), source })?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            TokenizerError::Parse(m) => TokenizerError::Parse(format!("{}: {m}", path.display())),
            TokenizerError::NotUmt5(m) => TokenizerError::NotUmt5(format!("{}: {m}", path.display())),
            e => e,
        })
    }

    /// Parses a `tokenizer.json`, gzipped or not (told apart by the gzip magic bytes), and checks it is umt5-xxl's.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenizerError> {
        let json;
        let bytes = if bytes.starts_with(&[0x1F, 0x8B]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .map_err(|e| TokenizerError::Parse(format!("gzip: {e}")))?;
            json = out;
            &json[..]
        } else {
            bytes
        };
        if !bytes.trim_ascii_start().starts_with(b"{") {
            return Err(TokenizerError::Parse(
                "not a JSON file: pass the tokenizers-library tokenizer.json (not spiece.model or a checkpoint)".into(),
            ));
        }
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| TokenizerError::Parse(format!("not a tokenizers-library tokenizer.json: {e}")))?;
        let vocab = inner.get_vocab_size(true);
        if vocab != UMT5_VOCAB {
            return Err(TokenizerError::NotUmt5(format!("it has {vocab} pieces")));
        }
        let speaker_id = inner
            .token_to_id(SPEAKER_TOKEN)
            .ok_or_else(|| TokenizerError::NotUmt5(format!("it has no {SPEAKER_TOKEN}")))?;
        if speaker_id != UMT5_SPEAKER_ID {
            return Err(TokenizerError::NotUmt5(format!("{SPEAKER_TOKEN} is id {speaker_id}")));
        }
        let eos_id = match (inner.token_to_id("</s>"), inner.token_to_id("<pad>")) {
            (Some(1), Some(0)) => 1,
            (e, p) => return Err(TokenizerError::NotUmt5(format!("</s> is {e:?} and <pad> is {p:?}, not 1 and 0"))),
        };
        Ok(Self { inner, speaker_id, eos_id, max_len: MAX_TOKENS })
    }

    /// Another id limit than [`MAX_TOKENS`] (at least 1: `</s>` alone).
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.max(1);
        self
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn speaker_token_id(&self) -> u32 {
        self.speaker_id
    }

    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// A user prompt: `<S>` rewritten, cleaned, tokenized, `</s>` appended, cut to the limit. An empty prompt (after
    /// cleaning) is refused.
    pub fn encode(&self, prompt: &str) -> Result<Tokens, TokenizerError> {
        let t = self.encode_rewritten(&rewrite_speaker_spans(prompt))?;
        if t.cleaned.is_empty() {
            return Err(TokenizerError::Prompt(
                "the prompt is empty (or only whitespace): describe the video and its sound".into(),
            ));
        }
        Ok(t)
    }

    /// A negative prompt: as [`encode`](Self::encode), but an empty one is valid (the reference encodes it as
    /// `</s>` alone).
    pub fn encode_negative(&self, prompt: &str) -> Result<Tokens, TokenizerError> {
        self.encode_rewritten(&rewrite_speaker_spans(prompt))
    }

    /// Text already rewritten (the reference tokenizer's input): cleaned, tokenized, `</s>` appended, cut.
    pub fn encode_rewritten(&self, text: &str) -> Result<Tokens, TokenizerError> {
        let cleaned = clean_prompt(text);
        let enc = self.inner.encode(cleaned.as_str(), true).map_err(|e| TokenizerError::Parse(e.to_string()))?;
        let mut ids = enc.get_ids().to_vec();
        // tokenizer.json's post-processor appends `</s>`; a copy without one still gets it.
        if self.inner.get_post_processor().is_none() {
            ids.push(self.eos_id);
        }
        let full_len = ids.len();
        let truncated = full_len > self.max_len;
        if truncated {
            ids.truncate(self.max_len - 1);
            ids.push(self.eos_id);
            log::warn!("prompt cut from {full_len} to {} tokens (the text encoder's limit)", self.max_len);
        }
        let speaker_positions =
            ids.iter().enumerate().filter(|(_, &id)| id == self.speaker_id).map(|(i, _)| i).collect();
        Ok(Tokens { ids, speaker_positions, truncated, full_len, cleaned })
    }
}
