//! Kernel launchers: one module per WGSL family in `shaders/`. Nothing here knows about any network.
//! Every launcher checks shapes and dtypes before it dispatches, and splits work so that no binding exceeds the
//! adapter's `max_storage_buffer_binding_size`.

mod error;
pub mod gemm;

pub use error::{Check, KernelError};

/// Every variant of every family, for the validation test and `nava info`.
pub fn all_variants() -> Vec<crate::gpu::Spec> {
    let mut v = Vec::new();
    v.extend(gemm::variants());
    v
}
