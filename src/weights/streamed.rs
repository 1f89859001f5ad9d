//! A converted directory (manifest.rs) that arrives as a stream — a browser's `fetch()` bodies or a chosen
//! folder's `File.stream()` — written straight into GPU buffers, and [`StreamedSource`], which serves one of its
//! models to the model loaders through [`TensorSource`] like [`super::ManifestSource`] does from files.
//!
//! [`StreamedWeights`] holds the manifest and the arrays already in GPU memory. Each shard goes through a
//! [`ShardStream`]: its safetensors header is gathered and checked against the manifest (keys, dtypes, shapes),
//! every array's GPU buffer is allocated at once, and each chunk is written into the buffers at its byte offset
//! as it arrives. Host memory holds the header and at most three bytes of a chunk (a partial 32-bit word) besides
//! the chunk being written; nothing is converted, so the GPU holds the shard's bytes exactly.
//!
//! Loading a model then takes what is already there: packed GEMM weights and plain f32 arrays are used as the
//! GPU buffers they are. The model loaders also read some arrays on the host (norm statistics folded into
//! convolutions, the token embedding, values rounded to a precision, convolution kernels run directly);
//! [`StreamedWeights::source`] copies the plainly stored arrays and the packed convolution kernels of the one
//! model being loaded back from the GPU for that (packed ones dequantised, as [`super::ManifestSource`] reads
//! them), and they are dropped with the source once the model is built. A packed matrix that a loader reads on
//! the host all the same is noted ([`StreamedSource::host_misses`]) so that the caller can load once more with
//! it copied back too.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use std::cell::RefCell;

use super::manifest::{part_spec, u32s, ArraySpec, Layout, Manifest, ModelIndex, Part, TensorEntry};
use super::safetensors::MAX_HEADER_BYTES;
use super::{missing, LoadError, SafetensorsHeader, TensorInfo, TensorSource, TensorView, WeightDType, WeightError};
use crate::gpu::{DType, Gpu, GpuTensor, TensorWriter};
use crate::kernels::gemm::{PackedWeight, Weight, WeightFormat};

/// Where one stored array is: model number, shard number, key in the shard.
type ArrayKey = (usize, usize, String);

/// A converted directory whose shards are streamed into GPU memory.
pub struct StreamedWeights {
    label: PathBuf,
    manifest: Manifest,
    arrays: HashMap<ArrayKey, GpuTensor>,
    /// Shards that arrived whole, as (model, shard).
    complete: HashSet<(usize, usize)>,
    bytes: u64,
}

impl std::fmt::Debug for StreamedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamedWeights({}, {} arrays)", self.label.display(), self.arrays.len())
    }
}

