//! `nava plan`: the GPU memory each stage of a generation needs, computed from the model configurations without
//! loading anything (the released models by default, a converted directory's with `--weights`), and, with
//! `--max-vram`, the choices generation would make and the weight formats that fit. Exits non-zero when the
//! generation does not fit as asked.

use std::path::PathBuf;

use clap::Args;
use nava::kernels::gemm::WeightFormat;
use nava::model::dit::Offload;
use nava::pipeline::generate::{Configs, Mode, ModelSource, Models};
use nava::pipeline::plan::{advise, plan, Advice, PlanRequest};
use nava::pipeline::shape::{Length, Orientation, Size};

#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// Output size WIDTHxHEIGHT, multiples of 32 (default 1280x704).
    #[arg(long, conflicts_with = "aspect")]
    size: Option<String>,
    /// Aspect bucket: 16:9, 1:1, 5:4, 4:3, 3:2, 2:1, 5:2.
    #[arg(long)]
    aspect: Option<String>,
    /// Portrait buckets (with --aspect).
    #[arg(long)]
    portrait: bool,
    /// Duration in seconds (default 6).
    #[arg(long, conflicts_with = "frames")]
    seconds: Option<f64>,
    /// Duration in latent frames.
    #[arg(long)]
    frames: Option<usize>,
    /// Weight format: f32, f16, bf16, q8, q4, fp8 (default: as stored with --weights, else f16).
    #[arg(long)]
    quant: Option<String>,
    /// GPU memory budget in GiB, as `nava generate --max-vram`.
    #[arg(long, value_name = "GIB")]
    max_vram: Option<f64>,
    /// Keep every denoiser block in host memory.
    #[arg(long, conflicts_with = "max_vram")]
    offload: bool,
    /// A converted weights directory: its configurations and stored format.
    #[arg(long, conflicts_with = "tiny")]
    weights: Option<PathBuf>,
    /// The built-in tiny model.
    #[arg(long)]
    tiny: bool,
    /// Plan text→audio.
    #[arg(long)]
    audio_only: bool,
    /// Plan with reference voices (a fourth guidance pass and a third text context).
    #[arg(long)]
    voices: bool,
    /// Without the modality-masked align pass.
    #[arg(long)]
    no_align_cfg: bool,
}

type BoxError = Box<dyn std::error::Error>;

pub fn run(a: PlanArgs) -> Result<(), BoxError> {
    let size = match (&a.size, &a.aspect) {
        (Some(s), _) => Size::parse(s)?,
        (None, aspect) => Size::from_aspect(
            aspect.as_deref().unwrap_or("16:9"),
            if a.portrait { Orientation::Portrait } else { Orientation::Landscape },
        )?,
    };
    let length = match (a.seconds, a.frames) {
        (_, Some(f)) => Length::from_latent_frames(f)?,
        (s, None) => Length::from_seconds(s.unwrap_or(6.0))?,
    };
    let requested = a
        .quant
        .as_deref()
        .map(|q| WeightFormat::parse(q).ok_or_else(|| format!("--quant {q}: use f32, f16, bf16, q8, q4 or fp8")))
        .transpose()?;
    let offload = match (a.offload, a.max_vram) {
        (true, _) => Offload::Always,
        (false, Some(gib)) if gib > 0.0 && gib.is_finite() => Offload::Budget((gib * (1u64 << 30) as f64) as u64),
        (false, Some(gib)) => return Err(format!("--max-vram {gib}: give a positive number of GiB").into()),
        (false, None) => Offload::Never,
    };
    let (configs, format, model) = match (&a.weights, a.tiny) {
        (Some(dir), _) => {
            let m = Models::open(&ModelSource::Dir(dir.clone()), requested, offload)?;
            (m.configs().clone(), m.format(), format!("the models in {}", dir.display()))
        }
        (None, true) => (Configs::tiny(), requested.unwrap_or(WeightFormat::F32), "the built-in tiny model".into()),
        (None, false) => (Configs::real()?, requested.unwrap_or(WeightFormat::F16), "the released models".into()),
    };
    let mode = if a.audio_only { Mode::Audio } else { Mode::AudioVideo };
    // Passes per step: cond and uncond, the align pass (not in text→audio), the timbre pass with voices.
    let passes = 2 + usize::from(!a.no_align_cfg && mode == Mode::AudioVideo) + usize::from(a.voices);
    let r = PlanRequest {
        size,
        length,
        mode,
        passes,
        voices: a.voices,
        prompt_tokens: configs.dit.text_len,
        format,
        offload,
        max_binding: None,
    };
    let what = match mode {
        Mode::AudioVideo => format!("{}×{} × {:.2} s", size.width, size.height, length.seconds()),
        Mode::Audio => format!("{:.2} s of audio", length.seconds()),
    };
    println!("plan for {model}, {what}, {} weights, {passes} guidance passes per step", format.name());
    match plan(&configs, &r) {
        Ok(p) => println!("{}", p.table()),
        Err(e) => println!("no plan: {e}"),
    }
    match advise(&configs, &r)? {
        Advice::Fits => Ok(()),
        Advice::Offloaded { advice, .. } => {
            println!("note: {advice}");
            Ok(())
        }
        Advice::UseFormat(m) | Advice::Impossible(m) => Err(m.into()),
    }
}
