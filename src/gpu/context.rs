//! [`Gpu`]: the device, its limits and capabilities, the pipeline cache and the command batch.
//!
//! Kernel launches are recorded, not submitted: `dispatch` appends to the batch, and the batch is encoded into one
//! compute pass and submitted when it fills up, before an upload, and before a readback. Each launch's `Params`
//! go into one uniform ring buffer at a dynamic offset, so bind groups depend only on the storage bindings and
//! are cached across steps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::adapter::{choose, AdapterSummary, Caps};
use super::pool::{size_class, Buf, Pool};
use super::shader::{Access, Spec};
use super::tensor::{Binding, DType, GpuTensor};
use super::GpuError;

/// Uniform slot per dispatch; `Params` structs are at most this large.
const PARAM_SLOT: u64 = 256;
/// Dispatches recorded before the batch is submitted on its own.
const BATCH_DISPATCHES: usize = 512;
/// Bind groups kept before the cache is cleared.
const BIND_GROUP_CACHE: usize = 8192;

#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Adapter name substring or backend (`--adapter` / `NAVA_ADAPTER`).
    pub adapter: Option<String>,
    /// Turn off buffer reuse (`NAVA_NO_POOL=1`).
    pub no_pool: bool,
}

impl GpuOptions {
    /// Options from the environment: `NAVA_ADAPTER`, `NAVA_NO_POOL`.
    pub fn from_env() -> Self {
        Self {
            adapter: std::env::var("NAVA_ADAPTER").ok().filter(|s| !s.is_empty()),
            no_pool: std::env::var("NAVA_NO_POOL").is_ok_and(|v| v != "0"),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryStats {
    pub live_bytes: u64,
    pub pooled_bytes: u64,
    pub peak_bytes: u64,
}

/// Layout name (`r`/`w` per binding) and each binding's (buffer id, offset, size).
type BindGroupKey = (String, Vec<(u64, u64, u64)>);

struct CachedPipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    layout_key: Vec<Access>,
}

/// A compiled kernel variant.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<CachedPipeline>,
    pub label: Arc<str>,
}

struct Recorded {
    pipeline: Pipeline,
    bind_group: wgpu::BindGroup,
    param_offset: u32,
    groups: [u32; 3],
    // Keeps the buffers out of the pool until the batch is submitted.
    _keep: Vec<Arc<Buf>>,
}

#[derive(Default)]
struct Batch {
    recorded: Vec<Recorded>,
    params: Vec<u8>,
}

/// Errors reported by wgpu's callbacks, collected and returned by the next fallible call.
#[derive(Default)]
struct ErrorSink {
    first: Option<(String, bool)>, // message, is out-of-memory
    lost: Option<String>,
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub caps: Caps,
    /// The adapter's cooperative matrix configurations (empty without the feature), for `nava info`.
    pub coop_configs: Vec<wgpu::CooperativeMatrixProperties>,
    pool: Pool,
    pipelines: Mutex<HashMap<String, Pipeline>>,
    layouts: Mutex<HashMap<Vec<Access>, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>>,
    bind_groups: Mutex<HashMap<BindGroupKey, wgpu::BindGroup>>,
    batch: Mutex<Batch>,
    params_ring: wgpu::Buffer,
    errors: Arc<Mutex<ErrorSink>>,
    dummy: GpuTensor,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gpu {
    /// Opens the best adapter (or the one `opts.adapter` names) with its own limits and the useful optional
    /// features.
    pub async fn new(opts: &GpuOptions) -> Result<Self, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = choose(&instance, opts.adapter.as_deref()).await?;
        let summary = AdapterSummary::of(&adapter.get_info());
        let features = adapter.features() & Caps::wanted();
        let experimental = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            // SAFETY: cooperative matrices are used only by kernels that check `caps.cooperative_matrix`, and
            // those follow the feature's documented rules; the feature is requested only when offered.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("nava"),
                required_features: features,
                required_limits: adapter.limits(),
                experimental_features: experimental,
                memory_hints: wgpu::MemoryHints::Performance,
                trace: Default::default(),
            })
            .await
            .map_err(|e| GpuError::RequestDevice { adapter: summary.to_string(), reason: e.to_string() })?;
        let mut g = Self::from_device(device, queue, summary, opts);
        let coop = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            adapter.cooperative_matrix_properties()
        } else {
            Vec::new()
        };
        g.caps = g.caps.with_adapter(&adapter.get_info(), &coop);
        g.coop_configs = coop;
        Ok(g)
    }

    /// Wraps a device that the caller opened (the browser build, tests).
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, adapter: AdapterSummary, opts: &GpuOptions) -> Self {
        let errors = Arc::new(Mutex::new(ErrorSink::default()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let oom = matches!(e, wgpu::Error::OutOfMemory { .. });
            let mut s = lock(&sink);
            if s.first.is_none() {
                s.first = Some((e.to_string(), oom));
            }
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            lock(&sink).lost = Some(format!("{reason:?}: {msg}"));
        });
        let limits = device.limits();
        let features = device.features();
        let params_ring = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("nava.params"),
            size: PARAM_SLOT * BATCH_DISPATCHES as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let pool = Pool::new(!opts.no_pool, limits.min_storage_buffer_offset_alignment as u64);
        let dummy_raw = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("nava.dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let dummy = GpuTensor::new(pool.adopt(dummy_raw, 16), vec![4], DType::F32);
        Self {
            device,
            queue,
            adapter,
            caps: Caps::from_features(features),
            coop_configs: Vec::new(),
            limits,
            features,
            pool,
            pipelines: Mutex::new(HashMap::new()),
            layouts: Mutex::new(HashMap::new()),
            bind_groups: Mutex::new(HashMap::new()),
            batch: Mutex::new(Batch::default()),
            params_ring,
            errors,
            dummy,
        }
    }

    /// The largest storage binding this adapter allows, in bytes.
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size
    }

    /// Offsets of storage bindings must be multiples of this.
    pub fn binding_align(&self) -> u64 {
        self.limits.min_storage_buffer_offset_alignment as u64
    }

    /// A 16-byte tensor to fill unused binding slots.
    pub fn dummy(&self) -> &GpuTensor {
        &self.dummy
    }

    /// Returns (and clears) the first error wgpu reported since the last check.
    pub fn check(&self) -> Result<(), GpuError> {
        let mut s = lock(&self.errors);
        if let Some(lost) = &s.lost {
            return Err(GpuError::DeviceLost(lost.clone()));
        }
        match s.first.take() {
            Some((msg, true)) => Err(GpuError::OutOfMemory { what: msg, bytes: 0, live: self.memory().live_bytes }),
            Some((message, false)) => Err(GpuError::Validation { label: "device".into(), message }),
            None => Ok(()),
        }
    }

    pub fn memory(&self) -> MemoryStats {
        let (live_bytes, pooled_bytes, peak_bytes) = self.pool.stats();
        MemoryStats { live_bytes, pooled_bytes, peak_bytes }
    }

    pub fn reset_peak_memory(&self) {
        self.pool.reset_peak();
    }

    /// Frees pooled buffers that no tensor uses.
    pub fn trim(&self) {
        self.pool.trim();
    }

    /// A tensor with unspecified contents. `what` names it in errors.
    pub fn alloc(&self, what: &str, shape: &[usize], dtype: DType) -> Result<GpuTensor, GpuError> {
        let bytes = dtype.bytes_for(shape.iter().product());
        let limit = self.limits.max_buffer_size;
        if bytes > limit {
            return Err(GpuError::BufferTooLarge { what: what.to_string(), bytes, limit });
        }
        let class = size_class(bytes, limit);
        if let Some(buf) = self.pool.take(class) {
            return Ok(GpuTensor::new(buf, shape.to_vec(), dtype));
        }
        let raw = self.create_raw(what, class)?;
        Ok(GpuTensor::new(self.pool.adopt(raw, class), shape.to_vec(), dtype))
    }

    fn create_raw(&self, what: &str, size: u64) -> Result<wgpu::Buffer, GpuError> {
        let desc = wgpu::BufferDescriptor {
            label: Some(what),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        };
        let raw = self.device.create_buffer(&desc);
        if let Err(e) = self.check() {
            // Pooled buffers may be what is in the way: free them and try once more.
            raw.destroy();
            self.pool.trim();
            let raw = self.device.create_buffer(&desc);
            if self.check().is_err() {
                raw.destroy();
                return Err(match e {
                    GpuError::DeviceLost(m) => GpuError::DeviceLost(m),
                    _ => GpuError::OutOfMemory { what: what.to_string(), bytes: size, live: self.memory().live_bytes },
                });
            }
            return Ok(raw);
        }
        Ok(raw)
    }

    /// Uploads raw little-endian bytes as a tensor.
    pub fn upload_bytes(&self, what: &str, bytes: &[u8], shape: &[usize], dtype: DType) -> Result<GpuTensor, GpuError> {
        let t = self.alloc(what, shape, dtype)?;
        let want = t.len_bytes() as usize;
        let exact = match dtype {
            DType::F16 | DType::BF16 => 2 * t.numel(),
            _ => 4 * t.numel(),
        };
        if bytes.len() != exact && bytes.len() != want {
            return Err(GpuError::UploadSize { what: what.to_string(), got: bytes.len(), want: exact });
        }
        // Recorded launches must run before their buffers can be overwritten.
        self.flush()?;
        if bytes.len().is_multiple_of(4) {
            self.queue.write_buffer(&t.buf.raw, 0, bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(want, 0);
            self.queue.write_buffer(&t.buf.raw, 0, &padded);
        }
        Ok(t)
    }

    /// Writes `bytes` into `t` starting `offset` bytes into its data, for data that arrives in pieces (weights
    /// streamed from the network). wgpu writes whole 32-bit words, so `offset` must be a multiple of 4, and so must
    /// `bytes.len()` unless the write ends exactly at the end of the tensor's data (the last word is then padded
    /// with zeros). [`TensorWriter`](super::TensorWriter) carries unaligned chunk tails over to the next chunk.
    pub fn write_at(&self, t: &GpuTensor, offset: u64, bytes: &[u8]) -> Result<(), GpuError> {
        let what = || format!("{t:?}");
        let size = t.len_bytes();
        let end = offset.saturating_add(bytes.len() as u64);
        if end > size {
            return Err(GpuError::Write {
                what: what(),
                reason: format!("bytes {offset}..{end} fall outside its {size} bytes"),
            });
        }
        if !offset.is_multiple_of(4) {
            return Err(GpuError::Write { what: what(), reason: format!("offset {offset} is not a multiple of 4") });
        }
        if bytes.is_empty() {
            return Ok(());
        }
        // Recorded launches must run before their buffers can be overwritten.
        self.flush()?;
        if bytes.len().is_multiple_of(4) {
            self.queue.write_buffer(&t.buf.raw, t.offset() + offset, bytes);
            return Ok(());
        }
        // Only the last word of the tensor may be partial: elsewhere the padding would overwrite data.
        if end.div_ceil(4) * 4 != size {
            return Err(GpuError::Write {
                what: what(),
                reason: format!("{} bytes at offset {offset} end inside a 32-bit word", bytes.len()),
            });
        }
        let whole = bytes.len() / 4 * 4;
        self.queue.write_buffer(&t.buf.raw, t.offset() + offset, &bytes[..whole]);
        let mut last = [0u8; 4];
        last[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
        self.queue.write_buffer(&t.buf.raw, t.offset() + offset + whole as u64, &last);
        Ok(())
    }

    /// One tensor made of `parts` laid end to end (rows of one array split across shards), copied on the GPU.
    /// Every part but the last must hold whole 32-bit words.
    pub fn concat(
        &self,
        what: &str,
        parts: &[GpuTensor],
        shape: &[usize],
        dtype: DType,
    ) -> Result<GpuTensor, GpuError> {
        let t = self.alloc(what, shape, dtype)?;
        let mut at = 0u64;
        self.flush()?;
        let mut enc =
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("nava.concat") });
        for p in parts {
            let n = p.len_bytes();
            if !at.is_multiple_of(4) || at + n > t.len_bytes() {
                return Err(GpuError::Write {
                    what: what.to_string(),
                    reason: format!(
                        "a part of {n} bytes at byte {at} does not fit {} bytes in whole words",
                        t.len_bytes()
                    ),
                });
            }
            enc.copy_buffer_to_buffer(&p.buf.raw, p.offset(), &t.buf.raw, t.offset() + at, n);
            at += n;
        }
        self.queue.submit([enc.finish()]);
        self.check()?;
        Ok(t)
    }

    pub fn upload_f32(&self, what: &str, data: &[f32], shape: &[usize]) -> Result<GpuTensor, GpuError> {
        self.upload_bytes(what, bytemuck::cast_slice(data), shape, DType::F32)
    }

    pub fn upload_u32(&self, what: &str, data: &[u32], shape: &[usize]) -> Result<GpuTensor, GpuError> {
        self.upload_bytes(what, bytemuck::cast_slice(data), shape, DType::U32)
    }

    /// Uploads f32 data converted to f16.
    pub fn upload_as_f16(&self, what: &str, data: &[f32], shape: &[usize]) -> Result<GpuTensor, GpuError> {
        let h: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
        self.upload_bytes(what, bytemuck::cast_slice(&h), shape, DType::F16)
    }

    /// Compiles (once) the pipeline of a variant.
    pub fn pipeline(&self, spec: &Spec) -> Result<Pipeline, GpuError> {
        let key = spec.key();
        if let Some(p) = lock(&self.pipelines).get(&key) {
            return Ok(p.clone());
        }
        let (bgl, pl) = self.layout(&spec.bindings);
        let source = spec.source();
        if std::env::var_os("NAVA_DUMP_WGSL").is_some() {
            log::info!("WGSL of {}:\n{source}", spec.label);
            eprintln!("// ---- {} ----\n{source}", spec.label);
        }
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&spec.label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&spec.label),
            layout: Some(&pl),
            module: &module,
            entry_point: Some(spec.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &spec.constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Err(e) = self.check() {
            return Err(match e {
                GpuError::Validation { message, .. } => GpuError::Validation { label: spec.label.clone(), message },
                other => other,
            });
        }
        let p = Pipeline {
            inner: Arc::new(CachedPipeline { pipeline, layout: bgl, layout_key: spec.bindings.clone() }),
            label: spec.label.clone().into(),
        };
        lock(&self.pipelines).insert(key, p.clone());
        Ok(p)
    }

    fn layout(&self, access: &[Access]) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
        let mut layouts = lock(&self.layouts);
        if let Some(l) = layouts.get(access) {
            return l.clone();
        }
        let mut entries: Vec<wgpu::BindGroupLayoutEntry> = access
            .iter()
            .enumerate()
            .map(|(i, a)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: *a == Access::Read },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: access.len() as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: None,
            },
            count: None,
        });
        let bgl =
            self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: None, entries: &entries });
        let pl = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: None,
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        layouts.insert(access.to_vec(), (bgl.clone(), pl.clone()));
        (bgl, pl)
    }

    /// Records one launch. `bindings` are in the order of the variant's `bindings`; `params` is the WGSL
    /// `Params` struct of the family (at most 256 bytes); `groups` is the workgroup count.
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        pipe: &Pipeline,
        bindings: &[Binding],
        params: &P,
        groups: [u32; 3],
    ) -> Result<(), GpuError> {
        let label = &pipe.label;
        if bindings.len() != pipe.inner.layout_key.len() {
            return Err(GpuError::Validation {
                label: label.to_string(),
                message: format!("{} bindings given, the kernel has {}", bindings.len(), pipe.inner.layout_key.len()),
            });
        }
        let max_binding = self.max_binding();
        let align = self.binding_align();
        for (i, b) in bindings.iter().enumerate() {
            if b.size > max_binding {
                return Err(GpuError::BindingTooLarge {
                    what: format!("{label} binding {i}"),
                    bytes: b.size,
                    limit: max_binding,
                });
            }
            if b.offset % align != 0 {
                return Err(GpuError::Validation {
                    label: label.to_string(),
                    message: format!("binding {i} offset {} is not a multiple of {align}", b.offset),
                });
            }
        }
        let max_groups = self.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max_groups) {
            return Err(GpuError::Validation {
                label: label.to_string(),
                message: format!("workgroup count {groups:?} exceeds {max_groups} per dimension"),
            });
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let bytes = bytemuck::bytes_of(params);
        if bytes.len() as u64 > PARAM_SLOT {
            return Err(GpuError::Validation {
                label: label.to_string(),
                message: format!("Params exceed {PARAM_SLOT} bytes"),
            });
        }
        let bind_group = self.bind_group(pipe, bindings);
        let mut batch = lock(&self.batch);
        let param_offset = batch.params.len() as u32;
        batch.params.extend_from_slice(bytes);
        batch.params.resize(param_offset as usize + PARAM_SLOT as usize, 0);
        batch.recorded.push(Recorded {
            pipeline: pipe.clone(),
            bind_group,
            param_offset,
            groups,
            _keep: bindings.iter().map(|b| b.buf.clone()).collect(),
        });
        if batch.recorded.len() >= BATCH_DISPATCHES {
            drop(batch);
            self.flush()?;
        }
        Ok(())
    }

    fn bind_group(&self, pipe: &Pipeline, bindings: &[Binding]) -> wgpu::BindGroup {
        let layout_name: String =
            pipe.inner.layout_key.iter().map(|a| if *a == Access::Read { 'r' } else { 'w' }).collect();
        let key = (layout_name, bindings.iter().map(Binding::key).collect::<Vec<_>>());
        let mut cache = lock(&self.bind_groups);
        if let Some(bg) = cache.get(&key) {
            return bg.clone();
        }
        let mut entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &b.buf.raw,
                    offset: b.offset,
                    size: wgpu::BufferSize::new(b.size),
                }),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: bindings.len() as u32,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.params_ring,
                offset: 0,
                size: wgpu::BufferSize::new(PARAM_SLOT),
            }),
        });
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipe.inner.layout,
            entries: &entries,
        });
        if cache.len() >= BIND_GROUP_CACHE {
            cache.clear();
        }
        cache.insert(key, bg.clone());
        bg
    }

    /// Encodes and submits every recorded launch in one compute pass.
    pub fn flush(&self) -> Result<(), GpuError> {
        // The lock is held until the submit: the params ring must not be rewritten by another flush in between.
        let mut guard = lock(&self.batch);
        let batch = std::mem::take(&mut *guard);
        if batch.recorded.is_empty() {
            drop(guard);
            return self.check();
        }
        self.queue.write_buffer(&self.params_ring, 0, &batch.params);
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("nava.batch") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
            for r in &batch.recorded {
                pass.set_pipeline(&r.pipeline.inner.pipeline);
                pass.set_bind_group(0, &r.bind_group, &[r.param_offset]);
                pass.dispatch_workgroups(r.groups[0], r.groups[1], r.groups[2]);
            }
        }
        self.queue.submit([enc.finish()]);
        drop(guard);
        self.check()
    }

    /// Waits until the GPU has finished all submitted work (native; a no-op in the browser).
    pub fn wait(&self) -> Result<(), GpuError> {
        self.flush()?;
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::DeviceLost(e.to_string()))?;
        self.check()
    }

    /// Copies a tensor's bytes back to the host.
    pub async fn read_bytes(&self, t: &GpuTensor) -> Result<Vec<u8>, GpuError> {
        self.flush()?;
        let size = t.len_bytes().max(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("nava.readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("nava.read") });
        enc.copy_buffer_to_buffer(&t.buf.raw, t.offset(), &staging, 0, size);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::DeviceLost(e.to_string()))?;
        rx.await
            .map_err(|_| GpuError::Readback("the map callback was dropped".into()))?
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        self.check()?;
        let view = staging.slice(..).get_mapped_range().map_err(|e| GpuError::Readback(e.to_string()))?;
        let out = view.to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// A tensor's values as f32 (converting f16/bf16).
    pub async fn read_f32(&self, t: &GpuTensor) -> Result<Vec<f32>, GpuError> {
        let bytes = self.read_bytes(t).await?;
        let n = t.numel();
        Ok(match t.dtype() {
            DType::F32 | DType::U32 => bytemuck::cast_slice::<u8, f32>(&bytes[..4 * n]).to_vec(),
            DType::F16 => {
                bytes[..2 * n].chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            DType::BF16 => {
                bytes[..2 * n].chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
        })
    }
}

/// Blocking helpers for native code (the CLI, tests, benches).
#[cfg(not(target_arch = "wasm32"))]
impl Gpu {
    pub fn new_blocking(opts: &GpuOptions) -> Result<Self, GpuError> {
        pollster::block_on(Self::new(opts))
    }

    pub fn read_f32_blocking(&self, t: &GpuTensor) -> Result<Vec<f32>, GpuError> {
        pollster::block_on(self.read_f32(t))
    }
}

/// Splits `n` workgroups over x and y so that neither exceeds the per-dimension limit. Shaders rebuild the linear
/// index as `wid.x + wid.y * num_workgroups.x`.
pub fn spread(n: u32, max: u32) -> [u32; 2] {
    if n <= max {
        [n, 1]
    } else {
        let y = n.div_ceil(max);
        [n.div_ceil(y), y]
    }
}
