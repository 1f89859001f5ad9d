//! Launcher for `shaders/gemm.wgsl`: `y = x·Wᵀ (+ bias) (→ GELU-tanh | SiLU)`, or the gated residual
//! `y += (x·Wᵀ + bias) ⊙ g`, with W in PyTorch's `[out, in]` layout and any of the weight formats below.
//!
//! Weights are repacked once, on the host, into the k-major word layout the shader reads (see the shader header);
//! [`PackedWeight`] does that and can undo it for tests. A weight larger than one binding is split along k and
//! accumulated; activations larger than one binding are split along rows.

use crate::gpu::{spread, Access, DType, Family, Gpu, GpuTensor, Spec};

use super::{Check, KernelError};

pub static FAMILY: Family = Family { name: "gemm", source: include_str!("../../shaders/gemm.wgsl") };
pub static FAMILY_TILED: Family = Family { name: "gemm_tiled", source: include_str!("../../shaders/gemm_tiled.wgsl") };
pub static FAMILY_COOP: Family = Family { name: "gemm_coop", source: include_str!("../../shaders/gemm_coop.wgsl") };
const W_F32: &str = include_str!("../../shaders/common/w_f32.wgsl");
const W_F16: &str = include_str!("../../shaders/common/w_f16.wgsl");
const W_BF16: &str = include_str!("../../shaders/common/w_bf16.wgsl");
const W_Q8: &str = include_str!("../../shaders/common/w_q8.wgsl");
const W_Q4: &str = include_str!("../../shaders/common/w_q4.wgsl");
const W_FP8: &str = include_str!("../../shaders/common/w_fp8.wgsl");
const X_SCALAR: &str = include_str!("../../shaders/common/x_scalar.wgsl");
const EPILOGUE: &str = include_str!("../../shaders/common/gemm_epilogue.wgsl");
const X_VEC4: &str = include_str!("../../shaders/common/x_vec4.wgsl");
const GEMM_SUBGROUP: &str = include_str!("../../shaders/common/gemm_subgroup.wgsl");
/// `x_lanes4`: values held one per lane, handed round with subgroup shuffles (the subgroup GEMM and matmul).
pub(crate) const LANES4: &str = include_str!("../../shaders/common/lanes4.wgsl");

/// Rows of y per workgroup (`TM` in the shader); each invocation owns 4 columns.
const TM: usize = 8;
/// The tile of y of the tiled and cooperative-matrix kernels (`BM` x `BN` in gemm_tiled.wgsl, gemm_coop.wgsl).
const SHARED_TILE: usize = 128;
/// Its workgroup memory, bytes: x and W tiles of 32 k as f16, and 8 fragments of f32 scratch.
const COOP_WORKGROUP_BYTES: u32 = 2 * 128 * 32 * 2 + 2048 * 4;

/// How a weight matrix is stored on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    F32,
    F16,
    BF16,
    /// int8 in blocks of 32 along k, one f16 scale per block.
    Q8,
    /// 4-bit in blocks of 32 along k, one f16 scale per block.
    Q4,
    /// float8 e4m3fn with one scale per output channel.
    Fp8,
}

impl WeightFormat {
    pub const ALL: [WeightFormat; 6] = [Self::F32, Self::F16, Self::BF16, Self::Q8, Self::Q4, Self::Fp8];

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::Q8 => "q8",
            Self::Q4 => "q4",
            Self::Fp8 => "fp8",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }

    /// Values of k per 32-bit word.
    pub fn per_word(self) -> usize {
        match self {
            Self::F32 => 1,
            Self::F16 | Self::BF16 => 2,
            Self::Q8 | Self::Fp8 => 4,
            Self::Q4 => 8,
        }
    }

    /// k is padded with zeros to a multiple of this.
    pub fn k_align(self) -> usize {
        match self {
            Self::Q8 | Self::Q4 => 32,
            _ => 4,
        }
    }

    fn snippet(self) -> &'static str {
        match self {
            Self::F32 => W_F32,
            Self::F16 => W_F16,
            Self::BF16 => W_BF16,
            Self::Q8 => W_Q8,
            Self::Q4 => W_Q4,
            Self::Fp8 => W_FP8,
        }
    }

    /// Bytes per stored weight, scales included (for memory planning).
    pub fn bits_per_weight(self) -> f64 {
        match self {
            Self::F32 => 32.0,
            Self::F16 | Self::BF16 => 16.0,
            Self::Q8 => 8.0 + 16.0 / 32.0,
            Self::Q4 => 4.0 + 16.0 / 32.0,
            Self::Fp8 => 8.0,
        }
    }

    /// GPU bytes of an `[n, k]` weight packed in this format: (words, scales) as [`PackedWeight`] lays them out,
    /// padding included (0 scale bytes for the float formats).
    pub fn packed_bytes(self, n: usize, k: usize) -> (u64, u64) {
        let (n_pad, k_pad) = pads(self, n, k);
        let words = (k_pad / self.per_word() * n_pad) as u64 * 4;
        let scales = match self {
            // f16 block scales, two per word.
            Self::Q8 | Self::Q4 => (k_pad / 32 * n_pad).div_ceil(2) as u64 * 4,
            // one f32 per output column.
            Self::Fp8 => n_pad as u64 * 4,
            Self::F32 | Self::F16 | Self::BF16 => 0,
        };
        (words, scales)
    }
}

