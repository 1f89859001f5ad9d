//! Errors of the GPU layer. Each message says what failed and what the user can do about it.

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter found{}. Install a Vulkan, Metal or DX12 driver; on Linux without a GPU, \
             `apt-get install mesa-vulkan-drivers` gives the lavapipe CPU driver{}", wanted_suffix(.wanted), found_suffix(.found))]
    NoAdapter { wanted: Option<String>, found: Vec<String> },
    #[error("the adapter `{adapter}` refused a device: {reason}")]
    RequestDevice { adapter: String, reason: String },
    #[error(
        "out of GPU memory allocating {what} ({bytes} bytes; {live} bytes already live). \
             Use a smaller weight format (--quant q4), a lower --max-vram, or a smaller size"
    )]
    OutOfMemory { what: String, bytes: u64, live: u64 },
    #[error(
        "{what} needs a buffer of {bytes} bytes, over this adapter's max_buffer_size of {limit} bytes. \
             Use a smaller weight format or size, or an adapter with larger buffers"
    )]
    BufferTooLarge { what: String, bytes: u64, limit: u64 },
    #[error(
        "{what}: binding of {bytes} bytes exceeds max_storage_buffer_binding_size ({limit} bytes); \
             the launcher must split this tensor"
    )]
    BindingTooLarge { what: String, bytes: u64, limit: u64 },
    #[error("the GPU device was lost ({0}); restart the program, and if it repeats, lower --max-vram")]
    DeviceLost(String),
    #[error("GPU validation error in {label}: {message}")]
    Validation { label: String, message: String },
    #[error("reading a buffer back from the GPU failed: {0}")]
    Readback(String),
    #[error("writing into {what}: {reason}")]
    Write { what: String, reason: String },
    #[error("{what}: {got} bytes of data for a tensor of {want} bytes")]
    UploadSize { what: String, got: usize, want: usize },
}

fn wanted_suffix(w: &Option<String>) -> String {
    match w {
        Some(w) => format!(" matching `{w}` (from --adapter or NAVA_ADAPTER)"),
        None => String::new(),
    }
}

fn found_suffix(found: &[String]) -> String {
    if found.is_empty() {
        String::new()
    } else {
        format!(". Adapters present: {}", found.join("; "))
    }
}
