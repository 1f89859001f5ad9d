//! Memory planning: the peak GPU memory of every stage of a generation, computed from the model configurations,
//! the weight format, the output size and length, and the offload choice — without allocating anything.
//!
//! Each stage counts what the code allocates, through the buffer pool's size classes: its weights as loaded
//! (GEMM weights packed in the chosen format with their scales and padding, everything else f32), the tensors
//! that live through the stage (text contexts, latents, the residual stream), and the intermediates of one unit
//! of work (one transformer block: every tensor it allocates stays bound by its launches until the submit at the
//! block's end). Models load stage by stage and are dropped after it ([`super::generate::generate`]), so the
//! generation's peak is the largest stage, not the sum.
//!
//! With a budget, [`plan`] also makes the choices generation then follows: how many DiT blocks stay resident,
//! whether the guidance passes of a step run batched, and the VAE tile size. [`advise`] turns a plan that does
//! not fit into the formats and options that would.

use crate::gpu::size_class;
use crate::kernels::gemm::WeightFormat;
use crate::model::dit::{DitConfig, Offload, PREFIX as DIT_PREFIX};
use crate::model::text_encoder::T5Config;
use crate::model::video_vae::{decode_peak_bytes, Tiling};
use crate::weights::KeyTable;

use super::denoise::{batch_fits_rows, DEFAULT_BATCH_BYTES};
use super::generate::{Configs, Mode, Request};
use super::shape::{Length, Size};
use super::PipelineError;

const GIB: f64 = (1u64 << 30) as f64;

/// The pool's class of a request (no device limit: planning runs without a device).
fn class(bytes: u64) -> u64 {
    size_class(bytes, u64::MAX)
}

/// An f32 tensor of `n` values, as allocated.
fn f32s(n: usize) -> u64 {
    class(4 * n as u64)
}

/// What to plan for.
#[derive(Clone, Debug)]
pub struct PlanRequest {
    pub size: Size,
    pub length: Length,
    pub mode: Mode,
    /// Guidance passes per denoising step (2 to 4).
    pub passes: usize,
    /// Reference voices given: a third text context (the one with speaker tokens).
    pub voices: bool,
    /// Tokens of each of the two prompts; 512 (the model's text length) plans for the longest.
    pub prompt_tokens: usize,
    pub format: WeightFormat,
    pub offload: Offload,
    /// The device's largest storage binding, when known: batched passes need the FFN rows within one.
    pub max_binding: Option<u64>,
}

impl PlanRequest {
    /// The plan of `req` with the longest prompts.
    pub fn of(req: &Request, format: WeightFormat, offload: Offload) -> Self {
        let mut guidance = req.sample.guidance;
        if req.mode == Mode::Audio {
            guidance.align_3d_cfg = false; // as generate does for text→audio
        }
        Self {
            size: req.size,
            length: req.length,
            mode: req.mode,
            passes: guidance.passes(!req.voices.is_empty()).len(),
            voices: !req.voices.is_empty(),
            prompt_tokens: 512,
            format,
            offload,
            max_binding: None,
        }
    }

    fn budget(&self) -> Option<u64> {
        match self.offload {
            Offload::Budget(b) => Some(b),
            _ => None,
        }
    }
}

/// One stage's peak: weights on the GPU and the largest set of other tensors alive at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageMemory {
    pub name: &'static str,
    pub weights: u64,
    pub working: u64,
    /// What the stage chose or assumed, for the printed plan.
    pub note: String,
}

impl StageMemory {
    pub fn total(&self) -> u64 {
        self.weights + self.working
    }
}

/// The denoiser's choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DitChoice {
    pub resident_blocks: usize,
    pub total_blocks: usize,
    /// The guidance passes of a step run as one batched forward.
    pub batched: bool,
    /// Every DiT weight resident (bytes), whatever was chosen: the figure quantisation advice quotes.
    pub all_weights: u64,
}

/// The plan of one generation.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    pub stages: Vec<StageMemory>,
    pub dit: DitChoice,
    pub tiling: Option<Tiling>,
    pub format: WeightFormat,
}

impl MemoryPlan {
    /// The largest stage.
    pub fn peak(&self) -> &StageMemory {
        self.stages.iter().max_by_key(|s| s.total()).expect("a plan has stages")
    }

