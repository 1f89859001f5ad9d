//! The networks, one module each, as plain structs that mirror the reference modules and call kernels.

pub mod dit;
mod error;
mod known;
pub mod layers;
pub mod text_encoder;
pub mod video_vae;

pub use error::ModelError;
pub use known::KnownModel;
