//! Errors of kernel launches: wrong shapes, dtypes or sizes, named by op and tensor, before anything is dispatched.

use crate::gpu::GpuError;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{op}: `{tensor}` has shape {found:?}; expected {expected}")]
    Shape { op: &'static str, tensor: &'static str, expected: String, found: Vec<usize> },
    #[error("{op}: `{tensor}` is {found}; expected {expected}")]
    DType { op: &'static str, tensor: &'static str, expected: &'static str, found: &'static str },
    #[error("{op}: {what}")]
    Unsupported { op: &'static str, what: String },
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

/// Shape checks used by every launcher.
pub trait Check {
    /// The dims of a tensor that must have exactly `N` of them.
    fn dims<const N: usize>(&self, op: &'static str, tensor: &'static str) -> Result<[usize; N], KernelError>;
    /// Fails unless the shape is exactly `expected`.
    fn expect(&self, op: &'static str, tensor: &'static str, expected: &[usize]) -> Result<(), KernelError>;
    /// Fails unless the element type is `dtype`.
    fn expect_dtype(&self, op: &'static str, tensor: &'static str, dtype: crate::gpu::DType)
        -> Result<(), KernelError>;
}

impl Check for crate::gpu::GpuTensor {
    fn dims<const N: usize>(&self, op: &'static str, tensor: &'static str) -> Result<[usize; N], KernelError> {
        self.shape().try_into().map_err(|_| KernelError::Shape {
            op,
            tensor,
            expected: format!("{N} dimensions"),
            found: self.shape().to_vec(),
        })
    }

    fn expect(&self, op: &'static str, tensor: &'static str, expected: &[usize]) -> Result<(), KernelError> {
        if self.shape() == expected {
            Ok(())
        } else {
            Err(KernelError::Shape { op, tensor, expected: format!("{expected:?}"), found: self.shape().to_vec() })
        }
    }

    fn expect_dtype(
        &self,
        op: &'static str,
        tensor: &'static str,
        dtype: crate::gpu::DType,
    ) -> Result<(), KernelError> {
        if self.dtype() == dtype {
            Ok(())
        } else {
            Err(KernelError::DType { op, tensor, expected: dtype.name(), found: self.dtype().name() })
        }
    }
}