    pub fn stage(&self, name: &str) -> Option<&StageMemory> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The per-stage table, one line a stage, then the peak.
    pub fn table(&self) -> String {
        let mut s = String::new();
        for st in &self.stages {
            s.push_str(&format!(
                "{:<14} {:>7.2} GiB  (weights {:>6.2} GiB, working {:>6.2} GiB)  {}\n",
                st.name,
                st.total() as f64 / GIB,
                st.weights as f64 / GIB,
                st.working as f64 / GIB,
                st.note
            ));
        }
        let p = self.peak();
        s.push_str(&format!("peak: {:.2} GiB ({})", p.total() as f64 / GIB, p.name));
        s
    }
}

/// GPU bytes of the keys of `table` under `prefix`: 2-D `.weight`s for which `packed(key)` holds in `format`
/// (words and scales in their own buffers), everything else f32.
fn table_bytes(table: &KeyTable, prefix: &str, format: WeightFormat, packed: impl Fn(&str) -> bool) -> u64 {
    table
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, s)| {
            if s.len() == 2 && k.ends_with(".weight") && packed(k) {
                let (words, scales) = format.packed_bytes(s[0], s[1]);
                class(words) + if scales > 0 { class(scales) } else { 0 }
            } else {
                f32s(s.iter().product())
            }
        })
        .sum()
}

/// The DiT's weights: everything outside the blocks, one double block, one single block (bytes).
pub fn dit_weights(c: &DitConfig, format: WeightFormat) -> [u64; 3] {
    let table = c.key_table(DIT_PREFIX);
    // The blocks' linears, the text and time embeddings run as packed GEMMs; patch embeddings, the audio
    // embed's convolutions, the speaker MLP and the heads load as f32 (see `model::dit`).
    let packed = |k: &str| {
        ["double_blocks.", "single_blocks.", "text_embedding.", "time_embedding.", "time_projection."]
            .iter()
            .any(|p| k.starts_with(&format!("{DIT_PREFIX}{p}")))
    };
    let all = table_bytes(&table, DIT_PREFIX, format, packed);
    let double = table_bytes(&table, &format!("{DIT_PREFIX}double_blocks.0."), format, packed);
    let single = table_bytes(&table, &format!("{DIT_PREFIX}single_blocks.0."), format, packed);
    let blocks = double * c.num_double_layers as u64 + single * c.num_single_layers as u64;
    [all - blocks, double, single]
}

/// Token rows of one sequence: video tokens after patching, then audio tokens.
pub fn dit_rows(c: &DitConfig, size: Size, length: Length, mode: Mode) -> (usize, usize) {
    let video = match mode {
        Mode::AudioVideo => {
            let (h, w) = size.latent();
            let [_, ph, pw] = c.patch_size;
            length.latent_frames * (h / ph.max(1)) * (w / pw.max(1))
        }
        Mode::Audio => 0,
    };
    (video, length.audio_tokens())
}

/// Every tensor one block allocates for `copies` stacked sequences of `video + audio` rows (`double`: per
/// modality cross-attention), all bound until the block's submit.
fn dit_block_working(c: &DitConfig, video: usize, audio: usize, copies: usize, double: bool) -> u64 {
    let (d, heads) = (c.dim, c.num_heads);
    let l = copies * (video + audio);
    let rows = |n: usize| f32s(n * d);
    // Attention output and its softmax state (allocated whole when the keys are split over bindings).
    let attention = |n: usize| rows(n) + f32s(n * heads * 2);
    let segments = if video > 0 { 2 } else { 1 };
    let mods = segments * f32s(6 * d);
    // Block norm, q, k, v, self-attention; norm3; the FFN's hidden rows.
    let mut bytes = mods + 4 * rows(l) + attention(l) + f32s(l * c.ffn_dim);
    // Cross-attention queries and outputs, per sequence and (double blocks) per modality.
    let ranges: Vec<usize> =
        if double { [video, audio].into_iter().filter(|&n| n > 0).collect() } else { vec![video + audio] };
    for _ in 0..copies {
        for &n in &ranges {
            bytes += rows(n) + attention(n);
        }
    }
    bytes
}

