//! Generation end to end — NAVA.md §2 and the reference's `AudioVideoPipeline.sample` plus its callers: prompt
//! → tokens → UMT5 contexts (positive and negative in one batch) → speaker tokens from the reference voices →
//! optional first-frame latent → seeded noise → UniPC with NAVA's guidance passes through the DiT → Wan2.2 VAE
//! frames (streamed as they are decoded) and LTX audio VAE + vocoder → 16 kHz (or 48 kHz) stereo.
//!
//! Models load stage by stage and are dropped when their stage is over (unless kept for repeated generations), so
//! the peak GPU memory is the largest single stage, not the sum. The built-in tiny model ([`ModelSource::Tiny`])
//! has the same architecture at small widths with deterministic seeded weights: it exercises every stage in
//! seconds, and its output is abstract.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::gpu::Gpu;
use crate::io::{Audio, Frame};
use crate::kernels::gemm::WeightFormat;
use crate::model::audio_vae::{AudioDecoder, AudioVaeConfig};
use crate::model::dit::{Dit, DitConfig, LoadOptions, Offload, Speakers, PREFIX as DIT_PREFIX};
use crate::model::speaker::{RedimConfig, SpeakerEncoder};
use crate::model::text_encoder::{T5Config, TextEncoder};
use crate::model::tokenizer::{Tokenizer, Tokens};
use crate::model::video_vae::{VaeConfig, VideoVae};
use crate::model::vocoder::{Vocoder, VocoderConfig};
use crate::model::ModelError;
use crate::weights::{
    convert, ConvertOptions, ManifestSource, ModelInput, ModelReport, Quant, SeededSource, StreamedWeights,
    TensorSource, WithProgress,
};

use super::denoise::{denoise, Conditioning, LatentShape, PassContexts};
use super::noise::initial_latents;
use super::shape::{Length, Size};
use super::{PerModality, PipelineError, SampleConfig};

/// The reference's negative prompts (`configs/nava.yaml`): the video one used in joint generation (it ends with
/// the audio negatives, joined by an ASCII ", ") and the audio one used for text→audio.
pub const VIDEO_NEGATIVE_PROMPT: &str = "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走, 音频带有机械音、闷糊、回音、失真、电流声、爆音、杂音";
pub const AUDIO_NEGATIVE_PROMPT: &str = "机械音、闷糊、回音、失真、电流声、爆音、杂音";

/// What the built-in tiny model generates by default: small, short and quick on a CPU adapter.
pub struct TinyDefaults {
    pub size: Size,
    pub length: Length,
    pub steps: usize,
}

pub const TINY_DEFAULTS: TinyDefaults =
    TinyDefaults { size: Size { width: 160, height: 96 }, length: Length { latent_frames: 13 }, steps: 12 };

/// The official umt5-xxl `tokenizer.json` (google/umt5-xxl, Apache-2.0), gzipped: the tiny model tokenizes as the
/// real one does.
const UMT5_TOKENIZER: &[u8] = include_bytes!("../../assets/umt5-xxl-tokenizer.json.gz");

/// The seed of the built-in tiny model's weights.
const TINY_SEED: u64 = 0x4e41_5641;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Text (and optionally a first frame and voices) → video with stereo audio.
    AudioVideo,
    /// Text (and optionally voices) → stereo audio (the reference's text→audio mode).
    Audio,
}

/// An RGB8 image (the first frame of image-to-video).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

/// Reads a PNG or JPEG file.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_image(path: &Path) -> Result<Image, PipelineError> {
    let bytes = std::fs::read(path).map_err(|e| PipelineError::Input(format!("{}: {e}", path.display())))?;
    decode_image(&bytes).map_err(|e| PipelineError::Input(format!("{}: {e}", path.display())))
}

/// Decodes PNG or JPEG bytes.
pub fn decode_image(bytes: &[u8]) -> Result<Image, String> {
    let img = image::load_from_memory(bytes).map_err(|e| format!("not a readable PNG or JPEG image ({e})"))?;
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    Ok(Image { width: w as usize, height: h as usize, rgb: rgb.into_raw() })
}

