//! UMT5-XXL text encoder — reference `T5Encoder` (ernie-research/NAVA `nava_src/models/nava/modules/t5.py`, the
//! same as Wan2.2 `wan/modules/t5.py`) built by `umt5_xxl(encoder_only=True)`, NAVA.md §5.1. Keys have no prefix
//! (`models_t5_umt5-xxl-enc-bf16.pth`).
//!
//! Per block: `x += o(attn(norm1(x)))` with a per-layer relative position bias and no 1/√d scaling, then
//! `x += fc2(fc1(h) · gelu_tanh(gate(h)))` with `h = norm2(x)`; a final T5 RMSNorm. No biases anywhere, dropout is
//! inactive (eval).
//!
//! Batching: [`TextEncoder::encode`] runs several prompts (positive and negative) in one forward over their valid
//! tokens laid end to end (no padding, so no mask; attention per prompt); [`TextEncoder::forward`] runs one padded
//! sequence with a key mask, as the reference does for each row of its batch. Both give the same valid rows: masked
//! keys get a softmax weight of exactly 0.
//!
//! The token embedding (4.2 G values at full size) stays in host memory in the file's float type and is gathered
//! per prompt; the relative position bias `[H, L, L]` is gathered on the host from the bucket table and uploaded
//! per block (64 MiB at 64 heads × 512 tokens). The encoder is a plain struct: drop it after encoding to free its
//! GPU weights (≈ 18.5 GB of f32 linears at full size, less in f16/q8/q4) and host embedding before the denoiser
//! runs ([`TextEncoder::unload`] also trims the pool).

use serde::{Deserialize, Serialize};

use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::attention::{attention, AttentionOptions};
use crate::kernels::elementwise::{binary_inplace, copy_into, fill, Binary};
use crate::kernels::gemm::{Act, WeightFormat};
use crate::kernels::norm::t5_rms_norm;
use crate::weights::{check_keys, to_f32, KeyTable, Scope, TensorSource, WeightDType, WeightError};

use super::dit::Trace;
use super::layers::Linear;
use super::ModelError;

/// `T5LayerNorm` epsilon.
pub const EPS: f32 = 1e-6;
/// `T5RelativeEmbedding.max_dist`: offsets beyond it share the last log-spaced bucket.
pub const MAX_DIST: usize = 128;

/// The `umt5_xxl(...)` keyword arguments of the encoder (reference names; `decoder_layers` and `dropout` unused).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct T5Config {
    pub vocab_size: usize,
    pub dim: usize,
    pub dim_attn: usize,
    pub dim_ffn: usize,
    pub num_heads: usize,
    pub encoder_layers: usize,
    pub num_buckets: usize,
    /// One relative embedding for all blocks (`pos_embedding.`) instead of one per block; false for UMT5.
    pub shared_pos: bool,
}

