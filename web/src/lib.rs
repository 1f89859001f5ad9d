//! NAVA in the browser: wasm bindings over the `nava` library for the demo page (`web/index.html`).
//!
//! The page's JavaScript fetches bytes (network, Cache API, chosen files) and shows things; everything that
//! touches the GPU or a model goes through here into the library — no model code of its own.
//! Natively the crate is empty, so that workspace builds and tests skip it.

#[cfg(target_arch = "wasm32")]
mod device;
#[cfg(target_arch = "wasm32")]
mod engine;
#[cfg(target_arch = "wasm32")]
mod error;
#[cfg(target_arch = "wasm32")]
mod generate;
#[cfg(target_arch = "wasm32")]
mod stream;

#[cfg(target_arch = "wasm32")]
pub use engine::{open_engine, Engine};

/// The device the page opens, for the browser kernel tests: the same adapter check, the same limits.
#[cfg(target_arch = "wasm32")]
pub async fn open_gpu() -> Result<nava::gpu::Gpu, String> {
    device::open().await.map(|(g, _)| g).map_err(|e| e.to_string())
}
