//! Launcher for `shaders/conv_copy.wgsl`: the data movement around the decoder convolutions — nearest ×2
//! upsampling, Wan's patchify / unpatchify (`rearrange('b (c r q) f h w -> b c f (h q) (w r)')`), permutes and the
//! frame cache of chunked causal convolution — as one strided-copy kernel over up to six dims.

use crate::gpu::{DType, Family, Gpu, GpuTensor};

use super::{cap_elems, check_f32, check_u32, grid, shape_err, size, win, Kernel, Variant, PX};
use crate::kernels::KernelError;

pub static FAMILY: Family = Family { name: "conv_copy", source: include_str!("../../../shaders/conv_copy.wgsl") };

/// Dims of one copy (`n`), element strides in the source and destination, and where each starts.
struct Copy6 {
    n: [usize; 6],
    ss: [usize; 6],
    ds: [usize; 6],
    src_base: usize,
    dst_base: usize,
}

impl Copy6 {
    /// Dims given outermost first, at most six; missing outer dims are 1.
    fn new(n: &[usize], ss: &[usize], ds: &[usize]) -> Self {
        let pad = 6 - n.len();
        let mut c = Copy6 { n: [1; 6], ss: [0; 6], ds: [0; 6], src_base: 0, dst_base: 0 };
        c.n[pad..].copy_from_slice(n);
        c.ss[pad..].copy_from_slice(ss);
        c.ds[pad..].copy_from_slice(ds);
        c
    }

    fn at(mut self, src_base: usize, dst_base: usize) -> Self {
        self.src_base = src_base;
        self.dst_base = dst_base;
        self
    }
}

pub(super) const PARAMS_BYTES: usize = std::mem::size_of::<CopyParams>();

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct CopyParams {
    n: [u32; 8],
    ss: [u32; 8],
    ds: [u32; 8],
    count: u32,
    src_off: u32,
    dst_off: u32,
    _pad: u32,
}

/// Runs one strided copy, split along its outer dims so that each window fits one binding.
fn copy(g: &Gpu, op: &'static str, src: &GpuTensor, dst: &GpuTensor, c: &Copy6) -> Result<(), KernelError> {
    if c.n.contains(&0) {
        return Ok(());
    }
    let cap = cap_elems(g);
    // Span (elements) of dims d+1.. in each tensor.
    let inner = |d: usize, s: &[usize; 6]| -> usize { (d + 1..6).map(|k| (c.n[k] - 1) * s[k]).sum::<usize>() + 1 };
    // The outermost dim d one index of which fits; chunks of `len` indices along it.
    let (d, len) = (0..6)
        .find_map(|d| {
            let (is, id) = (inner(d, &c.ss), inner(d, &c.ds));
            if is > cap || id > cap {
                return None;
            }
            // Indices of dim d that fit after the first (a stride of 0 repeats one element: all fit).
            let room =
                |inn: usize, st: usize| (cap - inn).checked_div(st).map_or(c.n[d], |extra| (extra + 1).min(c.n[d]));
            Some((d, room(is, c.ss[d]).min(room(id, c.ds[d]))))
        })
        .ok_or_else(|| KernelError::Unsupported {
            op,
            what: format!("one element row exceeds the binding limit of {}", size(cap)),
        })?;
    let variant = Variant::pick(g, Kernel::Copy);
    let pipe = g.pipeline(&variant.spec())?;
    let prefixes: usize = c.n[..d].iter().product();
    let inner_count: usize = c.n[d + 1..].iter().product();
    for pre in 0..prefixes {
        // Offsets of this prefix index (dims 0..d).
        let (mut so, mut dof, mut rest) = (c.src_base, c.dst_base, pre);
        for k in (0..d).rev() {
            let i = rest % c.n[k];
            rest /= c.n[k];
            so += i * c.ss[k];
            dof += i * c.ds[k];
        }
        for a in (0..c.n[d]).step_by(len) {
            let m = len.min(c.n[d] - a);
            let (s0, d0) = (so + a * c.ss[d], dof + a * c.ds[d]);
            let sw = win(g, src, s0, 0, (m - 1) * c.ss[d] + inner(d, &c.ss));
            let dw = win(g, dst, d0, 0, (m - 1) * c.ds[d] + inner(d, &c.ds));
            let count = m * inner_count;
            check_u32(op, "dst", count)?;
            let mut p = CopyParams { count: count as u32, src_off: sw.safe, dst_off: dw.safe, ..Default::default() };
            for k in 0..6 {
                let keep = k > d;
                p.n[k] = if k == d {
                    m as u32
                } else if keep {
                    c.n[k] as u32
                } else {
                    1
                };
                p.ss[k] = if keep || k == d { c.ss[k] as u32 } else { 0 };
                p.ds[k] = if keep || k == d { c.ds[k] as u32 } else { 0 };
            }
            let groups = grid(g, op, count.div_ceil(variant.wg as usize * PX))?;
            g.dispatch(&pipe, &[sw.binding, dw.binding], &p, groups)?;
        }
    }
    Ok(())
}

