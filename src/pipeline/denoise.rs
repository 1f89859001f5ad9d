//! The denoising stage of a generation — reference `AudioVideoPipeline.sample` with `NAVA.predict_eps`
//! (pipeline_nava.py, model_nava.py), NAVA.md §5.3 and §6: the text contexts of every guidance pass prepared once,
//! then per step the passes through the DiT, combined and stepped by [`Stepper`].
//!
//! Asynchronous so that the browser build can drive it without blocking; native code uses `block_on`.

use crate::gpu::{Gpu, GpuTensor};
use crate::model::dit::{Context, Dit, DitConfig, DitInput, Speakers};
use crate::model::ModelError;

use super::{Pass, PerModality, PipelineError, SampleConfig, Stepper, Timestep};

/// What the text side hands the denoiser: T5 outputs `[n_tok, text_dim]` and the speakers.
pub struct Conditioning<'a> {
    pub positive: &'a GpuTensor,
    /// The video negative prompt: in joint generation the backbone uses one context, the video one (§5.1).
    pub negative: &'a GpuTensor,
    /// Speaker embeddings and the positions of the caption's `<extra_id_2>` tokens.
    pub speakers: Option<Speakers>,
}

/// The contexts of the passes: the positive one with speaker tokens written in (cond), without them (align,
/// timbre: the reference passes no positions to the first and no embeddings to the second, so both see the plain
/// T5 rows), and the negative one (uncond).
pub struct PassContexts {
    cond_with_speakers: Option<Context>,
    positive: Context,
    negative: Context,
}

impl PassContexts {
    pub fn new(g: &Gpu, dit: &Dit, c: &Conditioning) -> Result<Self, ModelError> {
        let positive = dit.prepare_context(g, c.positive, c.positive, None)?;
        let negative = dit.prepare_context(g, c.negative, c.negative, None)?;
        let cond_with_speakers =
            c.speakers.as_ref().map(|s| dit.prepare_context(g, c.positive, c.positive, Some(s))).transpose()?;
        Ok(Self { cond_with_speakers, positive, negative })
    }

    pub fn of(&self, pass: Pass) -> &Context {
        match pass {
            Pass::Cond => self.cond_with_speakers.as_ref().unwrap_or(&self.positive),
            Pass::Uncond => &self.negative,
            Pass::Align | Pass::Timbre => &self.positive,
        }
    }
}

/// The latent shapes of one generation: video `[C, F, h, w]` (none for text→audio) and audio `[L, C_audio]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatentShape {
    pub video: Option<[usize; 4]>,
    pub audio: [usize; 2],
}

impl LatentShape {
    pub fn video_len(&self) -> usize {
        self.video.map_or(0, |v| v.iter().product())
    }
}

/// Called after every denoising step with its index and the total; returning `false` stops the generation.
pub type StepObserver<'a> = dyn FnMut(usize, usize) -> bool + 'a;

/// Runs the sampler from `latents` (the initial noise). `first_frame` (image-to-video) is the encoded image,
/// `[C, 1, h, w]` values: before every pass it overwrites latent frame 0 in place and those tokens run at t = 0,
/// and it is not restored after the last step, all as in the reference. The passes of a step run as one batched
/// forward when their activations fit `activation_budget` (default [`DEFAULT_BATCH_BYTES`]), else one by one.
#[allow(clippy::too_many_arguments)]
pub async fn denoise(
    g: &Gpu,
    dit: &Dit,
    contexts: &PassContexts,
    config: &SampleConfig,
    shape: LatentShape,
    mut latents: PerModality<Vec<f32>>,
    first_frame: Option<&[f32]>,
    has_speaker_embeddings: bool,
    activation_budget: Option<u64>,
    on_step: &mut StepObserver<'_>,
) -> Result<PerModality<Vec<f32>>, PipelineError> {
    let [la, ca] = shape.audio;
    for (what, got, want) in
        [("video", latents.video.len(), shape.video_len()), ("audio", latents.audio.len(), la * ca)]
    {
        if got != want {
            return Err(PipelineError::Length { what: format!("initial {what} latents"), expected: want, found: got });
        }
    }
    let [_, f, h, w] = shape.video.unwrap_or_default();
    if let Some(img) = first_frame {
        let want = shape.video.map_or(0, |[c, _, h, w]| c * h * w);
        if img.len() != want || want == 0 {
            return Err(PipelineError::Length { what: "first-frame latent".into(), expected: want, found: img.len() });
        }
    }
    let mut stepper = Stepper::new(config, has_speaker_embeddings)?;
    let total = stepper.timesteps().len();
    let passes = stepper.passes();
    let batched = batch_fits(g, dit, shape, passes.len(), activation_budget);
    while let Some((index, t)) = stepper.next() {
        // The reference overwrites the first frame before every pass; the value is the same each time, so every
        // pass of the step sees the same latents, uploaded once.
        if let Some(img) = first_frame {
            overwrite_first_frame(&mut latents.video, img, f, h * w);
        }
        let step = StepLatents::upload(g, shape, &latents, t, first_frame.is_some())?;
        let velocities = if batched {
            step.forward(g, dit, contexts, &passes).await?
        } else {
            let mut v = Vec::new();
            for &pass in &passes {
                v.extend(step.forward(g, dit, contexts, &[pass]).await?);
            }
            v
        };
        stepper.step(&mut latents, &velocities)?;
        if !on_step(index + 1, total) {
            return Err(PipelineError::Cancelled);
        }
    }
    Ok(latents)
}