/// A weight matrix `[n, k]` in the GPU word layout, still on the host.
#[derive(Clone, Debug)]
pub struct PackedWeight {
    pub format: WeightFormat,
    pub n: usize,
    pub k: usize,
    pub words: Vec<u32>,
    /// q8/q4: f16 block scales, two per word; fp8: one f32 per output column (as bits).
    pub scales: Vec<u32>,
}

fn pads(format: WeightFormat, n: usize, k: usize) -> (usize, usize) {
    (n.div_ceil(4) * 4, k.div_ceil(format.k_align()) * format.k_align())
}

impl PackedWeight {
    pub fn n_pad(&self) -> usize {
        pads(self.format, self.n, self.k).0
    }

    fn k_pad(&self) -> usize {
        pads(self.format, self.n, self.k).1
    }

    /// Packs `[n, k]` values given by `get(n, k)` as `format`; q8/q4 quantise here, fp8 rounds to e4m3 with a
    /// per-column scale of max|w| / 448.
    pub fn quantize(format: WeightFormat, n: usize, k: usize, w: &[f32]) -> Self {
        let (n_pad, k_pad) = pads(format, n, k);
        let get = |ni: usize, ki: usize| {
            if ni < n && ki < k {
                w[ni * k + ki]
            } else {
                0.0
            }
        };
        let pw = format.per_word();
        let mut words = vec![0u32; k_pad / pw * n_pad];
        let mut scales = Vec::new();
        match format {
            WeightFormat::F32 => {
                for ki in 0..k_pad {
                    for ni in 0..n_pad {
                        words[ki * n_pad + ni] = get(ni, ki).to_bits();
                    }
                }
            }
            WeightFormat::F16 | WeightFormat::BF16 => {
                let bits = |v: f32| -> u32 {
                    if format == WeightFormat::F16 {
                        half::f16::from_f32(v).to_bits() as u32
                    } else {
                        half::bf16::from_f32(v).to_bits() as u32
                    }
                };
                for kw in 0..k_pad / 2 {
                    for ni in 0..n_pad {
                        words[kw * n_pad + ni] = bits(get(ni, 2 * kw)) | (bits(get(ni, 2 * kw + 1)) << 16);
                    }
                }
            }
            WeightFormat::Q8 | WeightFormat::Q4 => {
                let qmax = if format == WeightFormat::Q8 { 127.0 } else { 7.0 };
                let mut sc = vec![half::f16::ZERO; k_pad / 32 * n_pad];
                for kb in 0..k_pad / 32 {
                    for ni in 0..n_pad {
                        let amax = (0..32).map(|j| get(ni, kb * 32 + j).abs()).fold(0.0f32, f32::max);
                        let s = half::f16::from_f32(amax / qmax);
                        sc[kb * n_pad + ni] = s;
                        let s = s.to_f32();
                        let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
                        for j in 0..32 {
                            let kk = kb * 32 + j;
                            let q = (get(ni, kk) * inv).round().clamp(-qmax - 1.0, qmax) as i32;
                            if format == WeightFormat::Q8 {
                                words[kk / 4 * n_pad + ni] |= ((q as u8) as u32) << (8 * (kk % 4));
                            } else {
                                words[kk / 8 * n_pad + ni] |= ((q + 8) as u32) << (4 * (kk % 8));
                            }
                        }
                    }
                }
                scales = pack_f16_pairs(&sc);
            }
            WeightFormat::Fp8 => {
                let mut col = vec![0.0f32; n_pad];
                for (ni, c) in col.iter_mut().enumerate().take(n) {
                    let amax = (0..k).map(|ki| get(ni, ki).abs()).fold(0.0f32, f32::max);
                    *c = if amax > 0.0 { amax / 448.0 } else { 1.0 };
                }
                let mut bytes = vec![0u8; n * k];
                for ni in 0..n {
                    for ki in 0..k {
                        bytes[ni * k + ki] = f32_to_e4m3(get(ni, ki) / col[ni]);
                    }
                }
                return Self::from_fp8(n, k, &bytes, &col[..n]);
            }
        }
        Self { format, n, k, words, scales }
    }

    /// Packs raw 16-bit values (f16 or bf16 bits, row-major `[n, k]`) without rounding.
    pub fn from_half_bits(format: WeightFormat, n: usize, k: usize, bits: &[u16]) -> Self {
        let (n_pad, k_pad) = pads(format, n, k);
        let get = |ni: usize, ki: usize| {
            if ni < n && ki < k {
                bits[ni * k + ki] as u32
            } else {
                0
            }
        };
        let mut words = vec![0u32; k_pad / 2 * n_pad];
        for kw in 0..k_pad / 2 {
            for ni in 0..n_pad {
                words[kw * n_pad + ni] = get(ni, 2 * kw) | (get(ni, 2 * kw + 1) << 16);
            }
        }
        Self { format, n, k, words, scales: Vec::new() }
    }

