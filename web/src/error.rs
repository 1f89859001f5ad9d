//! Errors of the browser layer. Each message names the object, what was expected and what to do; the page
//! shows it as it is.

use nava::gpu::GpuError;
use nava::kernels::KernelError;
use nava::pipeline::PipelineError;
use nava::weights::{LoadError, WeightError};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "this browser has no WebGPU adapter ({0}). Use a recent Chromium (with WebGPU enabled) or Firefox with \
         dom.webgpu.enabled, on a machine with a GPU driver"
    )]
    NoAdapter(String),
    #[error("the adapter `{adapter}` is too small for NAVA: {}. Use another browser or GPU", .lacks.join("; "))]
    AdapterTooSmall { adapter: String, lacks: Vec<String> },
    #[error("{what}: {problem}. Is this a directory written by `nava convert`?")]
    Manifest { what: String, problem: String },
    #[error(
        "{model}: the array `{key}` needs a {bytes}-byte GPU buffer, over this adapter's maxBufferSize of \
         {limit} bytes. Convert the model with a smaller format (--quant q4) or use a larger adapter"
    )]
    ModelTooLarge { model: String, key: String, bytes: u64, limit: u64 },
    #[error("no shard upload is in progress: call beginShard first")]
    NoShard,
    #[error("no converted model is loaded: press Load model (or pick the built-in tiny model)")]
    NoModel,
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Pipeline(nava::pipeline::PipelineError),
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

impl From<LoadError> for WebError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Weights(w) => WebError::Weights(w),
            LoadError::Kernel(KernelError::Gpu(g)) => WebError::Gpu(g),
            LoadError::Kernel(k) => WebError::Input(k.to_string()),
        }
    }
}

impl From<PipelineError> for WebError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Cancelled => WebError::Cancelled,
            PipelineError::Input(m) => WebError::Input(m),
            e => WebError::Pipeline(e),
        }
    }
}
