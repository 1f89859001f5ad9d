//! Classifier-free guidance of the sampling loop — reference `AudioVideoPipeline.sample` (nava_src/pipeline_nava.py),
//! NAVA.md §6 "Guidance passes per step": which denoiser passes run and how their velocities combine per
//! modality. Combinations are f32, one rounding per tensor op in the reference's left-to-right order.

use super::PipelineError;

/// One denoiser pass of a sampling step; [`Guidance::passes`] lists them in the reference's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Positive context, speaker embeddings and their positions.
    Cond,
    /// Negative contexts (video and audio negative prompts), no speakers; `slg_layer=11`.
    Uncond,
    /// `align_3d_cfg`: positive context, modality-masked joint attention; the reference passes `spk_embs` but not
    /// `spk_pos`, so no context row is replaced by a speaker token.
    Align,
    /// `timbre_cfg` with reference voices: positive context and speaker positions but no embeddings (the
    /// `<extra_id_2>` T5 embedding stays in place).
    Timbre,
}

/// Which text context a pass sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// The caption, for both modalities.
    Positive,
    /// The video negative prompt for video, the audio negative prompt for audio.
    Negative,
}

impl Pass {
    /// The name the oracle case's pass log uses.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Cond => "cond",
            Pass::Uncond => "uncond",
            Pass::Align => "align",
            Pass::Timbre => "timbre",
        }
    }

    pub fn context(self) -> Context {
        match self {
            Pass::Uncond => Context::Negative,
            _ => Context::Positive,
        }
    }

    /// Whether the pass receives the speaker embeddings (`spk_embs`), when the batch has any.
    pub fn speaker_embeddings(self) -> bool {
        matches!(self, Pass::Cond | Pass::Align)
    }

    /// Whether the pass receives the caption's speaker positions (`spk_pos`, possibly empty lists).
    pub fn speaker_positions(self) -> bool {
        matches!(self, Pass::Cond | Pass::Timbre)
    }

    /// `masking_modality`: video and audio do not attend to each other.
    pub fn masking_modality(self) -> bool {
        self == Pass::Align
    }

    /// `slg_layer` the reference passes; the backbone ignores it.
    pub fn slg_layer(self) -> Option<usize> {
        (self == Pass::Uncond).then_some(11)
    }
}

/// Guidance scales, named as the reference's `sample` arguments.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
pub struct GuidanceScales {
    /// g_v
    pub video_guidance_scale: f32,
    /// g_a
    pub audio_guidance_scale: f32,
    /// g_va
    pub video_align_guidance_scale: f32,
    /// g_aa
    pub audio_align_guidance_scale: f32,
    /// g_t
    pub timbre_align_guidance_scale: f32,
}

impl Default for GuidanceScales {
    /// configs/nava.yaml: g_v 3, g_a 2, g_va 3, g_aa 2, g_t 3.
    fn default() -> Self {
        Self {
            video_guidance_scale: 3.0,
            audio_guidance_scale: 2.0,
            video_align_guidance_scale: 3.0,
            audio_align_guidance_scale: 2.0,
            timbre_align_guidance_scale: 3.0,
        }
    }
}

/// The velocities one modality got from each pass of a step; `align` and `timbre` are present when those passes
/// ran.
#[derive(Clone, Copy, Debug)]
pub struct PassVelocities<'a> {
    pub cond: &'a [f32],
    pub uncond: &'a [f32],
    pub align: Option<&'a [f32]>,
    pub timbre: Option<&'a [f32]>,
}

/// How a step combines its passes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Guidance {
    pub scales: GuidanceScales,
    /// Run the modality-masked [`Pass::Align`] and add its terms.
    pub align_3d_cfg: bool,
    /// Run [`Pass::Timbre`] when the batch has speaker embeddings, and add its term to audio.
    pub timbre_cfg: bool,
}

impl Default for Guidance {
    /// configs/nava.yaml: default scales, `align_3d_cfg` and `timbre_cfg` on.
    fn default() -> Self {
        Self { scales: GuidanceScales::default(), align_3d_cfg: true, timbre_cfg: true }
    }
}