    /// Packs float8 e4m3fn bytes (row-major `[n, k]`) with one scale per output column (repeat a per-tensor scale).
    /// This is the official fp8 checkpoint's data, passed through without a lossy round trip.
    pub fn from_fp8(n: usize, k: usize, bytes: &[u8], col_scale: &[f32]) -> Self {
        let (n_pad, k_pad) = pads(WeightFormat::Fp8, n, k);
        let mut words = vec![0u32; k_pad / 4 * n_pad];
        for ni in 0..n {
            for ki in 0..k {
                words[ki / 4 * n_pad + ni] |= (bytes[ni * k + ki] as u32) << (8 * (ki % 4));
            }
        }
        let mut scales: Vec<u32> = col_scale.iter().map(|s| s.to_bits()).collect();
        scales.resize(n_pad, 1.0f32.to_bits());
        Self { format: WeightFormat::Fp8, n, k, words, scales }
    }

    /// The `[n, k]` values the GPU will use (for tests and error reports).
    pub fn dequantize(&self) -> Vec<f32> {
        let n_pad = self.n_pad();
        let mut out = vec![0.0f32; self.n * self.k];
        let scale16 = |i: usize| half::f16::from_bits((self.scales[i / 2] >> (16 * (i % 2))) as u16).to_f32();
        for ni in 0..self.n {
            for ki in 0..self.k {
                out[ni * self.k + ki] = match self.format {
                    WeightFormat::F32 => f32::from_bits(self.words[ki * n_pad + ni]),
                    WeightFormat::F16 => {
                        half::f16::from_bits((self.words[ki / 2 * n_pad + ni] >> (16 * (ki % 2))) as u16).to_f32()
                    }
                    WeightFormat::BF16 => {
                        half::bf16::from_bits((self.words[ki / 2 * n_pad + ni] >> (16 * (ki % 2))) as u16).to_f32()
                    }
                    WeightFormat::Q8 => {
                        let q = (self.words[ki / 4 * n_pad + ni] >> (8 * (ki % 4))) as u8 as i8;
                        q as f32 * scale16(ki / 32 * n_pad + ni)
                    }
                    WeightFormat::Q4 => {
                        let q = (self.words[ki / 8 * n_pad + ni] >> (4 * (ki % 8))) & 15;
                        (q as f32 - 8.0) * scale16(ki / 32 * n_pad + ni)
                    }
                    WeightFormat::Fp8 => {
                        let b = (self.words[ki / 4 * n_pad + ni] >> (8 * (ki % 4))) as u8;
                        e4m3_to_f32(b) * f32::from_bits(self.scales[ni])
                    }
                };
            }
        }
        out
    }
}

fn pack_f16_pairs(v: &[half::f16]) -> Vec<u32> {
    v.chunks(2).map(|c| c[0].to_bits() as u32 | (c.get(1).map_or(0, |h| h.to_bits() as u32) << 16)).collect()
}

/// float8 e4m3fn → f32 (no infinities; 0x7f/0xff are NaN).
pub fn e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let e = ((b >> 3) & 15) as i32;
    let m = (b & 7) as f32;
    if e == 15 && b & 7 == 7 {
        return f32::NAN;
    }
    sign * if e == 0 { m / 8.0 * 2f32.powi(-6) } else { (1.0 + m / 8.0) * 2f32.powi(e - 7) }
}

/// f32 → float8 e4m3fn, round to nearest, saturating at ±448.
pub fn f32_to_e4m3(v: f32) -> u8 {
    if v.is_nan() {
        return 0x7f;
    }
    let sign = if v < 0.0 { 0x80u8 } else { 0 };
    let a = v.abs().min(448.0);
    let mut best = 0u8;
    let mut best_err = f32::INFINITY;
    // 126 finite magnitudes: a direct search is exact and only runs when packing.
    for code in 0u8..=0x7e {
        let err = (e4m3_to_f32(code) - a).abs();
        if err < best_err {
            best_err = err;
            best = code;
        }
    }
    sign | best
}

/// A weight matrix on the GPU.
pub struct Weight {
    pub format: WeightFormat,
    pub n: usize,
    pub k: usize,
    n_pad: usize,
    k_pad: usize,
    words: GpuTensor,
    scales: Option<GpuTensor>,
}

impl Weight {
    pub fn upload(g: &Gpu, name: &str, p: &PackedWeight) -> Result<Self, KernelError> {
        let words = g.upload_u32(name, &p.words, &[p.words.len()])?;
        let scales = if p.scales.is_empty() {
            None
        } else {
            Some(g.upload_u32(&format!("{name}.scale"), &p.scales, &[p.scales.len()])?)
        };
        Ok(Self { format: p.format, n: p.n, k: p.k, n_pad: p.n_pad(), k_pad: p.k_pad(), words, scales })
    }

