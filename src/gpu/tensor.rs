//! Tensors on the GPU: a shape, an element type and a range of a pooled buffer.
//!
//! 16-bit types are stored two to a `u32` word (WGSL reads them with `unpack2x16float` or a shift, which needs
//! neither SHADER_F16 nor anything else optional). Quantised weights are several tensors (values and scales) held
//! together by `kernels::gemm::Weight`.

use std::sync::Arc;

use super::pool::Buf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    /// Raw 32-bit words: packed quantised values, indices.
    U32,
}

impl DType {
    /// Bytes for `n` elements, rounded up to whole 32-bit words.
    pub fn bytes_for(self, n: usize) -> u64 {
        let b = match self {
            DType::F32 | DType::U32 => 4 * n,
            DType::F16 | DType::BF16 => 2 * n,
        };
        b.div_ceil(4) as u64 * 4
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::U32 => "u32",
        }
    }
}

/// A tensor in GPU memory: a whole pooled buffer, or a view of rows of one ([`GpuTensor::rows`]). Cloning shares
/// the storage.
#[derive(Clone)]
pub struct GpuTensor {
    pub(crate) buf: Arc<Buf>,
    /// Byte offset of the first element in the buffer (a multiple of 4).
    offset: u64,
    shape: Vec<usize>,
    dtype: DType,
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuTensor({} {:?})", self.dtype.name(), self.shape)
    }
}

impl GpuTensor {
    pub(crate) fn new(buf: Arc<Buf>, shape: Vec<usize>, dtype: DType) -> Self {
        Self { buf, offset: 0, shape, dtype }
    }

    /// Byte offset of this tensor (a view) inside its buffer.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// A view of `n` rows (indices along the first dimension) starting at `start`; the data is shared. `None` when
    /// the range is out of bounds or does not start on a 32-bit word.
    pub fn rows(&self, start: usize, n: usize) -> Option<GpuTensor> {
        let (&first, rest) = self.shape.split_first()?;
        if start + n > first {
            return None;
        }
        let row_elems: usize = rest.iter().product();
        let elem_bytes = match self.dtype {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
        };
        let byte = (start * row_elems * elem_bytes) as u64;
        if !byte.is_multiple_of(4) {
            return None;
        }
        let mut shape = self.shape.clone();
        shape[0] = n;
        Some(GpuTensor { buf: self.buf.clone(), offset: self.offset + byte, shape, dtype: self.dtype })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of the tensor's data (whole words).
    pub fn len_bytes(&self) -> u64 {
        self.dtype.bytes_for(self.numel())
    }

    /// The same storage under another shape with the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Option<GpuTensor> {
        (shape.iter().product::<usize>() == self.numel()).then(|| GpuTensor {
            buf: self.buf.clone(),
            offset: self.offset,
            shape: shape.to_vec(),
            dtype: self.dtype,
        })
    }

    /// Names the underlying GPU buffer (stable across pool reuse); for tests and the bind-group cache.
    pub fn binding_id(&self) -> u64 {
        self.buf.id
    }

    /// The whole tensor as one binding. For a view the binding starts at an aligned offset at or before the
    /// view, and the kernel must add `word_shift` to its indices (zero for a whole buffer).
    pub fn binding(&self) -> Binding {
        self.window(0, self.len_bytes(), self.buf.align)
    }

    /// A binding that covers bytes `[start, start + len)` of the tensor, starting at the closest offset at or below
    /// that is a multiple of `align` (the adapter's `min_storage_buffer_offset_alignment`). The kernel adds
    /// `word_shift` to its indices.
    pub fn window(&self, start: u64, len: u64, align: u64) -> Binding {
        let start = self.offset + start;
        let align = align.max(self.buf.align).max(4);
        let base = start / align * align;
        // Binding sizes are whole words (a view of f16 data may end mid-word).
        let end = (start + len).div_ceil(4).saturating_mul(4).min(self.buf.size).max(base + 4);
        Binding { buf: self.buf.clone(), offset: base, size: end - base, word_shift: ((start - base) / 4) as u32 }
    }
}

/// One storage binding: a byte range of a buffer, and where the tensor's data starts inside it, in words.
#[derive(Clone)]
pub struct Binding {
    pub(crate) buf: Arc<Buf>,
    pub offset: u64,
    pub size: u64,
    pub word_shift: u32,
}

impl Binding {
    pub(crate) fn key(&self) -> (u64, u64, u64) {
        (self.buf.id, self.offset, self.size)
    }
}