impl Guidance {
    /// Settings the reference can sample with: it has no path for a video or audio scale of exactly 1 (that
    /// branch is `assert False`), and the scales must be finite.
    pub fn check(&self) -> Result<(), PipelineError> {
        let s = &self.scales;
        let all = [
            s.video_guidance_scale,
            s.audio_guidance_scale,
            s.video_align_guidance_scale,
            s.audio_align_guidance_scale,
            s.timbre_align_guidance_scale,
        ];
        if all.iter().any(|g| !g.is_finite()) {
            return Err(PipelineError::Config { what: "guidance", problem: format!("scales must be finite: {s:?}") });
        }
        if s.video_guidance_scale == 1.0 || s.audio_guidance_scale == 1.0 {
            return Err(PipelineError::Config {
                what: "guidance",
                problem: "a video or audio guidance scale of 1 (no CFG) has no path in the reference sampler; \
                          use a scale other than 1"
                    .into(),
            });
        }
        Ok(())
    }

    /// `effective_timbre`: `timbre_cfg` and speaker embeddings present.
    pub fn timbre_active(&self, has_speaker_embeddings: bool) -> bool {
        self.timbre_cfg && has_speaker_embeddings
    }

    /// The passes of one step, in the reference's order: cond, uncond, then align and timbre when active.
    pub fn passes(&self, has_speaker_embeddings: bool) -> Vec<Pass> {
        let mut passes = vec![Pass::Cond, Pass::Uncond];
        if self.align_3d_cfg {
            passes.push(Pass::Align);
        }
        if self.timbre_active(has_speaker_embeddings) {
            passes.push(Pass::Timbre);
        }
        passes
    }

    /// Video velocity: `v_c + g_v(v_c − v_u) + g_va(v_c − v_align)` with `align_3d_cfg`, else the plain
    /// `v_u + g_v(v_c − v_u)`. Video never uses the timbre pass.
    pub fn video(&self, v: &PassVelocities) -> Result<Vec<f32>, PipelineError> {
        let s = &self.scales;
        if !self.align_3d_cfg {
            return combine("video", v.uncond, v.cond, &[(s.video_guidance_scale, "uncond", v.uncond)]);
        }
        let align = required("video", "align", v.align)?;
        let terms = [(s.video_guidance_scale, "uncond", v.uncond), (s.video_align_guidance_scale, "align", align)];
        combine("video", v.cond, v.cond, &terms)
    }

    /// Audio velocity: `v_c + g_a(v_c − v_u)`, then `+ g_aa(v_c − v_align)` with `align_3d_cfg` and
    /// `+ g_t(v_c − v_timbre)` when the timbre pass ran; with neither, the plain `v_u + g_a(v_c − v_u)`.
    pub fn audio(&self, v: &PassVelocities) -> Result<Vec<f32>, PipelineError> {
        let s = &self.scales;
        if v.timbre.is_some() && !self.timbre_cfg {
            return Err(PipelineError::Config {
                what: "audio guidance",
                problem: "a timbre-pass velocity was given but timbre_cfg is off".into(),
            });
        }
        if !self.align_3d_cfg && v.timbre.is_none() {
            return combine("audio", v.uncond, v.cond, &[(s.audio_guidance_scale, "uncond", v.uncond)]);
        }
        let mut terms = vec![(s.audio_guidance_scale, "uncond", v.uncond)];
        if self.align_3d_cfg {
            terms.push((s.audio_align_guidance_scale, "align", required("audio", "align", v.align)?));
        }
        if let Some(timbre) = v.timbre {
            terms.push((s.timbre_align_guidance_scale, "timbre", timbre));
        }
        combine("audio", v.cond, v.cond, &terms)
    }
}

fn required<'a>(modality: &str, pass: &str, v: Option<&'a [f32]>) -> Result<&'a [f32], PipelineError> {
    v.ok_or_else(|| PipelineError::Config {
        what: "guidance",
        problem: format!("align_3d_cfg is on but no {pass}-pass velocity was given for {modality}"),
    })
}

/// `base + Σ g·(cond − other)`, each term added in order (f32, as the reference's tensor expression). Terms are
/// `(scale, pass name, velocity)`.
fn combine(
    modality: &str,
    base: &[f32],
    cond: &[f32],
    terms: &[(f32, &str, &[f32])],
) -> Result<Vec<f32>, PipelineError> {
    for &(_, pass, v) in terms {
        if v.len() != cond.len() {
            return Err(PipelineError::Length {
                what: format!("{modality} velocity of the {pass} pass"),
                expected: cond.len(),
                found: v.len(),
            });
        }
    }
    let mut out = base.to_vec();
    for &(g, _, other) in terms {
        for ((o, &c), &x) in out.iter_mut().zip(cond).zip(other) {
            *o += g * (c - x);
        }
    }
    Ok(out)
}
