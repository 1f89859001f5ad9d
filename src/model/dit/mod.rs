//! NAVA denoiser — reference `WanAVModel` (model_mm.py), NAVA.md §4. Keys under `backbone.`.
//!
//! Activations are one `[L_v + L_a, dim]` tensor: video rows (latent frame, row, column order) followed by audio
//! rows. Modality-specific weights run on row views of it. Time conditioning is computed once per distinct
//! timestep (one, or two in image-to-video where the first latent frame is at t = 0), not per token: the rows of a
//! [`Segment`] share one timestep.

mod blocks;
mod config;
mod embed;
mod offload;

use std::ops::Range;

use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::attention::Segment as AttnSegment;
use crate::kernels::gemm::WeightFormat;
use crate::weights::{check_keys, Scope, TensorSource};

use super::ModelError;
pub use blocks::{CrossKv, DoubleBlock, RopeLayout, SingleBlock};
pub use config::{DitConfig, SPK_DIM};
pub use embed::{AudioEmbed, Head, SpkToken, Time, TimeEmbed};
pub use offload::{resident_blocks, LoadOptions, Offload};

use super::layers::Linear;

/// Which stream a row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modality {
    Video,
    Audio,
}

/// Rows that share a modality and a timestep.
#[derive(Clone, Debug)]
pub struct Segment {
    pub rows: Range<usize>,
    pub modality: Modality,
    /// Index into the distinct timesteps of this forward.
    pub t_index: usize,
}

/// Layout of one forward's token rows: `copies` sequences of the same layout stacked (the guidance passes of a
/// step run as one batch), each `video` rows then `audio` rows.
#[derive(Clone, Debug)]
pub struct Rows {
    /// Token grid of the video (latent frames, rows, columns after patching).
    pub grid: [usize; 3],
    pub video: usize,
    pub audio: usize,
    /// Segments of one sequence (rows relative to its start).
    pub segments: Vec<Segment>,
    /// Sequences stacked in this forward.
    pub copies: usize,
}

impl Rows {
    /// Rows of one sequence.
    pub fn len(&self) -> usize {
        self.video + self.audio
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows of all sequences.
    pub fn total(&self) -> usize {
        self.copies * self.len()
    }

    /// The rows of modality `m` in the first sequence.
    pub fn range(&self, m: Modality) -> Range<usize> {
        self.range_in(0, m)
    }

    /// The rows of modality `m` in sequence `b`.
    pub fn range_in(&self, b: usize, m: Modality) -> Range<usize> {
        let o = b * self.len();
        match m {
            Modality::Video => o..o + self.video,
            Modality::Audio => o + self.video..o + self.len(),
        }
    }

    /// Every segment of every sequence with its absolute rows: (segment index in `segments`, rows).
    pub fn all_segments(&self) -> impl Iterator<Item = (usize, Range<usize>)> + '_ {
        (0..self.copies).flat_map(move |b| {
            let o = b * self.len();
            self.segments.iter().enumerate().map(move |(i, s)| (i, s.rows.start + o..s.rows.end + o))
        })
    }

    /// The modality-masked pass of sequence `b`: video attends video only and audio attends audio only.
    fn masked_segments(&self, b: usize) -> Vec<AttnSegment> {
        let o = b * self.len();
        let mut s = Vec::with_capacity(2);
        if self.video > 0 {
            s.push(AttnSegment::new(o, self.video, o, self.video));
        }
        s.push(AttnSegment::new(o + self.video, self.audio, o + self.video, self.audio));
        s
    }

    /// Attention segments of the stacked sequences (`masked[b]`: sequence `b` is modality-masked); `None` for one
    /// unmasked sequence (plain attention over all rows).
    fn attention_segments(&self, masked: &[bool]) -> Option<Vec<AttnSegment>> {
        if self.copies == 1 && !masked[0] {
            return None;
        }
        let n = self.len();
        Some(
            (0..self.copies)
                .flat_map(
                    |b| {
                        if masked[b] {
                            self.masked_segments(b)
                        } else {
                            vec![AttnSegment::new(b * n, n, b * n, n)]
                        }
                    },
                )
                .collect(),
        )
    }
}

