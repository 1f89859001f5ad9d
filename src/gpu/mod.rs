//! The GPU layer: adapter choice, the device and its limits, tensors, the buffer pool, the pipeline cache and
//! command batching. Everything above this folder talks to wgpu only through [`Gpu`].

mod adapter;
mod context;
mod error;
mod pool;
mod shader;
mod tensor;
mod writer;

pub use adapter::{describe_adapters, AdapterSummary, Caps};
pub use context::{spread, Gpu, GpuOptions, MemoryStats, Pipeline};
pub use error::GpuError;
pub use pool::size_class;
pub use shader::{Access, Family, Spec};
pub use tensor::{Binding, DType, GpuTensor};
pub use writer::TensorWriter;

/// Runs a future to completion on this thread (native only; the browser awaits instead).
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}
