//! `nava generate`: a prompt (plus an optional first frame and reference voices) in, an MP4 with H.264 video and
//! AAC stereo audio out. Progress bars per stage, Ctrl-C stops cleanly, and the output file appears only when
//! it is complete. Without `--weights` it runs the built-in tiny model (seeded random weights: abstract output).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use nava::gpu::{Gpu, GpuOptions};
use nava::io::encode::Mp4Writer;
use nava::io::{AtomicFile, Audio};
use nava::kernels::gemm::WeightFormat;
use nava::model::dit::Offload;
use nava::pipeline::generate::{
    generate, read_image, Event, Mode, ModelSource, Models, Observer, Request, Stage, TINY_DEFAULTS,
};

use crate::preview::PreviewHandle;
use nava::pipeline::plan::Advice;
use nava::pipeline::shape::{Length, Orientation, Size};
use nava::pipeline::{GuidanceScales, PipelineError, SampleConfig, Solver};

#[derive(Args, Debug, Clone)]
pub struct GenerateArgs {
    /// What to generate. Speech is written `<S>words<E>`; each span takes the voice of a `--voice`, in order.
    #[arg(long)]
    prompt: String,
    /// The negative prompt (default: the reference's video negative prompt; the audio one for --audio-only).
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Image to start the video from (PNG or JPEG); it is resized and centre-cropped to the output size.
    #[arg(long, value_name = "FIRST_FRAME")]
    image: Option<PathBuf>,
    /// Reference voice (WAV), once per `<S>…<E>` span in the prompt, in order.
    #[arg(long = "voice", value_name = "WAV")]
    voices: Vec<PathBuf>,
    /// Output size WIDTHxHEIGHT, multiples of 32 (default 1280x704; 160x96 for the built-in tiny model).
    #[arg(long, conflicts_with_all = ["aspect"])]
    size: Option<String>,
    /// Aspect bucket: 16:9, 1:1, 5:4, 4:3, 3:2, 2:1, 5:2 (9:16 etc. for portrait).
    #[arg(long)]
    aspect: Option<String>,
    #[arg(long, value_enum, default_value = "landscape")]
    orientation: OrientationArg,
    /// Duration in seconds (rounded up to whole latent frames: 4k+1 frames at 24 fps).
    #[arg(long, conflicts_with = "frames")]
    seconds: Option<f64>,
    /// Duration in latent frames (each is 4 video frames; the first is 1), as the reference's `--frames`.
    #[arg(long)]
    frames: Option<usize>,
    /// Sampling steps (default 50; 12 for the built-in tiny model).
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, value_enum, default_value = "unipc")]
    solver: SolverArg,
    /// Video guidance scale g_v.
    #[arg(long, default_value_t = 3.0)]
    video_cfg: f32,
    /// Audio guidance scale g_a.
    #[arg(long, default_value_t = 2.0)]
    audio_cfg: f32,
    /// Video align-guidance scale g_va (modality-masked pass).
    #[arg(long, default_value_t = 3.0)]
    video_align_cfg: f32,
    /// Audio align-guidance scale g_aa.
    #[arg(long, default_value_t = 2.0)]
    audio_align_cfg: f32,
    /// Timbre guidance scale g_t (with reference voices).
    #[arg(long, default_value_t = 3.0)]
    timbre_cfg: f32,
    /// Skip the modality-masked align pass (plain CFG; one pass fewer per step).
    #[arg(long)]
    no_align_cfg: bool,
    /// Generate audio only (text→audio).
    #[arg(long)]
    audio_only: bool,
    /// A converted weights directory (`nava convert`) with all models and tokenizer.json.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Weight format on the GPU: f32, f16, bf16, q8, q4, fp8 (default: as stored).
    #[arg(long)]
    quant: Option<String>,
    /// GPU memory budget in GiB: checked against the planned peak of every stage before loading (with advice on
    /// --quant when it does not fit); denoiser blocks beyond it stay in host memory and stream in, and the VAE
    /// decodes in tiles that fit (see `nava plan`).
    #[arg(long, value_name = "GIB")]
    max_vram: Option<f64>,
    /// Output MP4.
    #[arg(short, long, default_value = "nava.mp4")]
    output: PathBuf,
    /// Also write the audio as WAV.
    #[arg(long)]
    wav: Option<PathBuf>,
    /// Also write every frame as PNG into this folder.
    #[arg(long)]
    frames_dir: Option<PathBuf>,
    /// Audio sample rate: 16000 (the reference's output) or 48000 (the vocoder's full band).
    #[arg(long, default_value_t = 16000)]
    audio_rate: u32,
    /// Show a window with progress and the frames as they are decoded.
    #[arg(long)]
    preview: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum OrientationArg {
    Landscape,
    Portrait,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum SolverArg {
    Unipc,
    Euler,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything checked before the GPU is touched: bad input fails fast, before minutes of loading.
struct Plan {
    request: Request,
    source: ModelSource,
    format: Option<WeightFormat>,
    offload: Offload,
}

fn plan(a: &GenerateArgs) -> Result<Plan, BoxError> {
    let tiny = a.weights.is_none();
    let orientation = match a.orientation {
        OrientationArg::Landscape => Orientation::Landscape,
        OrientationArg::Portrait => Orientation::Portrait,
    };
    let size = match (&a.size, &a.aspect) {
        (Some(s), _) => Size::parse(s)?,
        (None, Some(aspect)) => Size::from_aspect(aspect, orientation)?,
        (None, None) if tiny => TINY_DEFAULTS.size,
        (None, None) => Size::from_aspect("16:9", orientation)?,
    };
    let length = match (a.seconds, a.frames) {
        (Some(s), _) => Length::from_seconds(s)?,
        (None, Some(f)) => Length::from_latent_frames(f)?,
        (None, None) if tiny => TINY_DEFAULTS.length,
        (None, None) => Length::from_latent_frames(37)?,
    };
    if length.beyond_training() {
        eprintln!(
            "warning: {:.2} s is longer than the 10 s clips the model was trained on; expect lower quality",
            length.seconds()
        );
    }
    if !size.is_bucket() && !tiny {
        eprintln!("warning: {}×{} is not one of the model's trained sizes (see --aspect)", size.width, size.height);
    }
    if a.audio_rate != 16000 && a.audio_rate != 48000 {
        return Err(format!("--audio-rate {}: use 16000 or 48000", a.audio_rate).into());
    }
    if a.audio_only && a.image.is_some() {
        return Err("--image needs video output; leave out --audio-only".into());
    }
    for p in a.voices.iter().chain(&a.image) {
        if !p.is_file() {
            return Err(format!("{}: no such file", p.display()).into());
        }
    }
    let first_frame = a.image.as_deref().map(read_image).transpose()?;
    let voices = a
        .voices
        .iter()
        .map(|p| nava::model::speaker::read_voice(p).map_err(|e| format!("{}: {e}", p.display())))
        .collect::<Result<Vec<_>, _>>()?;
    let format = a
        .quant
        .as_deref()
        .map(|q| WeightFormat::parse(q).ok_or_else(|| format!("--quant {q}: use f32, f16, bf16, q8, q4 or fp8")))
        .transpose()?;
    let offload = match a.max_vram {
        Some(gib) if gib > 0.0 => Offload::Budget((gib * (1u64 << 30) as f64) as u64),
        Some(gib) => return Err(format!("--max-vram {gib}: give a positive number of GiB").into()),
        None => Offload::Never,
    };
    let sample = SampleConfig {
        num_steps: a.steps.unwrap_or(if tiny { TINY_DEFAULTS.steps } else { 50 }),
        solver: match a.solver {
            SolverArg::Unipc => Solver::UniPc,
            SolverArg::Euler => Solver::Euler,
        },
        guidance: nava::pipeline::Guidance {
            scales: GuidanceScales {
                video_guidance_scale: a.video_cfg,
                audio_guidance_scale: a.audio_cfg,
                video_align_guidance_scale: a.video_align_cfg,
                audio_align_guidance_scale: a.audio_align_cfg,
                timbre_align_guidance_scale: a.timbre_cfg,
            },
            align_3d_cfg: !a.no_align_cfg,
            timbre_cfg: true,
        },
        ..SampleConfig::default()
    };
    sample.guidance.check()?;
    let request = Request {
        prompt: a.prompt.clone(),
        negative_prompt: a.negative_prompt.clone(),
        first_frame,
        voices,
        size,
        length,
        mode: if a.audio_only { Mode::Audio } else { Mode::AudioVideo },
        sample,
        seed: a.seed,
        audio_rate: a.audio_rate,
    };
    let source = match &a.weights {
        Some(dir) => ModelSource::Dir(dir.clone()),
        None => ModelSource::Tiny,
    };
    Ok(Plan { request, source, format, offload })
}

/// Progress bars per stage, frames to the MP4 writer (and PNGs) and the preview window, Ctrl-C or closing the
/// preview as cancellation.
struct Cli {
    bars: MultiProgress,
    bar: Option<(Stage, ProgressBar)>,
    mp4: Option<Mp4Writer>,
    frames_dir: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    preview: Option<PreviewHandle>,
    frames: usize,
}

impl Observer for Cli {
    fn event(&mut self, e: Event) -> Result<(), PipelineError> {
        if self.stop.load(Ordering::Relaxed) || self.preview.as_ref().is_some_and(|p| p.cancelled()) {
            return Err(PipelineError::Cancelled);
        }
        match e {
            Event::Stage { stage, total } => {
                // Loading reports its total in several steps: keep one bar per stage.
                if let Some((s, b)) = &self.bar {
                    if *s == stage {
                        b.set_length(total);
                        return Ok(());
                    }
                    b.finish();
                }
                let b = self.bars.add(ProgressBar::new(total));
                let template = if stage == Stage::Loading {
                    "{prefix:>14} [{bar:32}] {bytes}/{total_bytes} {elapsed} (ETA {eta})"
                } else {
                    "{prefix:>14} [{bar:32}] {pos}/{len} {elapsed} (ETA {eta})"
                };
                let style = ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                b.set_style(style);
                b.set_prefix(stage_name(stage));
                self.bar = Some((stage, b));
                if let Some(p) = &self.preview {
                    p.stage(stage_name(stage), 0, total as usize);
                }
            }
            Event::Progress { stage, done } => {
                if let Some((_, b)) = &self.bar {
                    b.set_position(done);
                    if let Some(p) = &self.preview {
                        p.stage(stage_name(stage), done as usize, b.length().unwrap_or(0) as usize);
                    }
                }
            }
            Event::Frame { index, frame } => {
                if let Some(mp4) = &mut self.mp4 {
                    mp4.push_frame(frame).map_err(|e| PipelineError::Output(e.to_string()))?;
                }
                if let Some(dir) = &self.frames_dir {
                    nava::io::png::write_frame(dir, index, frame).map_err(|e| PipelineError::Output(e.to_string()))?;
                }
                if let Some(p) = &self.preview {
                    p.frame(frame.clone());
                }
                self.frames += 1;
            }
            Event::Warning(w) => {
                if self.bars.is_hidden() {
                    eprintln!("warning: {w}");
                } else {
                    let _ = self.bars.println(format!("warning: {w}"));
                }
            }
        }
        Ok(())
    }
}

fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::Loading => "loading",
        Stage::Text => "text encoding",
        Stage::Voices => "voices",
        Stage::Image => "first frame",
        Stage::Denoise => "denoising",
        Stage::VideoDecode => "video decode",
        Stage::AudioDecode => "audio decode",
    }
}