/// Speaker conditioning of one pass (Timbre-in-Context, NAVA.md §5.2).
#[derive(Clone, Debug, Default)]
pub struct Speakers {
    /// ReDimNet embeddings, `SPK_DIM` values each; an all-zero one selects the learned null token.
    pub embeddings: Vec<Vec<f32>>,
    /// Context rows (`<extra_id_2>` positions) the speaker tokens overwrite. `None` replaces nothing, as the
    /// reference's align-uncond pass does (it passes embeddings without positions).
    pub positions: Option<Vec<usize>>,
}

/// Everything a block needs from the text context: per block, per modality, the projected keys and values.
pub struct Context {
    pub(crate) double: Vec<[blocks::CrossKv; 2]>,
    pub(crate) single: Vec<blocks::CrossKv>,
    /// The context rows given to every block `[text_len, dim]` (for traces).
    pub embedded: GpuTensor,
}

/// One denoiser call.
pub struct DitInput<'a> {
    /// Video latent `[vid_in_dim, F, H, W]`; `None` generates audio only (the reference's text→audio mode: no video
    /// tokens at all, audio positions and weights as in joint generation).
    pub video: Option<&'a GpuTensor>,
    /// Audio latent `[L_a, audio_in_dim]`.
    pub audio: &'a GpuTensor,
    /// Integer timestep in [0, 999].
    pub t: f32,
    /// Image-to-video: the first latent frame is clean, its tokens get t = 0.
    pub first_frame_is_clean: bool,
    /// The align-uncond pass: attention within each modality only.
    pub masking_modality: bool,
}

/// Receives named intermediates of a forward (`x_in`, `double_{i}`, `single_{i}`, `head_vid_raw`, …).
pub type Trace<'a> = dyn FnMut(&str, &GpuTensor) + 'a;

/// Velocities predicted for both streams.
pub struct DitOutput {
    /// `[vid_out_dim, F, H, W]`; `None` for audio-only input.
    pub video: Option<GpuTensor>,
    /// `[L_a, audio_out_dim]`.
    pub audio: GpuTensor,
}

pub struct Dit {
    pub config: DitConfig,
    patch_embedding: Linear,
    audio_embed: AudioEmbed,
    speaker_embedding: Option<SpkToken>,
    text_embedding: [Linear; 2],
    time: TimeEmbed,
    double_blocks: Vec<offload::Slot<DoubleBlock>>,
    single_blocks: Vec<offload::Slot<SingleBlock>>,
    format: WeightFormat,
    head: Head,
    head_audio: Head,
    /// The RoPE table of the last layout: a generation keeps one layout for all its steps.
    rope: std::sync::Mutex<Option<std::sync::Arc<blocks::RopeLayout>>>,
}

/// The key prefix of the DiT inside `NAVA.safetensors`.
pub const PREFIX: &str = "backbone.";

impl Dit {
    /// Loads every tensor under `prefix` onto the GPU, GEMM weights in `format`, after checking the file against
    /// the config's key table.
    pub fn load(
        g: &Gpu,
        src: &dyn TensorSource,
        prefix: &str,
        config: DitConfig,
        format: WeightFormat,
    ) -> Result<Self, ModelError> {
        Self::load_with(g, src, prefix, config, &LoadOptions { format, offload: Offload::Never })
    }