    /// A weight whose packed words (and scales) are already in GPU memory as U32 arrays in the layout of
    /// [`PackedWeight`] (weights streamed into GPU buffers); their lengths are checked against `[n, k]`.
    pub fn from_words(
        format: WeightFormat,
        n: usize,
        k: usize,
        words: GpuTensor,
        scales: Option<GpuTensor>,
    ) -> Result<Self, KernelError> {
        let (n_pad, k_pad) = pads(format, n, k);
        let want_words = k_pad / format.per_word() * n_pad;
        let want_scales = match format {
            WeightFormat::Q8 | WeightFormat::Q4 => k_pad / 32 * n_pad / 2,
            WeightFormat::Fp8 => n_pad,
            _ => 0,
        };
        let got_scales = scales.as_ref().map_or(0, GpuTensor::numel);
        if words.numel() != want_words || got_scales != want_scales {
            return Err(KernelError::Unsupported {
                op: "gemm weight",
                what: format!(
                    "a {} [{n}, {k}] weight needs {want_words} words and {want_scales} scales, got {} and \
                     {got_scales}: the stored arrays do not match the manifest; convert the model again",
                    format.name(),
                    words.numel()
                ),
            });
        }
        // The kernels read the words of four columns as one vec4 (see shaders/common/w_*.wgsl).
        if !words.offset().is_multiple_of(16) {
            return Err(KernelError::Unsupported {
                op: "gemm weight",
                what: format!(
                    "a {} [{n}, {k}] weight whose words start {} bytes into their buffer: the GEMM kernels read \
                     packed weights as vec4s, so they must start on a 16-byte boundary of their buffer",
                    format.name(),
                    words.offset()
                ),
            });
        }
        let flat = |t: GpuTensor| {
            let n = t.numel();
            t.reshape(&[n]).expect("same element count")
        };
        Ok(Self { format, n, k, n_pad, k_pad, words: flat(words), scales: scales.map(flat) })
    }

    /// Uploads an f32 `[n, k]` matrix in `format` (quantising where the format asks for it).
    pub fn from_f32(
        g: &Gpu,
        name: &str,
        format: WeightFormat,
        n: usize,
        k: usize,
        w: &[f32],
    ) -> Result<Self, KernelError> {
        Self::upload(g, name, &PackedWeight::quantize(format, n, k, w))
    }

    /// GPU bytes held by this weight.
    pub fn len_bytes(&self) -> u64 {
        self.words.len_bytes() + self.scales.as_ref().map_or(0, |s| s.len_bytes())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Act {
    #[default]
    None,
    GeluTanh,
    Silu,
}

/// What happens after the product.
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a GpuTensor>,
    pub act: Act,
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct GemmParams {
    m: u32,
    n: u32,
    k_begin: u32,
    k_end: u32,
    n_pad: u32,
    x_ld: u32,
    x_shift: u32,
    w_shift: u32,
    s_shift: u32,
    y_shift: u32,
    b_shift: u32,
    g_shift: u32,
    g_ld: u32,
    flags: u32,
    _pad0: u32,
    _pad: u32,
}

const BIAS: u32 = 1;
const GATED: u32 = 8;
const ACCUMULATE: u32 = 16;

/// Pipeline-cache key of one GEMM variant; label `gemm.<format>.t<WG>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    pub format: WeightFormat,
    pub wg: u32,
    /// Activations (x, y) in f16; needs SHADER_F16.
    pub f16: bool,
    /// x read as vec4 (k and x's offset multiples of 4): about 10 % faster on lavapipe.
    pub x4: bool,
    /// Cooperative-matrix kernel (gemm_coop.wgsl) for a subgroup size of this many invocations; 0 for the plain
    /// kernel.
    pub coop_sg: u32,
    /// The shared-memory tiled kernel for GPUs (gemm_tiled.wgsl).
    pub tiled: bool,
    /// gemm.wgsl's `gemm_sg` (x shared through subgroup shuffles) for a subgroup size of this many invocations;
    /// 0 for `gemm`.
    pub sg: u32,
}

/// Which GEMM kernel to run: the one chosen for the adapter, or one named (tests compare them on any adapter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kernel {
    #[default]
    Auto,
    /// gemm.wgsl: register blocks, no workgroup memory (CPU drivers; f16 activations).
    Plain,
    /// gemm.wgsl's subgroup entry point: the same blocks, each x value read by one lane and shuffled to the others
    /// (CPU drivers with subgroups).
    Subgroup,
    /// gemm_tiled.wgsl: 128 x 128 tiles through workgroup memory (GPUs without tensor cores, or f32 weights).
    Tiled,
}

impl Variant {
    pub fn spec(self) -> Spec {
        use Access::*;
        let bindings = [Read, Read, Read, Read, ReadWrite, Read];
        if self.tiled {
            return Spec::new(&FAMILY_TILED, "gemm_tiled", &bindings)
                .tag(self.format.name())
                .snippet(EPILOGUE)
                .snippet(X_SCALAR)
                .snippet(self.format.snippet());
        }
        if self.coop_sg > 0 {
            return Spec::new(&FAMILY_COOP, "gemm_coop", &bindings)
                .tag(self.format.name())
                .tag(&format!("sg{}", self.coop_sg))
                .enable("f16")
                .enable("wgpu_cooperative_matrix")
                .snippet(EPILOGUE)
                .snippet(X_SCALAR)
                .snippet(self.format.snippet())
                .constant("SG", self.coop_sg as f64)
                .constant("WG", 8.0 * self.coop_sg as f64);
        }
        if self.sg > 0 {
            return Spec::new(&FAMILY, "gemm_sg", &bindings)
                .tag(self.format.name())
                .tag(&format!("sg{}", self.sg))
                .snippet(EPILOGUE)
                .snippet(X_SCALAR)
                .snippet(self.format.snippet())
                .snippet(LANES4)
                .snippet(GEMM_SUBGROUP)
                .constant("SG", self.sg as f64)
                .constant("WG", self.wg as f64);
        }
        let s = Spec::new(&FAMILY, "gemm", &bindings).tag(self.format.name()).snippet(EPILOGUE);
        let s = if self.f16 { s.f16().tag("f16act") } else { s };
        let s = if self.x4 { s.tag("x4").snippet(X_VEC4) } else { s.snippet(X_SCALAR) };
        s.tag(&format!("t{}", self.wg)).snippet(self.format.snippet()).constant("WG", self.wg as f64)
    }