/// One generation's settings.
#[derive(Clone, Debug)]
pub struct Request {
    pub prompt: String,
    /// `None`: the reference's negative prompt for the mode.
    pub negative_prompt: Option<String>,
    pub first_frame: Option<Image>,
    /// Reference voices, 16 kHz mono (see `model::speaker::read_voice`), for the `<S>…<E>` spans in order.
    pub voices: Vec<Vec<f32>>,
    pub size: Size,
    pub length: Length,
    pub mode: Mode,
    pub sample: SampleConfig,
    pub seed: u64,
    /// 16000 (the reference's output) or 48000 (the vocoder's full band).
    pub audio_rate: u32,
}

/// The stages a generation reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Weights of the next stage (bytes).
    Loading,
    /// Prompts (count).
    Text,
    /// Reference voices (count).
    Voices,
    /// The first frame's latent (count).
    Image,
    /// Sampling steps.
    Denoise,
    /// Video frames.
    VideoDecode,
    /// Audio (latent tokens decoded, 0 or all).
    AudioDecode,
}

pub enum Event<'a> {
    /// A stage begins with `total` units of work.
    Stage {
        stage: Stage,
        total: u64,
    },
    /// `done` units of the current stage are finished.
    Progress {
        stage: Stage,
        done: u64,
    },
    /// A decoded frame, in order.
    Frame {
        index: usize,
        frame: &'a Frame,
    },
    Warning(String),
}

/// Receives progress, frames and warnings; an error (e.g. [`PipelineError::Cancelled`]) stops the generation.
pub trait Observer {
    fn event(&mut self, e: Event) -> Result<(), PipelineError>;
}

/// Where the weights come from.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// The built-in tiny model (seeded weights).
    Tiny,
    /// A directory written by `nava convert` with every model, plus `tokenizer.json` (or `tokenizer.json.gz`).
    Dir(PathBuf),
    /// A directory written by `nava convert` whose shards were streamed into GPU memory (the browser's way:
    /// see [`StreamedWeights`]). The tokenizer is the built-in umt5-xxl one, the file `nava convert` copies.
    Streamed(Arc<StreamedWeights>),
}

