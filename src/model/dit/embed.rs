//! The DiT's input and output layers (NAVA.md §4.2, §4.5): video patch embedding, the audio tower's Conv1d +
//! SwiGLU ConvMLP, the text and time MLPs, the speaker token, the heads and unpatchify.

use crate::gpu::{DType, Gpu, GpuTensor};
use crate::kernels::conv::{conv1d, permute, Conv1dArgs};
use crate::kernels::elementwise::{binary, binary_inplace, copy_into, fill, timestep_embedding, unary_inplace};
use crate::kernels::elementwise::{Binary, TimestepFreqs, Unary};
use crate::kernels::gemm::{Act, WeightFormat};
use crate::kernels::norm::{layer_norm_into, Modulation, RowOperand};
use crate::model::layers::{LayerNorm, Linear};
use crate::model::ModelError;
use crate::weights::Scope;

use super::{DitConfig, Modality, Rows, SPK_DIM};

/// Time conditioning of the distinct timesteps of one forward.
pub struct Time {
    /// `time_embedding` output `[U, dim]` (the heads use it).
    pub e: GpuTensor,
    /// `time_projection` output `[U, 6·dim]` (the blocks' modulation).
    pub e0: GpuTensor,
}

/// `time_embedding` (Linear → SiLU → Linear) and `time_projection` (SiLU → Linear to 6·dim).
pub struct TimeEmbed {
    freqs: TimestepFreqs,
    e_0: Linear,
    e_2: Linear,
    projection: Linear,
}

impl TimeEmbed {
    pub fn load(g: &Gpu, w: Scope, c: &DitConfig, format: WeightFormat) -> Result<Self, ModelError> {
        let d = c.dim;
        Ok(Self {
            freqs: TimestepFreqs::new(g, c.freq_dim)?,
            e_0: Linear::load(g, w, "time_embedding.0", d, c.freq_dim, format)?,
            e_2: Linear::load(g, w, "time_embedding.2", d, d, format)?,
            projection: Linear::load(g, w, "time_projection.1", 6 * d, d, format)?,
        })
    }

    /// Once per distinct timestep value, not per token.
    pub fn forward(&self, g: &Gpu, ts: &[f32]) -> Result<Time, ModelError> {
        let t = g.upload_f32("timesteps", ts, &[ts.len()])?;
        let sin = timestep_embedding(g, &self.freqs, &t)?;
        let e = self.e_2.forward(g, &self.e_0.forward(g, &sin, Act::Silu)?, Act::None)?;
        let se = crate::kernels::elementwise::unary(g, &e, Unary::Silu)?;
        let e0 = self.projection.forward(g, &se, Act::None)?;
        Ok(Time { e, e0 })
    }
}

/// `patch_embedding_audio`: channel-last Conv1d(k7, pad 3) + SiLU, then ConvMLP `w2(SiLU(w1 x) ⊙ w3 x)`.
pub struct AudioEmbed {
    conv: GpuTensor,
    conv_bias: GpuTensor,
    w1: GpuTensor,
    w2: GpuTensor,
    w3: GpuTensor,
}

impl AudioEmbed {
    pub fn load(g: &Gpu, w: Scope, c: &DitConfig) -> Result<Self, ModelError> {
        let (d, h) = (c.dim, c.audio_mlp_hidden());
        Ok(Self {
            conv: w.tensor(g, "0.weight", &[d, c.audio_in_dim, 7])?,
            conv_bias: w.tensor(g, "0.bias", &[d])?,
            w1: w.tensor(g, "2.w1.weight", &[h, d, 7])?,
            w2: w.tensor(g, "2.w2.weight", &[d, h, 7])?,
            w3: w.tensor(g, "2.w3.weight", &[h, d, 7])?,
        })
    }

    /// `audio` `[L_a, C]` → tokens written into `out` `[L_a, dim]`.
    pub fn forward_into(&self, g: &Gpu, audio: &GpuTensor, out: &GpuTensor) -> Result<(), ModelError> {
        let pad = |bias| Conv1dArgs { bias, padding: [3, 3], ..Default::default() };
        let x = permute(g, audio, &[1, 0])?; // channels first for the convolutions
        let y = conv1d(g, &x, &self.conv, &pad(Some(&self.conv_bias)))?;
        unary_inplace(g, &y, Unary::Silu)?;
        let a = conv1d(g, &y, &self.w1, &pad(None))?;
        let b = conv1d(g, &y, &self.w3, &pad(None))?;
        unary_inplace(g, &a, Unary::Silu)?;
        binary_inplace(g, &a, &b, Binary::Mul)?;
        let z = conv1d(g, &a, &self.w2, &pad(None))?;
        copy_into(g, &permute(g, &z, &[1, 0])?, out)?;
        Ok(())
    }
}