/// Row-major strides of a shape.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn check_input(op: &'static str, x: &GpuTensor, min_rank: usize, expected: &str) -> Result<(), KernelError> {
    check_f32(op, "x", x)?;
    if x.shape().len() < min_rank {
        return Err(shape_err(op, "x", expected.to_string(), x));
    }
    check_u32(op, "x", x.numel())
}

/// Nearest-neighbour ×2 upsampling of the last two dims: `[.., H, W]` → `[.., 2H, 2W]`. On `[C, H, W]` it is the
/// 2-D case, on `[C, T, H, W]` the spatial-only 3-D case (for ×2, `nearest-exact` is the same map).
pub fn upsample_nearest2x(g: &Gpu, x: &GpuTensor) -> Result<GpuTensor, KernelError> {
    const OP: &str = "upsample_nearest2x";
    check_input(OP, x, 2, "[.., H, W]")?;
    let s = x.shape();
    let r = s.len();
    let (h, w) = (s[r - 2], s[r - 1]);
    let lead: usize = s[..r - 2].iter().product();
    let mut out = s.to_vec();
    out[r - 2] = 2 * h;
    out[r - 1] = 2 * w;
    check_u32(OP, "y", 4 * x.numel())?;
    let y = g.alloc("upsample_nearest2x output", &out, DType::F32)?;
    // (lead, h, a, w, b) → y[lead, 2h + a, 2w + b] = x[lead, h, w].
    let c = Copy6::new(&[lead, h, 2, w, 2], &[h * w, w, 0, 1, 0], &[4 * h * w, 4 * w, 2 * w, 2, 1]);
    copy(g, OP, x, &y, &c)?;
    Ok(y)
}

/// Wan's unpatchify: `[(B,) C·p², T, H, W]` → `[(B,) C, T, p·H, p·W]`, input channel c·p² + r·p + q going to row
/// offset q and column offset r (`rearrange('b (c r q) f h w -> b c f (h q) (w r)', q=p, r=p)`).
pub fn unpatchify(g: &Gpu, x: &GpuTensor, p: usize) -> Result<GpuTensor, KernelError> {
    const OP: &str = "unpatchify";
    check_input(OP, x, 4, "[(B,) C·p², T, H, W]")?;
    let s = x.shape();
    let r = s.len();
    let (cp, t, h, w) = (s[r - 4], s[r - 3], s[r - 2], s[r - 1]);
    if r > 5 || p == 0 || cp % (p * p) != 0 {
        return Err(shape_err(
            OP,
            "x",
            format!("[(B,) C·{}, T, H, W] (channels a multiple of p² for p = {p})", p * p),
            x,
        ));
    }
    let bc = s[..r - 4].iter().product::<usize>() * cp / (p * p);
    let mut out = s.to_vec();
    out[r - 4..].copy_from_slice(&[cp / (p * p), t, p * h, p * w]);
    let y = g.alloc("unpatchify output", &out, DType::F32)?;
    let thw = t * h * w;
    // Iterate y in order (bc, t, h, q, w, r).
    let c = Copy6::new(
        &[bc, t, h, p, w, p],
        &[p * p * thw, h * w, w, thw, 1, p * thw],
        &[p * p * thw, p * p * h * w, p * p * w, p * w, p, 1],
    );
    copy(g, OP, x, &y, &c)?;
    Ok(y)
}

