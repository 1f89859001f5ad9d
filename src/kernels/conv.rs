//! Launcher for `shaders/conv.wgsl` (being written).

use crate::gpu::Spec;

/// Every variant, for the validation test.
pub fn variants() -> Vec<Spec> {
    Vec::new()
}
