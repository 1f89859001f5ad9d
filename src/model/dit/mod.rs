//! NAVA denoiser — reference `WanAVModel` (model_mm.py), NAVA.md §4. Keys under `backbone.`.

mod config;

pub use config::{DitConfig, SPK_DIM};