pub fn run(opts: &GpuOptions, a: GenerateArgs) -> Result<(), BoxError> {
    let plan = plan(&a)?;
    if let Offload::Budget(_) = plan.offload {
        // Before the adapter and any weights: a budget the generation cannot fit fails here, with advice.
        let models = Models::open(&plan.source, plan.format, plan.offload)?;
        match models.memory_advice(&plan.request)? {
            Advice::Fits => {}
            Advice::Offloaded { advice, .. } => eprintln!("note: {advice}"),
            Advice::UseFormat(m) | Advice::Impossible(m) => return Err(m.into()),
        }
    }
    if let Some(dir) = &a.frames_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::Relaxed) {
                std::process::exit(130); // a second Ctrl-C: leave now
            }
            eprintln!("\nstopping after the current step (Ctrl-C again to quit at once)…");
        })
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
    }
    if a.preview {
        let opts = opts.clone();
        let (w, h) = (plan.request.size.width as u32, plan.request.size.height as u32);
        return crate::preview::Preview::new("NAVA").size(w, h).fps(nava::io::FPS as f64).run(move |handle| {
            let r = generate_to_files(&opts, &a, plan, stop, Some(handle.clone()));
            handle.finished();
            r
        });
    }
    generate_to_files(opts, &a, plan, stop, None)
}