impl StreamedWeights {
    /// Starts from the directory's `manifest.json`; `label` (the URL or folder) names it in errors.
    pub fn new(label: impl Into<PathBuf>, manifest_json: &[u8]) -> Result<Self, WeightError> {
        let label = label.into();
        let manifest = Manifest::from_json(&label.join(super::manifest::MANIFEST), manifest_json)?;
        Ok(Self { label, manifest, arrays: HashMap::new(), complete: HashSet::new(), bytes: 0 })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The directory's URL or folder, as given.
    pub fn label(&self) -> &Path {
        &self.label
    }

    /// Arrays in GPU memory so far.
    pub fn array_count(&self) -> usize {
        self.arrays.len()
    }

    /// GPU bytes of the arrays so far.
    pub fn gpu_bytes(&self) -> u64 {
        self.bytes
    }

    /// One stored array by its key inside its shard (`model/key`), as it arrived.
    pub fn array(&self, model: &str, key: &str) -> Option<&GpuTensor> {
        let m = self.manifest.models.iter().position(|e| e.name == model)?;
        let shard = self.manifest.models[m].shards.iter().position(|s| s.tensors.iter().any(|k| k == key))?;
        self.arrays.get(&(m, shard, key.to_string()))
    }

    /// Begins shard `file` of model `model`; feed it with [`ShardStream::push`].
    pub fn begin_shard(&self, model: &str, file: &str) -> Result<ShardStream, WeightError> {
        let m = self.manifest.models.iter().position(|e| e.name == model).ok_or_else(|| WeightError::Missing {
            file: self.label.join(super::manifest::MANIFEST),
            keys: vec![model.to_string()],
            hint: "manifest.json lists no such model".into(),
        })?;
        let entry = &self.manifest.models[m];
        let shard = entry.shards.iter().position(|s| s.file == file).ok_or_else(|| WeightError::Manifest {
            file: self.label.join(super::manifest::MANIFEST),
            reason: format!("model `{model}` lists no shard `{file}`"),
        })?;
        // What each array of this shard must be, from the tensors whose parts it holds.
        let mut expected = HashMap::new();
        for t in &entry.tensors {
            let layout = t.layout().expect("checked by Manifest::from_json");
            let (values, scales) = t.arrays(layout);
            let mut note = |parts: &[Part], (dtype, shape): &ArraySpec| {
                for p in parts.iter().filter(|p| p.shard == shard) {
                    expected.insert(p.key.clone(), part_spec(*dtype, shape, p));
                }
            };
            note(&t.parts, &values);
            if let Some(s) = &scales {
                note(&t.scales, s);
            }
        }
        Ok(ShardStream {
            model: m,
            shard,
            file: self.label.join(file),
            want: entry.shards[shard].bytes,
            listed: entry.shards[shard].tensors.clone(),
            expected,
            got: 0,
            head: Vec::new(),
            header_done: false,
            arrays: Vec::new(),
            next: 0,
        })
    }

    /// Every shard the manifest lists has arrived whole.
    pub fn check_complete(&self) -> Result<(), WeightError> {
        for (m, model) in self.manifest.models.iter().enumerate() {
            for (i, s) in model.shards.iter().enumerate() {
                if !self.complete.contains(&(m, i)) {
                    return Err(WeightError::MissingShard { dir: self.label.clone(), shard: s.file.clone() });
                }
            }
        }
        Ok(())
    }

    /// Model `name` as a [`TensorSource`] for its loader. Its plainly stored arrays are copied back from the GPU
    /// for the loaders' host reads (see the module comment); packed weights stay where they are.
    ///
    /// `host_packed` names packed weights to copy back as well (the misses of an earlier try).
    pub async fn source(&self, g: &Gpu, name: &str, host_packed: &[String]) -> Result<StreamedSource<'_>, LoadError> {
        let manifest_file = self.label.join(super::manifest::MANIFEST);
        let m = self.manifest.models.iter().position(|e| e.name == name).ok_or_else(|| WeightError::Missing {
            file: manifest_file.clone(),
            keys: vec![name.to_string()],
            hint: format!(
                "the streamed directory holds the models {:?}",
                self.manifest.models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>()
            ),
        })?;
        self.check_complete()?;
        let entry = &self.manifest.models[m];
        let index = ModelIndex::new(entry);
        let mut host = HashMap::new();
        for (t, layout) in entry.tensors.iter().zip(&index.layouts) {
            let dtype = match *layout {
                Layout::Plain(dtype) => dtype,
                Layout::Packed(format) => {
                    if t.shape.len() > 2 || host_packed.contains(&t.name) {
                        host.insert(t.name.clone(), self.dequantized(g, m, t, format).await?);
                    }
                    continue;
                }
            };
            let mut bytes = Vec::with_capacity(t.bytes as usize);
            for p in &t.parts {
                let (dtype, shape) = part_spec(dtype, &t.shape, p);
                let exact = shape.iter().product::<usize>() * dtype.size_bytes();
                if exact == 0 {
                    continue;
                }
                let a = self.arrays.get(&(m, p.shard, p.key.clone())).ok_or_else(|| self.lost(m, p))?;
                let mut b = g.read_bytes(a).await?;
                b.truncate(exact);
                bytes.extend_from_slice(&b);
            }
            host.insert(t.name.clone(), bytes);
        }
        Ok(StreamedSource {
            weights: self,
            model: m,
            label: manifest_file.join(name),
            index,
            host,
            misses: RefCell::new(Vec::new()),
        })
    }