    fn pick(g: &Gpu, format: WeightFormat, f16: bool) -> Self {
        // NAVA_GEMM_WG overrides the workgroup size for tuning (a debug switch, see README).
        let wg = std::env::var("NAVA_GEMM_WG").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
        let wg = wg.clamp(1, g.limits.max_compute_invocations_per_workgroup);
        Self { format, wg, f16, x4: false, coop_sg: 0, tiled: false, sg: 0 }
    }

    /// gemm.wgsl's subgroup entry point, for f32 activations where the adapter has subgroups of one size that is a
    /// multiple of 4 up to 64 and divides the workgroup. On lavapipe (8-wide subgroups) 1024³ f32 goes from 15.0
    /// to 22.1–22.5 GFLOP/s. f16 activations keep `gemm`: lavapipe returned wrong products for subgroup loads of
    /// f16 x. `NAVA_GEMM_SUBGROUP=0` turns it off (a debug switch, see README).
    fn pick_subgroup(g: &Gpu, format: WeightFormat, f16: bool) -> Option<Self> {
        let plain = Self::pick(g, format, false);
        shuffle_subgroup(g).filter(|&sg| plain.wg.is_multiple_of(sg) && !f16).map(|sg| Self { sg, ..plain })
    }

    /// The tiled kernel: for GPUs (not CPU drivers, where barriers and workgroup memory are slow) with f32
    /// activations. `NAVA_GEMM_TILED=0` turns it off (a debug switch, see README).
    fn pick_tiled(g: &Gpu, format: WeightFormat, f16: bool) -> Option<Self> {
        let off = std::env::var("NAVA_GEMM_TILED").is_ok_and(|v| v == "0");
        (!g.adapter.is_cpu() && !off && !f16 && tiled_fits(g))
            .then_some(Self { tiled: true, ..Self::pick(g, format, false) })
    }

    /// The kernel for this call: tensor cores, else the tiled kernel on GPUs, else the plain one.
    fn choose(g: &Gpu, format: WeightFormat, f16: bool, kernel: Kernel) -> Result<Self, KernelError> {
        match kernel {
            Kernel::Auto => Ok(Self::pick_coop(g, format, f16)
                .or_else(|| Self::pick_tiled(g, format, f16))
                .or_else(|| Self::pick_subgroup(g, format, f16))
                .unwrap_or_else(|| Self::pick(g, format, f16))),
            Kernel::Plain => Ok(Self::pick(g, format, f16)),
            Kernel::Subgroup => Self::pick_subgroup(g, format, f16).ok_or_else(|| KernelError::Unsupported {
                op: "gemm",
                what: format!(
                    "the subgroup kernel takes f32 activations and needs subgroups of one size, a multiple of 4 up \
                     to 64 that divides the workgroup; this adapter has {}",
                    if g.caps.subgroup_size > 0 {
                        format!("{}-wide subgroups", g.caps.subgroup_size)
                    } else if g.caps.subgroup {
                        "subgroups of varying size".to_string()
                    } else {
                        "no subgroups".to_string()
                    }
                ),
            }),
            Kernel::Tiled if !f16 && tiled_fits(g) => Ok(Self { tiled: true, ..Self::pick(g, format, false) }),
            Kernel::Tiled => Err(KernelError::Unsupported {
                op: "gemm",
                what: "the tiled kernel takes f32 activations and 256 invocations per workgroup".into(),
            }),
        }
    }

    /// The cooperative-matrix kernel, where the adapter has 16x16x16 f16 tensor-core products and a fixed subgroup
    /// size, for f32 activations and weights narrower than f32 (f32 weights keep exact f32
    /// arithmetic). `NAVA_GEMM_COOP=0` turns it off (a debug switch, see README).
    fn pick_coop(g: &Gpu, format: WeightFormat, f16: bool) -> Option<Self> {
        let sg = g.caps.subgroup_size;
        let off = std::env::var("NAVA_GEMM_COOP").is_ok_and(|v| v == "0");
        let fits = sg > 0
            && 8 * sg <= g.limits.max_compute_invocations_per_workgroup
            && COOP_WORKGROUP_BYTES <= g.limits.max_compute_workgroup_storage_size;
        (g.caps.coop_f16_16 && fits && !off && !f16 && format != WeightFormat::F32).then_some(Self {
            format,
            wg: 8 * sg,
            f16: false,
            x4: false,
            coop_sg: sg,
            tiled: false,
            sg: 0,
        })
    }
}

