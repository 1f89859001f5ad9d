//! Small building blocks shared by the networks: `nn.Linear` and an affine `nn.LayerNorm`, loaded from a scope.

use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::gemm::{gemm, gemm_add, gemm_gated_add, gemm_into, Act, Epilogue, Weight, WeightFormat};
use crate::kernels::norm::layer_norm;
use crate::weights::Scope;

use super::ModelError;

/// `nn.Linear(inp, out)`: `name.weight` `[out, inp]` and, when present, `name.bias` `[out]`.
pub struct Linear {
    pub w: Weight,
    pub b: Option<GpuTensor>,
}

impl Linear {
    pub fn load(
        g: &Gpu,
        s: Scope,
        name: &str,
        out: usize,
        inp: usize,
        format: WeightFormat,
    ) -> Result<Self, ModelError> {
        Self::load_shaped(g, s, name, &[out, inp], format)
    }

    /// A weight with trailing kernel dims (a convolution used as a GEMM over its flattened input).
    pub fn load_shaped(
        g: &Gpu,
        s: Scope,
        name: &str,
        shape: &[usize],
        format: WeightFormat,
    ) -> Result<Self, ModelError> {
        let w = s.weight(g, &format!("{name}.weight"), shape, format)?;
        let bias = format!("{name}.bias");
        let b = if s.has(&bias) { Some(s.tensor(g, &bias, &shape[..1])?) } else { None };
        Ok(Self { w, b })
    }

    pub fn forward(&self, g: &Gpu, x: &GpuTensor, act: Act) -> Result<GpuTensor, ModelError> {
        Ok(gemm(g, x, &self.w, Epilogue { bias: self.b.as_ref(), act })?)
    }

    pub fn forward_into(&self, g: &Gpu, x: &GpuTensor, y: &GpuTensor) -> Result<(), ModelError> {
        Ok(gemm_into(g, x, &self.w, Epilogue { bias: self.b.as_ref(), act: Act::None }, y)?)
    }

    /// `y += (x·Wᵀ + b) ⊙ gate`.
    pub fn gated_add(&self, g: &Gpu, x: &GpuTensor, gate: &GpuTensor, y: &GpuTensor) -> Result<(), ModelError> {
        Ok(gemm_gated_add(g, x, &self.w, self.b.as_ref(), gate, y)?)
    }

    /// `y += x·Wᵀ + b`.
    pub fn add_into(&self, g: &Gpu, x: &GpuTensor, y: &GpuTensor) -> Result<(), ModelError> {
        Ok(gemm_add(g, x, &self.w, self.b.as_ref(), y)?)
    }
}

/// `nn.LayerNorm(dim)` with weight and bias.
pub struct LayerNorm {
    pub weight: GpuTensor,
    pub bias: GpuTensor,
    pub eps: f32,
}

impl LayerNorm {
    pub fn load(g: &Gpu, s: Scope, name: &str, dim: usize, eps: f32) -> Result<Self, ModelError> {
        Ok(Self {
            weight: s.tensor(g, &format!("{name}.weight"), &[dim])?,
            bias: s.tensor(g, &format!("{name}.bias"), &[dim])?,
            eps,
        })
    }

    pub fn forward(&self, g: &Gpu, x: &GpuTensor) -> Result<GpuTensor, ModelError> {
        Ok(layer_norm(g, x, Some(&self.weight), Some(&self.bias), self.eps, None)?)
    }
}
