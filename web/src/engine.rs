//! [`Engine`]: the page's handle on the GPU, the weights streamed so far and the run in progress.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use nava::gpu::{DType, Gpu};
use nava::model::dit::Offload;
use nava::pipeline::generate::{generate, ModelSource, Models};
use nava::weights::{ShardStream, StreamedWeights};
use wasm_bindgen::prelude::*;

use crate::error::WebError;
use crate::stream::plan;

impl From<WebError> for JsValue {
    fn from(e: WebError) -> Self {
        let err = js_sys::Error::new(&e.to_string());
        let kind = match e {
            WebError::NoAdapter(_) => "no-adapter",
            WebError::AdapterTooSmall { .. } => "adapter-too-small",
            WebError::Manifest { .. } => "manifest",
            WebError::ModelTooLarge { .. } => "model-too-large",
            WebError::Weights(_) => "shard",
            WebError::NoModel => "no-model",
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
        loading: None,
        loaded: None,
        shard: None,
        cancel: Rc::new(Cell::new(false)),
        models: Rc::new(RefCell::new(None)),
    })
}

#[wasm_bindgen]
pub struct Engine {
    gpu: Rc<Gpu>,
    info: serde_json::Value,
    /// The converted directory whose shards are arriving.
    loading: Option<StreamedWeights>,
    /// The converted directory in GPU memory, once every shard has arrived.
    loaded: Option<Arc<StreamedWeights>>,
    shard: Option<ShardStream>,
    cancel: Rc<Cell<bool>>,
    /// The models of the last run (the tiny model stays loaded between runs).
    models: Rc<RefCell<Option<Models>>>,
}

#[wasm_bindgen]
impl Engine {
    /// The adapter, its limits and what NAVA needs of them.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> JsValue {
        json(&self.info)
    }

    /// Starts loading a converted directory (`label`: its URL or folder, for messages): drops the weights loaded
    /// before and returns the shards to deliver, `[{model, file, bytes}]`.
    #[wasm_bindgen(js_name = beginModel)]
    pub fn begin_model(&mut self, manifest_json: &str, label: Option<String>) -> Result<JsValue, JsValue> {
        self.cancel.set(false);
        self.shard = None;
        self.loading = None;
        self.loaded = None;
        if self.models.borrow().as_ref().is_some_and(|m| !m.is_tiny()) {
            *self.models.borrow_mut() = None;
        }
        self.gpu.trim();
        let label = label.unwrap_or_else(|| "the converted directory".into());
        let (w, shards) = plan(&label, manifest_json, self.gpu.limits.max_buffer_size)?;
        self.loading = Some(w);
        Ok(json(&shards))
    }

    /// Starts shard `file` of `model` (as listed by `beginModel`).
    #[wasm_bindgen(js_name = beginShard)]
    pub fn begin_shard(&mut self, model: &str, file: &str) -> Result<(), JsValue> {
        let w = self.loading.as_ref().ok_or(WebError::NoShard)?;
        self.shard = Some(w.begin_shard(model, file).map_err(WebError::from)?);
        Ok(())
    }

    /// The next chunk of the current shard, written into GPU buffers now.
    #[wasm_bindgen(js_name = shardChunk)]
    pub fn shard_chunk(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        if self.cancel.get() {
            self.shard = None;
            return Err(WebError::Cancelled.into());
        }
        let (Some(shard), Some(w)) = (self.shard.as_mut(), self.loading.as_mut()) else {
            return Err(WebError::NoShard.into());
        };
        shard.push(&self.gpu, w, chunk).map_err(WebError::from)?;
        Ok(())
    }

    #[wasm_bindgen(js_name = endShard)]
    pub fn end_shard(&mut self) -> Result<(), JsValue> {
        let (Some(shard), Some(w)) = (self.shard.take(), self.loading.as_mut()) else {
            return Err(WebError::NoShard.into());
        };
        shard.finish(&self.gpu, w).map_err(WebError::from)?;
        Ok(())
    }

    /// After the last shard: every array the manifest lists is on the GPU. Returns `{models, arrays, bytes}`.
    #[wasm_bindgen(js_name = endModel)]
    pub fn end_model(&mut self) -> Result<JsValue, JsValue> {
        let w = self.loading.take().ok_or(WebError::NoShard)?;
        w.check_complete().map_err(WebError::from)?;
        self.gpu.check().map_err(WebError::from)?;
        let summary = serde_json::json!({
            "models": w.manifest().models.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
            "arrays": w.array_count(),
            "bytes": w.gpu_bytes(),
        });
        self.loaded = Some(Arc::new(w));
        Ok(json(&summary))
    }

    /// Sum of one loaded array's values (`key` inside its shard), read back from the GPU (the page's self-check
    /// and the tests).
    #[wasm_bindgen(js_name = arraySum)]
    pub async fn array_sum(&self, model: String, key: String) -> Result<f64, JsValue> {
        let t = match (&self.loaded, &self.loading) {
            (Some(w), _) => w.array(&model, &key).cloned(),
            (None, Some(w)) => w.array(&model, &key).cloned(),
            (None, None) => None,
        };
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

    /// Runs one generation on the built-in tiny model (`request.model` absent or `'tiny'`) or on the loaded
    /// converted directory (`'converted'`). `on_event` receives `{type: 'stage', stage, done, total}`,
    /// `{type: 'frame', index, width, height, rgba}` and `{type: 'warning', message}`; resolves to
    /// `{fps, frames, sampleRate, left, right}`.
    pub async fn generate(&self, request: JsValue, on_event: js_sys::Function) -> Result<JsValue, JsValue> {
        self.cancel.set(false);
        let req = crate::generate::request(&request)?;
        let source = match crate::generate::model(&request).as_str() {
            "converted" => ModelSource::Streamed(self.loaded.clone().ok_or(WebError::NoModel)?),
            _ => ModelSource::Tiny,
        };
        let taken = self.models.borrow_mut().take().filter(|m| *m.source() == source);
        let mut models = match taken {
            Some(m) => m,
            None => {
                let mut m = Models::open(&source, None, Offload::Never).map_err(WebError::from)?;
                // The tiny model stays on the GPU between runs; a converted one keeps only its streamed arrays
                // there, each model being built for its stage and dropped after it.
                m.keep_loaded = m.is_tiny();
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
