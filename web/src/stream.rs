//! The page's converted-directory load: the manifest is checked against this adapter's buffer limit and turned
//! into the list of shards to fetch; the bytes themselves go through the library's
//! [`nava::weights::StreamedWeights`], which writes each chunk straight into GPU buffers (wasm memory holds one
//! chunk at a time, never an array, a shard or a model).

use nava::weights::StreamedWeights;

use crate::error::WebError;

/// Parses and checks `manifest.json` (`label` names the directory in errors); returns the store and every
/// shard as `{model, file, bytes}`, in load order.
pub fn plan(label: &str, text: &str, max_buffer: u64) -> Result<(StreamedWeights, serde_json::Value), WebError> {
    let w = StreamedWeights::new(label, text.as_bytes())
        .map_err(|e| WebError::Manifest { what: "manifest.json".into(), problem: e.to_string() })?;
    let m = w.manifest();
    if m.models.is_empty() {
        return Err(WebError::Manifest { what: "manifest.json".into(), problem: "it lists no models".into() });
    }
    let mut shards = Vec::new();
    for model in &m.models {
        for s in &model.shards {
            shards.push(serde_json::json!({ "model": model.name, "file": s.file, "bytes": s.bytes }));
        }
        for t in &model.tensors {
            // A tensor is cut by rows across shards, so one array's bytes bound one buffer.
            let largest = t.bytes / t.parts.len().max(1) as u64;
            if largest > max_buffer {
                return Err(WebError::ModelTooLarge {
                    model: model.name.clone(),
                    key: t.name.clone(),
                    bytes: largest,
                    limit: max_buffer,
                });
            }
        }
    }
    Ok((w, serde_json::Value::Array(shards)))
}