impl PartialEq for ModelSource {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Tiny, Self::Tiny) => true,
            (Self::Dir(a), Self::Dir(b)) => a == b,
            // The same arrays in GPU memory, not merely the same manifest.
            (Self::Streamed(a), Self::Streamed(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// The result of a generation: the audio (not yet peak-normalised: writers do that, as the reference's caller
/// does) and how many frames were handed out.
pub struct Output {
    pub frames: usize,
    pub audio: Audio,
}

/// The networks of NAVA, loaded when a stage needs them.
pub struct Models {
    source: ModelSource,
    format: Option<WeightFormat>,
    offload: Offload,
    /// Keep every model on the GPU between generations (repeated generations); otherwise each is dropped after its
    /// stage.
    pub keep_loaded: bool,
    tokenizer: Tokenizer,
    configs: Configs,
    text: Option<TextEncoder>,
    speaker: Option<SpeakerEncoder>,
    dit: Option<Dit>,
    video_vae: Option<VideoVae>,
    audio: Option<(AudioDecoder, Vocoder)>,
}

/// The configurations of the models of a generation.
#[derive(Clone, Debug)]
pub struct Configs {
    pub t5: T5Config,
    pub dit: DitConfig,
    pub vae: VaeConfig,
    pub audio_vae: AudioVaeConfig,
    pub vocoder: VocoderConfig,
    pub speaker: RedimConfig,
}

impl Configs {
    /// The released models' configurations (what `nava convert` records for the official files).
    pub fn real() -> Result<Self, PipelineError> {
        configs_from(|name| {
            crate::model::KnownModel::parse(name)
                .map(crate::model::KnownModel::config)
                .ok_or_else(|| PipelineError::Input(format!("unknown model {name}")))
        })
    }

    /// The built-in tiny model's.
    pub fn tiny() -> Self {
        tiny_configs()
    }
}

impl Models {
    /// Opens `source`: reads the tokenizer and the configurations; weights load when their stage runs.
    pub fn open(source: &ModelSource, format: Option<WeightFormat>, offload: Offload) -> Result<Self, PipelineError> {
        let (tokenizer, configs, stored) = match source {
            ModelSource::Tiny => {
                (Tokenizer::from_bytes(UMT5_TOKENIZER).map_err(ModelError::from)?, tiny_configs(), None)
            }
            ModelSource::Dir(dir) => {
                let manifest = read_manifest(dir)?;
                let configs = dir_configs(dir, &manifest)?;
                (open_tokenizer(dir)?, configs, stored_format(&manifest))
            }
            ModelSource::Streamed(w) => {
                let configs = dir_configs(w.label(), w.manifest())?;
                (Tokenizer::from_bytes(UMT5_TOKENIZER).map_err(ModelError::from)?, configs, stored_format(w.manifest()))
            }
        };
        // Without a request, the denoiser's weights stay in the format they were converted to.
        let format = format.or(stored);
        Ok(Self {
            source: source.clone(),
            format,
            offload,
            keep_loaded: false,
            tokenizer,
            configs,
            text: None,
            speaker: None,
            dit: None,
            video_vae: None,
            audio: None,
        })
    }

    /// The GPU memory budget of `--max-vram`, if any.
    fn vram_budget(&self) -> Option<u64> {
        match self.offload {
            Offload::Budget(b) => Some(b),
            _ => None,
        }
    }

    pub fn is_tiny(&self) -> bool {
        matches!(self.source, ModelSource::Tiny)
    }

    /// Where the weights come from.
    pub fn source(&self) -> &ModelSource {
        &self.source
    }

    pub fn configs(&self) -> &Configs {
        &self.configs
    }

    /// The plan of `req` with these models, format and offload (see [`super::plan`]).
    pub fn memory_plan(&self, req: &Request) -> Result<super::plan::MemoryPlan, PipelineError> {
        super::plan::plan(&self.configs, &super::plan::PlanRequest::of(req, self.format(), self.offload))
    }

    /// Quantisation advice for `req` under `--max-vram` (always fits without a budget).
    pub fn memory_advice(&self, req: &Request) -> Result<super::plan::Advice, PipelineError> {
        super::plan::advise(&self.configs, &super::plan::PlanRequest::of(req, self.format(), self.offload))
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The GEMM weight format: the requested one (or the converted directory's), else f32 for the tiny model and
    /// f16 for real weights.
    pub fn format(&self) -> WeightFormat {
        self.format.unwrap_or(if self.is_tiny() { WeightFormat::F32 } else { WeightFormat::F16 })
    }

    /// The weights of one model, with byte progress reported to `obs`. Every source goes through the same
    /// loader: only where the bytes come from differs.
    async fn with_source<T>(
        &self,
        g: &Gpu,
        name: &str,
        table: impl FnOnce() -> crate::weights::KeyTable,
        obs: &mut dyn Observer,
        load: impl Fn(&dyn TensorSource) -> Result<T, ModelError>,
    ) -> Result<T, PipelineError> {
        obs.event(Event::Stage { stage: Stage::Loading, total: 0 })?;
        match &self.source {
            ModelSource::Tiny => {
                load_with_progress(&SeededSource::new(&format!("tiny {name}"), &table(), TINY_SEED), obs, &load)
            }
            ModelSource::Dir(dir) => {
                load_with_progress(&ManifestSource::open(dir, name).map_err(ModelError::from)?, obs, &load)
            }
            ModelSource::Streamed(w) => {
                let src = w.source(g, name, &[]).await.map_err(ModelError::from)?;
                let out = load_with_progress(&src, obs, &load);
                // A loader that read a packed weight on the host the source did not expect: once more, with
                // that weight copied back from the GPU too.
                let misses = src.host_misses();
                if out.is_err() && !misses.is_empty() {
                    drop(src);
                    let src = w.source(g, name, &misses).await.map_err(ModelError::from)?;
                    return load_with_progress(&src, obs, &load);
                }
                out
            }
        }
    }
}

/// Runs `load` on `src`, reporting bytes read to `obs`.
fn load_with_progress<T>(
    src: &dyn TensorSource,
    obs: &mut dyn Observer,
    load: &dyn Fn(&dyn TensorSource) -> Result<T, ModelError>,
) -> Result<T, PipelineError> {
    let mut failed = None;
    let progress = WithProgress::new(src, |done, total| {
        if failed.is_none() {
            if let Err(e) = obs.event(Event::Stage { stage: Stage::Loading, total }) {
                failed = Some(e);
            } else if let Err(e) = obs.event(Event::Progress { stage: Stage::Loading, done }) {
                failed = Some(e);
            }
        }
    });
    let out = load(&progress);
    drop(progress);
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(out?)
}

/// The packed format of the denoiser's weights in a converted directory (`None` when stored plainly).
fn stored_format(manifest: &crate::weights::Manifest) -> Option<WeightFormat> {
    manifest.model("nava-dit")?.tensors.iter().find_map(|t| t.packed_format())
}

fn open_tokenizer(dir: &Path) -> Result<Tokenizer, PipelineError> {
    for name in ["tokenizer.json", "tokenizer.json.gz"] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(Tokenizer::from_file(&p).map_err(ModelError::from)?);
        }
    }
    Err(PipelineError::Input(format!(
        "{}: no tokenizer.json; copy the umt5-xxl tokenizer.json (google/umt5-xxl) into the weights directory",
        dir.display()
    )))
}

fn tiny_configs() -> Configs {
    Configs {
        // The real vocabulary (the tokenizer is the real one) at the tiny DiT's text width.
        t5: T5Config {
            vocab_size: 256384,
            dim: 64,
            dim_attn: 64,
            dim_ffn: 128,
            num_heads: 2,
            encoder_layers: 2,
            num_buckets: 32,
            shared_pos: false,
        },
        // The real text length: contexts are padded to 512 rows as in the reference.
        dit: DitConfig { text_len: 512, ..DitConfig::tiny() },
        vae: VaeConfig::tiny(),
        audio_vae: AudioVaeConfig::tiny(),
        vocoder: VocoderConfig::tiny(),
        speaker: RedimConfig::tiny(),
    }
}

fn read_manifest(dir: &Path) -> Result<crate::weights::Manifest, PipelineError> {
    if !dir.join(crate::weights::manifest::MANIFEST).is_file() {
        return Err(PipelineError::Input(format!(
            "{}: no {}: --weights takes a directory written by `nava convert -o DIR nava-dit=NAVA.safetensors \
             umt5=… wan-vae=… ltx-audio-vae=… redimnet=…` (see README)",
            dir.display(),
            crate::weights::manifest::MANIFEST
        )));
    }
    Ok(crate::weights::Manifest::read(dir).map_err(ModelError::from)?)
}

fn dir_configs(dir: &Path, manifest: &crate::weights::Manifest) -> Result<Configs, PipelineError> {
    configs_from(|name| {
        manifest.model(name).map(|m| m.config.clone()).ok_or_else(|| {
            PipelineError::Input(format!(
                "{}: the weights directory has no `{name}` model; convert it with `nava convert -o {} {name}=FILE`",
                dir.display(),
                dir.display()
            ))
        })
    })
}

/// Writes the built-in tiny model as a converted directory — what `nava convert` writes from the official
/// files, in mode `quant`, with the tokenizer beside it — so that the paths that read converted directories
/// (files, a browser streaming them) can run without the official weights. The weights are the tiny model's
/// seeded ones; generating from the directory differs from [`ModelSource::Tiny`] only where the stored format
/// does (the tiny model computes GEMMs in f32 whatever is stored).
pub fn write_tiny(out: &Path, quant: Quant, opts: &ConvertOptions) -> Result<Vec<ModelReport>, PipelineError> {
    let c = tiny_configs();
    let json = |v: Result<serde_json::Value, serde_json::Error>| {
        v.map_err(|e| PipelineError::Input(format!("tiny model configuration: {e}")))
    };
    // The audio VAE and the vocoder share one file and one configuration object, as the official one does.
    let mut audio = json(serde_json::to_value(&c.audio_vae))?;
    if let (Some(a), serde_json::Value::Object(v)) = (audio.as_object_mut(), json(serde_json::to_value(&c.vocoder))?) {
        a.extend(v);
    }
    let mut audio_table = c.audio_vae.decoder_key_table();
    audio_table.extend(c.vocoder.key_table());
    let seeded =
        |name: &str, table: &crate::weights::KeyTable| SeededSource::new(&format!("tiny {name}"), table, TINY_SEED);
    let t5 = seeded("umt5", &c.t5.key_table());
    let dit = seeded("nava-dit", &c.dit.key_table(DIT_PREFIX));
    let vae = seeded("wan-vae", &c.vae.key_table());
    let audio_src = seeded("ltx-audio-vae", &audio_table);
    fn input<'a>(name: &str, source: &'a dyn TensorSource, config: serde_json::Value, quant: Quant) -> ModelInput<'a> {
        ModelInput { name: name.to_string(), source_name: format!("the built-in tiny {name}"), source, config, quant }
    }
    let reports = crate::model::speaker::with_seeded_source(&c.speaker, TINY_SEED, |redimnet| {
        let inputs = [
            input("umt5", &t5, json(serde_json::to_value(&c.t5))?, quant),
            input("nava-dit", &dit, json(serde_json::to_value(&c.dit))?, quant),
            input("wan-vae", &vae, json(serde_json::to_value(&c.vae))?, quant),
            input("ltx-audio-vae", &audio_src, audio.clone(), quant),
            input("redimnet", redimnet, json(serde_json::to_value(&c.speaker))?, quant),
        ];
        convert(out, &inputs, opts, &mut |_| {}).map_err(|e| PipelineError::Model(ModelError::from(e)))
    })?;
    let tokenizer = out.join("tokenizer.json.gz");
    std::fs::write(&tokenizer, UMT5_TOKENIZER)
        .map_err(|e| PipelineError::Input(format!("{}: cannot write: {e}", tokenizer.display())))?;
    Ok(reports)
}

