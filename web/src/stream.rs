//! Weights streamed from the network or a chosen file straight into GPU buffers.
//!
//! The page hands over a converted directory's `manifest.json`, then each shard's bytes in the chunks that
//! `fetch()` or `File.stream()` deliver. The safetensors header is parsed as soon as it has arrived; after that
//! each array's bytes are gathered and uploaded the moment the array is complete, so wasm memory holds at most
//! one array (a part of a tensor, at most one shard's size) and never a whole shard or model.

use std::collections::HashMap;
use std::ops::Range;

use nava::gpu::{DType, Gpu, GpuTensor};
use nava::weights::manifest::{Manifest, FORMAT, VERSION};
use nava::weights::{SafetensorsHeader, WeightDType};

use crate::error::WebError;

/// Parses and checks `manifest.json`; the plan lists every shard as `{model, file, bytes}`, in load order.
pub fn plan(text: &str, max_buffer: u64) -> Result<(Manifest, serde_json::Value), WebError> {
    let bad = |problem: String| WebError::Manifest { what: "manifest.json".into(), problem };
    let m: Manifest = serde_json::from_str(text).map_err(|e| bad(format!("not a valid manifest ({e})")))?;
    if m.format != FORMAT {
        return Err(bad(format!("format is `{}`, expected `{FORMAT}`", m.format)));
    }
    if m.version != VERSION {
        return Err(bad(format!("layout version {} is not the version {VERSION} this page reads", m.version)));
    }
    if m.models.is_empty() {
        return Err(bad("it lists no models".into()));
    }
    let mut shards = Vec::new();
    for model in &m.models {
        for s in &model.shards {
            if s.file.contains('/') || s.file.contains("..") {
                return Err(bad(format!("{}: shard name `{}` is not a plain file name", model.name, s.file)));
            }
            shards.push(serde_json::json!({ "model": model.name, "file": s.file, "bytes": s.bytes }));
        }
        for t in &model.tensors {
            for p in t.parts.iter().chain(&t.scales) {
                if p.shard >= model.shards.len() {
                    return Err(bad(format!(
                        "{}: `{}` names shard {}, of {}",
                        model.name,
                        t.name,
                        p.shard,
                        model.shards.len()
                    )));
                }
            }
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
    Ok((m, serde_json::Value::Array(shards)))
}

/// Arrays on the GPU, by `model/key` (the key inside its shard).
#[derive(Default)]
pub struct GpuStore {
    pub arrays: HashMap<String, GpuTensor>,
    pub bytes: u64,
}

impl GpuStore {
    pub fn key(model: &str, key: &str) -> String {
        format!("{model}/{key}")
    }

    /// Every array the manifest lists for its models must have arrived.
    pub fn check_complete(&self, m: &Manifest) -> Result<(), WebError> {
        for model in &m.models {
            let shard_keys = model.shards.iter().flat_map(|s| s.tensors.iter());
            let missing: Vec<&String> =
                shard_keys.filter(|k| !self.arrays.contains_key(&Self::key(&model.name, k))).collect();
            if let Some(first) = missing.first() {
                return Err(WebError::MissingArrays {
                    model: model.name.clone(),
                    missing: missing.len(),
                    first: first.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// One shard arriving in chunks.
pub struct ShardUpload {
    model: String,
    file: String,
    want: u64,
    got: u64,
    head: Vec<u8>,
    /// Arrays in file order with their absolute byte ranges, once the header is in.
    arrays: Vec<(String, WeightDType, Vec<usize>, Range<u64>)>,
    next: usize,
    current: Vec<u8>,
}

impl ShardUpload {
    pub fn new(model: &str, file: &str, want: u64) -> Self {
        Self {
            model: model.into(),
            file: file.into(),
            want,
            got: 0,
            head: Vec::new(),
            arrays: Vec::new(),
            next: 0,
            current: Vec::new(),
        }
    }

    fn header_done(&self) -> bool {
        !self.arrays.is_empty() || self.next > 0
    }

    /// Takes the next chunk of the file.
    pub fn push(&mut self, g: &Gpu, store: &mut GpuStore, chunk: &[u8]) -> Result<(), WebError> {
        let start = self.got;
        self.got += chunk.len() as u64;
        if self.got > self.want {
            return Err(WebError::ShardLength { file: self.file.clone(), got: self.got, want: self.want });
        }
        let mut rest = chunk;
        let mut pos = start;
        if !self.header_done() {
            self.head.extend_from_slice(chunk);
            let Some(prefix) = SafetensorsHeader::prefix_len(&self.head) else { return Ok(()) };
            if (self.head.len() as u64) < prefix.min(self.want) {
                return Ok(());
            }
            let header = SafetensorsHeader::parse(self.file.as_str(), &self.head, self.want)?;
            let mut arrays: Vec<_> = header
                .tensors()
                .iter()
                .map(|t| {
                    let range = header.byte_range(&t.name).expect("every listed tensor has a range");
                    (t.name.clone(), t.dtype, t.shape.clone(), range)
                })
                .collect();
            arrays.sort_by_key(|a| a.3.start);
            self.arrays = arrays;
            self.head = Vec::new();
            let skip = (prefix - start) as usize;
            rest = &chunk[skip.min(chunk.len())..];
            pos = prefix;
            if self.arrays.is_empty() {
                self.next = 1; // an empty shard: nothing more to gather
                return Ok(());
            }
        }
        while !rest.is_empty() && self.next < self.arrays.len() {
            let range = self.arrays[self.next].3.clone();
            if pos < range.start {
                let skip = ((range.start - pos) as usize).min(rest.len());
                rest = &rest[skip..];
                pos += skip as u64;
                continue;
            }
            let need = (range.end - range.start) as usize - self.current.len();
            let take = need.min(rest.len());
            self.current.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            pos += take as u64;
            if self.current.len() as u64 == range.end - range.start {
                self.upload(g, store)?;
            }
        }
        // Zero-length arrays at the end complete without bytes.
        while self.next < self.arrays.len() && self.arrays[self.next].3.is_empty() {
            self.upload(g, store)?;
        }
        Ok(())
    }

    fn upload(&mut self, g: &Gpu, store: &mut GpuStore) -> Result<(), WebError> {
        let (name, dtype, shape, _) = &self.arrays[self.next];
        let bytes = std::mem::take(&mut self.current);
        let key = GpuStore::key(&self.model, name);
        self.next += 1;
        if bytes.is_empty() {
            return Ok(());
        }
        let (gpu_dtype, gpu_shape) = match dtype {
            WeightDType::F32 => (DType::F32, shape.clone()),
            WeightDType::F16 => (DType::F16, shape.clone()),
            WeightDType::BF16 => (DType::BF16, shape.clone()),
            WeightDType::U32 | WeightDType::I32 => (DType::U32, shape.clone()),
            // Bytes the kernels read as words (fp8 weights, integer tables): kept as they are.
            _ => (DType::U32, vec![bytes.len().div_ceil(4)]),
        };
        let padded;
        let data = if gpu_dtype == DType::U32 && !bytes.len().is_multiple_of(4) {
            padded = [bytes.as_slice(), &[0u8; 3][..(4 - bytes.len() % 4)]].concat();
            &padded[..]
        } else {
            &bytes[..]
        };
        let t = g.upload_bytes(&key, data, &gpu_shape, gpu_dtype)?;
        store.bytes += t.len_bytes();
        store.arrays.insert(key, t);
        Ok(())
    }

    /// Called after the last chunk: the shard must be whole.
    pub fn finish(&self) -> Result<(), WebError> {
        if self.got != self.want || (!self.header_done() && self.want > 0) || self.next < self.arrays.len() {
            return Err(WebError::ShardLength { file: self.file.clone(), got: self.got, want: self.want });
        }
        Ok(())
    }
}