impl T5Config {
    /// `umt5_xxl`: 24 layers of width 4096, 64 heads × 64, FFN 10240, vocabulary 256384, 32 buckets per layer.
    pub fn umt5_xxl() -> Self {
        Self {
            vocab_size: 256384,
            dim: 4096,
            dim_attn: 4096,
            dim_ffn: 10240,
            num_heads: 64,
            encoder_layers: 24,
            num_buckets: 32,
            shared_pos: false,
        }
    }

    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let c: Self = serde_json::from_str(text).map_err(|e| ModelError::Config(format!("T5 config JSON: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// Refuses shapes the attention kernel cannot run.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.num_heads == 0 || !self.dim_attn.is_multiple_of(self.num_heads) {
            return bad(format!("dim_attn {} must split into {} equal heads", self.dim_attn, self.num_heads));
        }
        let hd = self.head_dim();
        if hd == 0 || !hd.is_multiple_of(4) || hd > crate::kernels::attention::MAX_HEAD_DIM {
            return bad(format!("head dim {hd} must be a multiple of 4 up to 128 (the attention kernel's range)"));
        }
        if self.num_buckets < 4 || !self.num_buckets.is_multiple_of(2) {
            return bad(format!(
                "num_buckets {} must be even and at least 4 (bidirectional buckets)",
                self.num_buckets
            ));
        }
        if self.vocab_size == 0 || self.dim == 0 || self.dim_ffn == 0 {
            return bad("vocab_size, dim and dim_ffn must be positive".into());
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.dim_attn / self.num_heads
    }

    /// Every key with its shape, in the reference's module order.
    pub fn key_table(&self) -> KeyTable {
        let (d, a, f) = (self.dim, self.dim_attn, self.dim_ffn);
        let pos = [self.num_buckets, self.num_heads];
        let mut t: KeyTable = Vec::new();
        let mut add = |k: String, s: &[usize]| t.push((k, s.to_vec()));
        add("token_embedding.weight".into(), &[self.vocab_size, d]);
        if self.shared_pos {
            add("pos_embedding.embedding.weight".into(), &pos);
        }
        for i in 0..self.encoder_layers {
            let b = format!("blocks.{i}");
            add(format!("{b}.norm1.weight"), &[d]);
            for lin in ["q", "k", "v"] {
                add(format!("{b}.attn.{lin}.weight"), &[a, d]);
            }
            add(format!("{b}.attn.o.weight"), &[d, a]);
            add(format!("{b}.norm2.weight"), &[d]);
            add(format!("{b}.ffn.gate.0.weight"), &[f, d]);
            add(format!("{b}.ffn.fc1.weight"), &[f, d]);
            add(format!("{b}.ffn.fc2.weight"), &[d, f]);
            if !self.shared_pos {
                add(format!("{b}.pos_embedding.embedding.weight"), &pos);
            }
        }
        add("norm.weight".into(), &[d]);
        t
    }
}

/// `T5RelativeEmbedding._relative_position_bucket` (bidirectional) for `l` queries and keys: `[l, l]`, row = query,
/// column = key, of `key − query`. Half the buckets per direction (positive offsets get the upper half); within a
/// half, offsets below half of it are exact and larger ones log-spaced up to `max_dist`, clamped to the last. The
/// log arithmetic is f32, as the reference's float tensors, so boundary offsets fall in the same bucket.
pub fn relative_position_buckets(l: usize, num_buckets: usize, max_dist: usize) -> Vec<u32> {
    let half = num_buckets / 2;
    let max_exact = half / 2;
    let log_range = ((max_dist as f64) / (max_exact as f64)).ln() as f32;
    let bucket = |rel: i64| -> u32 {
        let base = if rel > 0 { half } else { 0 };
        let r = rel.unsigned_abs() as usize;
        let within = if r < max_exact {
            r
        } else {
            let large = ((r as f32 / max_exact as f32).ln() / log_range * (half - max_exact) as f32) as usize;
            (max_exact + large).min(half - 1)
        };
        (base + within) as u32
    };
    let mut out = Vec::with_capacity(l * l);
    for q in 0..l {
        out.extend((0..l).map(|k| bucket(k as i64 - q as i64)));
    }
    out
}

/// `token_embedding`: the rows stay on the host as the file stores them (f32, f16 or bf16; other float types are
/// converted to f32 at load) and are gathered per prompt.
pub struct TokenEmbedding {
    dtype: WeightDType,
    bytes: Vec<u8>,
    vocab: usize,
    dim: usize,
}

impl TokenEmbedding {
    fn load(src: &dyn TensorSource, key: &str, vocab: usize, dim: usize) -> Result<Self, ModelError> {
        let file = || src.file().to_path_buf();
        let info = src.info(key).ok_or_else(|| WeightError::Missing {
            file: file(),
            keys: vec![key.to_string()],
            hint: "is this the UMT5 encoder file?".into(),
        })?;
        if info.shape != [vocab, dim] {
            return Err(WeightError::Shape {
                file: file(),
                key: key.to_string(),
                expected: vec![vocab, dim],
                found: info.shape.clone(),
            }
            .into());
        }
        let (dtype, bytes) = match info.dtype {
            d @ (WeightDType::F32 | WeightDType::F16 | WeightDType::BF16) => (d, src.bytes(key)?.into_owned()),
            _ => (WeightDType::F32, bytemuck::cast_slice(&src.f32(key)?).to_vec()),
        };
        Ok(Self { dtype, bytes, vocab, dim })
    }

    /// The rows of `ids`, `[ids.len() · dim]` f32.
    pub fn gather(&self, ids: &[u32]) -> Result<Vec<f32>, ModelError> {
        let row = self.dim * self.dtype.size_bytes();
        let mut out = Vec::with_capacity(ids.len() * self.dim);
        for (i, &id) in ids.iter().enumerate() {
            let id = id as usize;
            if id >= self.vocab {
                return Err(ModelError::Input {
                    what: "token ids".into(),
                    problem: format!(
                        "id {id} at position {i} is outside the vocabulary of {} tokens: was the prompt tokenized \
                         with the UMT5 tokenizer?",
                        self.vocab
                    ),
                });
            }
            let values = to_f32(self.dtype, &self.bytes[id * row..(id + 1) * row]).expect("a float dtype");
            out.extend_from_slice(&values);
        }
        Ok(out)
    }
}

/// `blocks.{i}.attn`: `T5Attention` without biases.
struct T5Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
}

/// `blocks.{i}.ffn`: `T5FeedForward`, `fc2(fc1(x) · gelu_tanh(gate.0(x)))`.
struct T5FeedForward {
    gate: Linear,
    fc1: Linear,
    fc2: Linear,
}

/// `blocks.{i}`: `T5SelfAttention` (pre-norm attention and FFN, residual each).
pub struct T5SelfAttention {
    norm1: GpuTensor,
    attn: T5Attention,
    norm2: GpuTensor,
    ffn: T5FeedForward,
    /// `pos_embedding.embedding.weight` `[num_buckets, heads]` on the host (None with `shared_pos`).
    pos_embedding: Option<Vec<f32>>,
}

impl T5SelfAttention {
    fn load(g: &Gpu, w: Scope, c: &T5Config, format: WeightFormat) -> Result<Self, ModelError> {
        let (d, a, f) = (c.dim, c.dim_attn, c.dim_ffn);
        let at = w.scope("attn");
        let at = at.get();
        let ffn = w.scope("ffn");
        let ffn = ffn.get();
        Ok(Self {
            norm1: w.tensor(g, "norm1.weight", &[d])?,
            attn: T5Attention {
                q: Linear::load(g, at, "q", a, d, format)?,
                k: Linear::load(g, at, "k", a, d, format)?,
                v: Linear::load(g, at, "v", a, d, format)?,
                o: Linear::load(g, at, "o", d, a, format)?,
            },
            norm2: w.tensor(g, "norm2.weight", &[d])?,
            ffn: T5FeedForward {
                gate: Linear::load(g, ffn, "gate.0", f, d, format)?,
                fc1: Linear::load(g, ffn, "fc1", f, d, format)?,
                fc2: Linear::load(g, ffn, "fc2", d, f, format)?,
            },
            pos_embedding: if c.shared_pos {
                None
            } else {
                Some(w.f32("pos_embedding.embedding.weight", &[c.num_buckets, c.num_heads])?)
            },
        })
    }