/// The denoising stage: weights (resident blocks, plus two offloaded blocks in flight), the text contexts with
/// every block's projected keys and values, the step's latents and the residual stream, and one block's
/// intermediates.
fn dit_stage(c: &DitConfig, r: &PlanRequest, resident: usize, batched: bool) -> StageMemory {
    let [other, double, single] = dit_weights(c, r.format);
    let total = c.num_double_layers + c.num_single_layers;
    let resident = resident.min(total);
    let block = |i: usize| if i < c.num_double_layers { double } else { single };
    let mut weights = other + (0..resident).map(block).sum::<u64>();
    if resident < total {
        // The running block and the previous one, until its submit returns its buffers to the pool.
        weights += 2 * double.max(single);
    }
    let (video, audio) = dit_rows(c, r.size, r.length, r.mode);
    let copies = if batched { r.passes } else { 1 };
    let n = video + audio;
    let l = copies * n;
    // Contexts: positive, negative and (with voices) the one with speaker tokens; each the embedded rows plus
    // k and v per block (double blocks: per modality). The T5 outputs stay until the contexts are built.
    let t = c.text_len;
    let per_ctx = f32s(t * c.dim)
        + c.num_double_layers as u64 * 4 * f32s(t * c.dim)
        + c.num_single_layers as u64 * 2 * f32s(t * c.dim);
    let contexts = (2 + r.voices as u64) * per_ctx + 2 * f32s(r.prompt_tokens * c.text_dim);
    // The step's latents (host copies upload once per step), the residual stream, time embeddings and RoPE
    // table, and each pass's outputs (video velocity and its unpatchify copy, audio velocity).
    let (lh, lw) = r.size.latent();
    let latent_video = if video > 0 { f32s(c.vid_in_dim * r.length.latent_frames * lh * lw) } else { 0 };
    let latents = latent_video + f32s(audio * c.audio_in_dim);
    let stream = f32s(l * c.dim) + 4 * f32s(7 * c.dim) + f32s(n * c.head_dim());
    let outputs = copies as u64 * (2 * latent_video + f32s(audio * c.audio_out_dim));
    let blocks =
        dit_block_working(c, video, audio, copies, true).max(dit_block_working(c, video, audio, copies, false));
    // The embedding step (patches, the audio embed's hidden rows) and the heads are smaller than a block.
    let working = contexts + latents + stream + outputs + blocks;
    let note = format!(
        "{}/{} blocks resident, {} pass{} per forward, {} rows each",
        resident,
        total,
        copies,
        if copies == 1 { "" } else { "es" },
        n
    );
    StageMemory { name: "denoise", weights, working, note }
}

/// The text encoder over both prompts: weights as loaded (the token embedding stays in host memory) and one
/// block's intermediates, position biases included.
fn text_stage(c: &T5Config, r: &PlanRequest) -> StageMemory {
    let table = c.key_table();
    let weights = table_bytes(&table, "blocks.", r.format, |_| true) + f32s(c.dim);
    let n = r.prompt_tokens;
    let l = 2 * n;
    let (d, a, f) = (c.dim, c.dim_attn, c.dim_ffn);
    // Embedded tokens and the final norm; per block: norm1, q, k, v, the gathered attention and per-prompt parts
    // (with softmax states), each prompt's position bias [heads, n, n], norm2, the FFN gate and hidden rows.
    let persistent = 2 * f32s(l * d);
    let block = f32s(l * d)
        + 3 * f32s(l * a)
        + f32s(l * a)
        + 2 * (f32s(n * a) + f32s(n * c.num_heads * 2) + f32s(c.num_heads * n * n))
        + f32s(l * d)
        + 2 * f32s(l * f);
    StageMemory { name: "text encoder", weights, working: persistent + block, note: format!("2 prompts × {n} tokens") }
}

/// The video decode: `decode_peak_bytes` with the tiles chosen for the budget (its weights are f32 whatever the
/// format: the convolutions run in f32).
fn vae_stage(configs: &Configs, r: &PlanRequest) -> Result<(StageMemory, Option<Tiling>), PipelineError> {
    let (h, w) = r.size.latent();
    let f = r.length.latent_frames;
    let tiling = match r.budget() {
        Some(b) => Tiling::for_budget(&configs.vae, [h, w], f, b)?,
        None => None,
    };
    let m = decode_peak_bytes(&configs.vae, [h, w], f, tiling.as_ref());
    let note = match &tiling {
        Some(t) => format!("tiles of {}×{} latent cells", t.tile[0], t.tile[1]),
        None => "untiled".into(),
    };
    Ok((StageMemory { name: "video decode", weights: m.weights, working: m.total - m.weights, note }, tiling))
}