/// `speaker_embedding` (SpkToken): LayerNorm(192) → Linear → SiLU → Linear → LayerNorm(dim); a learned null token
/// stands in for an all-zero embedding.
pub struct SpkToken {
    norm_in: LayerNorm,
    net_1: Linear,
    net_3: Linear,
    out_norm: LayerNorm,
    null_token: GpuTensor,
}

/// `nn.LayerNorm`'s default eps, which SpkToken's norms keep.
const TORCH_LN_EPS: f32 = 1e-5;
/// SpkToken's threshold on ‖emb‖² below which the null token is used.
const NULL_SPK: f64 = 1e-6;

impl SpkToken {
    pub fn load(g: &Gpu, w: Scope, d: usize) -> Result<Self, ModelError> {
        Ok(Self {
            norm_in: LayerNorm::load(g, w, "net.0", SPK_DIM, TORCH_LN_EPS)?,
            net_1: Linear::load(g, w, "net.1", d, SPK_DIM, WeightFormat::F32)?,
            net_3: Linear::load(g, w, "net.3", d, d, WeightFormat::F32)?,
            out_norm: LayerNorm::load(g, w, "out_norm", d, TORCH_LN_EPS)?,
            null_token: w.tensor(g, "null_token", &[1, d])?,
        })
    }

    /// Speaker embeddings (host, `SPK_DIM` each) → tokens `[n, dim]`.
    pub fn forward(&self, g: &Gpu, embeddings: &[Vec<f32>]) -> Result<GpuTensor, ModelError> {
        if embeddings.is_empty() {
            return Err(ModelError::Input { what: "speakers".into(), problem: "no speaker embedding given".into() });
        }
        let mut flat = Vec::with_capacity(embeddings.len() * SPK_DIM);
        for (i, e) in embeddings.iter().enumerate() {
            if e.len() != SPK_DIM {
                return Err(ModelError::Input {
                    what: format!("speaker embedding {i}"),
                    problem: format!("has {} values; ReDimNet embeddings have {SPK_DIM}", e.len()),
                });
            }
            flat.extend_from_slice(e);
        }
        let x = g.upload_f32("speaker embeddings", &flat, &[embeddings.len(), SPK_DIM])?;
        let h = self.net_1.forward(g, &self.norm_in.forward(g, &x)?, Act::Silu)?;
        let tokens = self.out_norm.forward(g, &self.net_3.forward(g, &h, Act::None)?)?;
        for (i, e) in embeddings.iter().enumerate() {
            if e.iter().map(|&v| v as f64 * v as f64).sum::<f64>() <= NULL_SPK {
                copy_into(g, &self.null_token, &tokens.rows(i, 1).expect("row i exists"))?;
            }
        }
        Ok(tokens)
    }
}

/// T5 output `[n, text_dim]` → zero-padded to `text_len` rows → `text_embedding` → `[text_len, dim]`. Padded rows
/// are embedded and attended too, as in the reference.
pub fn text_context(
    g: &Gpu,
    mlp: &[Linear; 2],
    raw: &GpuTensor,
    text_len: usize,
    text_dim: usize,
) -> Result<GpuTensor, ModelError> {
    let n = match raw.shape() {
        [n, d] if *d == text_dim => *n,
        s => {
            return Err(ModelError::Input {
                what: "text context".into(),
                problem: format!("has shape {s:?}; expected [tokens, {text_dim}]"),
            })
        }
    };
    if n > text_len {
        return Err(ModelError::Input {
            what: "text context".into(),
            problem: format!("has {n} tokens; the model takes at most {text_len} (truncate the prompt)"),
        });
    }
    let padded = g.alloc("text context", &[text_len, text_dim], DType::F32)?;
    fill(g, &padded, 0.0)?;
    if n > 0 {
        copy_into(g, raw, &padded.rows(0, n).expect("n <= text_len"))?;
    }
    let h = mlp[0].forward(g, &padded, Act::GeluTanh)?;
    mlp[1].forward(g, &h, Act::None)
}