/// Wan2.2's `DupUp3D` shortcut: `[Cin, T, H, W]` → `[Cout, T·ft, H·fs, W·fs]`, each input channel repeated
/// `Cout·ft·fs²/Cin` times along channels (`repeat_interleave`) and the repeats spread over (time, row, column)
/// offsets `(a, b, c)`: output channel o at offset j = a·fs² + b·fs + c reads input channel (o·F + j)/repeats,
/// F = ft·fs². `first_chunk` drops the first ft − 1 output frames. Needs Cin a multiple of Cout.
pub fn dup_up3d(
    g: &Gpu,
    x: &GpuTensor,
    out_channels: usize,
    ft: usize,
    fs: usize,
    first_chunk: bool,
) -> Result<GpuTensor, KernelError> {
    const OP: &str = "dup_up3d";
    check_input(OP, x, 4, "[C, T, H, W]")?;
    let [cin, t, h, w]: [usize; 4] = x.shape().try_into().map_err(|_| shape_err(OP, "x", "[C, T, H, W]".into(), x))?;
    let f = ft * fs * fs;
    if out_channels == 0 || ft == 0 || fs == 0 || cin % out_channels != 0 {
        return Err(KernelError::Unsupported {
            op: OP,
            what: format!("{cin} → {out_channels} channels with factors ({ft}, {fs}): Cin must be a multiple of Cout"),
        });
    }
    let q = cin / out_channels;
    let repeats = out_channels * f / cin;
    let drop = if first_chunk { ft - 1 } else { 0 };
    let (t2, hs, ws) = (t * ft - drop, h * fs, w * fs);
    check_u32(OP, "y", out_channels * t2 * hs * ws)?;
    let y = g.alloc("dup_up3d output", &[out_channels, t2, hs, ws], DType::F32)?;
    let thw = t * h * w;
    for j in 0..f {
        let (a, b, c) = (j / (fs * fs), (j / fs) % fs, j % fs);
        // Offsets a < drop lose only their first frame (output frame t·ft + a − drop < 0 only for t = 0).
        let t0 = usize::from(a < drop);
        if t0 >= t {
            continue;
        }
        let cp = Copy6::new(
            &[out_channels, t - t0, h, w],
            &[q * thw, h * w, w, 1],
            &[t2 * hs * ws, ft * hs * ws, fs * ws, fs],
        )
        .at((j / repeats) * thw + t0 * h * w, (t0 * ft + a - drop) * hs * ws + b * ws + c);
        copy(g, OP, x, &y, &cp)?;
    }
    Ok(y)
}