    /// Loads with block offload as `opts` asks.
    pub fn load_with(
        g: &Gpu,
        src: &dyn TensorSource,
        prefix: &str,
        config: DitConfig,
        opts: &LoadOptions,
    ) -> Result<Self, ModelError> {
        let format = opts.format;
        config.validate()?;
        check_keys(src, &config.key_table(prefix), "is this NAVA.safetensors (the DiT) and does the config match it?")?;
        let w = Scope::root(src, prefix);
        let c = &config;
        let d = c.dim;
        let eps = c.eps as f32;
        let text_embedding = [
            Linear::load(g, w, "text_embedding.0", d, c.text_dim, format)?,
            Linear::load(g, w, "text_embedding.2", d, d, format)?,
        ];
        let resident = offload::resident_blocks(c, prefix, opts);
        let double_blocks = (0..c.num_double_layers)
            .map(|i| {
                let p = format!("{prefix}double_blocks.{i}.");
                offload::load_slot(src, &p, i < resident, format, |s| DoubleBlock::load(g, s, c, format))
            })
            .collect::<Result<_, _>>()?;
        let single_blocks = (0..c.num_single_layers)
            .map(|i| {
                let p = format!("{prefix}single_blocks.{i}.");
                let keep = c.num_double_layers + i < resident;
                offload::load_slot(src, &p, keep, format, |s| SingleBlock::load(g, s, c, format))
            })
            .collect::<Result<_, _>>()?;
        let [pt, ph, pw] = c.patch_size;
        Ok(Self {
            patch_embedding: Linear::load_shaped(
                g,
                w,
                "patch_embedding",
                &[d, c.vid_in_dim, pt, ph, pw],
                WeightFormat::F32,
            )?,
            audio_embed: AudioEmbed::load(g, w.scope("patch_embedding_audio").get(), c)?,
            speaker_embedding: if c.add_spk_emb {
                Some(SpkToken::load(g, w.scope("speaker_embedding").get(), d)?)
            } else {
                None
            },
            text_embedding,
            time: TimeEmbed::load(g, w, c, format)?,
            double_blocks,
            single_blocks,
            head: Head::load(g, w.scope("head").get(), d, c.vid_out_dim * pt * ph * pw, eps)?,
            head_audio: Head::load(g, w.scope("head_audio").get(), d, c.audio_out_dim, eps)?,
            rope: std::sync::Mutex::new(None),
            format,
            config,
        })
    }