/// Writes speaker token `i` over context row `positions[i]`. Extra tokens are ignored, as in the reference; fewer
/// tokens than positions is an error there and here.
pub fn insert_rows(g: &Gpu, ctx: &GpuTensor, tokens: &GpuTensor, positions: &[usize]) -> Result<(), ModelError> {
    let n = tokens.shape()[0];
    let rows = ctx.shape()[0];
    if positions.len() > n {
        return Err(ModelError::Input {
            what: "speakers".into(),
            problem: format!(
                "{} speaker positions (<S> spans) but {n} voices: give one voice per <S> span",
                positions.len()
            ),
        });
    }
    for (i, &p) in positions.iter().enumerate() {
        let dst = ctx.rows(p, 1).ok_or_else(|| ModelError::Input {
            what: "speakers".into(),
            problem: format!("speaker position {p} is outside the {rows}-row context"),
        })?;
        copy_into(g, &tokens.rows(i, 1).expect("i < n"), &dst)?;
    }
    Ok(())
}

/// Conv3d with kernel = stride = patch, as a GEMM over patches: `[C, F, H, W]` → tokens `[F·h·w, dim]` in
/// (frame, row, column) order, written into `out`. Each patch's values are in (c, kh, kw) order, the weight's.
pub fn video_tokens(
    g: &Gpu,
    lin: &Linear,
    video: &GpuTensor,
    c: &DitConfig,
    out: &GpuTensor,
) -> Result<(), ModelError> {
    let [ch, f, h, w] = video.shape().try_into().expect("checked by Dit::rows");
    let [_, ph, pw] = c.patch_size;
    let (hp, wp) = (h / ph, w / pw);
    let grid = video.reshape(&[ch, f * hp, ph, wp, pw]).expect("same element count");
    let patches = permute(g, &grid, &[1, 3, 0, 2, 4])?; // [F·h, w, C, ph, pw]
    let patches = patches.reshape(&[f * hp * wp, ch * ph * pw]).expect("same element count");
    lin.forward_into(g, &patches, out)
}

/// Head output `[F·h·w, (pq r c)]` → `[c, F, h·ph, w·pw]` (the reference's `fhwpqrc → cfphqwr`, pt = 1).
pub fn unpatchify(g: &Gpu, x: &GpuTensor, grid: [usize; 3], c: &DitConfig) -> Result<GpuTensor, ModelError> {
    let [f, h, w] = grid;
    let [_, ph, pw] = c.patch_size;
    let co = c.vid_out_dim;
    let v = x.reshape(&[f * h, w, ph, pw, co]).expect("head width is out_dim · patch");
    let y = permute(g, &v, &[4, 0, 2, 1, 3])?; // [c, F·h, ph, w, pw]
    Ok(y.reshape(&[co, f, h * ph, w * pw]).expect("same element count"))
}

/// `head` / `head_audio`: `(shift, scale) = modulation + e` (e, not e0, and no SiLU), then
/// `Linear(LN(x)·(1 + scale) + shift)`.
pub struct Head {
    modulation: GpuTensor,
    head: Linear,
    eps: f32,
}

impl Head {
    pub fn load(g: &Gpu, w: Scope, d: usize, out: usize, eps: f32) -> Result<Self, ModelError> {
        Ok(Self {
            modulation: w.tensor(g, "modulation", &[1, 2, d])?.reshape(&[2, d]).expect("2·d values"),
            head: Linear::load(g, w, "head", out, d, WeightFormat::F32)?,
            eps,
        })
    }

    /// The head over the rows of one modality → `[rows, out]`.
    pub fn forward(
        &self,
        g: &Gpu,
        x: &GpuTensor,
        rows: &Rows,
        m: Modality,
        time: &Time,
    ) -> Result<GpuTensor, ModelError> {
        let h = g.alloc("head norm", x.shape(), DType::F32)?;
        for seg in rows.segments.iter().filter(|s| s.modality == m) {
            let e = time.e.rows(seg.t_index, 1).expect("one row per timestep");
            let table = binary(g, &self.modulation, &e, Binary::Add)?;
            let modulation =
                Modulation { scale: RowOperand::table_row(&table, 1), shift: RowOperand::table_row(&table, 0) };
            layer_norm_into(g, x, &h, seg.rows.clone(), None, None, self.eps, Some(modulation))?;
        }
        let r = rows.range(m);
        self.head.forward(g, &h.rows(r.start, r.len()).expect("rows of x"), Act::None)
    }
}
