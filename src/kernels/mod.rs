//! Kernel launchers: one module per WGSL family in `shaders/`. Nothing here knows about any network.
//! Every launcher checks shapes and dtypes before it dispatches, and splits work so that no binding exceeds the
//! adapter's `max_storage_buffer_binding_size`.

pub mod attention;
pub mod attentive_stats;
pub mod audio;
pub mod conv;
pub mod conv2d_cl;
pub mod elementwise;
mod error;
pub mod gemm;
pub mod matmul;
pub mod norm;
pub mod rope;

pub use error::{Check, KernelError};

/// The variant each family will run on this device, one line per family/format (for `nava info`).
pub fn selected_variants(g: &crate::gpu::Gpu) -> Vec<String> {
    let mut v = Vec::new();
    v.extend(gemm::selected(g));
    v.extend(attention::selected(g));
    v.extend(rope::variants().into_iter().map(|s| s.label));
    v.extend(norm::selected(g));
    v.extend(elementwise::variants().into_iter().map(|s| s.label));
    v.extend(conv::selected(g));
    v.extend(audio::variants().into_iter().map(|s| s.label));
    v.extend(conv2d_cl::variants().into_iter().map(|s| s.label));
    v.extend(attentive_stats::variants().into_iter().map(|s| s.label));
    v.extend(matmul::selected(g));
    v
}

/// Every variant of every family, for the validation test and `nava info`.
pub fn all_variants() -> Vec<crate::gpu::Spec> {
    let mut v = Vec::new();
    v.extend(gemm::variants());
    v.extend(attention::variants());
    v.extend(rope::variants());
    v.extend(norm::variants());
    v.extend(elementwise::variants());
    v.extend(conv::variants());
    v.extend(audio::variants());
    v.extend(conv2d_cl::variants());
    v.extend(attentive_stats::variants());
    v.extend(matmul::variants());
    v
}
