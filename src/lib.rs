//! NAVA — synchronized video and stereo audio generation from text — on any GPU through wgpu.
//!
//! Data flows one way through the modules: `gpu` → `kernels` → `weights` → `model` → `pipeline` → `io`.

pub mod gpu;
pub mod io;
pub mod kernels;
pub mod model;
#[cfg(not(target_arch = "wasm32"))]
pub mod oracle;
pub mod pipeline;
pub mod weights;

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
