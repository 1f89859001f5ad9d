//! The generation loop — reference `AudioVideoPipeline.sample` (nava_src/pipeline_nava.py), NAVA.md §6: from the
//! initial noise, each step runs the guidance passes of the denoiser, combines their velocities per modality and
//! steps the video and audio latents with their own schedulers on the video scheduler's timesteps.
//!
//! Latents are host `f32` rows as the reference lays them out: video `[Σ F·h·w, C_video]`, audio
//! `[Σ L_audio, C_audio]`.

pub mod guidance;
pub mod sampler;

pub use guidance::{Context, Guidance, GuidanceScales, Pass, PassVelocities};
pub use sampler::{train_sigmas, FlowMatchEuler, Scheduler, Solver, Timestep, UniPc, NUM_TRAIN_TIMESTEPS, SHIFT};

use crate::model::dit::Modality;
use crate::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Settings the reference cannot sample with.
    #[error("{what}: {problem}")]
    Config { what: &'static str, problem: String },
    #[error("{what}: {found} values, expected {expected}")]
    Length { what: String, expected: usize, found: usize },
    #[error("{scheduler}: all {steps} steps were taken; make a new scheduler for the next sample")]
    Finished { scheduler: &'static str, steps: usize },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A value per stream: video and audio.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PerModality<T> {
    pub video: T,
    pub audio: T,
}

impl<T> PerModality<T> {
    pub fn get(&self, m: Modality) -> &T {
        match m {
            Modality::Video => &self.video,
            Modality::Audio => &self.audio,
        }
    }
}

/// Sampling settings; `Default` is configs/nava.yaml with the 50-step default of the inference scripts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleConfig {
    pub num_steps: usize,
    pub solver: Solver,
    /// `shift` (video scheduler) and `shift_audio`.
    pub shift: f64,
    pub shift_audio: f64,
    pub guidance: Guidance,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self { num_steps: 50, solver: Solver::UniPc, shift: SHIFT, shift_audio: SHIFT, guidance: Guidance::default() }
    }
}

/// What one finished step hands the observer of [`sample`].
#[derive(Clone, Copy, Debug)]
pub struct StepRecord<'a> {
    pub index: usize,
    pub timestep: Timestep,
    /// The guided velocities the schedulers stepped with (`eps_vision`, `eps_audio`).
    pub velocity: PerModality<&'a [f32]>,
    /// The latents after the step.
    pub latents: PerModality<&'a [f32]>,
}

/// The sampling loop of `AudioVideoPipeline.sample` from the initial noise `latents`. `denoise(pass, t, latents)`
/// returns the velocities of one pass (the reference's `predict_eps`); `has_speaker_embeddings` says whether the
/// batch has reference voices (`spk_embs`), which enables the timbre pass. `on_step` sees every finished step
/// (progress, traces). Returns the final latents.
pub fn sample<D, O>(
    config: &SampleConfig,
    mut latents: PerModality<Vec<f32>>,
    has_speaker_embeddings: bool,
    mut denoise: D,
    mut on_step: O,
) -> Result<PerModality<Vec<f32>>, PipelineError>
where
    D: FnMut(Pass, Timestep, &PerModality<Vec<f32>>) -> Result<PerModality<Vec<f32>>, PipelineError>,
    O: FnMut(&StepRecord<'_>),
{
    config.guidance.check()?;
    let mut video_scheduler = Scheduler::new(config.solver, config.num_steps, config.shift)?;
    let mut audio_scheduler = Scheduler::new(config.solver, config.num_steps, config.shift_audio)?;
    let guidance = &config.guidance;
    // Both streams step on the video scheduler's timesteps (`zip(timesteps, timesteps)`).
    for (index, t) in video_scheduler.timesteps().into_iter().enumerate() {
        let mut run = |pass: Pass| -> Result<PerModality<Vec<f32>>, PipelineError> {
            let v = denoise(pass, t, &latents)?;
            for m in [Modality::Video, Modality::Audio] {
                let (found, expected) = (v.get(m).len(), latents.get(m).len());
                if found != expected {
                    let stream = if m == Modality::Video { "video" } else { "audio" };
                    let what = format!("{stream} velocity of the {} pass", pass.name());
                    return Err(PipelineError::Length { what, expected, found });
                }
            }
            Ok(v)
        };
        // The passes in the reference's order (`Guidance::passes`).
        let cond = run(Pass::Cond)?;
        let uncond = run(Pass::Uncond)?;
        let align = guidance.align_3d_cfg.then(|| run(Pass::Align)).transpose()?;
        let timbre = guidance.timbre_active(has_speaker_embeddings).then(|| run(Pass::Timbre)).transpose()?;
        let of = |m: Modality| PassVelocities {
            cond: cond.get(m),
            uncond: uncond.get(m),
            align: align.as_ref().map(|v| v.get(m).as_slice()),
            timbre: timbre.as_ref().map(|v| v.get(m).as_slice()),
        };
        let velocity =
            PerModality { video: guidance.video(&of(Modality::Video))?, audio: guidance.audio(&of(Modality::Audio))? };
        latents = PerModality {
            video: video_scheduler.step(&velocity.video, &latents.video)?,
            audio: audio_scheduler.step(&velocity.audio, &latents.audio)?,
        };
        on_step(&StepRecord {
            index,
            timestep: t,
            velocity: PerModality { video: &velocity.video, audio: &velocity.audio },
            latents: PerModality { video: &latents.video, audio: &latents.audio },
        });
    }
    Ok(latents)
}
