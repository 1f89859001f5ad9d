//! safetensors writer: tensors laid out in the caller's order, header padded so the data section starts
//! 8-byte aligned, files written under a temporary name and renamed when complete. Used by tests and the
//! converter; the format is described in `safetensors.rs`.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{checked_numel, TensorInfo, WeightDType, WeightError};

/// One tensor to write.
#[derive(Clone, Copy, Debug)]
pub struct TensorData<'a> {
    pub name: &'a str,
    pub dtype: WeightDType,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

impl TensorData<'_> {
    fn info(&self) -> TensorInfo {
        TensorInfo { name: self.name.to_string(), dtype: self.dtype, shape: self.shape.to_vec() }
    }
}

/// The header bytes (length prefix + padded JSON) for tensors laid out in the given order.
fn build_header(
    file: &Path,
    tensors: &[TensorInfo],
    metadata: &[(&str, &str)],
) -> Result<(Vec<u8>, Vec<u64>), WeightError> {
    let write_err =
        |key: &str, reason: String| WeightError::Write { file: file.to_path_buf(), key: key.to_string(), reason };
    let quote = |s: &str| serde_json::to_string(s).expect("a string always serialises");
    let mut json = String::from("{");
    if !metadata.is_empty() {
        json.push_str("\"__metadata__\":{");
        for (i, (k, v)) in metadata.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&format!("{}:{}", quote(k), quote(v)));
        }
        json.push('}');
    }
    let mut seen = std::collections::HashSet::new();
    let mut sizes = Vec::with_capacity(tensors.len());
    let mut pos = 0u64;
    for t in tensors {
        if t.name == "__metadata__" || !seen.insert(t.name.as_str()) {
            return Err(write_err(&t.name, "the name is reserved or repeated".to_string()));
        }
        let len = checked_numel(&t.shape)
            .and_then(|n| n.checked_mul(t.dtype.size_bytes()))
            .ok_or_else(|| write_err(&t.name, format!("shape {:?} overflows", t.shape)))? as u64;
        let end =
            pos.checked_add(len).ok_or_else(|| write_err(&t.name, "the file would pass 2^64 bytes".to_string()))?;
        if json.len() > 1 {
            json.push(',');
        }
        json.push_str(&format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":{:?},\"data_offsets\":[{pos},{end}]}}",
            quote(&t.name),
            t.dtype.safetensors_name(),
            t.shape,
        ));
        pos = end;
        sizes.push(len);
    }
    json.push('}');
    // Pad so the data section starts 8-byte aligned in the file.
    while !json.len().is_multiple_of(8) {
        json.push(' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    Ok((out, sizes))
}

fn check_len(file: &Path, t: &TensorData<'_>, want: u64) -> Result<(), WeightError> {
    if t.bytes.len() as u64 != want {
        return Err(WeightError::Write {
            file: file.to_path_buf(),
            key: t.name.to_string(),
            reason: format!("{} bytes given; shape {:?} of {} needs {want}", t.bytes.len(), t.shape, t.dtype),
        });
    }
    Ok(())
}

/// A whole safetensors file in memory, tensors in the given order.
pub fn safetensors_to_vec(tensors: &[TensorData<'_>], metadata: &[(&str, &str)]) -> Result<Vec<u8>, WeightError> {
    let file = Path::new("<memory>");
    let infos: Vec<TensorInfo> = tensors.iter().map(TensorData::info).collect();
    let (mut out, sizes) = build_header(file, &infos, metadata)?;
    for (t, &len) in tensors.iter().zip(&sizes) {
        check_len(file, t, len)?;
        out.extend_from_slice(t.bytes);
    }
    Ok(out)
}

/// Writes a safetensors file (through a temporary name, renamed when complete).
pub fn write_safetensors(
    path: impl AsRef<Path>,
    tensors: &[TensorData<'_>],
    metadata: &[(&str, &str)],
) -> Result<(), WeightError> {
    let infos: Vec<TensorInfo> = tensors.iter().map(TensorData::info).collect();
    let mut w = SafetensorsWriter::create(path, infos, metadata)?;
    for t in tensors {
        w.write(t.name, t.bytes)?;
    }
    w.finish()
}

/// Streams a safetensors file whose tensors are produced one at a time (a converter's output):
/// the header is written first from the planned list, then each tensor in that order.
pub struct SafetensorsWriter {
    file: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<fs::File>>,
    plan: Vec<TensorInfo>,
    sizes: Vec<u64>,
    next: usize,
}

impl SafetensorsWriter {
    /// Creates `path` + `.tmp` and writes the header.
    pub fn create(
        path: impl AsRef<Path>,
        plan: Vec<TensorInfo>,
        metadata: &[(&str, &str)],
    ) -> Result<Self, WeightError> {
        let file = path.as_ref().to_path_buf();
        let (header, sizes) = build_header(&file, &plan, metadata)?;
        let mut tmp = file.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let io = |source| WeightError::Io { file: tmp.clone(), source };
        let mut out = BufWriter::new(fs::File::create(&tmp).map_err(io)?);
        out.write_all(&header).map_err(io)?;
        Ok(Self { file, tmp, out: Some(out), plan, sizes, next: 0 })
    }

    /// Writes the next planned tensor; `name` must be the next one in the plan.
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> Result<(), WeightError> {
        let Some(info) = self.plan.get(self.next) else {
            return Err(self.err(name, "more tensors than planned".to_string()));
        };
        if info.name != name {
            return Err(self.err(name, format!("expected `{}` next (plan order)", info.name)));
        }
        let t = TensorData { name, dtype: info.dtype, shape: &info.shape, bytes };
        check_len(&self.file, &t, self.sizes[self.next])?;
        let io = |source| WeightError::Io { file: self.tmp.clone(), source };
        let out = self.out.as_mut().expect("present until finish or drop");
        out.write_all(bytes).map_err(io)?;
        self.next += 1;
        Ok(())
    }

    /// Flushes and renames the temporary file to its final name; fails if a planned tensor is missing.
    pub fn finish(mut self) -> Result<(), WeightError> {
        if let Some(info) = self.plan.get(self.next) {
            let key = info.name.clone();
            return Err(self.err(&key, "planned but never written".to_string()));
        }
        let out = self.out.take().expect("present until finish or drop");
        let io = |source| WeightError::Io { file: self.tmp.clone(), source };
        let f = out.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(io)?;
        drop(f);
        fs::rename(&self.tmp, &self.file).map_err(|e| {
            let _ = fs::remove_file(&self.tmp);
            io(e)
        })
    }

    fn err(&self, key: &str, reason: String) -> WeightError {
        WeightError::Write { file: self.file.clone(), key: key.to_string(), reason }
    }
}

impl Drop for SafetensorsWriter {
    /// An unfinished file is removed, never left under a name that looks complete.
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}