/// The subgroup size the shuffle kernels (`gemm_sg`, `matmul_sg`) are built for (see [`fixed_subgroup`]).
/// `NAVA_GEMM_SUBGROUP=0` turns both off.
pub(crate) fn shuffle_subgroup(g: &Gpu) -> Option<u32> {
    let off = std::env::var("NAVA_GEMM_SUBGROUP").is_ok_and(|v| v == "0");
    fixed_subgroup(g).filter(|_| !off)
}

/// The adapter's one subgroup size where it is a multiple of 4 up to 64: what the kernels that hand values round
/// in fours by shuffles need (`gemm_sg`, `matmul_sg`, `attention_sg`).
pub(crate) fn fixed_subgroup(g: &Gpu) -> Option<u32> {
    let sg = g.caps.subgroup_size;
    (g.caps.subgroup && sg.is_multiple_of(4) && (4..=64).contains(&sg)).then_some(sg)
}

/// The tiled kernel's workgroup: 256 invocations, 8.3 KB of workgroup memory.
fn tiled_fits(g: &Gpu) -> bool {
    g.limits.max_compute_invocations_per_workgroup >= 256 && g.limits.max_compute_workgroup_storage_size >= 8448
}

/// The variant used for each weight format on this device.
pub fn selected(g: &Gpu) -> Vec<String> {
    let mut v = Vec::new();
    v.extend(WeightFormat::ALL.iter().filter_map(|&f| Variant::pick_coop(g, f, false)).map(|c| c.spec().label));
    v.extend(WeightFormat::ALL.iter().filter_map(|&f| Variant::pick_tiled(g, f, false)).map(|c| c.spec().label));
    v.extend(WeightFormat::ALL.iter().filter_map(|&f| Variant::pick_subgroup(g, f, false)).map(|c| c.spec().label));
    for f16 in [false, true].into_iter().filter(|&h| !h || g.caps.shader_f16) {
        for x4 in [true, false] {
            v.extend(WeightFormat::ALL.iter().map(|&f| Variant { x4, ..Variant::pick(g, f, f16) }.spec().label));
        }
    }
    v
}

/// The label of the kernel a GEMM with f32 activations and `format` weights runs on this device.
pub fn variant_label(g: &Gpu, format: WeightFormat) -> String {
    Variant::choose(g, format, false, Kernel::Auto).map_or_else(|e| e.to_string(), |v| v.spec().label)
}

/// Every variant, for the validation test.
pub fn variants() -> Vec<Spec> {
    let mut v = Vec::new();
    for f16 in [false, true] {
        for x4 in [false, true] {
            v.extend(
                WeightFormat::ALL
                    .iter()
                    .map(|&format| Variant { format, wg: 64, f16, x4, coop_sg: 0, tiled: false, sg: 0 }.spec()),
            );
        }
    }
    for sg in [4, 8, 32, 64] {
        v.extend(
            WeightFormat::ALL
                .iter()
                .map(|&format| Variant { format, wg: 64, f16: false, x4: false, coop_sg: 0, tiled: false, sg }.spec()),
        );
    }
    for sg in [32, 64] {
        v.extend(WeightFormat::ALL.iter().map(|&format| {
            Variant { format, wg: 8 * sg, f16: false, x4: false, coop_sg: sg, tiled: false, sg: 0 }.spec()
        }));
    }
    v.extend(
        WeightFormat::ALL
            .iter()
            .map(|&format| Variant { format, wg: 256, f16: false, x4: false, coop_sg: 0, tiled: true, sg: 0 }.spec()),
    );
    v
}

/// `y = epilogue(x·Wᵀ)`; x is `[.., k]` (leading dims are rows), y is `[.., n]`.
pub fn gemm(g: &Gpu, x: &GpuTensor, w: &Weight, epi: Epilogue) -> Result<GpuTensor, KernelError> {
    gemm_on(g, Kernel::Auto, x, w, epi)
}

/// [`gemm`] on a named kernel (tests and benches compare kernels on one adapter).
pub fn gemm_on(g: &Gpu, kernel: Kernel, x: &GpuTensor, w: &Weight, epi: Epilogue) -> Result<GpuTensor, KernelError> {
    let (_, out_shape) = check(g, x, w, epi.bias)?;
    let y = g.alloc("gemm output", &out_shape, x.dtype())?;
    gemm_into_on(g, kernel, x, w, epi, &y, Store::Write)?;
    Ok(y)
}

/// How the product meets what `y` holds.
#[derive(Clone, Copy)]
pub enum Store<'a> {
    /// `y = epilogue(x·Wᵀ)`.
    Write,
    /// `y += epilogue(x·Wᵀ)`.
    Add,
    /// `y += epilogue(x·Wᵀ) ⊙ gate`, gate `[rows, n]`, or `[n]` / `[1, n]` for one row shared by all rows.
    Gated(&'a GpuTensor),
}