/// The audio decode (LTX audio VAE decoder + vocoder with BWE): every weight f32 (an upper bound: the wide
/// convolutions load smaller in a packed format), the mel and waveforms that live through the stage, and the
/// largest unit between two submits: a decoder resnet block (two 3×3 convolutions as im2col + GEMM, 9 columns a
/// value) or one step of a generator's AMP block (two anti-aliased activations at twice the rate and two
/// convolutions with `k` columns a value).
fn audio_stage(configs: &Configs, r: &PlanRequest) -> StageMemory {
    let mut table = configs.audio_vae.decoder_key_table();
    table.extend(configs.vocoder.key_table());
    let weights = table_bytes(&table, "", WeightFormat::F32, |_| false);
    let d = configs.audio_vae.dd();
    let mel_frames = 4 * r.length.audio_tokens();
    let mut unit = 0u64;
    for (l, &m) in d.ch_mult.iter().enumerate() {
        // Level l runs at 1/2^l of the mel frames and bins; its input, output and shortcut beside the block.
        let a = d.ch * m * (mel_frames >> l).max(1) * (d.mel_bins >> l).max(1);
        unit = unit.max(3 * f32s(a) + 2 * (f32s(9 * a) + 3 * f32s(a)));
    }
    // Generators: after upsampler i, channels(i) at their input rate × the rates so far (the main one reads the
    // mel at 100 frames/s, the BWE its own at 200).
    let mut waves = 0u64;
    for (g, frames) in [(configs.vocoder.main(), mel_frames), (&configs.vocoder.bwe().generator, 2 * mel_frames)] {
        let k = g.resblock_kernel_sizes.iter().copied().max().unwrap_or(1);
        let mut len = frames;
        for (i, &rate) in g.upsample_rates.iter().enumerate() {
            len *= rate;
            let a = g.channels(i) * len;
            // Held: the stage input, the upsampled signal, the running sum and the block's residual; per step:
            // 2 × (×2 upsample, activation, ×½ down) and 2 × (columns + output).
            unit = unit.max(4 * f32s(a) + 2 * (2 * f32s(2 * a) + f32s(a)) + 2 * (f32s(k * a) + f32s(a)));
        }
        waves += 2 * f32s(2 * len); // its stereo output and the clamped copy
    }
    // The decoder's input and mel output, the BWE's mel, the 48 kHz and resampled outputs.
    let samples = (r.length.seconds() * 48000.0).ceil() as usize;
    let held = f32s(r.length.audio_tokens() * d.z_channels * (d.mel_bins / 4).max(1)) * 2
        + 2 * f32s(2 * mel_frames * d.mel_bins)
        + waves
        + 2 * f32s(2 * samples);
    StageMemory { name: "audio decode", weights, working: held + unit, note: "weights as f32".into() }
}

/// The plan of one generation. With a budget ([`Offload::Budget`]) it chooses, in this order: the guidance passes
/// batched if everything fits with every block resident, else one pass at a time; then as many resident blocks
/// as fit; the VAE tiles that fit. Without one it mirrors generation's defaults.
pub fn plan(configs: &Configs, r: &PlanRequest) -> Result<MemoryPlan, PipelineError> {
    let c = &configs.dit;
    let total = c.num_double_layers + c.num_single_layers;
    let (video, audio) = dit_rows(c, r.size, r.length, r.mode);
    let rows = video + audio;
    let fits_binding = |copies: usize| r.max_binding.is_none_or(|m| (copies * rows * c.ffn_dim) as u64 * 4 <= m);
    let (resident, batched) = match r.offload {
        Offload::Budget(b) => {
            let batched = r.passes > 1 && fits_binding(r.passes) && dit_stage(c, r, total, true).total() <= b;
            let mut resident = total;
            while resident > 0 && dit_stage(c, r, resident, batched).total() > b {
                resident -= 1;
            }
            (resident, batched)
        }
        other => {
            let resident = match other {
                Offload::Always => 0,
                Offload::Resident(n) => n.min(total),
                _ => total,
            };
            let batched = batch_fits_rows(c, rows, r.passes, DEFAULT_BATCH_BYTES, r.max_binding);
            (resident, batched)
        }
    };
    let mut stages = vec![text_stage(&configs.t5, r), dit_stage(c, r, resident, batched)];
    let mut tiling = None;
    if r.mode == Mode::AudioVideo {
        let (s, t) = vae_stage(configs, r)?;
        stages.push(s);
        tiling = t;
    }
    stages.push(audio_stage(configs, r));
    let [other, double, single] = dit_weights(c, r.format);
    let all_weights = other + double * c.num_double_layers as u64 + single * c.num_single_layers as u64;
    Ok(MemoryPlan {
        stages,
        dit: DitChoice { resident_blocks: resident, total_blocks: total, batched, all_weights },
        tiling,
        format: r.format,
    })
}