/// The configurations of the five models, as `nava convert` records them (`config(name)`).
fn configs_from(config: impl Fn(&str) -> Result<serde_json::Value, PipelineError>) -> Result<Configs, PipelineError> {
    let text = |name: &str| -> Result<String, PipelineError> {
        serde_json::to_string(&config(name)?).map_err(|e| PipelineError::Input(format!("{name} configuration: {e}")))
    };
    let audio = text("ltx-audio-vae")?;
    Ok(Configs {
        t5: T5Config::from_json(&text("umt5")?)?,
        dit: DitConfig::from_json(&text("nava-dit")?)?,
        vae: VaeConfig::from_json(&text("wan-vae")?)?,
        audio_vae: AudioVaeConfig::from_json(&audio)?,
        vocoder: VocoderConfig::from_json(&audio)?,
        speaker: serde_json::from_value(config("redimnet")?)
            .map_err(|e| PipelineError::Input(format!("redimnet configuration: {e}")))?,
    })
}

/// Runs one generation. Frames reach `obs` as [`Event::Frame`] while the video decodes.
pub async fn generate(
    g: &Gpu,
    models: &mut Models,
    req: &Request,
    obs: &mut dyn Observer,
) -> Result<Output, PipelineError> {
    let video = req.mode == Mode::AudioVideo;
    if video {
        req.size.check()?;
    }
    if !video && req.first_frame.is_some() {
        return Err(PipelineError::Input("a first frame needs video output (mode audio+video)".into()));
    }
    let format = models.format();
    // With a budget, the plan decides offload, batching and tiles from the real sizes, and refuses before any
    // loading what cannot fit.
    let planned = match models.vram_budget() {
        None => None,
        Some(_) => {
            if let super::plan::Advice::Impossible(e) | super::plan::Advice::UseFormat(e) = models.memory_advice(req)? {
                return Err(PipelineError::Input(e));
            }
            Some(models.memory_plan(req)?)
        }
    };

    // Prompts: positive and negative, one batch through the text encoder.
    let positive = models.tokenizer.encode(&req.prompt).map_err(ModelError::from)?;
    let default_negative = if video { VIDEO_NEGATIVE_PROMPT } else { AUDIO_NEGATIVE_PROMPT };
    let negative = models
        .tokenizer
        .encode_negative(req.negative_prompt.as_deref().unwrap_or(default_negative))
        .map_err(ModelError::from)?;
    for t in [&positive, &negative] {
        if let Some(w) = t.warning() {
            obs.event(Event::Warning(w))?;
        }
    }
    let speakers = speaker_plan(&positive, req.voices.len(), obs)?;
    if models.text.is_none() {
        let c = models.configs.t5.clone();
        let t = models
            .with_source(g, "umt5", || c.key_table(), obs, |s| TextEncoder::load(g, s, c.clone(), format))
            .await?;
        models.text = Some(t);
    }
    obs.event(Event::Stage { stage: Stage::Text, total: 2 })?;
    let text = models.text.as_ref().ok_or_else(|| PipelineError::Input("text encoder not loaded".into()))?;
    let mut ctx = text.encode(g, &[&positive.ids, &negative.ids])?;
    let negative_ctx = ctx.pop().ok_or_else(|| PipelineError::Input("no negative context".into()))?;
    let positive_ctx = ctx.pop().ok_or_else(|| PipelineError::Input("no positive context".into()))?;
    g.wait().map_err(ModelError::from)?;
    obs.event(Event::Progress { stage: Stage::Text, done: 2 })?;
    if !models.keep_loaded {
        models.text = None;
        g.trim();
    }

    // Voices → speaker embeddings, placed as the reference places them.
    let speakers = match speakers {
        None => None,
        Some(positions) => {
            if models.speaker.is_none() {
                let c = models.configs.speaker.clone();
                let s = match &models.source {
                    ModelSource::Tiny => SpeakerEncoder::seeded(g, c, TINY_SEED, format)?,
                    _ => {
                        models
                            .with_source(
                                g,
                                "redimnet",
                                || c.key_table(),
                                obs,
                                |s| SpeakerEncoder::load(g, s, c.clone(), format),
                            )
                            .await?
                    }
                };
                models.speaker = Some(s);
            }
            let enc = models.speaker.as_ref().ok_or_else(|| PipelineError::Input("speaker encoder".into()))?;
            obs.event(Event::Stage { stage: Stage::Voices, total: req.voices.len() as u64 })?;
            let mut embeddings = Vec::new();
            for (i, v) in req.voices.iter().enumerate() {
                embeddings.push(enc.embed_async(g, v).await?);
                obs.event(Event::Progress { stage: Stage::Voices, done: i as u64 + 1 })?;
            }
            if !models.keep_loaded {
                models.speaker = None;
            }
            // One voice serves every span (the reference broadcasts a single embedding); extra voices are unused.
            if embeddings.len() == 1 && positions.len() > 1 {
                embeddings = vec![embeddings[0].clone(); positions.len()];
            }
            embeddings.truncate(positions.len().max(1));
            Some(Speakers { embeddings, positions: Some(positions) })
        }
    };
    let has_speaker_embeddings = speakers.is_some();

    // Latent shapes and the first frame.
    let (h, w) = req.size.latent();
    let c = &models.configs.dit;
    let shape = LatentShape {
        video: video.then_some([c.vid_in_dim, req.length.latent_frames, h, w]),
        audio: [req.length.audio_tokens(), c.audio_in_dim],
    };
    let first_frame = match &req.first_frame {
        None => None,
        Some(img) => {
            load_vae(g, models, obs, format).await?;
            obs.event(Event::Stage { stage: Stage::Image, total: 1 })?;
            let vae = models.video_vae.as_ref().ok_or_else(|| PipelineError::Input("video VAE".into()))?;
            let pixels = crate::model::video_vae::image::resize_center_crop(
                &img.rgb,
                img.width,
                img.height,
                req.size.height,
                req.size.width,
            )?;
            let t = g
                .upload_f32("first frame", &pixels, &[3, req.size.height, req.size.width])
                .map_err(ModelError::from)?;
            let z = vae.encode_image(g, &t)?;
            let z = g.read_f32(&z).await.map_err(ModelError::from)?;
            obs.event(Event::Progress { stage: Stage::Image, done: 1 })?;
            Some(z)
        }
    };

    // Denoising.
    if models.dit.is_none() {
        let c = models.configs.dit.clone();
        let offload = match &planned {
            Some(p) => Offload::Resident(p.dit.resident_blocks),
            None => models.offload,
        };
        let opts = LoadOptions { format, offload };
        let d = models
            .with_source(
                g,
                "nava-dit",
                || c.key_table(DIT_PREFIX),
                obs,
                |s| Dit::load_with(g, s, DIT_PREFIX, c.clone(), &opts),
            )
            .await?;
        models.dit = Some(d);
    }
    let dit = models.dit.as_ref().ok_or_else(|| PipelineError::Input("denoiser".into()))?;
    let contexts =
        PassContexts::new(g, dit, &Conditioning { positive: &positive_ctx, negative: &negative_ctx, speakers })?;
    drop((positive_ctx, negative_ctx));
    let (v0, a0) = initial_latents(req.seed, shape.video, shape.audio);
    let steps = req.sample.num_steps as u64;
    obs.event(Event::Stage { stage: Stage::Denoise, total: steps })?;
    let mut sample = req.sample;
    if !video {
        // The reference's text→audio configuration (nava_seedtts.yaml) has no align pass.
        sample.guidance.align_3d_cfg = false;
    }
    let mut stop = None;
    let latents = denoise(
        g,
        dit,
        &contexts,
        &sample,
        shape,
        PerModality { video: v0, audio: a0 },
        first_frame.as_deref(),
        has_speaker_embeddings,
        // The plan's choice as a budget `batch_fits` reads (the binding limit still applies).
        planned.as_ref().map(|p| if p.dit.batched { u64::MAX } else { 0 }),
        &mut |done, _| match obs.event(Event::Progress { stage: Stage::Denoise, done: done as u64 }) {
            Ok(()) => true,
            Err(e) => {
                stop = Some(e);
                false
            }
        },
    )
    .await;
    let latents = match (latents, stop) {
        (_, Some(e)) => return Err(e),
        (r, None) => r?,
    };
    drop(contexts);
    if !models.keep_loaded {
        models.dit = None;
        g.trim();
    }

    // Video decode, frames streamed out.
    let mut frames = 0;
    if let Some(vshape) = shape.video {
        load_vae(g, models, obs, format).await?;
        let vae = models.video_vae.as_ref().ok_or_else(|| PipelineError::Input("video VAE".into()))?;
        obs.event(Event::Stage { stage: Stage::VideoDecode, total: req.length.pixel_frames() as u64 })?;
        let z = g.upload_f32("video latent", &latents.video, &vshape).map_err(ModelError::from)?;
        let mut failed = None;
        let tiling = decode_tiling(vae, vshape, models.vram_budget())?;
        vae.decode_async(g, &z, tiling.as_ref(), &mut |index, f| {
            let frame = Frame::from_planar(&f.data, f.height, f.width)
                .ok_or_else(|| ModelError::Input { what: "frame".into(), problem: "not [3, H, W]".into() })?;
            let r = obs
                .event(Event::Frame { index, frame: &frame })
                .and_then(|_| obs.event(Event::Progress { stage: Stage::VideoDecode, done: index as u64 + 1 }));
            frames += 1;
            r.map_err(|e| {
                let msg = e.to_string();
                failed = Some(e);
                ModelError::Input { what: "frame consumer".into(), problem: msg }
            })
        })
        .await
        .map_err(|e| failed.take().unwrap_or(PipelineError::Model(e)))?;
        if !models.keep_loaded {
            models.video_vae = None;
            g.trim();
        }
    }

    // Audio decode: latent tokens → log-mel → vocoder → 48 kHz → the output rate.
    if models.audio.is_none() {
        let (ac, vc) = (models.configs.audio_vae.clone(), models.configs.vocoder.clone());
        let table = || {
            let mut t = ac.decoder_key_table();
            t.extend(vc.key_table());
            t
        };
        let pair = models
            .with_source(g, "ltx-audio-vae", table, obs, |s| {
                Ok((AudioDecoder::load(g, s, ac.clone(), format)?, Vocoder::load(g, s, vc.clone(), format)?))
            })
            .await?;
        models.audio = Some(pair);
    }
    let (decoder, vocoder) = models.audio.as_ref().ok_or_else(|| PipelineError::Input("audio decoder".into()))?;
    obs.event(Event::Stage { stage: Stage::AudioDecode, total: 1 })?;
    let tokens = g.upload_f32("audio latent", &latents.audio, &shape.audio).map_err(ModelError::from)?;
    let mel = decoder.decode(g, &tokens, None)?;
    let wave = vocoder.decode_audio(g, &mel, req.audio_rate as usize)?;
    let [channels, n]: [usize; 2] = wave
        .shape()
        .try_into()
        .map_err(|_| PipelineError::Input(format!("vocoder output {:?} is not [channels, samples]", wave.shape())))?;
    let samples = g.read_f32(&wave).await.map_err(ModelError::from)?;
    let planes: Vec<Vec<f32>> = samples.chunks(n.max(1)).take(channels).map(<[f32]>::to_vec).collect();
    obs.event(Event::Progress { stage: Stage::AudioDecode, done: 1 })?;
    if !models.keep_loaded {
        models.audio = None;
        g.trim();
    }
    Ok(Output { frames, audio: Audio::from_planar(req.audio_rate, &planes) })
}