/// The general form of the GEMMs below, on a named kernel.
pub fn gemm_into_on(
    g: &Gpu,
    kernel: Kernel,
    x: &GpuTensor,
    w: &Weight,
    epi: Epilogue,
    y: &GpuTensor,
    into: Store,
) -> Result<(), KernelError> {
    let op = match into {
        Store::Write => "gemm_into",
        Store::Add => "gemm_add",
        Store::Gated(_) => "gemm_gated_add",
    };
    let (rows, out_shape) = check(g, x, w, epi.bias)?;
    y.expect(op, "y", &out_shape)?;
    y.expect_dtype(op, "y", x.dtype())?;
    let mode = match into {
        Store::Write => Mode::Write,
        Store::Add => Mode::Add,
        Store::Gated(gate) => {
            let g_ld = if gate.numel() == w.n {
                0
            } else if gate.numel() == rows * w.n {
                w.n
            } else {
                return Err(KernelError::Shape {
                    op,
                    tensor: "gate",
                    expected: format!("[{rows}, {}] or [{}]", w.n, w.n),
                    found: gate.shape().to_vec(),
                });
            };
            if max_k_chunk(g, w).is_some_and(|kc| kc < w.k) && x.dtype() == DType::F32 {
                // The product accumulates over several launches, so the gate cannot be applied in the last
                // one's epilogue alone: form the product, then add it through the gate.
                let t = gemm_on(g, kernel, x, w, epi)?;
                return super::elementwise::gated_add(g, y, &t, gate);
            }
            Mode::GatedAdd(gate, g_ld)
        }
    };
    run_on(g, kernel, x, w, y, rows, epi, mode)
}

/// `y = epilogue(x·Wᵀ)` written into `y` (which may be a row view of a larger tensor).
pub fn gemm_into(g: &Gpu, x: &GpuTensor, w: &Weight, epi: Epilogue, y: &GpuTensor) -> Result<(), KernelError> {
    gemm_into_on(g, Kernel::Auto, x, w, epi, y, Store::Write)
}

/// `y += x·Wᵀ + bias`: a residual add without a gate (the text cross-attention output).
pub fn gemm_add(
    g: &Gpu,
    x: &GpuTensor,
    w: &Weight,
    bias: Option<&GpuTensor>,
    y: &GpuTensor,
) -> Result<(), KernelError> {
    gemm_into_on(g, Kernel::Auto, x, w, Epilogue { bias, act: Act::None }, y, Store::Add)
}

/// `y += (x·Wᵀ + bias) ⊙ gate`: the gated residual of the DiT blocks, written into `y` in place. `gate` is
/// `[rows, n]`, or `[n]` / `[1, n]` for one gate row shared by all rows.
pub fn gemm_gated_add(
    g: &Gpu,
    x: &GpuTensor,
    w: &Weight,
    bias: Option<&GpuTensor>,
    gate: &GpuTensor,
    y: &GpuTensor,
) -> Result<(), KernelError> {
    gemm_into_on(g, Kernel::Auto, x, w, Epilogue { bias, act: Act::None }, y, Store::Gated(gate))
}

/// Values of k per launch so that the weight's binding fits (a multiple of 32); `None` when not even one block
/// row fits.
fn max_k_chunk(g: &Gpu, w: &Weight) -> Option<usize> {
    let row_bytes = (w.n_pad * 4) as u64;
    let kc = ((g.max_binding() / row_bytes) as usize * w.format.per_word()) / 32 * 32;
    (kc > 0).then_some(kc)
}

fn check(g: &Gpu, x: &GpuTensor, w: &Weight, bias: Option<&GpuTensor>) -> Result<(usize, Vec<usize>), KernelError> {
    const OP: &str = "gemm";
    if !(x.dtype() == DType::F32 || (x.dtype() == DType::F16 && g.caps.shader_f16)) {
        let expected = if g.caps.shader_f16 { "f32 or f16" } else { "f32 (this adapter has no shader-f16)" };
        return Err(KernelError::DType { op: OP, tensor: "x", expected, found: x.dtype().name() });
    }
    let shape = x.shape();
    if shape.last() != Some(&w.k) {
        return Err(KernelError::Shape {
            op: OP,
            tensor: "x",
            expected: format!("[.., {}] (the weight's in-features)", w.k),
            found: shape.to_vec(),
        });
    }
    if let Some(b) = bias {
        b.expect(OP, "bias", &[w.n])?;
    }
    let rows = shape[..shape.len() - 1].iter().product::<usize>();
    let mut out = shape.to_vec();
    *out.last_mut().expect("x has at least one dim") = w.n;
    Ok((rows, out))
}

/// Offset of a window's first element in elements of `esz` bytes (f16 windows may start mid-word).
fn elem_shift(t: &GpuTensor, b: &crate::gpu::Binding, start: usize, esz: usize) -> u32 {
    ((t.offset() + start as u64 - b.offset) / esz as u64) as u32
}

/// How the result meets what `y` holds: overwrite, add, or add through a gate (with the gate's row length, 0 for
/// one shared row).
enum Mode<'a> {
    Write,
    Add,
    GatedAdd(&'a GpuTensor, usize),
}

