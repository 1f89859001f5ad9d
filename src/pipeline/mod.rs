//! The generation loop — reference `AudioVideoPipeline.sample` (nava_src/pipeline_nava.py), NAVA.md §6: from the
//! initial noise, each step runs the guidance passes of the denoiser, combines their velocities per modality and
//! steps the video and audio latents with their own schedulers on the video scheduler's timesteps.
//!
//! Latents are host `f32` rows as the reference lays them out: video `[Σ F·h·w, C_video]`, audio
//! `[Σ L_audio, C_audio]`.

pub mod denoise;
pub mod generate;
pub mod guidance;
pub mod noise;
pub mod plan;
pub mod sampler;
pub mod shape;

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
    #[error("stopped before the end (cancelled)")]
    Cancelled,
    /// Bad user input: files, sizes, counts.
    #[error("{0}")]
    Input(String),
    /// Writing an output failed.
    #[error("output: {0}")]
    Output(String),
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

/// The state of the sampling loop between steps: both schedulers and the guidance settings. [`sample`] drives it
/// with a closure; the generator drives it with asynchronous denoiser calls.
pub struct Stepper {
    video: Scheduler,
    audio: Scheduler,
    timesteps: Vec<Timestep>,
    guidance: Guidance,
    has_speaker_embeddings: bool,
    index: usize,
}

impl Stepper {
    /// `has_speaker_embeddings` says whether the batch has reference voices (`spk_embs`), which enables the timbre
    /// pass.
    pub fn new(config: &SampleConfig, has_speaker_embeddings: bool) -> Result<Self, PipelineError> {
        config.guidance.check()?;
        let video = Scheduler::new(config.solver, config.num_steps, config.shift)?;
        let audio = Scheduler::new(config.solver, config.num_steps, config.shift_audio)?;
        // Both streams step on the video scheduler's timesteps (`zip(timesteps, timesteps)`).
        let timesteps = video.timesteps();
        Ok(Self { video, audio, timesteps, guidance: config.guidance, has_speaker_embeddings, index: 0 })
    }

    pub fn timesteps(&self) -> &[Timestep] {
        &self.timesteps
    }

    /// The next step's index and timestep, `None` when sampling is done.
    pub fn next(&self) -> Option<(usize, Timestep)> {
        self.timesteps.get(self.index).map(|&t| (self.index, t))
    }

    /// The passes of every step, in the reference's order.
    pub fn passes(&self) -> Vec<Pass> {
        self.guidance.passes(self.has_speaker_embeddings)
    }

    /// Combines the velocities of [`Stepper::passes`] (same order) and steps `latents`; returns the guided velocity.
    pub fn step(
        &mut self,
        latents: &mut PerModality<Vec<f32>>,
        velocities: &[PerModality<Vec<f32>>],
    ) -> Result<PerModality<Vec<f32>>, PipelineError> {
        let passes = self.passes();
        if velocities.len() != passes.len() {
            return Err(PipelineError::Length {
                what: "velocities of one step (one per pass)".into(),
                expected: passes.len(),
                found: velocities.len(),
            });
        }
        for (pass, v) in passes.iter().zip(velocities) {
            for m in [Modality::Video, Modality::Audio] {
                let (found, expected) = (v.get(m).len(), latents.get(m).len());
                if found != expected {
                    let stream = if m == Modality::Video { "video" } else { "audio" };
                    let what = format!("{stream} velocity of the {} pass", pass.name());
                    return Err(PipelineError::Length { what, expected, found });
                }
            }
        }
        let of_pass = |p: Pass| passes.iter().position(|&q| q == p).map(|i| &velocities[i]);
        let (cond, uncond) = (&velocities[0], &velocities[1]);
        let (align, timbre) = (of_pass(Pass::Align), of_pass(Pass::Timbre));
        let of = |m: Modality| PassVelocities {
            cond: cond.get(m),
            uncond: uncond.get(m),
            align: align.map(|v| v.get(m).as_slice()),
            timbre: timbre.map(|v| v.get(m).as_slice()),
        };
        let g = &self.guidance;
        let velocity = PerModality { video: g.video(&of(Modality::Video))?, audio: g.audio(&of(Modality::Audio))? };
        *latents = PerModality {
            video: self.video.step(&velocity.video, &latents.video)?,
            audio: self.audio.step(&velocity.audio, &latents.audio)?,
        };
        self.index += 1;
        Ok(velocity)
    }
}

/// The sampling loop of `AudioVideoPipeline.sample` from the initial noise `latents`. `denoise(pass, t, latents)`
/// returns the velocities of one pass (the reference's `predict_eps`; it may write into the latents, as
/// image-to-video does to the first frame); `has_speaker_embeddings` says whether the batch has reference voices
/// (`spk_embs`), which enables the timbre pass. `on_step` sees every finished step (progress, traces). Returns the
/// final latents.
pub fn sample<D, O>(
    config: &SampleConfig,
    mut latents: PerModality<Vec<f32>>,
    has_speaker_embeddings: bool,
    mut denoise: D,
    mut on_step: O,
) -> Result<PerModality<Vec<f32>>, PipelineError>
where
    D: FnMut(Pass, Timestep, &mut PerModality<Vec<f32>>) -> Result<PerModality<Vec<f32>>, PipelineError>,
    O: FnMut(&StepRecord<'_>),
{
    let mut stepper = Stepper::new(config, has_speaker_embeddings)?;
    while let Some((index, t)) = stepper.next() {
        let velocities =
            stepper.passes().into_iter().map(|pass| denoise(pass, t, &mut latents)).collect::<Result<Vec<_>, _>>()?;
        let velocity = stepper.step(&mut latents, &velocities)?;
        on_step(&StepRecord {
            index,
            timestep: t,
            velocity: PerModality { video: &velocity.video, audio: &velocity.audio },
            latents: PerModality { video: &latents.video, audio: &latents.audio },
        });
    }
    Ok(latents)
}