/// Writes the image latent into frame 0 of a `[C, F, hw]` video latent.
fn overwrite_first_frame(video: &mut [f32], image: &[f32], frames: usize, plane: usize) {
    for (ch, src) in image.chunks_exact(plane).enumerate() {
        let start = ch * frames * plane;
        video[start..start + plane].copy_from_slice(src);
    }
}

/// Activation memory the batched passes may take when no budget is given.
pub const DEFAULT_BATCH_BYTES: u64 = 1 << 30;

/// Whether `passes` sequences of `shape` can run as one forward: their activations (the residual stream, norms,
/// q/k/v/o and the FFN's hidden rows, f32) within the budget, and the FFN's hidden rows within one binding.
pub fn batch_fits(g: &Gpu, dit: &Dit, shape: LatentShape, passes: usize, budget: Option<u64>) -> bool {
    let c = &dit.config;
    let [_, ph, pw] = c.patch_size;
    let video = shape.video.map_or(0, |[_, f, h, w]| f * (h / ph.max(1)) * (w / pw.max(1)));
    let budget = budget.unwrap_or(DEFAULT_BATCH_BYTES);
    batch_fits_rows(c, video + shape.audio[0], passes, budget, Some(g.max_binding()))
}

/// [`batch_fits`] for sequences of `rows` token rows, without a device (`max_binding`: its largest binding).
pub fn batch_fits_rows(c: &DitConfig, rows: usize, passes: usize, budget: u64, max_binding: Option<u64>) -> bool {
    if passes < 2 {
        return false;
    }
    let rows = (passes * rows) as u64;
    let per_row = (8 * c.dim + c.ffn_dim) as u64 * 4;
    rows * per_row <= budget && max_binding.is_none_or(|m| rows * c.ffn_dim as u64 * 4 <= m)
}

/// One step's latents on the GPU, shared by its passes.
struct StepLatents {
    video: Option<GpuTensor>,
    audio: GpuTensor,
    t: Timestep,
    first_frame_is_clean: bool,
}

impl StepLatents {
    fn upload(
        g: &Gpu,
        shape: LatentShape,
        latents: &PerModality<Vec<f32>>,
        t: Timestep,
        first_frame_is_clean: bool,
    ) -> Result<Self, PipelineError> {
        let video = shape
            .video
            .map(|v| g.upload_f32("latent.video", &latents.video, &v))
            .transpose()
            .map_err(ModelError::from)?;
        let audio = g.upload_f32("latent.audio", &latents.audio, &shape.audio).map_err(ModelError::from)?;
        Ok(Self { video, audio, t, first_frame_is_clean })
    }

    /// The velocities of `passes`: one batched forward (one pass is a plain forward).
    async fn forward(
        &self,
        g: &Gpu,
        dit: &Dit,
        contexts: &PassContexts,
        passes: &[Pass],
    ) -> Result<Vec<PerModality<Vec<f32>>>, PipelineError> {
        let inputs: Vec<DitInput> = passes
            .iter()
            .map(|p| DitInput {
                video: self.video.as_ref(),
                audio: &self.audio,
                t: self.t.as_f32(),
                first_frame_is_clean: self.first_frame_is_clean,
                masking_modality: p.masking_modality(),
            })
            .collect();
        let ctxs: Vec<&Context> = passes.iter().map(|&p| contexts.of(p)).collect();
        let outs = dit.forward_batch(g, &inputs, &ctxs, None)?;
        let mut velocities = Vec::with_capacity(outs.len());
        for out in outs {
            let video = match &out.video {
                Some(v) => g.read_f32(v).await.map_err(ModelError::from)?,
                None => Vec::new(),
            };
            let audio = g.read_f32(&out.audio).await.map_err(ModelError::from)?;
            velocities.push(PerModality { video, audio });
        }
        Ok(velocities)
    }
}

#[cfg(test)]
mod tests {
    use super::overwrite_first_frame;

    #[test]
    fn first_frame_lands_in_every_channel() {
        // 2 channels, 3 frames, 2 values per frame.
        let mut v: Vec<f32> = (0..12).map(|i| i as f32).collect();
        overwrite_first_frame(&mut v, &[-1.0, -2.0, -3.0, -4.0], 3, 2);
        assert_eq!(v, vec![-1.0, -2.0, 2.0, 3.0, 4.0, 5.0, -3.0, -4.0, 8.0, 9.0, 10.0, 11.0]);
    }
}