    /// A packed weight's values as f32 bytes, from its words read back from the GPU.
    async fn dequantized(
        &self,
        g: &Gpu,
        m: usize,
        t: &TensorEntry,
        format: WeightFormat,
    ) -> Result<Vec<u8>, LoadError> {
        let (values, scales) = t.arrays(Layout::Packed(format));
        let words = u32s(&g.read_bytes(&self.joined(g, m, &t.parts, &values)?).await?);
        let scales = match &scales {
            Some(spec) => u32s(&g.read_bytes(&self.joined(g, m, &t.scales, spec)?).await?),
            None => Vec::new(),
        };
        let (n, k) = super::manifest::gemm_dims(&t.shape);
        let p = PackedWeight { format, n, k, words, scales };
        Ok(p.dequantize().iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn lost(&self, m: usize, p: &Part) -> WeightError {
        let model = &self.manifest.models[m];
        WeightError::Shard {
            file: self.label.join(&model.shards[p.shard].file),
            reason: format!("the array `{}` never arrived", p.key),
        }
    }

    /// The GPU arrays of `parts`, laid end to end (one part is used as it is).
    fn joined(&self, g: &Gpu, m: usize, parts: &[Part], spec: &ArraySpec) -> Result<GpuTensor, LoadError> {
        let mut tensors = Vec::with_capacity(parts.len());
        for p in parts {
            tensors.push(self.arrays.get(&(m, p.shard, p.key.clone())).ok_or_else(|| self.lost(m, p))?.clone());
        }
        if let [one] = &tensors[..] {
            return Ok(one.clone());
        }
        let (dtype, shape) = gpu_layout(spec.0, &spec.1);
        Ok(g.concat(&parts[0].key, &tensors, &shape, dtype)?)
    }
}

/// How a stored array sits in GPU memory: floats and 32-bit words as themselves, any other type (fp8 weights,
/// byte tables) as its raw bytes in 32-bit words.
fn gpu_layout(dtype: WeightDType, shape: &[usize]) -> (DType, Vec<usize>) {
    match dtype {
        WeightDType::F32 => (DType::F32, shape.to_vec()),
        WeightDType::F16 => (DType::F16, shape.to_vec()),
        WeightDType::BF16 => (DType::BF16, shape.to_vec()),
        WeightDType::U32 | WeightDType::I32 => (DType::U32, shape.to_vec()),
        d => (DType::U32, vec![(shape.iter().product::<usize>() * d.size_bytes()).div_ceil(4)]),
    }
}

/// One array of a shard on its way in.
struct Incoming {
    key: String,
    range: Range<u64>,
    writer: Option<TensorWriter>,
}

/// One shard arriving in chunks. Errors name the shard and say what to fetch again.
pub struct ShardStream {
    model: usize,
    shard: usize,
    file: PathBuf,
    want: u64,
    listed: Vec<String>,
    expected: HashMap<String, ArraySpec>,
    got: u64,
    head: Vec<u8>,
    header_done: bool,
    /// In file order, once the header is in.
    arrays: Vec<Incoming>,
    next: usize,
}

impl ShardStream {
    /// The shard's file name (with the directory's label).
    pub fn file(&self) -> &Path {
        &self.file
    }

    fn bad(&self, reason: String) -> WeightError {
        WeightError::Shard { file: self.file.clone(), reason }
    }

    /// Takes the next chunk of the file: header bytes are gathered until the header is whole, array bytes go
    /// to their GPU buffers now.
    pub fn push(&mut self, g: &Gpu, weights: &mut StreamedWeights, chunk: &[u8]) -> Result<(), LoadError> {
        let mut pos = self.got;
        self.got += chunk.len() as u64;
        if self.got > self.want {
            return Err(self
                .bad(format!(
                    "more than the {} bytes manifest.json lists arrived (the file is longer than written)",
                    self.want
                ))
                .into());
        }
        let mut rest = chunk;
        if !self.header_done {
            let taken = self.gather_header(g, rest)?;
            rest = &rest[taken..];
            pos += taken as u64;
            if !self.header_done {
                return Ok(());
            }
        }
        while self.next < self.arrays.len() {
            let a = &mut self.arrays[self.next];
            if a.range.is_empty() || pos >= a.range.end {
                self.complete_one(g, weights)?;
                continue;
            }
            if rest.is_empty() {
                break;
            }
            if pos < a.range.start {
                let skip = ((a.range.start - pos) as usize).min(rest.len());
                rest = &rest[skip..];
                pos += skip as u64;
                continue;
            }
            let take = ((a.range.end - pos) as usize).min(rest.len());
            if let Some(w) = a.writer.as_mut() {
                w.push(g, &rest[..take])?;
            }
            rest = &rest[take..];
            pos += take as u64;
        }
        Ok(())
    }

    /// Gathers header bytes from `chunk`; parses and checks the header once whole. Returns the bytes taken.
    fn gather_header(&mut self, g: &Gpu, chunk: &[u8]) -> Result<usize, LoadError> {
        let mut taken = 0;
        loop {
            let target = match SafetensorsHeader::prefix_len(&self.head) {
                None if self.head.len() < 8 => 8,
                // A length that overflows, runs past the file or the header limit: parsing names the problem.
                None => break,
                Some(p) if p > self.want || p > MAX_HEADER_BYTES + 8 => break,
                Some(p) if self.head.len() as u64 >= p => break,
                Some(p) => p as usize,
            };
            let take = (target - self.head.len()).min(chunk.len() - taken);
            self.head.extend_from_slice(&chunk[taken..taken + take]);
            taken += take;
            if self.head.len() < target {
                return Ok(taken);
            }
        }
        let header = SafetensorsHeader::parse(self.file.clone(), &self.head, self.want)?;
        self.head = Vec::new();
        self.start_arrays(g, &header)?;
        self.header_done = true;
        Ok(taken)
    }

    /// Checks the header against the manifest and allocates every array's GPU buffer.
    fn start_arrays(&mut self, g: &Gpu, header: &SafetensorsHeader) -> Result<(), LoadError> {
        let found: HashSet<&str> = header.tensors().iter().map(|t| t.name.as_str()).collect();
        if let Some(k) = self.listed.iter().find(|k| !found.contains(k.as_str())) {
            return Err(self.bad(format!("the array `{k}` that manifest.json lists is not in the shard")).into());
        }
        let listed: HashSet<&str> = self.listed.iter().map(String::as_str).collect();
        if let Some(k) = found.iter().find(|k| !listed.contains(*k)) {
            return Err(self.bad(format!("the shard holds `{k}`, which manifest.json does not list")).into());
        }
        let mut arrays = Vec::with_capacity(header.tensors().len());
        for t in header.tensors() {
            if let Some((dtype, shape)) = self.expected.get(&t.name) {
                if t.dtype != *dtype || &t.shape != shape {
                    return Err(self
                        .bad(format!(
                            "`{}` is {} {:?}, manifest.json expects {dtype} {shape:?}",
                            t.name, t.dtype, t.shape
                        ))
                        .into());
                }
            }
            let range = header.byte_range(&t.name).expect("every listed tensor has a range");
            let writer = if range.is_empty() {
                None
            } else {
                let (dtype, shape) = gpu_layout(t.dtype, &t.shape);
                let label = format!("{}:{}", self.file.display(), t.name);
                Some(TensorWriter::new(g.alloc(&label, &shape, dtype)?, range.end - range.start)?)
            };
            arrays.push(Incoming { key: t.name.clone(), range, writer });
        }
        arrays.sort_by_key(|a| a.range.start);
        self.arrays = arrays;
        Ok(())
    }

    /// The current array is whole: its tensor joins the store.
    fn complete_one(&mut self, g: &Gpu, weights: &mut StreamedWeights) -> Result<(), LoadError> {
        let a = &mut self.arrays[self.next];
        self.next += 1;
        if let Some(w) = a.writer.take() {
            let t = w.finish(g)?;
            weights.bytes += t.len_bytes();
            weights.arrays.insert((self.model, self.shard, a.key.clone()), t);
        }
        Ok(())
    }

    /// Called after the last chunk: the shard must have arrived whole.
    pub fn finish(mut self, g: &Gpu, weights: &mut StreamedWeights) -> Result<(), LoadError> {
        if self.got == self.want && !self.header_done {
            let e = SafetensorsHeader::parse(self.file.clone(), &self.head, self.want).err();
            return Err(e.unwrap_or_else(|| self.bad("the file ends inside its safetensors header".into())).into());
        }
        if self.got != self.want {
            return Err(self
                .bad(format!(
                    "received {} bytes, manifest.json lists {} (the download was cut off, or the file is not the \
                     one the manifest names)",
                    self.got, self.want
                ))
                .into());
        }
        // Arrays that end the file complete with its last byte.
        while self.next < self.arrays.len() {
            let a = &self.arrays[self.next];
            if a.writer.as_ref().is_some_and(|w| !w.is_full()) {
                return Err(self.bad(format!("the array `{}` is cut off", a.key)).into());
            }
            self.complete_one(g, weights)?;
        }
        weights.complete.insert((self.model, self.shard));
        Ok(())
    }
}

/// One model of a [`StreamedWeights`] for its loader (see [`StreamedWeights::source`]).
pub struct StreamedSource<'a> {
    weights: &'a StreamedWeights,
    model: usize,
    label: PathBuf,
    index: ModelIndex,
    /// The plainly stored tensors' bytes, joined; packed convolution kernels as f32.
    host: HashMap<String, Vec<u8>>,
    /// Packed weights a loader asked for on the host.
    misses: RefCell<Vec<String>>,
}

impl StreamedSource<'_> {
    /// Packed weights the loader asked for on the host that were not copied back (see the module comment).
    pub fn host_misses(&self) -> Vec<String> {
        self.misses.borrow().clone()
    }