fn generate_to_files(
    opts: &GpuOptions,
    a: &GenerateArgs,
    plan: Plan,
    stop: Arc<AtomicBool>,
    preview: Option<PreviewHandle>,
) -> Result<(), BoxError> {
    let g = Gpu::new_blocking(opts)?;
    eprintln!("adapter: {} ({})", g.adapter.name, g.adapter.backend);
    let video = (plan.request.mode == Mode::AudioVideo).then_some((plan.request.size.width, plan.request.size.height));
    let mut cli = Cli {
        bars: MultiProgress::new(),
        bar: None,
        mp4: Some(Mp4Writer::new(&a.output, video)?),
        frames_dir: a.frames_dir.clone(),
        stop,
        preview,
        frames: 0,
    };
    let mut models = Models::open(&plan.source, plan.format, plan.offload)?;
    let output = nava::gpu::block_on(generate(&g, &mut models, &plan.request, &mut cli));
    if let Some((_, b)) = cli.bar.take() {
        b.finish();
    }
    let mut audio: Audio = match output {
        Ok(o) => o.audio,
        Err(PipelineError::Cancelled) => return Err("cancelled; no output was written".into()),
        Err(e) => return Err(e.into()),
    };
    // The reference's writer: peak-normalise to 0.95, then encode.
    audio.normalize_peak();
    if let Some(wav) = &a.wav {
        write_wav(wav, &audio)?;
    }
    let mp4 = cli.mp4.take().ok_or("no MP4 writer")?;
    let path = mp4.finish(Some(&audio))?;
    let video =
        if cli.frames > 0 { format!("{} frames at {} fps, ", cli.frames, nava::io::FPS) } else { String::new() };
    println!("wrote {} ({video}{:.2} s of {} Hz stereo audio)", path.display(), audio.seconds(), audio.sample_rate);
    if models.is_tiny() {
        println!(
            "note: the built-in tiny model has random weights, so the output is abstract; run the real model with \
             --weights DIR (see README)"
        );
    }
    Ok(())
}

fn write_wav(path: &Path, audio: &Audio) -> Result<(), BoxError> {
    let mut f = AtomicFile::create(path)?;
    nava::io::wav::write_wav(&mut f, audio).map_err(|e| format!("{}: {e}", path.display()))?;
    f.commit()?;
    Ok(())
}
