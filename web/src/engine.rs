//! [`Engine`]: the page's handle on the GPU, the weights streamed so far and the run in progress.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use nava::gpu::{DType, Gpu};
use nava::model::dit::Offload;
use nava::pipeline::generate::{generate, ModelSource, Models};
use nava::weights::manifest::Manifest;
use wasm_bindgen::prelude::*;

use crate::error::WebError;
use crate::stream::{plan, GpuStore, ShardUpload};

impl From<WebError> for JsValue {
    fn from(e: WebError) -> Self {
        let err = js_sys::Error::new(&e.to_string());
        let kind = match e {
            WebError::NoAdapter(_) => "no-adapter",
            WebError::AdapterTooSmall { .. } => "adapter-too-small",
            WebError::Manifest { .. } => "manifest",
            WebError::ModelTooLarge { .. } => "model-too-large",
            WebError::ShardLength { .. } | WebError::MissingArrays { .. } | WebError::Weights(_) => "shard",
            WebError::Gpu(_) => "gpu",
            WebError::Cancelled => "cancelled",
            WebError::Input(_) => "input",
            WebError::Pipeline(_) => "generation",
            WebError::NoShard => "internal",
        };
        err.set_name(kind);
        err.into()
    }
}

fn json(v: &serde_json::Value) -> JsValue {
    js_sys::JSON::parse(&v.to_string()).unwrap_or(JsValue::NULL)
}

/// Sends panics to the console with their message, once.
fn panic_hook() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            web_log(&format!("nava panicked: {info}"));
        }))
    });
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn web_log(s: &str);
}

/// Opens WebGPU and checks the adapter against what the kernels need.
#[wasm_bindgen(js_name = openEngine)]
pub async fn open_engine() -> Result<Engine, JsValue> {
    panic_hook();
    let (gpu, info) = crate::device::open().await?;
    Ok(Engine {
        gpu: Rc::new(gpu),
        info,
        store: Rc::new(RefCell::new(GpuStore::default())),
        manifest: None,
        shard: None,
        cancel: Rc::new(Cell::new(false)),
        models: Rc::new(RefCell::new(None)),
    })
}

#[wasm_bindgen]
pub struct Engine {
    gpu: Rc<Gpu>,
    info: serde_json::Value,
    store: Rc<RefCell<GpuStore>>,
    manifest: Option<Manifest>,
    shard: Option<ShardUpload>,
    cancel: Rc<Cell<bool>>,
    /// The tiny model, kept between runs.
    models: Rc<RefCell<Option<Models>>>,
}

#[wasm_bindgen]
impl Engine {
    /// The adapter, its limits and what NAVA needs of them.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> JsValue {
        json(&self.info)
    }

    /// Starts loading a converted directory: drops the weights loaded before and returns the shards to deliver,
    /// `[{model, file, bytes}]`.
    #[wasm_bindgen(js_name = beginModel)]
    pub fn begin_model(&mut self, manifest_json: &str) -> Result<JsValue, JsValue> {
        self.cancel.set(false);
        self.shard = None;
        *self.store.borrow_mut() = GpuStore::default();
        self.gpu.trim();
        let (m, shards) = plan(manifest_json, self.gpu.limits.max_buffer_size)?;
        self.manifest = Some(m);
        Ok(json(&shards))
    }

    #[wasm_bindgen(js_name = beginShard)]
    pub fn begin_shard(&mut self, model: &str, file: &str, bytes: f64) {
        self.shard = Some(ShardUpload::new(model, file, bytes as u64));
    }

    /// The next chunk of the current shard; arrays that are complete go to the GPU now.
    #[wasm_bindgen(js_name = shardChunk)]
    pub fn shard_chunk(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        if self.cancel.get() {
            self.shard = None;
            return Err(WebError::Cancelled.into());
        }
        let shard = self.shard.as_mut().ok_or(WebError::NoShard)?;
        shard.push(&self.gpu, &mut self.store.borrow_mut(), chunk)?;
        Ok(())
    }

    #[wasm_bindgen(js_name = endShard)]
    pub fn end_shard(&mut self) -> Result<(), JsValue> {
        let shard = self.shard.take().ok_or(WebError::NoShard)?;
        shard.finish()?;
        Ok(())
    }

    /// After the last shard: every array the manifest lists is on the GPU. Returns `{arrays, bytes}`.
    #[wasm_bindgen(js_name = endModel)]
    pub fn end_model(&mut self) -> Result<JsValue, JsValue> {
        let m = self.manifest.as_ref().ok_or(WebError::NoShard)?;
        let store = self.store.borrow();
        store.check_complete(m)?;
        self.gpu.check().map_err(WebError::from)?;
        Ok(json(&serde_json::json!({
            "models": m.models.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
            "arrays": store.arrays.len(),
            "bytes": store.bytes,
        })))
    }

    /// Sum of one loaded float array's values, read back from the GPU (the page's self-check and the tests).
    #[wasm_bindgen(js_name = arraySum)]
    pub async fn array_sum(&self, model: String, key: String) -> Result<f64, JsValue> {
        let t = self.store.borrow().arrays.get(&GpuStore::key(&model, &key)).cloned();
        let t = t.ok_or_else(|| js_sys::Error::new(&format!("`{model}/{key}` is not loaded")))?;
        let values = match t.dtype() {
            DType::U32 => {
                let b = self.gpu.read_bytes(&t).await.map_err(WebError::from)?;
                b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect::<Vec<_>>()
            }
            _ => self.gpu.read_f32(&t).await.map_err(WebError::from)?.into_iter().map(f64::from).collect(),
        };
        Ok(values.iter().sum())
    }

    /// Runs one generation on the built-in tiny model. `on_event` receives `{type: 'stage', stage, done, total}`,
    /// `{type: 'frame', index, width, height, rgba}` and `{type: 'warning', message}`; resolves to
    /// `{fps, frames, sampleRate, left, right}`.
    pub async fn generate(&self, request: JsValue, on_event: js_sys::Function) -> Result<JsValue, JsValue> {
        self.cancel.set(false);
        let req = crate::generate::request(&request)?;
        let taken = self.models.borrow_mut().take();
        let mut models = match taken {
            Some(m) => m,
            None => {
                let mut m = Models::open(&ModelSource::Tiny, None, Offload::Never).map_err(WebError::from)?;
                m.keep_loaded = true;
                m
            }
        };
        let mut obs = crate::generate::PageObserver::new(on_event, self.cancel.clone());
        let out = generate(&self.gpu, &mut models, &req, &mut obs).await;
        *self.models.borrow_mut() = Some(models);
        let out = out.map_err(WebError::from)?;
        Ok(crate::generate::output(&out))
    }

    /// Stops the load or run in progress at its next chunk or step.
    pub fn cancel(&self) {
        self.cancel.set(true);
    }
}