    /// Embeds the text context and projects the cross-attention keys and values of every block once; reuse the
    /// result at every step of a generation. `vid_context` / `audio_context` are T5 outputs `[n_tok, text_dim]`
    /// (at most `text_len` rows). As in the reference, the blocks see the video context, unless speakers are
    /// given: then the audio context with speaker tokens written into it.
    pub fn prepare_context(
        &self,
        g: &Gpu,
        vid_context: &GpuTensor,
        audio_context: &GpuTensor,
        speakers: Option<&Speakers>,
    ) -> Result<Context, ModelError> {
        let c = &self.config;
        let raw = if speakers.is_some() { audio_context } else { vid_context };
        let ctx = embed::text_context(g, &self.text_embedding, raw, c.text_len, c.text_dim)?;
        if let Some(spk) = speakers {
            let token = self.speaker_embedding.as_ref().ok_or_else(|| ModelError::Input {
                what: "speakers".into(),
                problem: "this model has no speaker embedding (add_spk_emb is false)".into(),
            })?;
            if let Some(pos) = &spk.positions {
                let tokens = token.forward(g, &spk.embeddings)?;
                embed::insert_rows(g, &ctx, &tokens, pos)?;
            }
        }
        let eps = c.eps as f32;
        let f = self.format;
        let double = self
            .double_blocks
            .iter()
            .map(|s| {
                let kv = s.with(|w| DoubleBlock::load(g, w, c, f), |b| b.cross_kv(g, &ctx, c.num_heads, eps))?;
                // An offloaded block's uploaded weights stay bound until the submit: one per block.
                g.flush()?;
                Ok(kv)
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let single = self
            .single_blocks
            .iter()
            .map(|s| {
                let kv = s.with(|w| SingleBlock::load(g, w, c, f), |b| b.cross_kv(g, &ctx, c.num_heads, eps))?;
                g.flush()?;
                Ok(kv)
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Context { double, single, embedded: ctx })
    }

    /// The token layout of a latent: its grid after patching and the timestep segments.
    pub fn rows(&self, input: &DitInput) -> Result<Rows, ModelError> {
        let c = &self.config;
        let [la, ca] = dims::<2>("audio latent", input.audio.shape())?;
        if ca != c.audio_in_dim {
            return Err(input_err("audio latent", format!("has {ca} channels; the model expects {}", c.audio_in_dim)));
        }
        if la == 0 {
            return Err(input_err("audio latent", "has no tokens".into()));
        }
        let mut segments = Vec::new();
        let (grid, video) = match input.video {
            None => {
                if input.first_frame_is_clean {
                    return Err(input_err("first frame", "image-to-video needs a video latent".into()));
                }
                ([0, 0, 0], 0)
            }
            Some(v) => {
                let [cin, f, h, w] = dims::<4>("video latent", v.shape())?;
                if cin != c.vid_in_dim {
                    return Err(input_err(
                        "video latent",
                        format!("has {cin} channels; the model expects {}", c.vid_in_dim),
                    ));
                }
                let [_, ph, pw] = c.patch_size;
                if h % ph != 0 || w % pw != 0 || f == 0 || h == 0 || w == 0 {
                    return Err(input_err(
                        "video latent",
                        format!(
                            "grid {f}×{h}×{w} must be non-empty with height and width divisible by the patch {ph}×{pw}"
                        ),
                    ));
                }
                let grid = [f, h / ph, w / pw];
                let video = grid.iter().product::<usize>();
                let frame = grid[1] * grid[2];
                if input.first_frame_is_clean {
                    segments.push(Segment { rows: 0..frame, modality: Modality::Video, t_index: 1 });
                    if video > frame {
                        segments.push(Segment { rows: frame..video, modality: Modality::Video, t_index: 0 });
                    }
                } else {
                    segments.push(Segment { rows: 0..video, modality: Modality::Video, t_index: 0 });
                }
                (grid, video)
            }
        };
        segments.push(Segment { rows: video..video + la, modality: Modality::Audio, t_index: 0 });
        Ok(Rows { grid, video, audio: la, segments, copies: 1 })
    }

    /// One forward pass; `trace` receives named intermediates when given.
    pub fn forward(
        &self,
        g: &Gpu,
        input: &DitInput,
        ctx: &Context,
        trace: Option<&mut Trace>,
    ) -> Result<DitOutput, ModelError> {
        let mut out = self.forward_batch(g, std::slice::from_ref(input), &[ctx], trace)?;
        out.pop().ok_or_else(|| input_err("forward", "no output".into()))
    }

    /// Several passes over latents of one layout and timestep (the guidance passes of a sampling step) as one
    /// batch: the sequences are stacked, every weight is read once for all of them, attention stays within each
    /// sequence (and within each modality for the masked ones), and each sequence attends its own text context.
    /// Gives the outputs of [`Dit::forward`] on each input.
    pub fn forward_batch(
        &self,
        g: &Gpu,
        inputs: &[DitInput],
        ctxs: &[&Context],
        mut trace: Option<&mut Trace>,
    ) -> Result<Vec<DitOutput>, ModelError> {
        let c = &self.config;
        let (Some(first), true) = (inputs.first(), inputs.len() == ctxs.len()) else {
            return Err(input_err("batch", format!("{} inputs for {} contexts", inputs.len(), ctxs.len())));
        };
        let base = self.rows(first)?;
        for (i, inp) in inputs.iter().enumerate().skip(1) {
            let r = self.rows(inp)?;
            if r.grid != base.grid
                || r.audio != base.audio
                || inp.t != first.t
                || inp.first_frame_is_clean != first.first_frame_is_clean
            {
                return Err(input_err(
                    "batch",
                    format!("input {i} differs from input 0 in latent shape or timestep; run it separately"),
                ));
            }
        }
        let rows = Rows { copies: inputs.len(), ..base.clone() };
        let n = rows.len();
        let mut emit = |name: &str, t: &GpuTensor| {
            if let Some(f) = trace.as_mut() {
                f(name, t)
            }
        };
        // Distinct timesteps: the global t, and 0 for a clean first frame.
        let ts: Vec<f32> = if first.first_frame_is_clean { vec![first.t, 0.0] } else { vec![first.t] };
        let time = self.time.forward(g, &ts)?;
        let x = g.alloc("dit.x", &[rows.total(), c.dim], crate::gpu::DType::F32)?;
        for (b, inp) in inputs.iter().enumerate() {
            if let Some(video) = inp.video {
                let r = rows.range_in(b, Modality::Video);
                embed::video_tokens(
                    g,
                    &self.patch_embedding,
                    video,
                    c,
                    &x.rows(r.start, r.len()).expect("video rows"),
                )?;
            }
            let r = rows.range_in(b, Modality::Audio);
            self.audio_embed.forward_into(g, inp.audio, &x.rows(r.start, r.len()).expect("audio rows"))?;
        }
        emit("x_in", &x);
        let rope = self.rope_layout(g, &base)?;
        let masked: Vec<bool> = inputs.iter().map(|i| i.masking_modality).collect();
        let segments = rows.attention_segments(&masked);
        let segments = segments.as_deref();
        let f = self.format;
        for (i, slot) in self.double_blocks.iter().enumerate() {
            let kv: Vec<&[blocks::CrossKv; 2]> = ctxs.iter().map(|ctx| &ctx.double[i]).collect();
            slot.with(
                |w| DoubleBlock::load(g, w, c, f),
                |blk| blk.forward(g, c, &x, &rows, &time, &kv, &rope, segments),
            )?;
            // Recorded launches hold every buffer they bind until the submit: one per block keeps the peak at one
            // block's intermediates (and one offloaded block's weights) instead of a whole batch's worth.
            g.flush()?;
            emit(&format!("double_{i}"), &x);
        }
        for (i, slot) in self.single_blocks.iter().enumerate() {
            let kv: Vec<&blocks::CrossKv> = ctxs.iter().map(|ctx| &ctx.single[i]).collect();
            slot.with(
                |w| SingleBlock::load(g, w, c, f),
                |blk| blk.forward(g, c, &x, &rows, &time, &kv, &rope, segments),
            )?;
            g.flush()?; // as above
            emit(&format!("single_{i}"), &x);
        }
        let mut out = Vec::with_capacity(inputs.len());
        for b in 0..inputs.len() {
            let xb = x.rows(b * n, n).expect("one sequence");
            let video = if base.video > 0 {
                let v = self.head.forward(g, &xb, &base, Modality::Video, &time)?;
                emit("head_vid_raw", &v);
                Some(v)
            } else {
                None
            };
            let audio = self.head_audio.forward(g, &xb, &base, Modality::Audio, &time)?;
            emit("head_audio_raw", &audio);
            let video = video.map(|v| embed::unpatchify(g, &v, base.grid, c)).transpose()?;
            out.push(DitOutput { video, audio });
        }
        Ok(out)
    }
}

impl Dit {
    /// Blocks kept in host memory and the bytes they upload per forward pass (0 without offload).
    pub fn offload_report(&self) -> (usize, u64) {
        offload::report(
            self.double_blocks
                .iter()
                .map(|s| s.upload_bytes())
                .chain(self.single_blocks.iter().map(|s| s.upload_bytes())),
        )
    }

    /// The RoPE layout of `rows`, built once and reused while the layout stays the same.
    fn rope_layout(&self, g: &Gpu, rows: &Rows) -> Result<std::sync::Arc<blocks::RopeLayout>, ModelError> {
        let mut cached = self.rope.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = cached.as_ref().filter(|r| r.fits(rows)) {
            return Ok(r.clone());
        }
        let r = std::sync::Arc::new(blocks::RopeLayout::new(g, &self.config, rows)?);
        *cached = Some(r.clone());
        Ok(r)
    }
}

fn input_err(what: &str, problem: String) -> ModelError {
    ModelError::Input { what: what.to_string(), problem }
}

fn dims<const N: usize>(what: &str, shape: &[usize]) -> Result<[usize; N], ModelError> {
    shape.try_into().map_err(|_| input_err(what, format!("has shape {shape:?}; expected {N} dimensions")))
}
