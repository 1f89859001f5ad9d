//! Block offload for GPUs smaller than the model: a block is either resident, or kept in host memory (GEMM
//! weights already packed) and uploaded when it runs. Uploads go through the buffer pool, so each block reuses
//! the buffers of the block before it. Chosen from a VRAM budget, or forced.

use crate::kernels::gemm::WeightFormat;
use crate::model::ModelError;
use crate::weights::{KeyTable, MemorySource, Scope, TensorSource};

use super::DitConfig;

/// Where the transformer blocks live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Offload {
    /// Every block on the GPU.
    #[default]
    Never,
    /// Every block in host memory, uploaded when it runs (`--offload`).
    Always,
    /// As many blocks on the GPU as fit in this many bytes with the rest of the model and room for activations
    /// (`--max-vram`); the others in host memory.
    Budget(u64),
    /// Exactly this many blocks (double first, then single) on the GPU, the rest in host memory: what a memory plan
    /// (`pipeline::plan`) chose for a budget from the real activation sizes.
    Resident(usize),
}

/// How to load the DiT.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    pub format: WeightFormat,
    pub offload: Offload,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { format: WeightFormat::F32, offload: Offload::Never }
    }
}

/// A block on the GPU, or its weights in host memory under `prefix`.
pub(crate) enum Slot<B> {
    Resident(B),
    Host { weights: MemorySource, prefix: String },
}

impl<B> Slot<B> {
    /// Runs `f` on the block, uploading it first when it is offloaded (it is dropped afterwards, and its buffers
    /// go back to the pool for the next block).
    pub(crate) fn with<T>(
        &self,
        load: impl FnOnce(Scope) -> Result<B, ModelError>,
        f: impl FnOnce(&B) -> Result<T, ModelError>,
    ) -> Result<T, ModelError> {
        match self {
            Slot::Resident(b) => f(b),
            Slot::Host { weights, prefix } => f(&load(Scope::root(weights, prefix))?),
        }
    }

    pub(crate) fn upload_bytes(&self) -> u64 {
        match self {
            Slot::Resident(_) => 0,
            Slot::Host { weights, .. } => weights.upload_bytes(),
        }
    }
}

/// Loads block `prefix` (`double_blocks.3.`) resident or into host memory.
pub(crate) fn load_slot<B>(
    src: &dyn TensorSource,
    prefix: &str,
    resident: bool,
    format: WeightFormat,
    load: impl FnOnce(Scope) -> Result<B, ModelError>,
) -> Result<Slot<B>, ModelError> {
    if resident {
        Ok(Slot::Resident(load(Scope::root(src, prefix))?))
    } else {
        Ok(Slot::Host { weights: MemorySource::capture(src, prefix, format)?, prefix: prefix.to_string() })
    }
}

/// GPU bytes of the tensors of `table` whose key starts with `prefix` (GEMM weights in `format`).
fn bytes_of(table: &KeyTable, prefix: &str, format: WeightFormat) -> u64 {
    table
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, s)| {
            let n: usize = s.iter().product();
            if s.len() == 2 && k.ends_with(".weight") {
                (n as f64 * format.bits_per_weight() / 8.0) as u64
            } else {
                4 * n as u64
            }
        })
        .sum()
}

/// How many blocks (double first, then single) stay on the GPU.
pub fn resident_blocks(c: &DitConfig, prefix: &str, opts: &LoadOptions) -> usize {
    let total = c.num_double_layers + c.num_single_layers;
    let budget = match opts.offload {
        Offload::Never => return total,
        Offload::Always => return 0,
        Offload::Resident(n) => return n.min(total),
        Offload::Budget(b) => b,
    };
    let table = c.key_table(prefix);
    let all = bytes_of(&table, prefix, opts.format);
    let double = bytes_of(&table, &format!("{prefix}double_blocks.0."), opts.format);
    let single = bytes_of(&table, &format!("{prefix}single_blocks.0."), opts.format);
    let blocks = double * c.num_double_layers as u64 + single * c.num_single_layers as u64;
    // Room for activations and two uploaded blocks in flight: a quarter of the budget.
    let room = (budget / 4 * 3).saturating_sub(all - blocks).saturating_sub(2 * double.max(single));
    let mut used = 0;
    let mut n = 0;
    for i in 0..total {
        let b = if i < c.num_double_layers { double } else { single };
        if used + b > room {
            break;
        }
        used += b;
        n += 1;
    }
    n
}

/// Uploads done per forward pass by the offloaded blocks, for the user and the benchmarks.
pub(crate) fn report(slots: impl Iterator<Item = u64>) -> (usize, u64) {
    slots.filter(|&b| b > 0).fold((0, 0), |(n, s), b| (n + 1, s + b))
}
