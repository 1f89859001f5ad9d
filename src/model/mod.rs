//! The networks, one module each, as plain structs that mirror the reference modules and call kernels.

pub mod audio_vae;
pub mod dit;
mod error;
mod known;
pub mod layers;
pub mod speaker;
pub mod text_encoder;
pub mod tokenizer;
pub mod video_vae;
pub mod vocoder;

pub use error::ModelError;
pub use known::KnownModel;
