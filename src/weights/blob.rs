//! Where checkpoint bytes come from: a memory-mapped file natively, an owned buffer in the browser and in
//! tests. Readers see a `&[u8]` either way.

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use super::WeightError;

/// The bytes of one checkpoint file. Cheap to clone (shared).
#[derive(Clone)]
pub struct Blob(Arc<Inner>);

enum Inner {
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Blob {
    /// Maps `path` read-only (natively); reads it whole where mapping is unavailable (wasm).
    /// The file must not be changed while the blob lives: the mapping would see the change.
    pub fn open(path: &Path) -> Result<Self, WeightError> {
        let io = |source| WeightError::Io { file: path.to_path_buf(), source };
        #[cfg(not(target_arch = "wasm32"))]
        {
            let file = std::fs::File::open(path).map_err(io)?;
            // An empty file cannot be mapped on every OS; it is also never a valid checkpoint.
            if file.metadata().map_err(io)?.len() == 0 {
                return Ok(Self::from_vec(Vec::new()));
            }
            // SAFETY: the map is read-only and private to this process; a concurrent writer to the file
            // is the documented misuse above. Readers treat every byte as untrusted anyway.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
            Ok(Self(Arc::new(Inner::Mapped(map))))
        }
        #[cfg(target_arch = "wasm32")]
        {
            Ok(Self::from_vec(std::fs::read(path).map_err(io)?))
        }
    }

    /// Bytes already in memory (fetched in the browser, written by a test).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        Self(Arc::new(Inner::Owned(bytes)))
    }
}

impl Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &*self.0 {
            #[cfg(not(target_arch = "wasm32"))]
            Inner::Mapped(m) => m,
            Inner::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for Blob {
    fn from(v: Vec<u8>) -> Self {
        Self::from_vec(v)
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({} bytes)", self.len())
    }
}
