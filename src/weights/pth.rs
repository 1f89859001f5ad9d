//! PyTorch `.pth`/`.pt` checkpoints as `torch.save` writes them (PyTorch ≥ 1.6): a zip of STORED entries
//! `<top>/data.pkl` (the pickled object), `<top>/data/<key>` (one per storage, little-endian),
//! `<top>/version` and maybe `<top>/byteorder`. The top folder's name varies (`archive`, the file's stem),
//! so it is taken from `data.pkl`'s path. The pickle is parsed by [`super::pickle`], never executed.
//!
//! Tensors are every tensor reachable from the pickled object through dicts, lists and tuples, named by
//! their key path joined with `.` — a bare state dict gives its own keys; a dict such as ReDimNet's
//! `{"model_config": …, "state_dict": …}` gives `state_dict.<key>` until [`Pth::select`] picks a part.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::pickle::{self, PickleValue, PickledTensor};
use super::zip;
use super::{checked_numel, missing, Blob, TensorInfo, TensorSource, TensorView, WeightError};

/// A torch.save archive: the pickled object and its tensors, bytes used in place.
#[derive(Clone, Debug)]
pub struct Pth {
    file: PathBuf,
    blob: Blob,
    archive: String,
    root: PickleValue,
    pickled: Vec<PickledTensor>,
    storages: HashMap<String, Range<usize>>,
    tensors: Vec<TensorInfo>,
    places: Vec<Place>,
    index: HashMap<String, usize>,
}

/// Where one named tensor's values are: a byte range when contiguous, else a strided view.
#[derive(Clone, Debug)]
enum Place {
    Contiguous(Range<usize>),
    Strided { pickled: usize, storage: Range<usize> },
}

impl Pth {
    /// Maps and parses an archive.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, WeightError> {
        let path = path.as_ref();
        Self::from_blob(path, Blob::open(path)?)
    }

    /// Parses an archive already in memory; `label` names it in errors.
    pub fn from_blob(label: impl Into<PathBuf>, blob: impl Into<Blob>) -> Result<Self, WeightError> {
        let file = label.into();
        let blob = blob.into();
        let entries = zip::entries(&file, &blob)?;
        let pkl: Vec<&zip::ZipEntry> = entries.iter().filter(|e| is_pickle_entry(&e.name)).collect();
        let pkl = match pkl[..] {
            [one] => one,
            [] => {
                return Err(WeightError::MissingEntry {
                    file,
                    entry: "<top>/data.pkl".to_string(),
                    hint: "is this a checkpoint written by torch.save?".to_string(),
                })
            }
            _ => {
                return Err(WeightError::Zip { file, reason: format!("{} entries named `<top>/data.pkl`", pkl.len()) })
            }
        };
        let archive = pkl.name.strip_suffix("data.pkl").unwrap_or("").to_string();
        let by_name: HashMap<&str, &zip::ZipEntry> = entries.iter().map(|e| (e.name.as_str(), e)).collect();

        if let Some(e) = by_name.get(format!("{archive}byteorder").as_str()) {
            let order = String::from_utf8_lossy(&blob[e.data.clone()]).trim().to_string();
            if order != "little" {
                return Err(WeightError::Unsupported {
                    file,
                    what: format!("byte order `{order}`"),
                    fix: "save the checkpoint on a little-endian machine, or convert it to safetensors".to_string(),
                });
            }
        }

        let pkl_bytes = &blob[pkl.data.clone()];
        if zip::crc32(pkl_bytes) != pkl.crc32 {
            return Err(WeightError::Zip { file, reason: format!("`{}` fails its CRC-32 check", pkl.name) });
        }
        let parsed = pickle::parse(&file, &pkl.name, pkl_bytes)?;

        // Storage entries: present, and exactly numel × element size long.
        let mut storages = HashMap::new();
        for t in &parsed.tensors {
            // Every reference is checked, not only the first: views are bounded by the numel it claims.
            let entry = format!("{archive}data/{}", t.storage_key);
            let Some(e) = by_name.get(entry.as_str()) else {
                return Err(WeightError::MissingEntry {
                    file,
                    entry,
                    hint: "the archive is incomplete: download it again".to_string(),
                });
            };
            let want = t.storage_numel.checked_mul(t.dtype.size_bytes() as u64);
            if want != Some(e.data.len() as u64) {
                return Err(WeightError::Offsets {
                    file,
                    key: entry,
                    reason: format!(
                        "a {} storage of {} elements needs {} bytes; the entry has {}",
                        t.dtype,
                        t.storage_numel,
                        want.map_or("more than 2^64".to_string(), |w| w.to_string()),
                        e.data.len()
                    ),
                });
            }
            storages.insert(t.storage_key.clone(), e.data.clone());
        }

        let mut pth = Self {
            file,
            blob,
            archive: archive.trim_end_matches('/').to_string(),
            root: parsed.root,
            pickled: parsed.tensors,
            storages,
            tensors: Vec::new(),
            places: Vec::new(),
            index: HashMap::new(),
        };
        let root = pth.root.clone();
        pth.name_tensors(&root)?;
        Ok(pth)
    }

    /// The whole pickled object (configs such as ReDimNet's `model_config` are read from here).
    pub fn root(&self) -> &PickleValue {
        &self.root
    }

    /// The archive's top folder (`archive`, or the stem of the file it was first saved as).
    pub fn archive_name(&self) -> &str {
        &self.archive
    }

    /// Keeps only the tensors under the root dict's `key`, named relative to it
    /// (`pth.select("state_dict")` for ReDimNet). [`Pth::root`] stays the whole object.
    pub fn select(mut self, key: &str) -> Result<Self, WeightError> {
        let Some(sub) = self.root.get(key).cloned() else {
            let keys: Vec<String> =
                self.root.as_dict().unwrap_or(&[]).iter().filter_map(|(k, _)| k.as_str().map(str::to_string)).collect();
            return Err(WeightError::Missing {
                file: self.file.clone(),
                keys: vec![key.to_string()],
                hint: format!("the pickled object's top-level keys are {keys:?}"),
            });
        };
        self.tensors.clear();
        self.places.clear();
        self.index.clear();
        self.name_tensors(&sub)?;
        Ok(self)
    }

    /// Walks `value`, naming and checking every tensor in it.
    fn name_tensors(&mut self, value: &PickleValue) -> Result<(), WeightError> {
        let mut found = Vec::new();
        collect(value, String::new(), &mut found).map_err(|what| WeightError::Unsupported {
            file: self.file.clone(),
            what,
            fix: "tensors must sit under string or integer keys".to_string(),
        })?;
        for (name, i) in found {
            let place = self.place(&name, i)?;
            let t = &self.pickled[i];
            if self.index.insert(name.clone(), self.tensors.len()).is_some() {
                return Err(WeightError::Unsupported {
                    file: self.file.clone(),
                    what: format!("two tensors named `{name}`"),
                    fix: "rename one of them in the checkpoint".to_string(),
                });
            }
            self.tensors.push(TensorInfo { name, dtype: t.dtype, shape: t.shape.clone() });
            self.places.push(place);
        }
        Ok(())
    }

    /// Checks that tensor `i` (named `name`) lies inside its storage and finds its bytes.
    fn place(&self, name: &str, i: usize) -> Result<Place, WeightError> {
        let t = &self.pickled[i];
        let storage = self.storages[&t.storage_key].clone();
        let esize = t.dtype.size_bytes();
        let bad = |reason: String| WeightError::Offsets { file: self.file.clone(), key: name.to_string(), reason };
        let numel = checked_numel(&t.shape).ok_or_else(|| bad(format!("shape {:?} overflows", t.shape)))?;
        if numel == 0 {
            return Ok(Place::Contiguous(storage.start..storage.start));
        }
        // The last element the view touches must be inside the storage.
        let last = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (&d, &s)| acc.checked_add(((d - 1) as u64).checked_mul(s as u64)?));
        if last.is_none_or(|l| l >= t.storage_numel) {
            return Err(bad(format!(
                "the view (offset {}, shape {:?}, stride {:?}) reaches past its storage `{}` of {} elements",
                t.offset, t.shape, t.stride, t.storage_key, t.storage_numel
            )));
        }
        // Inside the storage, so these products fit in the entry's length.
        let start = storage.start + t.offset as usize * esize;
        if is_contiguous(&t.shape, &t.stride) {
            Ok(Place::Contiguous(start..start + numel * esize))
        } else {
            Ok(Place::Strided { pickled: i, storage })
        }
    }
}