#[allow(clippy::too_many_arguments)]
fn run_on(
    g: &Gpu,
    kernel: Kernel,
    x: &GpuTensor,
    w: &Weight,
    y: &GpuTensor,
    rows: usize,
    epi: Epilogue,
    mode: Mode,
) -> Result<(), KernelError> {
    let (gate, accumulate) = match mode {
        Mode::Write => (None, false),
        Mode::Add => (None, true),
        Mode::GatedAdd(t, ld) => (Some((t, ld)), false),
    };
    if rows == 0 || w.n == 0 {
        return Ok(());
    }
    let f16 = x.dtype() == DType::F16;
    let esz = if f16 { 2 } else { 4 };
    let variant = Variant::choose(g, w.format, f16, kernel)?;
    let pipe_scalar = g.pipeline(&variant.spec())?;
    let plain = variant.coop_sg == 0 && !variant.tiled;
    let pipe_x4 = if w.k.is_multiple_of(4) && plain && variant.sg == 0 {
        Some(g.pipeline(&Variant { x4: true, ..variant }.spec())?)
    } else {
        None
    };
    let max = g.max_binding();
    let align = g.binding_align();
    let (k, n, n_pad) = (w.k, w.n, w.n_pad);

    // k chunks: whole scale blocks, each weight window within one binding.
    let word_rows_per_k = |kc: usize| kc / w.format.per_word();
    let Some(max_k) = max_k_chunk(g, w) else {
        return Err(KernelError::Unsupported {
            op: "gemm",
            what: format!("a weight row block of {n} outputs exceeds one binding"),
        });
    };
    let k_chunks: Vec<(usize, usize)> =
        (0..w.k_pad.max(1)).step_by(max_k).map(|k0| (k0, (k0 + max_k).min(k))).collect();
    if gate.is_some() && k_chunks.len() > 1 {
        return Err(KernelError::Unsupported {
            op: "gemm_gated_add",
            what: format!(
                "a gated weight of {} MiB split over bindings; use a smaller weight format",
                w.len_bytes() >> 20
            ),
        });
    }
    // Row chunks: x and y windows within one binding.
    let (tile_m, tile_n) = if plain { (TM, 4 * variant.wg as usize) } else { (SHARED_TILE, SHARED_TILE) };
    let max_rows = ((max / (4 * k as u64)).min(max / (4 * n as u64)) as usize / tile_m * tile_m).max(tile_m);
    let groups_x = n.div_ceil(tile_n) as u32;
    let max_groups = g.limits.max_compute_workgroups_per_dimension;
    for m0 in (0..rows).step_by(max_rows) {
        let mc = max_rows.min(rows - m0);
        let xb = x.window((m0 * k * esz) as u64, (mc * k * esz) as u64, align);
        let yb = y.window((m0 * n * esz) as u64, (mc * n * esz) as u64, align);
        let x_shift = elem_shift(x, &xb, m0 * k * esz, esz);
        // Rows start on a vec4 when k and the window's element shift are multiples of 4.
        let pipe = match &pipe_x4 {
            Some(p) if x_shift.is_multiple_of(4) => p,
            _ => &pipe_scalar,
        };
        let y_shift = elem_shift(y, &yb, m0 * n * esz, esz);
        let (gb, g_shift, g_ld) = match gate {
            Some((t, 0)) => {
                let b = t.binding();
                let s = b.word_shift;
                (b, s, 0)
            }
            Some((t, ld)) => {
                let b = t.window((m0 * ld * 4) as u64, (mc * ld * 4) as u64, align);
                let s = b.word_shift;
                (b, s, ld as u32)
            }
            None => (g.dummy().binding(), 0, 0),
        };
        let [gy, gz] = spread(mc.div_ceil(tile_m) as u32, max_groups);
        for (ci, &(k0, k1)) in k_chunks.iter().enumerate() {
            let last = ci + 1 == k_chunks.len();
            let wb = w.words.window(
                (word_rows_per_k(k0) * n_pad * 4) as u64,
                (word_rows_per_k(max_k) * n_pad * 4) as u64,
                align,
            );
            let (sb, s_shift) = match (&w.scales, w.format) {
                (Some(s), WeightFormat::Q8 | WeightFormat::Q4) => {
                    let b = s.window((k0 / 32 * n_pad * 2) as u64, (max_k / 32 * n_pad * 2) as u64, align);
                    let sh = b.word_shift;
                    (b, sh)
                }
                (Some(s), _) => {
                    let b = s.binding();
                    let sh = b.word_shift;
                    (b, sh)
                }
                (None, _) => (g.dummy().binding(), 0),
            };
            let mut flags = 0;
            if ci > 0 || accumulate {
                flags |= ACCUMULATE;
            }
            if last {
                if epi.bias.is_some() {
                    flags |= BIAS;
                }
                flags |= match epi.act {
                    Act::None => 0,
                    Act::GeluTanh => 2,
                    Act::Silu => 4,
                };
                if gate.is_some() {
                    flags |= GATED;
                }
            }
            let bias = epi.bias.map_or_else(|| g.dummy().binding(), |b| b.binding());
            let b_shift = bias.word_shift;
            let params = GemmParams {
                m: mc as u32,
                n: n as u32,
                k_begin: k0 as u32,
                k_end: k1 as u32,
                n_pad: n_pad as u32,
                x_ld: k as u32,
                x_shift,
                w_shift: wb.word_shift,
                s_shift,
                y_shift,
                b_shift,
                g_shift,
                g_ld,
                flags,
                ..Default::default()
            };
            g.dispatch(pipe, &[xb.clone(), wb, bias, gb.clone(), yb.clone(), sb], &params, [groups_x, gy, gz])?;
        }
    }
    Ok(())
}
