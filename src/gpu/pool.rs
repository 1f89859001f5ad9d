//! The buffer pool: intermediates are returned to it when their last tensor is dropped and handed out again for
//! the next request of the same size class, so a denoising step allocates nothing after the first.
//! `NAVA_NO_POOL=1` turns reuse off (a debug switch, see README).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// A pooled storage buffer. `id` names the underlying wgpu buffer for the bind-group cache and survives reuse.
pub(crate) struct Buf {
    pub id: u64,
    pub raw: wgpu::Buffer,
    pub size: u64,
    /// The adapter's `min_storage_buffer_offset_alignment`: bindings of views start at multiples of it.
    pub align: u64,
    pool: Weak<Mutex<PoolState>>,
}

impl Drop for Buf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            if let Ok(mut p) = pool.lock() {
                p.live_bytes -= self.size;
                if p.reuse {
                    p.pooled_bytes += self.size;
                    p.free.entry(self.size).or_default().push((self.id, self.raw.clone()));
                } else {
                    self.raw.destroy();
                }
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct PoolState {
    free: HashMap<u64, Vec<(u64, wgpu::Buffer)>>,
    pub live_bytes: u64,
    pub pooled_bytes: u64,
    pub peak_bytes: u64,
    next_id: u64,
    reuse: bool,
}

pub(crate) struct Pool {
    state: Arc<Mutex<PoolState>>,
    align: u64,
}

/// Rounds a request up to its size class: powers of two split in eight steps, so at most 12.5 % is wasted.
pub fn size_class(bytes: u64, max: u64) -> u64 {
    let bytes = bytes.max(16).div_ceil(4) * 4;
    if bytes <= 1024 {
        return bytes.next_power_of_two();
    }
    let top = 63 - bytes.leading_zeros() as u64; // 2^top <= bytes
    let step = 1u64 << (top - 3);
    (bytes.div_ceil(step) * step).min(max.max(bytes))
}

impl Pool {
    pub fn new(reuse: bool, align: u64) -> Self {
        Self { state: Arc::new(Mutex::new(PoolState { reuse, ..Default::default() })), align }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free buffer of exactly this class, if one is pooled.
    pub fn take(&self, class: u64) -> Option<Arc<Buf>> {
        let mut p = self.lock();
        let (id, raw) = p.free.get_mut(&class)?.pop()?;
        p.pooled_bytes -= class;
        p.live_bytes += class;
        p.peak_bytes = p.peak_bytes.max(p.live_bytes);
        Some(Arc::new(Buf { id, raw, size: class, align: self.align, pool: Arc::downgrade(&self.state) }))
    }

    /// Registers a freshly created buffer.
    pub fn adopt(&self, raw: wgpu::Buffer, size: u64) -> Arc<Buf> {
        let mut p = self.lock();
        p.next_id += 1;
        p.live_bytes += size;
        p.peak_bytes = p.peak_bytes.max(p.live_bytes);
        Arc::new(Buf { id: p.next_id, raw, size, align: self.align, pool: Arc::downgrade(&self.state) })
    }

    /// Destroys every pooled (unused) buffer, e.g. before a large allocation that failed.
    pub fn trim(&self) {
        let mut p = self.lock();
        for (_, list) in p.free.drain() {
            for (_, b) in list {
                b.destroy();
            }
        }
        p.pooled_bytes = 0;
    }

    pub fn stats(&self) -> (u64, u64, u64) {
        let p = self.lock();
        (p.live_bytes, p.pooled_bytes, p.peak_bytes)
    }

    pub fn reset_peak(&self) {
        let mut p = self.lock();
        p.peak_bytes = p.live_bytes;
    }
}