    fn entry(&self, name: &str) -> Option<(usize, &super::manifest::TensorEntry)> {
        let i = *self.index.index.get(name)?;
        Some((i, &self.weights.manifest.models[self.model].tensors[i]))
    }
}

impl TensorSource for StreamedSource<'_> {
    fn file(&self) -> &Path {
        &self.label
    }

    fn tensors(&self) -> &[TensorInfo] {
        &self.index.infos
    }

    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.index.get(name).map(|&i| &self.index.infos[i])
    }

    fn view(&self, name: &str) -> Result<TensorView<'_>, WeightError> {
        let info = self.info(name).ok_or_else(|| missing(&self.label, name))?;
        match self.host.get(name) {
            Some(b) => Ok(TensorView { info, bytes: Cow::Borrowed(b) }),
            None => {
                self.misses.borrow_mut().push(name.to_string());
                Err(WeightError::Unsupported {
                    file: self.label.clone(),
                    what: format!("reading the packed weight `{name}` on the host"),
                    fix: "packed weights stay in GPU memory and load only as GEMM weights".into(),
                })
            }
        }
    }

    fn resident_f32(&self, name: &str) -> Option<GpuTensor> {
        let (i, t) = self.entry(name)?;
        match (self.index.layouts[i], &t.parts[..]) {
            (Layout::Plain(WeightDType::F32), [p]) => {
                let a = self.weights.arrays.get(&(self.model, p.shard, p.key.clone()))?;
                a.reshape(&t.shape)
            }
            _ => None,
        }
    }

    fn resident_weight(&self, g: &Gpu, name: &str) -> Result<Option<Weight>, LoadError> {
        let Some((i, t)) = self.entry(name) else { return Ok(None) };
        let Layout::Packed(format) = self.index.layouts[i] else { return Ok(None) };
        let (values, scales) = t.arrays(self.index.layouts[i]);
        let words = self.weights.joined(g, self.model, &t.parts, &values)?;
        let scales = match &scales {
            Some(spec) => Some(self.weights.joined(g, self.model, &t.scales, spec)?),
            None => None,
        };
        let (n, k) = super::manifest::gemm_dims(&t.shape);
        Ok(Some(Weight::from_words(format, n, k, words, scales)?))
    }
}