/// Wan2.2's `AvgDown3D` shortcut: `[Cin, T, H, W]` → `[Cout, ⌈T/ft⌉, H/fs, W/fs]`, time zero-padded in front to a
/// multiple of ft, the (time, row, column) offsets folded into channels and each group of Cin·ft·fs²/Cout
/// consecutive channels averaged. Needs Cout a multiple of Cin, and H, W multiples of fs.
pub fn avg_down3d(g: &Gpu, x: &GpuTensor, out_channels: usize, ft: usize, fs: usize) -> Result<GpuTensor, KernelError> {
    use crate::kernels::elementwise::{binary_inplace, fill, unary_inplace, Binary, Unary};
    const OP: &str = "avg_down3d";
    check_input(OP, x, 4, "[C, T, H, W]")?;
    let [cin, t, h, w]: [usize; 4] = x.shape().try_into().map_err(|_| shape_err(OP, "x", "[C, T, H, W]".into(), x))?;
    let f = ft * fs * fs;
    let ok = out_channels > 0
        && ft > 0
        && fs > 0
        && out_channels.is_multiple_of(cin)
        && f.is_multiple_of(out_channels / cin);
    if !ok || h % fs != 0 || w % fs != 0 {
        return Err(KernelError::Unsupported {
            op: OP,
            what: format!(
                "{cin} → {out_channels} channels with factors ({ft}, {fs}) on {h}×{w}: Cout must be a multiple of \
                 Cin and the size a multiple of {fs}"
            ),
        });
    }
    let p = out_channels / cin;
    let group = f / p;
    let pad_t = (ft - t % ft) % ft;
    let (t2, h2, w2) = ((t + pad_t) / ft, h / fs, w / fs);
    let plane = t2 * h2 * w2;
    check_u32(OP, "y", group * out_channels * plane)?;
    let parts = g.alloc("avg_down3d groups", &[group, out_channels, t2, h2, w2], DType::F32)?;
    if pad_t > 0 {
        fill(g, &parts, 0.0)?;
    }
    for m in 0..p {
        for gi in 0..group {
            let j = m * group + gi;
            let (a, b, c) = (j / (fs * fs), (j / fs) % fs, j % fs);
            let t0 = usize::from(a < pad_t);
            if t0 >= t2 {
                continue;
            }
            let cp =
                Copy6::new(&[cin, t2 - t0, h2, w2], &[t * h * w, ft * h * w, fs * w, fs], &[p * plane, h2 * w2, w2, 1])
                    .at(
                        (t0 * ft + a - pad_t) * h * w + b * w + c,
                        gi * out_channels * plane + m * plane + t0 * h2 * w2,
                    );
            copy(g, OP, x, &parts, &cp)?;
        }
    }
    let y = parts.rows(0, 1).expect("group ≥ 1");
    let y = crate::kernels::elementwise::copy(g, &y)?;
    for gi in 1..group {
        binary_inplace(g, &y, &parts.rows(gi, 1).expect("gi < group"), Binary::Add)?;
    }
    unary_inplace(g, &y, Unary::ScaleAdd { scale: 1.0 / group as f32, add: 0.0 })?;
    Ok(y.reshape(&[out_channels, t2, h2, w2]).expect("same element count"))
}

/// Wan's patchify, the inverse of [`unpatchify`]: `[(B,) C, T, p·H, p·W]` → `[(B,) C·p², T, H, W]`
/// (`rearrange('b c f (h q) (w r) -> b (c r q) f h w', q=p, r=p)`).
pub fn patchify(g: &Gpu, x: &GpuTensor, p: usize) -> Result<GpuTensor, KernelError> {
    const OP: &str = "patchify";
    check_input(OP, x, 4, "[(B,) C, T, p·H, p·W]")?;
    let s = x.shape();
    let r = s.len();
    let (c, t, hp, wp) = (s[r - 4], s[r - 3], s[r - 2], s[r - 1]);
    if r > 5 || p == 0 || hp % p != 0 || wp % p != 0 {
        return Err(shape_err(
            OP,
            "x",
            format!("[(B,) C, T, H·{p}, W·{p}] (height and width multiples of p = {p})"),
            x,
        ));
    }
    let (h, w) = (hp / p, wp / p);
    let bc = s[..r - 3].iter().product::<usize>();
    let mut out = s.to_vec();
    out[r - 4..].copy_from_slice(&[c * p * p, t, h, w]);
    let y = g.alloc("patchify output", &out, DType::F32)?;
    let thw = t * h * w;
    // Iterate y in order (bc, r, q, t, h, w).
    let cp = Copy6::new(
        &[bc, p, p, t, h, w],
        &[t * hp * wp, 1, wp, hp * wp, p * wp, p],
        &[p * p * thw, p * thw, thw, h * w, w, 1],
    );
    copy(g, OP, x, &y, &cp)?;
    Ok(y)
}

