//! safetensors reader and writer. Layout: an 8-byte little-endian header length `n`, `n` bytes of JSON
//! (`{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`, padded with
//! spaces), then the data section, which the tensors' byte ranges (relative to its start) tile exactly.
//!
//! The whole header is checked before any tensor is handed out, so a view never reads outside its range.
//! The writer is in `safetensors_writer.rs`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::{checked_numel, missing, Blob, TensorInfo, TensorSource, TensorView, WeightDType, WeightError};

/// Headers larger than this are refused as corrupt before any allocation (the reference format's limit).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

/// A validated safetensors header: tensors with absolute byte ranges in the file, and the metadata.
/// Needs only the header bytes and the file length, so a browser can fetch tensors by range later.
#[derive(Clone, Debug)]
pub struct SafetensorsHeader {
    file: PathBuf,
    tensors: Vec<TensorInfo>,
    ranges: Vec<Range<u64>>,
    index: HashMap<String, usize>,
    metadata: Vec<(String, String)>,
    data_start: u64,
}

impl SafetensorsHeader {
    /// Bytes the header occupies (8 + JSON length), read from the first 8 bytes of the file.
    pub fn prefix_len(first8: &[u8]) -> Option<u64> {
        let n: [u8; 8] = first8.get(..8)?.try_into().ok()?;
        u64::from_le_bytes(n).checked_add(8)
    }

    /// Parses and checks the header. `head` holds at least the first [`Self::prefix_len`] bytes of a file
    /// of `file_len` bytes (the whole file is fine).
    pub fn parse(file: impl Into<PathBuf>, head: &[u8], file_len: u64) -> Result<Self, WeightError> {
        let file = file.into();
        let header_err = |reason: String| WeightError::Header { file: file.clone(), reason };
        let truncated = |what: &str, need: u64| WeightError::Truncated {
            file: file.clone(),
            what: what.to_string(),
            need,
            len: file_len,
        };
        let Some(n) = head.get(..8) else {
            return Err(truncated("the 8-byte header length", 8));
        };
        let n = u64::from_le_bytes(n.try_into().expect("8 bytes"));
        if n > MAX_HEADER_BYTES {
            return Err(header_err(format!("header length {n} bytes is over the {MAX_HEADER_BYTES}-byte limit")));
        }
        if n < 2 {
            return Err(header_err(format!("header length {n} bytes is too short for a JSON object")));
        }
        let data_start = 8 + n;
        if data_start > file_len {
            return Err(truncated("the JSON header", data_start));
        }
        let Some(json) = head.get(8..data_start as usize) else {
            return Err(truncated("the JSON header (in the bytes given)", data_start));
        };
        let entries: Entries = serde_json::from_slice(json).map_err(|e| header_err(format!("invalid JSON: {e}")))?;
        let data_len = file_len - data_start;

        let mut tensors = Vec::new();
        let mut rel = Vec::new();
        let mut index = HashMap::new();
        let mut metadata = None;
        for (key, value) in entries.0 {
            if key == "__metadata__" {
                if metadata.is_some() {
                    return Err(header_err("`__metadata__` appears twice".to_string()));
                }
                metadata = Some(parse_metadata(&value).map_err(header_err)?);
                continue;
            }
            let (info, range) = parse_entry(&file, key, &value)?;
            if index.insert(info.name.clone(), tensors.len()).is_some() {
                return Err(header_err(format!("tensor `{}` appears twice", info.name)));
            }
            if range.end > data_len {
                // The header is whole, so the likely cause is a cut-off download.
                return Err(truncated(
                    &format!("tensor `{}` (data_offsets [{}, {}])", info.name, range.start, range.end),
                    data_start.saturating_add(range.end),
                ));
            }
            tensors.push(info);
            rel.push(range);
        }
        check_tiling(&file, &tensors, &rel, data_len)?;
        Ok(Self {
            ranges: rel.into_iter().map(|r| r.start + data_start..r.end + data_start).collect(),
            file,
            tensors,
            index,
            metadata: metadata.unwrap_or_default(),
            data_start,
        })
    }

    /// The file (or label) named in errors.
    pub fn file(&self) -> &Path {
        &self.file
    }
    /// Every tensor in header order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    /// `__metadata__`, in header order.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }
    /// Where the data section starts in the file (bytes).
    pub fn data_start(&self) -> u64 {
        self.data_start
    }
    /// One tensor's description, if present.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }
    /// Absolute byte range of a tensor in the file (for range requests).
    pub fn byte_range(&self, name: &str) -> Option<Range<u64>> {
        self.index.get(name).map(|&i| self.ranges[i].clone())
    }

    /// A tensor of the file whose bytes are `file_bytes` (the whole file, as parsed).
    pub fn view<'a>(&'a self, file_bytes: &'a [u8], name: &str) -> Result<TensorView<'a>, WeightError> {
        let i = *self.index.get(name).ok_or_else(|| missing(&self.file, name))?;
        let r = &self.ranges[i];
        let range = usize::try_from(r.start).ok().zip(usize::try_from(r.end).ok());
        let bytes = range.and_then(|(a, b)| file_bytes.get(a..b)).ok_or_else(|| WeightError::Truncated {
            file: self.file.clone(),
            what: format!("tensor `{name}`"),
            need: r.end,
            len: file_bytes.len() as u64,
        })?;
        Ok(TensorView { info: &self.tensors[i], bytes: Cow::Borrowed(bytes) })
    }
}