    /// One block on `x` `[L, dim]` in place. `segments` lists `(start, len, bias)`: the rows of each prompt, which
    /// attend only each other, with its position bias `[H, len, len]` (masked keys filled); the projections and the
    /// FFN run once over all rows. With `parts`, the attention and FFN outputs are formed separately (for traces)
    /// and returned.
    fn forward(
        &self,
        g: &Gpu,
        c: &T5Config,
        x: &GpuTensor,
        segments: &[(usize, usize, GpuTensor)],
        parts: bool,
    ) -> Result<Option<[GpuTensor; 2]>, ModelError> {
        let l = x.shape()[0];
        let (heads, hd) = (c.num_heads, c.head_dim());
        let h = t5_rms_norm(g, x, &self.norm1, EPS)?;
        let split = |t: GpuTensor| t.reshape(&[l, heads, hd]).expect("dim_attn = heads · head_dim");
        let q = split(self.attn.q.forward(g, &h, Act::None)?);
        let k = split(self.attn.k.forward(g, &h, Act::None)?);
        let v = split(self.attn.v.forward(g, &h, Act::None)?);
        // T5 folds the 1/√d scale into its initialisation, so scores are plain dot products.
        let o = match segments {
            [(0, n, bias)] if *n == l => {
                attention(g, &q, &k, &v, AttentionOptions { scale: Some(1.0), bias: Some(bias), ..Default::default() })?
            }
            _ => {
                // One attention per prompt on row views, each with its own bias, gathered into one output.
                let o = g.alloc("t5 attention", &[l, heads, hd], crate::gpu::DType::F32)?;
                for (start, n, bias) in segments {
                    let rows = |t: &GpuTensor| t.rows(*start, *n).expect("segments inside the sequence");
                    let opts = AttentionOptions { scale: Some(1.0), bias: Some(bias), ..Default::default() };
                    let part = attention(g, &rows(&q), &rows(&k), &rows(&v), opts)?;
                    copy_into(g, &part, &rows(&o))?;
                }
                o
            }
        };
        let o = o.reshape(&[l, c.dim_attn]).expect("heads · head_dim = dim_attn");
        let attn_out = if parts {
            let y = self.attn.o.forward(g, &o, Act::None)?;
            binary_inplace(g, x, &y, Binary::Add)?;
            Some(y)
        } else {
            self.attn.o.add_into(g, &o, x)?;
            None
        };

        let h = t5_rms_norm(g, x, &self.norm2, EPS)?;
        let gate = self.ffn.gate.forward(g, &h, Act::GeluTanh)?;
        let hidden = g.alloc("t5 ffn hidden", &[l, c.dim_ffn], crate::gpu::DType::F32)?;
        fill(g, &hidden, 0.0)?;
        self.ffn.fc1.gated_add(g, &h, &gate, &hidden)?;
        let ffn_out = if parts {
            let y = self.ffn.fc2.forward(g, &hidden, Act::None)?;
            binary_inplace(g, x, &y, Binary::Add)?;
            Some(y)
        } else {
            self.ffn.fc2.add_into(g, &hidden, x)?;
            None
        };
        Ok(attn_out.zip(ffn_out).map(|(a, f)| [a, f]))
    }
}

/// The UMT5 encoder with its weights on the GPU (linears) and host (embeddings).
pub struct TextEncoder {
    pub config: T5Config,
    token_embedding: TokenEmbedding,
    /// `pos_embedding.embedding.weight` with `shared_pos`.
    pos_embedding: Option<Vec<f32>>,
    blocks: Vec<T5SelfAttention>,
    norm: GpuTensor,
}

impl TextEncoder {
    /// Checks the file against the config's key table, then loads the linears in `format` onto the GPU and the
    /// embeddings into host memory.
    pub fn load(g: &Gpu, src: &dyn TensorSource, config: T5Config, format: WeightFormat) -> Result<Self, ModelError> {
        config.validate()?;
        check_keys(src, &config.key_table(), "is this the UMT5-XXL encoder (models_t5_umt5-xxl-enc-bf16.pth)?")?;
        let c = &config;
        let w = Scope::root(src, "");
        let token_embedding = TokenEmbedding::load(src, "token_embedding.weight", c.vocab_size, c.dim)?;
        let pos_embedding = if c.shared_pos {
            Some(w.f32("pos_embedding.embedding.weight", &[c.num_buckets, c.num_heads])?)
        } else {
            None
        };
        let blocks = w.scope("blocks");
        let blocks = (0..c.encoder_layers)
            .map(|i| T5SelfAttention::load(g, blocks.get().at(i).get(), c, format))
            .collect::<Result<_, _>>()?;
        Ok(Self { token_embedding, pos_embedding, blocks, norm: w.tensor(g, "norm.weight", &[c.dim])?, config })
    }