/// Spatial tiles for the video decode when a memory budget is set and the whole frame would not fit it.
fn decode_tiling(
    vae: &VideoVae,
    [_, f, h, w]: [usize; 4],
    budget: Option<u64>,
) -> Result<Option<crate::model::video_vae::Tiling>, PipelineError> {
    match budget {
        None => Ok(None),
        Some(b) => Ok(crate::model::video_vae::Tiling::for_budget(&vae.config, [h, w], f, b)?),
    }
}

async fn load_vae(
    g: &Gpu,
    models: &mut Models,
    obs: &mut dyn Observer,
    format: WeightFormat,
) -> Result<(), PipelineError> {
    if models.video_vae.is_none() {
        let c = models.configs.vae.clone();
        let v = models
            .with_source(g, "wan-vae", || c.key_table(), obs, |s| VideoVae::load(g, s, c.clone(), format))
            .await?;
        models.video_vae = Some(v);
    }
    Ok(())
}

/// Where the voices go (§5.2, `prepare_transformer_block_kwargs`): the caption's `<extra_id_2>` positions when voices
/// are given. With more voices than spans the extra ones are unused; one voice serves every span; several voices
/// but fewer than the spans is an error (the reference fails on the shape). Voices without any `<S>` span still
/// enable the timbre pass but change no context row, as in the reference.
fn speaker_plan(positive: &Tokens, voices: usize, obs: &mut dyn Observer) -> Result<Option<Vec<usize>>, PipelineError> {
    let spans = positive.speaker_positions.len();
    if voices == 0 {
        return Ok(None);
    }
    if spans == 0 {
        obs.event(Event::Warning(format!(
            "{voices} voice(s) given but the prompt has no <S>…<E> speech span: no voice is placed (write the \
             speech as <S>words<E>)"
        )))?;
    } else if voices > spans {
        obs.event(Event::Warning(format!(
            "{voices} voices for {spans} <S> span(s): the last {} voice(s) are not used",
            voices - spans
        )))?;
    } else if voices > 1 && voices < spans {
        return Err(PipelineError::Input(format!(
            "{voices} voices for {spans} <S> spans: give one voice per span, or a single voice for all of them"
        )));
    }
    Ok(Some(positive.speaker_positions.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KnownModel;

    /// The configurations `nava convert` writes into a manifest (the official files' own) are what the generator
    /// reads back, at the real sizes.
    #[test]
    fn converted_configs_parse_at_real_size() {
        let c = configs_from(|name| {
            KnownModel::parse(name)
                .map(KnownModel::config)
                .ok_or_else(|| PipelineError::Input(format!("unknown model {name}")))
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.t5, T5Config::umt5_xxl());
        assert_eq!(c.dit, DitConfig::nava_6b());
        assert_eq!(c.vae.z_dim, 48);
        assert_eq!(c.audio_vae.token_dim(), 128);
        assert_eq!(c.speaker.embed_dim, 192);
    }
}