/// A safetensors file with its bytes (memory-mapped natively).
#[derive(Clone, Debug)]
pub struct Safetensors {
    header: SafetensorsHeader,
    blob: Blob,
}

impl Safetensors {
    /// Maps and checks a file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, WeightError> {
        let path = path.as_ref();
        Self::from_blob(path, Blob::open(path)?)
    }

    /// Checks a file already in memory; `label` names it in errors.
    pub fn from_blob(label: impl Into<PathBuf>, blob: impl Into<Blob>) -> Result<Self, WeightError> {
        let blob = blob.into();
        let header = SafetensorsHeader::parse(label, &blob, blob.len() as u64)?;
        Ok(Self { header, blob })
    }

    pub fn header(&self) -> &SafetensorsHeader {
        &self.header
    }
    pub fn metadata(&self) -> &[(String, String)] {
        self.header.metadata()
    }
}

impl TensorSource for Safetensors {
    fn file(&self) -> &Path {
        self.header.file()
    }
    fn tensors(&self) -> &[TensorInfo] {
        self.header.tensors()
    }
    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.header.info(name)
    }
    fn view(&self, name: &str) -> Result<TensorView<'_>, WeightError> {
        self.header.view(&self.blob, name)
    }
}

/// The header's top-level object, in document order, keeping duplicates so they can be refused.
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of tensors")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_entry::<String, Value>()? {
                    v.push(e);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

fn parse_metadata(v: &Value) -> Result<Vec<(String, String)>, String> {
    let Value::Object(m) = v else {
        return Err("`__metadata__` is not an object of strings".to_string());
    };
    m.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(format!("`__metadata__.{k}` is not a string")),
        })
        .collect()
}

/// One tensor entry: known dtype, integer shape, offsets whose span is shape × dtype size.
fn parse_entry(file: &Path, key: String, v: &Value) -> Result<(TensorInfo, Range<u64>), WeightError> {
    let bad =
        |key: &str, reason: String| WeightError::Offsets { file: file.to_path_buf(), key: key.to_string(), reason };
    let Value::Object(m) = v else {
        return Err(bad(&key, "entry is not an object".to_string()));
    };
    let Some(Value::String(dtype)) = m.get("dtype") else {
        return Err(bad(&key, "entry has no string `dtype`".to_string()));
    };
    let Some(dtype_known) = WeightDType::from_safetensors_name(dtype) else {
        return Err(WeightError::Unsupported {
            file: file.to_path_buf(),
            what: format!("dtype `{dtype}` of tensor `{key}`"),
            fix: "this reader knows BOOL, U8, I8, F8_E4M3, F8_E5M2, I16, U16, F16, BF16, I32, U32, F32, \
                  F64, I64, U64: convert the tensor to one of them"
                .to_string(),
        });
    };
    let shape = match m.get("shape") {
        Some(Value::Array(a)) => {
            a.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect::<Option<Vec<usize>>>()
        }
        _ => None,
    };
    let Some(shape) = shape else {
        return Err(bad(&key, "`shape` is not a list of non-negative integers".to_string()));
    };
    let offsets = match m.get("data_offsets") {
        Some(Value::Array(a)) if a.len() == 2 => a[0].as_u64().zip(a[1].as_u64()),
        _ => None,
    };
    let Some((begin, end)) = offsets else {
        return Err(bad(&key, "`data_offsets` is not [begin, end] in bytes".to_string()));
    };
    if begin > end {
        return Err(bad(&key, format!("data_offsets [{begin}, {end}] run backwards")));
    }
    let want =
        checked_numel(&shape).and_then(|n| n.checked_mul(dtype_known.size_bytes())).and_then(|b| u64::try_from(b).ok());
    if want != Some(end - begin) {
        return Err(bad(
            &key,
            format!(
                "shape {shape:?} of {dtype} needs {} bytes but data_offsets [{begin}, {end}] span {}",
                want.map_or("more than 2^64".to_string(), |w| w.to_string()),
                end - begin
            ),
        ));
    }
    Ok((TensorInfo { name: key, dtype: dtype_known, shape }, begin..end))
}

/// The ranges must tile the data section: no overlap, no gap, nothing after the last tensor.
fn check_tiling(file: &Path, tensors: &[TensorInfo], ranges: &[Range<u64>], data_len: u64) -> Result<(), WeightError> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| (ranges[i].start, ranges[i].end));
    let mut pos = 0u64;
    let mut prev: Option<usize> = None;
    for &i in &order {
        let r = &ranges[i];
        if r.start != pos {
            let reason = if r.start < pos {
                format!(
                    "data_offsets [{}, {}] overlap those of `{}`",
                    r.start,
                    r.end,
                    prev.map_or("", |p| tensors[p].name.as_str())
                )
            } else {
                format!(
                    "bytes {pos}..{} of the data section belong to no tensor (data_offsets [{}, {}])",
                    r.start, r.start, r.end
                )
            };
            return Err(WeightError::Offsets { file: file.to_path_buf(), key: tensors[i].name.clone(), reason });
        }
        pos = r.end;
        prev = Some(i);
    }
    if pos != data_len {
        return Err(WeightError::Header {
            file: file.to_path_buf(),
            reason: format!("tensors cover {pos} bytes but the data section has {data_len}: bytes were added or lost"),
        });
    }
    Ok(())
}