    /// Encodes several prompts (e.g. the positive and the negative ones) in one forward and returns each one's rows
    /// `[n_tok, dim]`. Their valid tokens are laid end to end without padding: every projection and FFN runs once
    /// over all rows (the weights are read once), and attention runs per prompt with its own position bias, so each
    /// result equals encoding that prompt alone.
    pub fn encode(&self, g: &Gpu, prompts: &[&[u32]]) -> Result<Vec<GpuTensor>, ModelError> {
        let c = &self.config;
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
            return Err(ModelError::Input {
                what: "token ids".into(),
                problem: format!("the prompt is empty (prompt {i}): a tokenized prompt holds at least `</s>`"),
            });
        }
        let ids: Vec<u32> = prompts.concat();
        let l = ids.len();
        let x = g.upload_f32("t5 tokens", &self.token_embedding.gather(&ids)?, &[l, c.dim])?;
        let mut spans = Vec::with_capacity(prompts.len());
        let mut start = 0;
        for p in prompts {
            spans.push((start, p.len()));
            start += p.len();
        }
        let mut bucket_tables: Vec<(usize, Vec<u32>)> = Vec::new();
        for &(_, n) in &spans {
            if !bucket_tables.iter().any(|(m, _)| *m == n) {
                bucket_tables.push((n, relative_position_buckets(n, c.num_buckets, MAX_DIST)));
            }
        }
        for block in &self.blocks {
            let table = block.pos_embedding.as_ref().or(self.pos_embedding.as_ref()).expect("validated keys");
            let segments = spans
                .iter()
                .map(|&(s, n)| {
                    let buckets = &bucket_tables.iter().find(|(m, _)| *m == n).expect("built above").1;
                    let bias = position_bias(table, c.num_heads, buckets, n, None);
                    Ok((s, n, g.upload_f32("t5 position bias", &bias, &[c.num_heads, n, n])?))
                })
                .collect::<Result<Vec<_>, ModelError>>()?;
            block.forward(g, c, &x, &segments, false)?;
            // Launches hold their buffers until the submit: one per block bounds the peak to one block's
            // intermediates (the position biases alone are heads·n² values per prompt).
            g.flush()?;
        }
        let y = t5_rms_norm(g, &x, &self.norm, EPS)?;
        Ok(spans.iter().map(|&(s, n)| y.rows(s, n).expect("spans inside the output")).collect())
    }