/// `x.permute(perm)` made contiguous, for up to six dims.
pub fn permute(g: &Gpu, x: &GpuTensor, perm: &[usize]) -> Result<GpuTensor, KernelError> {
    const OP: &str = "permute";
    check_input(OP, x, 0, "")?;
    let s = x.shape();
    let mut seen = [false; 6];
    let valid = perm.len() == s.len()
        && perm.len() <= 6
        && perm.iter().all(|&d| d < perm.len() && !std::mem::replace(&mut seen[d], true));
    if !valid {
        return Err(KernelError::Unsupported {
            op: OP,
            what: format!("{perm:?} is not a permutation of the {} dims of x {s:?} (at most 6)", s.len()),
        });
    }
    let out: Vec<usize> = perm.iter().map(|&d| s[d]).collect();
    let y = g.alloc("permute output", &out, DType::F32)?;
    let st = strides(s);
    let ss: Vec<usize> = perm.iter().map(|&d| st[d]).collect();
    copy(g, OP, x, &y, &Copy6::new(&out, &ss, &strides(&out)))?;
    Ok(y)
}

/// The frame cache for the next chunk of a causal convolution: the last `frames` frames (fewer if there are
/// fewer) of `cat(cache, x)` along time. x is `[(B,) C, T, H, W]`, cache `[(B,) C, nc, H, W]`. Wan keeps
/// `CACHE_T = 2` frames: `x[:, :, -2:]`, with the old cache's last frame in front when x has one frame.
pub fn causal_conv3d_next_cache(
    g: &Gpu,
    cache: Option<&GpuTensor>,
    x: &GpuTensor,
    frames: usize,
) -> Result<GpuTensor, KernelError> {
    const OP: &str = "causal_conv3d_next_cache";
    check_input(OP, x, 4, "[(B,) C, T, H, W]")?;
    let s = x.shape();
    let r = s.len();
    if r > 5 {
        return Err(shape_err(OP, "x", "[(B,) C, T, H, W]".into(), x));
    }
    if frames == 0 {
        return Err(KernelError::Unsupported { op: OP, what: "a cache of 0 frames".into() });
    }
    let t = s[r - 3];
    let hw = s[r - 2] * s[r - 1];
    let bc: usize = s[..r - 3].iter().product();
    let nc = match cache {
        None => 0,
        Some(c) => {
            check_f32(OP, "cache", c)?;
            let cs = c.shape();
            let ok = cs.len() == r && cs[..r - 3] == s[..r - 3] && cs[r - 2..] == s[r - 2..];
            if !ok {
                return Err(shape_err(OP, "cache", format!("{:?} with any number of frames at dim {}", s, r - 3), c));
            }
            cs[r - 3]
        }
    };
    let m = frames.min(nc + t);
    let from_x = m.min(t);
    let from_cache = m - from_x;
    let mut out = s.to_vec();
    out[r - 3] = m;
    let y = g.alloc("causal conv cache", &out, DType::F32)?;
    // (bc, frame, hw) into y's frames [from_cache, m) from x's last frames, and [0, from_cache) from the cache's.
    let part = |n: usize, src_frames: usize| Copy6::new(&[bc, n, hw], &[src_frames * hw, hw, 1], &[m * hw, hw, 1]);
    copy(g, OP, x, &y, &part(from_x, t).at((t - from_x) * hw, from_cache * hw))?;
    if let Some(c) = cache.filter(|_| from_cache > 0) {
        copy(g, OP, c, &y, &part(from_cache, nc).at((nc - from_cache) * hw, 0))?;
    }
    Ok(y)
}
