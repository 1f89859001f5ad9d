//! Errors of the checkpoint readers. Each names the file, the tensor or archive entry, and the fix.

use std::path::PathBuf;

use super::WeightDType;

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("{}: {source}", .file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {what} needs {need} bytes but the file has {len} — the file is truncated (an interrupted \
             download or copy?): fetch it again", .file.display())]
    Truncated { file: PathBuf, what: String, need: u64, len: u64 },
    #[error("{}: corrupt safetensors header: {reason} — is this a safetensors file? If so it is damaged: \
             download or convert it again", .file.display())]
    Header { file: PathBuf, reason: String },
    #[error("{}: `{key}`: {reason} — the file is damaged: download or convert it again", .file.display())]
    Offsets { file: PathBuf, key: String, reason: String },
    #[error("{}: `{key}` is {found}; {expected}", .file.display())]
    DType { file: PathBuf, key: String, expected: String, found: WeightDType },
    #[error("{}: `{key}` has shape {found:?}; this model expects {expected:?}", .file.display())]
    Shape { file: PathBuf, key: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("{}: {} tensors missing, e.g. `{}` — {hint}", .file.display(), .keys.len(), first(.keys))]
    Missing { file: PathBuf, keys: Vec<String>, hint: String },
    #[error("{}: does not match the model: {} missing (e.g. {}), {} unexpected (e.g. {}), {} with another shape (e.g. {}) — {hint}",
        .file.display(), .missing.len(), first(.missing), .unexpected.len(), first(.unexpected), .misshaped.len(),
        .misshaped.first().map_or("none".to_string(), |(k, want, got)| format!("`{k}` is {got:?}, expected {want:?}")))]
    Mismatch {
        file: PathBuf,
        missing: Vec<String>,
        unexpected: Vec<String>,
        misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
        hint: String,
    },
    #[error("{}: refusing to unpickle `{class}`: only state-dict classes are allowed (OrderedDict, tensor \
             rebuilds, storages). Convert the checkpoint to safetensors with a Python you trust", .file.display())]
    RefusedClass { file: PathBuf, class: String },
    #[error("{}: pickle opcode {opcode:#04x} ({name}) at byte {pos} of `{entry}` is outside the state-dict \
             subset this reader accepts. Convert the checkpoint to safetensors with a Python you trust",
            .file.display())]
    RefusedOpcode { file: PathBuf, entry: String, opcode: u8, name: &'static str, pos: u64 },
    #[error("{}: malformed pickle at byte {pos} of `{entry}`: {reason} — the file is damaged or was not \
             written by torch.save", .file.display())]
    Pickle { file: PathBuf, entry: String, pos: u64, reason: String },
    #[error("{}: not a valid zip archive: {reason} — a PyTorch .pth is a zip written by torch.save; if this \
             is one, it is damaged: download it again", .file.display())]
    Zip { file: PathBuf, reason: String },
    #[error("{}: the archive has no entry `{entry}` — {hint}", .file.display())]
    MissingEntry { file: PathBuf, entry: String, hint: String },
    #[error("{}: {what} is not supported — {fix}", .file.display())]
    Unsupported { file: PathBuf, what: String, fix: String },
    #[error("{}: cannot write `{key}`: {reason}", .file.display())]
    Write { file: PathBuf, key: String, reason: String },
    #[error("{}: corrupt manifest: {reason} — re-run nava convert, or download the converted weights again",
            .file.display())]
    Manifest { file: PathBuf, reason: String },
    #[error("{}: shard {shard} listed in manifest.json is missing: re-run nava convert or download it again",
            .dir.display())]
    MissingShard { dir: PathBuf, shard: String },
    #[error("{}: {reason} — the shard does not match manifest.json: re-run nava convert or download it again",
            .file.display())]
    Shard { file: PathBuf, reason: String },
}

fn first(keys: &[String]) -> &str {
    keys.first().map(String::as_str).unwrap_or("")
}