/// What to tell a user whose budget a plan does not fit.
#[derive(Clone, Debug, PartialEq)]
pub enum Advice {
    /// It fits as asked.
    Fits,
    /// It fits, but only with some DiT blocks in host memory (slower: they upload every pass); `advice` names
    /// the formats that would keep every block resident, if any.
    Offloaded { resident: usize, total: usize, advice: String },
    /// Not in this format; these would (the advice line).
    UseFormat(String),
    /// Nothing fits (the error text).
    Impossible(String),
}

/// Formats in the order advice names them: the smallest loss first.
const FORMATS: [WeightFormat; 4] = [WeightFormat::F16, WeightFormat::Q8, WeightFormat::Fp8, WeightFormat::Q4];

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / GIB)
}

/// Checks `r` (whose offload is a budget) against its budget: fits, fits with offload, or the formats that would
/// fit, or why nothing does.
pub fn advise(configs: &Configs, r: &PlanRequest) -> Result<Advice, PipelineError> {
    let Some(budget) = r.budget() else { return Ok(Advice::Fits) };
    let what = match r.mode {
        Mode::AudioVideo => format!("{}×{} × {:.2} s", r.size.width, r.size.height, r.length.seconds()),
        Mode::Audio => format!("{:.2} s of audio", r.length.seconds()),
    };
    let budget_text = format!("--max-vram {:.1} GiB", budget as f64 / GIB);
    // A plan fails when a stage exceeds the budget or the VAE has no tile that fits it.
    let over = |p: &Result<MemoryPlan, PipelineError>| match p {
        Ok(p) => p.stages.iter().filter(|s| s.total() > budget).map(|s| s.name).collect::<Vec<_>>(),
        Err(_) => vec!["video decode"],
    };
    let with = |f: WeightFormat| plan(configs, &PlanRequest { format: f, ..r.clone() });
    let here = with(r.format);
    let fails = over(&here);
    // Formats whose plan fits, with how much of the denoiser they keep resident.
    let mut fit = Vec::new();
    let mut resident_fit = Vec::new();
    for f in FORMATS.into_iter().filter(|&f| f != r.format) {
        let p = with(f);
        if let (true, Ok(p)) = (over(&p).is_empty(), &p) {
            let offloaded = p.dit.total_blocks - p.dit.resident_blocks;
            let text = format!(
                "{} ({} of denoiser weights{})",
                f.name(),
                gib(p.dit.all_weights),
                if offloaded > 0 {
                    format!(", {offloaded} of {} blocks offloaded", p.dit.total_blocks)
                } else {
                    String::new()
                }
            );
            if offloaded == 0 {
                resident_fit.push(text.clone());
            }
            fit.push(text);
        }
    }
    if fails.is_empty() {
        let p = here?;
        if p.dit.resident_blocks == p.dit.total_blocks {
            return Ok(Advice::Fits);
        }
        let advice = format!(
            "the denoiser's {} of {} weights do not fit {budget_text} at {what} beside its activations: {} of {} \
             blocks stay in host memory and upload every pass (slower){}",
            gib(p.dit.all_weights),
            r.format.name(),
            p.dit.total_blocks - p.dit.resident_blocks,
            p.dit.total_blocks,
            if resident_fit.is_empty() {
                String::new()
            } else {
                format!("; --quant {} keeps every block resident", resident_fit.join(" or "))
            }
        );
        return Ok(Advice::Offloaded { resident: p.dit.resident_blocks, total: p.dit.total_blocks, advice });
    }
    let need = match &here {
        Ok(p) => format!("needs {} in {}", gib(p.peak().total()), r.format.name()),
        Err(e) => format!("does not fit ({e})"),
    };
    if fit.is_empty() {
        return Ok(Advice::Impossible(format!(
            "{what} does not fit {budget_text} in any weight format: the {} stage {need}, and the least any \
             choice needs is {} (q4, every denoiser block offloaded, the smallest VAE tiles); give more GPU memory, \
             a smaller --size or fewer --seconds",
            fails.join(" and "),
            gib(minimum(configs, r)),
        )));
    }
    Ok(Advice::UseFormat(format!(
        "the {} stage {need} at {what}, more than {budget_text}; use --quant {}",
        fails.join(" and "),
        fit.join(" or ")
    )))
}