    /// Bytes of weights this encoder holds on the GPU (the token embedding stays in host memory).
    pub fn gpu_bytes(&self) -> u64 {
        let lin = |l: &Linear| l.w.len_bytes() + l.b.as_ref().map_or(0, |b| b.len_bytes());
        self.norm.len_bytes()
            + self
                .blocks
                .iter()
                .map(|b| {
                    b.norm1.len_bytes()
                        + b.norm2.len_bytes()
                        + [&b.attn.q, &b.attn.k, &b.attn.v, &b.attn.o, &b.ffn.gate, &b.ffn.fc1, &b.ffn.fc2]
                            .into_iter()
                            .map(lin)
                            .sum::<u64>()
                })
                .sum::<u64>()
    }

    /// Frees the encoder once the prompts are encoded: its GPU weights go back to the pool, which is trimmed so the
    /// memory returns to the device for the denoiser; the host embedding is freed too. Tensors already returned by
    /// [`encode`](Self::encode) stay valid.
    pub fn unload(self, g: &Gpu) -> Result<(), ModelError> {
        drop(self);
        // Launches recorded but not yet submitted hold their buffers until the submit.
        g.flush()?;
        g.trim();
        Ok(())
    }

    /// One sequence `[L]` → `[L, dim]`. `mask` (L values, false = padding) hides padded keys as the reference's
    /// `mask == 0`: their bias is the float32 minimum. Padded query rows are computed too. `trace` receives
    /// `embed`, `pos_bias_{i}` `[H, L, L]` (without the mask), `block{i}.attn_out`, `block{i}.ffn_out` and
    /// `block_{i}`; block outputs are updated in place afterwards, so copy what you keep.
    pub fn forward(
        &self,
        g: &Gpu,
        ids: &[u32],
        mask: Option<&[bool]>,
        mut trace: Option<&mut Trace>,
    ) -> Result<GpuTensor, ModelError> {
        let c = &self.config;
        let l = ids.len();
        if l == 0 {
            return Err(ModelError::Input {
                what: "token ids".into(),
                problem: "the prompt is empty: a tokenized prompt holds at least `</s>`".into(),
            });
        }
        if let Some(m) = mask {
            if m.len() != l {
                return Err(ModelError::Input {
                    what: "mask".into(),
                    problem: format!("has {} values for {l} token ids", m.len()),
                });
            }
            if !m.iter().any(|&v| v) {
                return Err(ModelError::Input { what: "mask".into(), problem: "hides every token".into() });
            }
        }
        let x = g.upload_f32("t5 tokens", &self.token_embedding.gather(ids)?, &[l, c.dim])?;
        if let Some(f) = trace.as_mut() {
            f("embed", &x);
        }
        let buckets = relative_position_buckets(l, c.num_buckets, MAX_DIST);
        for (i, block) in self.blocks.iter().enumerate() {
            let table = block.pos_embedding.as_ref().or(self.pos_embedding.as_ref()).expect("validated keys");
            let bias = position_bias(table, c.num_heads, &buckets, l, mask);
            let bias = g.upload_f32("t5 position bias", &bias, &[c.num_heads, l, l])?;
            if let Some(f) = trace.as_mut() {
                if mask.is_some() {
                    let plain = position_bias(table, c.num_heads, &buckets, l, None);
                    f(&format!("pos_bias_{i}"), &g.upload_f32("t5 position bias", &plain, &[c.num_heads, l, l])?);
                } else {
                    f(&format!("pos_bias_{i}"), &bias);
                }
            }
            let parts = block.forward(g, c, &x, &[(0, l, bias)], trace.is_some())?;
            if let (Some(f), Some([attn_out, ffn_out])) = (trace.as_mut(), parts) {
                f(&format!("block{i}.attn_out"), &attn_out);
                f(&format!("block{i}.ffn_out"), &ffn_out);
                f(&format!("block_{i}"), &x);
            }
        }
        Ok(t5_rms_norm(g, &x, &self.norm, EPS)?)
    }
}

/// `bias[h, q, k] = table[bucket[q, k], h]`, or the float32 minimum where `mask[k]` is false (the reference's
/// `masked_fill_`, which replaces the position bias).
fn position_bias(table: &[f32], heads: usize, buckets: &[u32], l: usize, mask: Option<&[bool]>) -> Vec<f32> {
    let mut out = vec![0.0f32; heads * l * l];
    for (h, plane) in out.chunks_exact_mut(l * l).enumerate() {
        for (o, &b) in plane.iter_mut().zip(buckets) {
            *o = table[b as usize * heads + h];
        }
        if let Some(m) = mask {
            for row in plane.chunks_exact_mut(l) {
                for (o, _) in row.iter_mut().zip(m).filter(|(_, &keep)| !keep) {
                    *o = f32::MIN;
                }
            }
        }
    }
    out
}