/// Row-major contiguous, ignoring the strides of size-1 dimensions (they are never stepped).
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expect = 1usize;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expect {
            return false;
        }
        expect = expect.saturating_mul(d);
    }
    true
}

/// `data.pkl` directly inside the archive's one top folder (`archive/data.pkl`), or at the root.
fn is_pickle_entry(name: &str) -> bool {
    match name.split_once('/') {
        None => name == "data.pkl",
        Some((top, rest)) => !top.is_empty() && rest == "data.pkl",
    }
}

/// `(name, pickled tensor index)` for every tensor under `v`; `Err` names a key that cannot be a name.
fn collect(v: &PickleValue, prefix: String, out: &mut Vec<(String, usize)>) -> Result<(), String> {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        PickleValue::Tensor(i) => out.push((prefix, *i)),
        PickleValue::Dict(items) => {
            for (k, v) in items {
                if !holds_tensor(v) {
                    continue;
                }
                let k = match k {
                    PickleValue::Str(s) => s.clone(),
                    PickleValue::Int(i) => i.to_string(),
                    other => return Err(format!("a tensor under the dict key {other:?}")),
                };
                collect(v, join(&k), out)?;
            }
        }
        PickleValue::List(items) | PickleValue::Tuple(items) => {
            for (i, v) in items.iter().enumerate() {
                collect(v, join(&i.to_string()), out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn holds_tensor(v: &PickleValue) -> bool {
    match v {
        PickleValue::Tensor(_) => true,
        PickleValue::Dict(items) => items.iter().any(|(_, v)| holds_tensor(v)),
        PickleValue::List(items) | PickleValue::Tuple(items) => items.iter().any(holds_tensor),
        _ => false,
    }
}

impl TensorSource for Pth {
    fn file(&self) -> &Path {
        &self.file
    }
    fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }
    fn view(&self, name: &str) -> Result<TensorView<'_>, WeightError> {
        let i = *self.index.get(name).ok_or_else(|| missing(&self.file, name))?;
        let bytes = match &self.places[i] {
            Place::Contiguous(r) => Cow::Borrowed(&self.blob[r.clone()]),
            Place::Strided { pickled, storage } => {
                Cow::Owned(gather(&self.pickled[*pickled], &self.blob[storage.clone()]))
            }
        };
        Ok(TensorView { info: &self.tensors[i], bytes })
    }
}

/// Copies a strided view into row-major order. The view was checked to lie inside `storage`.
fn gather(t: &PickledTensor, storage: &[u8]) -> Vec<u8> {
    let esize = t.dtype.size_bytes();
    let numel: usize = t.shape.iter().product();
    let mut out = Vec::with_capacity(numel * esize);
    let mut idx = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let at = t.offset as usize + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        out.extend_from_slice(&storage[at * esize..(at + 1) * esize]);
        // Advance the multi-index, last dimension fastest.
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < t.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}
