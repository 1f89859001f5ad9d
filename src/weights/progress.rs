//! Progress of a model load: a [`TensorSource`] wrapper that reports the bytes read so far to a callback, so the
//! app can draw a bar without the model code knowing about it.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::path::Path;

use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::gemm::{PackedWeight, Weight};

use super::{LoadError, TensorInfo, TensorSource, TensorView, WeightError};

pub struct WithProgress<'a> {
    inner: &'a dyn TensorSource,
    done: Cell<u64>,
    total: u64,
    report: RefCell<Box<dyn FnMut(u64, u64) + 'a>>,
}

impl<'a> WithProgress<'a> {
    /// `report(done_bytes, total_bytes)` is called after each tensor is read.
    pub fn new(inner: &'a dyn TensorSource, report: impl FnMut(u64, u64) + 'a) -> Self {
        let total = inner.tensors().iter().map(|t| t.len_bytes() as u64).sum();
        Self { inner, done: Cell::new(0), total, report: RefCell::new(Box::new(report)) }
    }

    fn tick(&self, name: &str) {
        if let Some(info) = self.inner.info(name) {
            self.done.set((self.done.get() + info.len_bytes() as u64).min(self.total));
            (self.report.borrow_mut())(self.done.get(), self.total);
        }
    }
}

impl TensorSource for WithProgress<'_> {
    fn file(&self) -> &Path {
        self.inner.file()
    }

    fn tensors(&self) -> &[TensorInfo] {
        self.inner.tensors()
    }

    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.inner.info(name)
    }

    fn view(&self, name: &str) -> Result<TensorView<'_>, WeightError> {
        let v = self.inner.view(name)?;
        self.tick(name);
        Ok(v)
    }

    fn packed(&self, name: &str) -> Result<Option<Cow<'_, PackedWeight>>, WeightError> {
        let p = self.inner.packed(name)?;
        if p.is_some() {
            self.tick(name);
        }
        Ok(p)
    }

    fn resident_f32(&self, name: &str) -> Option<GpuTensor> {
        let t = self.inner.resident_f32(name);
        if t.is_some() {
            self.tick(name);
        }
        t
    }

    fn resident_weight(&self, g: &Gpu, name: &str) -> Result<Option<Weight>, LoadError> {
        let w = self.inner.resident_weight(g, name)?;
        if w.is_some() {
            self.tick(name);
        }
        Ok(w)
    }
}
