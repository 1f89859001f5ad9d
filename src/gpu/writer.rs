//! [`TensorWriter`]: fills a GPU tensor from bytes that arrive in pieces of any length (a `fetch()` body, a file
//! stream), so that the whole array never has to be gathered in host memory first.
//!
//! wgpu writes buffers in whole 32-bit words at word offsets; a chunk that ends mid-word leaves its last one to
//! three bytes here, and they are written together with the start of the next chunk.

use super::{Gpu, GpuError, GpuTensor};

pub struct TensorWriter {
    tensor: GpuTensor,
    /// The exact data length (a 16-bit tensor of odd length ends mid-word).
    len_bytes: u64,
    /// Bytes written to the GPU so far (a multiple of 4).
    written: u64,
    tail: [u8; 4],
    tail_len: usize,
}

impl TensorWriter {
    /// A writer for the first `len_bytes` bytes of `tensor` (at most its data, whole words included).
    pub fn new(tensor: GpuTensor, len_bytes: u64) -> Result<Self, GpuError> {
        if len_bytes > tensor.len_bytes() {
            return Err(GpuError::Write {
                what: format!("{tensor:?}"),
                reason: format!("{len_bytes} bytes of data do not fit its {} bytes", tensor.len_bytes()),
            });
        }
        Ok(Self { tensor, len_bytes, written: 0, tail: [0; 4], tail_len: 0 })
    }

    /// Bytes taken so far.
    pub fn received(&self) -> u64 {
        self.written + self.tail_len as u64
    }

    /// Whether every byte has arrived.
    pub fn is_full(&self) -> bool {
        self.received() == self.len_bytes
    }

    /// Takes the next piece of the data.
    pub fn push(&mut self, g: &Gpu, mut bytes: &[u8]) -> Result<(), GpuError> {
        if self.received() + bytes.len() as u64 > self.len_bytes {
            return Err(GpuError::Write {
                what: format!("{:?}", self.tensor),
                reason: format!("{} more bytes after {} of {} received", bytes.len(), self.received(), self.len_bytes),
            });
        }
        if self.tail_len > 0 {
            let take = (4 - self.tail_len).min(bytes.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&bytes[..take]);
            self.tail_len += take;
            bytes = &bytes[take..];
            if self.tail_len < 4 {
                return Ok(());
            }
            g.write_at(&self.tensor, self.written, &self.tail)?;
            self.written += 4;
            self.tail_len = 0;
        }
        let whole = bytes.len() / 4 * 4;
        g.write_at(&self.tensor, self.written, &bytes[..whole])?;
        self.written += whole as u64;
        let rest = &bytes[whole..];
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
        Ok(())
    }

    /// The filled tensor, once every byte has arrived (the last partial word is padded with zeros).
    pub fn finish(mut self, g: &Gpu) -> Result<GpuTensor, GpuError> {
        if !self.is_full() {
            return Err(GpuError::Write {
                what: format!("{:?}", self.tensor),
                reason: format!("only {} of {} bytes arrived", self.received(), self.len_bytes),
            });
        }
        if self.tail_len > 0 {
            self.tail[self.tail_len..].fill(0);
            g.write_at(&self.tensor, self.written, &self.tail)?;
        }
        Ok(self.tensor)
    }
}