/// The least any choice needs: q4 weights, every block offloaded, one pass at a time, the smallest VAE tiles.
fn minimum(configs: &Configs, r: &PlanRequest) -> u64 {
    let q4 = PlanRequest { format: WeightFormat::Q4, offload: Offload::Always, ..r.clone() };
    let mut need = text_stage(&configs.t5, &q4).total().max(dit_stage(&configs.dit, &q4, 0, false).total());
    if r.mode == Mode::AudioVideo {
        let (h, w) = r.size.latent();
        let t = Tiling::with_tile([h.min(2), w.min(2)]);
        need = need.max(decode_peak_bytes(&configs.vae, [h, w], r.length.latent_frames, Some(&t)).total);
    }
    need.max(audio_stage(configs, &q4).total())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::generate::Configs;

    fn request(format: WeightFormat, offload: Offload) -> PlanRequest {
        PlanRequest {
            size: Size { width: 1280, height: 704 },
            length: Length::from_seconds(6.0).unwrap_or_else(|e| panic!("{e}")),
            mode: Mode::AudioVideo,
            // cond, uncond, align: the default guidance without voices.
            passes: 3,
            voices: false,
            prompt_tokens: 512,
            format,
            offload,
            max_binding: None,
        }
    }

    /// 704×1280 × 6 s at real size: the budgets of the README, stage by stage as generation loads them.
    #[test]
    fn plan_real_size_fits_consumer_budgets() {
        let configs = Configs::real().unwrap_or_else(|e| panic!("{e}"));
        for (format, gib) in
            [(WeightFormat::Q4, 16u64), (WeightFormat::Fp8, 16), (WeightFormat::Q8, 16), (WeightFormat::F16, 24)]
        {
            let budget = gib << 30;
            let r = request(format, Offload::Budget(budget));
            let p = plan(&configs, &r).unwrap_or_else(|e| panic!("{e}"));
            println!("--- {} in {gib} GiB\n{}", format.name(), p.table());
            assert!(p.peak().total() <= budget, "{} does not fit {gib} GiB:\n{}", format.name(), p.table());
            assert_eq!(p.dit.resident_blocks, p.dit.total_blocks, "{}: blocks offloaded", format.name());
            assert_eq!(advise(&configs, &r).unwrap_or_else(|e| panic!("{e}")), Advice::Fits);
        }
        // Without a budget: what each format needs with nothing tiled or offloaded.
        for format in FORMATS {
            let p = plan(&configs, &request(format, Offload::Never)).unwrap_or_else(|e| panic!("{e}"));
            println!("--- {} without a budget\n{}", format.name(), p.table());
        }
    }

    #[test]
    fn plan_packed_sizes_follow_the_formats() {
        let c = DitConfig::nava_6b();
        let [_, f16, _] = dit_weights(&c, WeightFormat::F16);
        let [_, q8, _] = dit_weights(&c, WeightFormat::Q8);
        let [_, q4, _] = dit_weights(&c, WeightFormat::Q4);
        let [_, fp8, _] = dit_weights(&c, WeightFormat::Fp8);
        // Bits per weight 16, 8.5, 4.5, 8 (+ per-column scales): the block's ratios, within the f32 vectors.
        assert!(q4 < fp8 && fp8 < q8 && q8 < f16, "{q4} {fp8} {q8} {f16}");
        let ratio = q8 as f64 / f16 as f64;
        assert!((ratio - 8.5 / 16.0).abs() < 0.02, "q8/f16 = {ratio}");
    }

    #[test]
    fn plan_advice_names_formats_that_fit_and_refuses_the_impossible() {
        let configs = Configs::real().unwrap_or_else(|e| panic!("{e}"));
        match advise(&configs, &request(WeightFormat::F16, Offload::Budget(16 << 30))) {
            Ok(Advice::UseFormat(m)) | Ok(Advice::Impossible(m)) => {
                println!("{m}");
                assert!(m.contains("--quant") || m.contains("does not fit"), "{m}");
            }
            Ok(Advice::Offloaded { advice, .. }) => {
                println!("{advice}");
                assert!(advice.contains("--quant"), "{advice}");
            }
            other => panic!("f16 fits 16 GiB? {other:?}"),
        }
        match advise(&configs, &request(WeightFormat::F16, Offload::Budget(1 << 30))) {
            Ok(Advice::Impossible(m)) => assert!(m.contains("does not fit"), "{m}"),
            other => panic!("1 GiB should be impossible: {other:?}"),
        }
    }

    /// The plan against the pool's measured peak: the tiny denoiser, one step of the default guidance (three
    /// passes, batched as generation would) at the tiny model's default size, from an empty device.
    #[test]
    fn plan_covers_measured_denoise_peak() {
        use crate::gpu::{Gpu, GpuOptions};
        use crate::model::dit::Dit;
        use crate::pipeline::denoise::{denoise, Conditioning, LatentShape, PassContexts};
        use crate::pipeline::generate::TINY_DEFAULTS;
        use crate::pipeline::noise::initial_latents;
        use crate::pipeline::{PerModality, SampleConfig};
        use crate::weights::SeededSource;

        let g = Gpu::new_blocking(&GpuOptions::from_env()).unwrap_or_else(|e| panic!("no test adapter: {e}"));
        let configs = Configs::tiny();
        let c = configs.dit.clone();
        let (size, length) = (TINY_DEFAULTS.size, TINY_DEFAULTS.length);
        let r = PlanRequest {
            size,
            length,
            passes: 3,
            format: WeightFormat::F32,
            offload: Offload::Never,
            max_binding: Some(g.max_binding()),
            ..request(WeightFormat::F32, Offload::Never)
        };
        let planned = plan(&configs, &r).unwrap_or_else(|e| panic!("{e}"));
        let stage = planned.stage("denoise").expect("a denoise stage");

        let src = SeededSource::new("tiny dit", &c.key_table(DIT_PREFIX), 3);
        let dit = Dit::load(&g, &src, DIT_PREFIX, c.clone(), WeightFormat::F32).unwrap_or_else(|e| panic!("{e}"));
        let text = vec![0.01f32; r.prompt_tokens * c.text_dim];
        let up = |what| g.upload_f32(what, &text, &[r.prompt_tokens, c.text_dim]).unwrap_or_else(|e| panic!("{e}"));
        let (positive, negative) = (up("positive"), up("negative"));
        let contexts =
            PassContexts::new(&g, &dit, &Conditioning { positive: &positive, negative: &negative, speakers: None })
                .unwrap_or_else(|e| panic!("{e}"));
        let (h, w) = size.latent();
        let shape = LatentShape {
            video: Some([c.vid_in_dim, length.latent_frames, h, w]),
            audio: [length.audio_tokens(), c.audio_in_dim],
        };
        let (v0, a0) = initial_latents(1, shape.video, shape.audio);
        let sample = SampleConfig { num_steps: 1, ..SampleConfig::default() };
        crate::gpu::block_on(denoise(
            &g,
            &dit,
            &contexts,
            &sample,
            shape,
            PerModality { video: v0, audio: a0 },
            None,
            false,
            None,
            &mut |_, _| true,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        g.wait().unwrap_or_else(|e| panic!("{e}"));
        let measured = g.memory().peak_bytes;
        println!("denoise: planned {} bytes ({}), measured peak {measured}", stage.total(), stage.note);
        assert!(stage.total() >= measured, "planned {} < measured {measured}", stage.total());
        assert!((stage.total() as f64) < 1.5 * measured as f64, "planned {} ≫ measured {measured}", stage.total());
    }
}
