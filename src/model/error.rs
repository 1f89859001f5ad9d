//! Errors of the model layer: configuration, inputs that do not fit the model, and what the layers below report.

use crate::kernels::KernelError;
use crate::weights::{LoadError, WeightError};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model configuration: {0}")]
    Config(String),
    #[error("{what}: {problem}")]
    Input { what: String, problem: String },
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

impl From<LoadError> for ModelError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Weights(w) => ModelError::Weights(w),
            LoadError::Kernel(k) => ModelError::Kernel(k),
        }
    }
}

impl From<crate::gpu::GpuError> for ModelError {
    fn from(e: crate::gpu::GpuError) -> Self {
        ModelError::Kernel(KernelError::Gpu(e))
    }
}
