//! LTX-2.3 vocoder with bandwidth extension — reference `VocoderWithBWE`, `Vocoder`, `AMPBlock1`,
//! `Activation1d`, `MelSTFT` (Lightricks/LTX-2 `packages/ltx-core/.../audio_vae/vocoder.py`, vendored by NAVA) and
//! the 48 → 16 kHz step of NAVA's `LtxAudioVAE.wrapped_decode` / `_audio_post_process` (NAVA.md §7.3, §10.4).
//!
//! mel `[.., 2, T, 64]` → main BigVGAN-v2 generator (16 kHz stereo, clamp ±1) → causal conv-STFT log-mel at
//! 200 frames/s → BWE generator (residual at 48 kHz) + Hann-sinc ×3 skip of the main output → clamp ±1 = 48 kHz.
//! [`output_audio`] then resamples as `torchaudio.functional.resample` (sinc_interp_hann, width 6, rolloff 0.99)
//! and clamps to ±0.99; [`peak_normalize`] is the separate `_toWav` of NAVA's `inference_nava.py` (peak → 0.95)
//! applied just before muxing.
//!
//! Keys are those of `ltx-2.3-22b-dev_audio_vae.safetensors` under `vocoder.` (`vocoder.vocoder.*`,
//! `vocoder.bwe_generator.*`, `vocoder.mel_stft.*`). The anti-aliasing filters, STFT basis and mel basis are read
//! from the file (the reference loads them from its bf16 checkpoint); only the ×3 skip filter, which the
//! reference computes at construction, is computed here. Wide convolutions run as im2col + GEMM with their
//! weights in the loader's format (f32 reproduces the reference); everything else is f32.

use serde::{Deserialize, Serialize};

use crate::gpu::{Gpu, GpuTensor};
use crate::kernels::audio::{
    conv1d_gemm, fir_downsample, fir_upsample, log_mel, stft_magnitude, FirDown, FirUp, GemmConv1d, Pad,
};
use crate::kernels::conv::{conv1d, conv_transpose1d, permute, Conv1dArgs, ConvTranspose1dArgs};
use crate::kernels::elementwise::{binary, binary_inplace, copy_into, unary, unary_inplace, Binary, Unary};
use crate::kernels::gemm::{Weight, WeightFormat};
use crate::weights::{compare_keys, KeyTable, Scope, TensorSource, WeightError};

use super::dit::Trace;
use super::ModelError;

/// Key prefix of the vocoder in the official file.
pub const PREFIX: &str = "vocoder.";
/// Input channels of every generator: 2 stereo channels × 64 mel bins.
pub const MEL_CHANNELS: usize = 128;
/// `_audio_post_process` limit after resampling.
pub const OUTPUT_LIMIT: f32 = 0.99;
/// `inference_nava.py` `_toWav`: the peak is scaled to this before muxing.
pub const MUX_PEAK: f32 = 0.95;

fn yes() -> bool {
    true
}

/// One BigVGAN-v2 generator (`Vocoder(...)` arguments, as in the checkpoint config).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct GeneratorConfig {
    pub upsample_initial_channel: usize,
    pub resblock: String,
    pub upsample_rates: Vec<usize>,
    pub resblock_kernel_sizes: Vec<usize>,
    pub upsample_kernel_sizes: Vec<usize>,
    pub resblock_dilation_sizes: Vec<Vec<usize>>,
    pub stereo: bool,
    pub use_tanh_at_final: bool,
    pub activation: String,
    pub use_bias_at_final: bool,
    /// Only the BWE config names it (false); the main generator applies its final clamp/tanh.
    #[serde(default = "yes")]
    pub apply_final_activation: bool,
}

/// The `bwe` part: a generator plus its input front end and rates.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct BweConfig {
    #[serde(flatten)]
    pub generator: GeneratorConfig,
    pub input_sampling_rate: usize,
    pub output_sampling_rate: usize,
    pub hop_length: usize,
    pub n_fft: usize,
    pub win_size: usize,
    pub num_mels: usize,
}

/// The checkpoint config's `vocoder` object.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct VocoderParts {
    pub vocoder: GeneratorConfig,
    pub bwe: BweConfig,
}

/// `{"vocoder": {"vocoder": {..}, "bwe": {..}}}` as in the checkpoint metadata and the oracle's `meta.json`
/// (other top-level keys, such as `audio_vae`, are ignored).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct VocoderConfig {
    pub vocoder: VocoderParts,
}

impl GeneratorConfig {
    fn amp(c0: usize, rates: &[usize], kernels: &[usize], final_act: bool) -> Self {
        Self {
            upsample_initial_channel: c0,
            resblock: "AMP1".into(),
            upsample_rates: rates.to_vec(),
            resblock_kernel_sizes: vec![3, 7, 11],
            upsample_kernel_sizes: kernels.to_vec(),
            resblock_dilation_sizes: vec![vec![1, 3, 5]; 3],
            stereo: true,
            use_tanh_at_final: false,
            activation: "snakebeta".into(),
            use_bias_at_final: false,
            apply_final_activation: final_act,
        }
    }

    /// Channels after upsampler `i`.
    pub fn channels(&self, i: usize) -> usize {
        self.upsample_initial_channel >> (i + 1)
    }

    pub fn final_channels(&self) -> usize {
        self.channels(self.upsample_rates.len() - 1)
    }

    /// Output samples per input frame.
    pub fn hop(&self) -> usize {
        self.upsample_rates.iter().product()
    }

    fn validate(&self, what: &str) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(format!("{what}: {m}")));
        if self.resblock != "AMP1" || self.activation != "snakebeta" || !self.stereo {
            return bad(format!(
                "resblock {:?}, activation {:?}, stereo {}: only the LTX-2.3 BigVGAN-v2 form (AMP1, snakebeta, \
                 stereo) is implemented",
                self.resblock, self.activation, self.stereo
            ));
        }
        let n = self.upsample_rates.len();
        if n == 0 || self.upsample_kernel_sizes.len() != n {
            return bad("upsample_rates and upsample_kernel_sizes must be non-empty and of equal length".into());
        }
        for (&s, &k) in self.upsample_rates.iter().zip(&self.upsample_kernel_sizes) {
            if s == 0 || k < s {
                return bad(format!("upsampler stride {s} with kernel {k}: need 1 <= stride <= kernel"));
            }
        }
        if self.resblock_kernel_sizes.is_empty()
            || self.resblock_dilation_sizes.len() != self.resblock_kernel_sizes.len()
            || self.resblock_dilation_sizes.iter().any(|d| d.len() != 3 || d.contains(&0))
            || self.resblock_kernel_sizes.iter().any(|&k| k % 2 == 0)
        {
            return bad("each odd resblock kernel size needs three non-zero dilations".into());
        }
        if self.final_channels() == 0 {
            return bad(format!(
                "upsample_initial_channel {} halves to 0 over {n} upsamplers",
                self.upsample_initial_channel
            ));
        }
        Ok(())
    }

    /// Keys of one generator under `p` (e.g. `vocoder.vocoder.`), in module order.
    fn keys(&self, p: &str, t: &mut KeyTable) {
        let mut add = |k: String, s: &[usize]| t.push((format!("{p}{k}"), s.to_vec()));
        let c0 = self.upsample_initial_channel;
        add("conv_pre.weight".into(), &[c0, MEL_CHANNELS, 7]);
        add("conv_pre.bias".into(), &[c0]);
        for (i, &k) in self.upsample_kernel_sizes.iter().enumerate() {
            add(format!("ups.{i}.weight"), &[c0 >> i, c0 >> (i + 1), k]);
            add(format!("ups.{i}.bias"), &[c0 >> (i + 1)]);
        }
        let act = |add: &mut dyn FnMut(String, &[usize]), name: String, ch: usize| {
            add(format!("{name}.act.alpha"), &[ch]);
            add(format!("{name}.act.beta"), &[ch]);
            add(format!("{name}.upsample.filter"), &[1, 1, 12]);
            add(format!("{name}.downsample.lowpass.filter"), &[1, 1, 12]);
        };
        let mut j = 0;
        for i in 0..self.upsample_rates.len() {
            let ch = self.channels(i);
            for &k in &self.resblock_kernel_sizes {
                for convs in ["convs1", "convs2"] {
                    for m in 0..3 {
                        add(format!("resblocks.{j}.{convs}.{m}.weight"), &[ch, ch, k]);
                        add(format!("resblocks.{j}.{convs}.{m}.bias"), &[ch]);
                    }
                }
                for acts in ["acts1", "acts2"] {
                    for m in 0..3 {
                        act(&mut add, format!("resblocks.{j}.{acts}.{m}"), ch);
                    }
                }
                j += 1;
            }
        }
        let f = self.final_channels();
        act(&mut add, "act_post".into(), f);
        add("conv_post.weight".into(), &[2, f, 7]);
        if self.use_bias_at_final {
            add("conv_post.bias".into(), &[2]);
        }
    }
}

impl VocoderConfig {
    /// The LTX-2.3 checkpoint: main 1536 → 24 channels, ×160 to 16 kHz; BWE 512 → 16 channels, ×240 to 48 kHz.
    pub fn ltx23() -> Self {
        Self::with_widths(1536, 512)
    }

    /// The seeded demo model's vocoder: the same design at 64 (main) and 32 (BWE) initial channels.
    pub fn tiny() -> Self {
        Self::with_widths(64, 32)
    }

    fn with_widths(main: usize, bwe: usize) -> Self {
        Self {
            vocoder: VocoderParts {
                vocoder: GeneratorConfig::amp(main, &[5, 2, 2, 2, 2, 2], &[11, 4, 4, 4, 4, 4], true),
                bwe: BweConfig {
                    generator: GeneratorConfig::amp(bwe, &[6, 5, 2, 2, 2], &[12, 11, 4, 4, 4], false),
                    input_sampling_rate: 16000,
                    output_sampling_rate: 48000,
                    hop_length: 80,
                    n_fft: 512,
                    win_size: 512,
                    num_mels: 64,
                },
            },
        }
    }

    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let c: Self =
            serde_json::from_str(text).map_err(|e| ModelError::Config(format!("vocoder config JSON: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    pub fn main(&self) -> &GeneratorConfig {
        &self.vocoder.vocoder
    }

    pub fn bwe(&self) -> &BweConfig {
        &self.vocoder.bwe
    }

    /// Sample rate of the main generator (= the BWE input rate).
    pub fn low_rate(&self) -> usize {
        self.bwe().input_sampling_rate
    }

    /// Sample rate of [`Vocoder::forward`]'s output.
    pub fn output_rate(&self) -> usize {
        self.bwe().output_sampling_rate
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        self.main().validate("vocoder.vocoder")?;
        let b = self.bwe();
        b.generator.validate("vocoder.bwe")?;
        let bad = |m: String| Err(ModelError::Config(format!("vocoder.bwe: {m}")));
        if b.input_sampling_rate == 0 || !b.output_sampling_rate.is_multiple_of(b.input_sampling_rate) {
            return bad(format!(
                "output rate {} must be a multiple of the input rate {}",
                b.output_sampling_rate, b.input_sampling_rate
            ));
        }
        if b.num_mels * 2 != MEL_CHANNELS {
            return bad(format!("num_mels {} must be 64 (the generator reads 2 × 64 channels)", b.num_mels));
        }
        if b.hop_length == 0 || b.n_fft < b.hop_length || !b.n_fft.is_multiple_of(2) {
            return bad(format!("n_fft {} and hop {}: need an even n_fft >= hop > 0", b.n_fft, b.hop_length));
        }
        let ratio = b.output_sampling_rate / b.input_sampling_rate;
        if b.generator.hop() != b.hop_length * ratio {
            return bad(format!(
                "the BWE generator upsamples ×{} but its frames are {} output samples apart",
                b.generator.hop(),
                b.hop_length * ratio
            ));
        }
        Ok(())
    }

    /// Every key of the vocoder part of the official file, in module order.
    pub fn key_table(&self) -> KeyTable {
        let mut t = KeyTable::new();
        self.main().keys(&format!("{PREFIX}vocoder."), &mut t);
        self.bwe().generator.keys(&format!("{PREFIX}bwe_generator."), &mut t);
        let b = self.bwe();
        let bins = b.n_fft / 2 + 1;
        t.push((format!("{PREFIX}mel_stft.mel_basis"), vec![b.num_mels, bins]));
        t.push((format!("{PREFIX}mel_stft.stft_fn.forward_basis"), vec![2 * bins, 1, b.n_fft]));
        t.push((format!("{PREFIX}mel_stft.stft_fn.inverse_basis"), vec![2 * bins, 1, b.n_fft]));
        t
    }
}

/// Checks the keys of `table` in `src`; keys of `src` under `prefix` that the table does not name are reported
/// too (other parts of a shared file are not).
pub(crate) fn check_part(
    src: &dyn TensorSource,
    table: &KeyTable,
    prefixes: &[&str],
    hint: &str,
) -> Result<(), WeightError> {
    let mut r = compare_keys(src, table);
    r.unexpected.retain(|k| prefixes.iter().any(|p| k.starts_with(p)));
    if r.is_clean() {
        return Ok(());
    }
    Err(WeightError::Mismatch {
        file: src.file().to_path_buf(),
        missing: r.missing,
        unexpected: r.unexpected,
        misshaped: r.misshaped,
        hint: hint.to_string(),
    })
}

/// `Activation1d(SnakeBeta)`: ×2 Kaiser-sinc upsampling (replicate padded), SnakeBeta, ×2 lowpass decimation.
struct Activation1d {
    alpha: GpuTensor,
    beta: GpuTensor,
    up: GpuTensor,
    down: GpuTensor,
    taps_up: usize,
    taps_down: usize,
}

impl Activation1d {
    fn load(g: &Gpu, w: Scope, ch: usize) -> Result<Self, ModelError> {
        Ok(Self {
            alpha: w.tensor(g, "act.alpha", &[ch])?,
            beta: w.tensor(g, "act.beta", &[ch])?,
            up: w.tensor(g, "upsample.filter", &[1, 1, 12])?,
            down: w.tensor(g, "downsample.lowpass.filter", &[1, 1, 12])?,
            taps_up: 12,
            taps_down: 12,
        })
    }

    /// `UpSample1d(2, 12)`: pad = k/2 − 1 per side, crop (pad·2 + (k−2)/2, pad·2 + (k−1)/2), gain 2.
    fn up_args(&self, snake: bool) -> FirUp<'_> {
        let (k, r) = (self.taps_up, 2);
        let pad = k / r - 1;
        FirUp {
            filter: &self.up,
            ratio: r,
            pad,
            padding: Pad::Replicate,
            pad_left: pad * r + (k - r) / 2,
            pad_right: pad * r + (k - r).div_ceil(2),
            gain: r as f32,
            snake: snake.then_some((&self.alpha, &self.beta)),
        }
    }

    fn forward(
        &self,
        g: &Gpu,
        x: &GpuTensor,
        trace: &mut Option<(&mut Trace, String)>,
    ) -> Result<GpuTensor, ModelError> {
        if let Some((f, name)) = trace.as_mut() {
            f(&format!("{name}.upsample"), &fir_upsample(g, x, &self.up_args(false))?);
        }
        let u = fir_upsample(g, x, &self.up_args(true))?;
        if let Some((f, name)) = trace.as_mut() {
            f(&format!("{name}.snakebeta"), &u);
        }
        // `LowPassFilter1d(0.25, 0.3, stride 2, 12 taps)`: replicate pad (k/2 − 1, k/2) for even k.
        let k = self.taps_down;
        let args = FirDown {
            filter: &self.down,
            stride: 2,
            pad_left: k / 2 - usize::from(k.is_multiple_of(2)),
            pad_right: k / 2,
            padding: Pad::Replicate,
            max_len: None,
        };
        let y = fir_downsample(g, &u, &args)?;
        if let Some((f, name)) = trace.as_mut() {
            f(name, &y);
        }
        Ok(y)
    }
}

/// A `Conv1d` (stride 1, "same" padding `d·(k − 1)/2`, optional bias). Wide ones run as im2col + GEMM with the
/// weight in the requested format; narrow ones (few output channels or inputs) use the direct convolution.
struct Conv {
    kernel: ConvWeight,
    bias: Option<GpuTensor>,
    k: usize,
    pad: usize,
    dilation: usize,
}

enum ConvWeight {
    Direct(GpuTensor),
    Gemm(Weight),
}

/// Output channels and `Cin·k` from which a convolution runs as a GEMM.
const GEMM_MIN_OUT: usize = 32;
const GEMM_MIN_K: usize = 64;

impl Conv {
    #[allow(clippy::too_many_arguments)]
    fn load(
        g: &Gpu,
        w: Scope,
        name: &str,
        cout: usize,
        cin: usize,
        k: usize,
        dilation: usize,
        bias: bool,
        format: WeightFormat,
    ) -> Result<Self, ModelError> {
        let key = format!("{name}.weight");
        let kernel = if cout >= GEMM_MIN_OUT && cin * k >= GEMM_MIN_K {
            ConvWeight::Gemm(w.weight(g, &key, &[cout, cin, k], format)?)
        } else {
            ConvWeight::Direct(w.tensor(g, &key, &[cout, cin, k])?)
        };
        Ok(Self {
            kernel,
            bias: if bias { Some(w.tensor(g, &format!("{name}.bias"), &[cout])?) } else { None },
            k,
            // `get_padding(k, d)` = d·(k − 1)/2: "same" length for odd k.
            pad: dilation * (k - 1) / 2,
            dilation,
        })
    }

    /// `x` `[C, T]` or `[B, C, T]`.
    fn forward(&self, g: &Gpu, x: &GpuTensor) -> Result<GpuTensor, ModelError> {
        let w = match &self.kernel {
            ConvWeight::Direct(w) => {
                let args = Conv1dArgs {
                    bias: self.bias.as_ref(),
                    padding: [self.pad, self.pad],
                    dilation: self.dilation,
                    ..Default::default()
                };
                return Ok(conv1d(g, x, w, &args)?);
            }
            ConvWeight::Gemm(w) => w,
        };
        let args = GemmConv1d {
            weight: w,
            k: self.k,
            bias: self.bias.as_ref(),
            padding: [self.pad, self.pad],
            dilation: self.dilation,
        };
        let s = x.shape();
        let (c, l) = (s[s.len() - 2], s[s.len() - 1]);
        let lead: usize = s[..s.len() - 2].iter().product();
        let flat = x.reshape(&[lead * c, l]).expect("same size");
        let mut out: Option<GpuTensor> = None;
        for b in 0..lead {
            let item = flat.rows(b * c, c).ok_or_else(|| ModelError::Config("conv input view".into()))?;
            let y = conv1d_gemm(g, &item, &args)?;
            if lead == 1 {
                let mut shape = s.to_vec();
                shape[s.len() - 2..].copy_from_slice(y.shape());
                return Ok(y.reshape(&shape).expect("same size"));
            }
            let (cout, lo) = (y.shape()[0], y.shape()[1]);
            let dst = match &out {
                Some(o) => o,
                None => out.insert(g.alloc("conv output", &[lead, cout, lo], crate::gpu::DType::F32)?),
            };
            let slot = dst.rows(b, 1).ok_or_else(|| ModelError::Config("conv output view".into()))?;
            copy_into(g, &y, &slot)?;
        }
        let out = out.expect("lead > 1");
        let mut shape = s.to_vec();
        let r = shape.len();
        shape[r - 2] = out.shape()[1];
        shape[r - 1] = out.shape()[2];
        Ok(out.reshape(&shape).expect("same size"))
    }
}

/// `AMPBlock1`: three `x += conv2(act2(conv1_d(act1(x))))` steps with dilations d and 1.
struct AmpBlock {
    convs1: Vec<Conv>,
    convs2: Vec<Conv>,
    acts1: Vec<Activation1d>,
    acts2: Vec<Activation1d>,
}

impl AmpBlock {
    fn load(
        g: &Gpu,
        w: Scope,
        ch: usize,
        k: usize,
        dilations: &[usize],
        format: WeightFormat,
    ) -> Result<Self, ModelError> {
        let list = |name: &str| w.scope(name);
        let (c1, c2, a1, a2) = (list("convs1"), list("convs2"), list("acts1"), list("acts2"));
        let mut b = Self { convs1: vec![], convs2: vec![], acts1: vec![], acts2: vec![] };
        for (m, &d) in dilations.iter().enumerate() {
            b.convs1.push(Conv::load(g, c1.get(), &m.to_string(), ch, ch, k, d, true, format)?);
            b.convs2.push(Conv::load(g, c2.get(), &m.to_string(), ch, ch, k, 1, true, format)?);
            b.acts1.push(Activation1d::load(g, a1.get().at(m).get(), ch)?);
            b.acts2.push(Activation1d::load(g, a2.get().at(m).get(), ch)?);
        }
        Ok(b)
    }

    fn forward(
        &self,
        g: &Gpu,
        x: &GpuTensor,
        mut trace: Option<(&mut Trace, String)>,
    ) -> Result<GpuTensor, ModelError> {
        let mut cur: Option<GpuTensor> = None;
        for m in 0..self.convs1.len() {
            let src = cur.as_ref().unwrap_or(x);
            let mut t = match (m, trace.as_mut()) {
                (0, Some((f, name))) => Some((&mut **f, format!("{name}.acts1_0"))),
                _ => None,
            };
            let xt = self.acts1[m].forward(g, src, &mut t)?;
            let xt = self.convs1[m].forward(g, &xt)?;
            let xt = self.acts2[m].forward(g, &xt, &mut None)?;
            let xt = self.convs2[m].forward(g, &xt)?;
            match &cur {
                Some(c) => binary_inplace(g, c, &xt, Binary::Add)?,
                None => cur = Some(binary(g, x, &xt, Binary::Add)?),
            }
            // Launches hold their buffers (im2col columns, the ×2 activations) until the submit: one per step
            // keeps the peak at one step's intermediates.
            g.flush()?;
        }
        let y = cur.expect("three steps");
        if let Some((f, name)) = trace.as_mut() {
            f(name, &y);
        }
        Ok(y)
    }
}

/// One BigVGAN-v2 generator (`Vocoder` with `resblock="AMP1"`).
struct Generator {
    config: GeneratorConfig,
    conv_pre: Conv,
    ups: Vec<(GpuTensor, GpuTensor)>,
    resblocks: Vec<AmpBlock>,
    act_post: Activation1d,
    conv_post: Conv,
}

impl Generator {
    fn load(g: &Gpu, w: Scope, c: &GeneratorConfig, format: WeightFormat) -> Result<Self, ModelError> {
        let c0 = c.upsample_initial_channel;
        let conv_pre = Conv::load(g, w, "conv_pre", c0, MEL_CHANNELS, 7, 1, true, format)?;
        let ups_scope = w.scope("ups");
        let mut ups = Vec::new();
        for (i, &k) in c.upsample_kernel_sizes.iter().enumerate() {
            let u = ups_scope.get().at(i);
            let u = u.get();
            ups.push((u.tensor(g, "weight", &[c0 >> i, c0 >> (i + 1), k])?, u.tensor(g, "bias", &[c0 >> (i + 1)])?));
        }
        let rb = w.scope("resblocks");
        let mut resblocks = Vec::new();
        for i in 0..c.upsample_rates.len() {
            for (k, d) in c.resblock_kernel_sizes.iter().zip(&c.resblock_dilation_sizes) {
                let j = resblocks.len();
                resblocks.push(AmpBlock::load(g, rb.get().at(j).get(), c.channels(i), *k, d, format)?);
            }
        }
        let f = c.final_channels();
        Ok(Self {
            config: c.clone(),
            conv_pre,
            ups,
            resblocks,
            act_post: Activation1d::load(g, w.scope("act_post").get(), f)?,
            conv_post: Conv::load(g, w, "conv_post", 2, f, 7, 1, c.use_bias_at_final, format)?,
        })
    }

    /// `[B, 128, T]` → `[B, 2, T · hop]`; traces `{p}.conv_pre`, `{p}.ups{i}`, `{p}.stage{i}`, the first AMP
    /// block's `{p}.resblock0(.acts1_0(.upsample|.snakebeta))`, `{p}.act_post`, `{p}.conv_post` (before the clamp).
    fn forward(&self, g: &Gpu, x: &GpuTensor, p: &str, mut trace: Option<&mut Trace>) -> Result<GpuTensor, ModelError> {
        let c = &self.config;
        let mut x = self.conv_pre.forward(g, x)?;
        if let Some(f) = trace.as_mut() {
            f(&format!("{p}.conv_pre"), &x);
        }
        let nk = c.resblock_kernel_sizes.len();
        for (i, (w, b)) in self.ups.iter().enumerate() {
            let (s, k) = (c.upsample_rates[i], c.upsample_kernel_sizes[i]);
            let args = ConvTranspose1dArgs { bias: Some(b), stride: s, padding: (k - s) / 2, groups: 1 };
            let up = conv_transpose1d(g, &x, w, &args)?;
            if let Some(f) = trace.as_mut() {
                f(&format!("{p}.ups{i}"), &up);
            }
            // The blocks all read the upsampled signal; their outputs are averaged.
            let mut sum: Option<GpuTensor> = None;
            for j in 0..nk {
                let t = match (i, j, trace.as_mut()) {
                    (0, 0, Some(f)) => Some((&mut **f, format!("{p}.resblock0"))),
                    _ => None,
                };
                let y = self.resblocks[i * nk + j].forward(g, &up, t)?;
                match &sum {
                    Some(s) => binary_inplace(g, s, &y, Binary::Add)?,
                    None => sum = Some(y),
                }
            }
            x = sum.expect("at least one block");
            unary_inplace(g, &x, Unary::ScaleAdd { scale: 1.0 / nk as f32, add: 0.0 })?;
            if let Some(f) = trace.as_mut() {
                f(&format!("{p}.stage{i}"), &x);
            }
        }
        let x = self.act_post.forward(g, &x, &mut None)?;
        if let Some(f) = trace.as_mut() {
            f(&format!("{p}.act_post"), &x);
        }
        let y = self.conv_post.forward(g, &x)?;
        if let Some(f) = trace.as_mut() {
            f(&format!("{p}.conv_post"), &y);
        }
        if c.apply_final_activation {
            if c.use_tanh_at_final {
                return Err(ModelError::Config("use_tanh_at_final: a tanh output is not implemented".into()));
            }
            unary_inplace(g, &y, Unary::Clamp { lo: -1.0, hi: 1.0 })?;
        }
        Ok(y)
    }
}

/// The Hann-windowed sinc of `UpSample1d(ratio, window_type="hann")` (torchaudio's resampling kernel, width 6,
/// rolloff 0.99), computed as the reference does at construction: `2·width·ratio + 1` taps.
pub fn hann_upsample_filter(ratio: usize) -> (Vec<f32>, usize) {
    let (rolloff, lw) = (0.99f64, 6.0f64);
    let width = (lw / rolloff).ceil() as usize;
    let k = 2 * width * ratio + 1;
    let f = (0..k)
        .map(|i| {
            let t = (i as f64 / ratio as f64 - width as f64) * rolloff;
            let tc = t.clamp(-lw, lw);
            let window = (tc * std::f64::consts::PI / lw / 2.0).cos().powi(2);
            (sinc(t) * window * rolloff / ratio as f64) as f32
        })
        .collect();
    (f, width)
}

/// `sin(πt)/(πt)`.
fn sinc(t: f64) -> f64 {
    if t == 0.0 {
        1.0
    } else {
        (std::f64::consts::PI * t).sin() / (std::f64::consts::PI * t)
    }
}

/// `torchaudio.functional.resample`'s kernel for `orig → new` after dividing by their gcd, with `new == 1`:
/// `sinc_interp_hann`, lowpass width 6, rolloff 0.99; returns (taps, width).
pub fn resample_filter(orig: usize) -> (Vec<f32>, usize) {
    let (rolloff, lw) = (0.99f64, 6.0f64);
    let base = rolloff; // min(orig, new) · rolloff with new = 1
    let width = (lw * orig as f64 / base).ceil() as usize;
    let f = (0..2 * width + orig)
        .map(|i| {
            let idx = (i as f64 - width as f64) / orig as f64;
            let t = (idx * base).clamp(-lw, lw);
            let window = (t * std::f64::consts::PI / lw / 2.0).cos().powi(2);
            let tp = t * std::f64::consts::PI;
            let s = if tp == 0.0 { 1.0 } else { tp.sin() / tp };
            (s * window * base / orig as f64) as f32
        })
        .collect();
    (f, width)
}

/// The named parts of one [`Vocoder::forward`] (for the oracle and tests).
pub struct VocoderOutput {
    /// Main generator output `[.., 2, L]` at the low rate, clamped to ±1.
    pub main: GpuTensor,
    /// BWE log-mel `[.., 2, 64, F]`.
    pub bwe_mel: GpuTensor,
    /// BWE generator output `[.., 2, 3L]`.
    pub residual: GpuTensor,
    /// ×3 Hann-sinc resampled main output `[.., 2, 3L]`.
    pub skip: GpuTensor,
    /// `clamp(residual + skip, ±1)` `[.., 2, 3L]` at the output rate.
    pub wave: GpuTensor,
}

/// `VocoderWithBWE` on the GPU.
pub struct Vocoder {
    pub config: VocoderConfig,
    main: Generator,
    bwe: Generator,
    mel_basis: GpuTensor,
    forward_basis: GpuTensor,
    skip_filter: GpuTensor,
    skip_width: usize,
    unit: GpuTensor,
}

impl Vocoder {
    /// Reads the `vocoder.*` keys of `src` (the official audio VAE file, or any file with those keys). Other keys
    /// (`audio_vae.*`) are ignored; missing, mis-shaped or unknown `vocoder.*` keys are errors. `format` is the
    /// storage of the wide convolutions' weights (run as GEMMs); everything else is f32, as the reference casts
    /// the checkpoint to f32 at load.
    pub fn load(
        g: &Gpu,
        src: &dyn TensorSource,
        config: VocoderConfig,
        format: WeightFormat,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        check_part(
            src,
            &config.key_table(),
            &[PREFIX],
            "is this the LTX-2.3 audio VAE file (ltx-2.3-22b-dev_audio_vae.safetensors) with this vocoder config?",
        )?;
        let w = Scope::root(src, PREFIX);
        let main = Generator::load(g, w.scope("vocoder").get(), config.main(), format)?;
        let bwe = Generator::load(g, w.scope("bwe_generator").get(), &config.bwe().generator, format)?;
        let b = config.bwe();
        let bins = b.n_fft / 2 + 1;
        let ratio = b.output_sampling_rate / b.input_sampling_rate;
        let (skip, skip_width) = hann_upsample_filter(ratio);
        Ok(Self {
            mel_basis: w.tensor(g, "mel_stft.mel_basis", &[b.num_mels, bins])?,
            forward_basis: w.tensor(g, "mel_stft.stft_fn.forward_basis", &[2 * bins, 1, b.n_fft])?,
            skip_filter: g.upload_f32("vocoder skip filter", &skip, &[skip.len()])?,
            skip_width,
            unit: g.upload_f32("unit filter", &[1.0], &[1])?,
            main,
            bwe,
            config,
        })
    }

    /// Checks a mel `[2, T, 64]` or `[B, 2, T, 64]` and returns it as generator input `[(B,) 128, T]`.
    fn generator_input(&self, g: &Gpu, mel: &GpuTensor, what: &str) -> Result<GpuTensor, ModelError> {
        let s = mel.shape().to_vec();
        let bins = self.config.bwe().num_mels;
        let ok = matches!(s.len(), 3 | 4) && s[s.len() - 3] == 2 && s[s.len() - 1] == bins && s[s.len() - 2] > 0;
        if !ok || mel.dtype() != crate::gpu::DType::F32 {
            return Err(ModelError::Input {
                what: what.into(),
                problem: format!(
                    "has shape {s:?}; expected [2, frames, {bins}] or [batch, 2, frames, {bins}] f32 (stereo log-mel \
                     from the audio VAE decoder)"
                ),
            });
        }
        let t = s[s.len() - 2];
        // 'b s t c -> b (s c) t': channel = stereo · 64 + mel bin.
        let (perm, shape): (&[usize], Vec<usize>) = if s.len() == 3 {
            (&[0, 2, 1], vec![MEL_CHANNELS, t])
        } else {
            (&[0, 1, 3, 2], vec![s[0], MEL_CHANNELS, t])
        };
        let x = permute(g, mel, perm)?;
        Ok(x.reshape(&shape).expect("2 · 64 channels"))
    }

    /// The main generator alone: mel → `[(B,) 2, T · 160]` at the low rate, clamped to ±1.
    pub fn forward_main(&self, g: &Gpu, mel: &GpuTensor, trace: Option<&mut Trace>) -> Result<GpuTensor, ModelError> {
        let x = self.generator_input(g, mel, "vocoder mel")?;
        self.main.forward(g, &x, "voc", trace)
    }

    /// `VocoderWithBWE.forward`: mel `[(B,) 2, T, 64]` → 48 kHz stereo `[(B,) 2, 3 · 160 · T]`.
    pub fn forward(&self, g: &Gpu, mel: &GpuTensor) -> Result<GpuTensor, ModelError> {
        Ok(self.forward_parts(g, mel, None)?.wave)
    }

    /// [`Vocoder::forward`] keeping every stage. Traces: the main generator's `voc.*`, then `bwe.x_padded`,
    /// `bwe.stft_magnitude` `[(B·)2, n_fft/2 + 1, F]` and the BWE generator's `bwe.gen.*`.
    pub fn forward_parts(
        &self,
        g: &Gpu,
        mel: &GpuTensor,
        mut trace: Option<&mut Trace>,
    ) -> Result<VocoderOutput, ModelError> {
        let b = self.config.bwe();
        let main = self.forward_main(g, mel, trace.as_deref_mut())?;
        let s = main.shape().to_vec();
        let len = s[s.len() - 1];
        let ratio = b.output_sampling_rate / b.input_sampling_rate;
        let out_len = len * ratio;
        // Right-pad with zeros to whole hops (a no-op with 160 samples per mel frame).
        let rem = len % b.hop_length;
        let x = if rem == 0 {
            main.reshape(&s).expect("same shape")
        } else {
            let args = FirDown {
                filter: &self.unit,
                stride: 1,
                pad_left: 0,
                pad_right: b.hop_length - rem,
                padding: Pad::Zero,
                max_len: None,
            };
            fir_downsample(g, &main, &args)?
        };
        if let Some(f) = trace.as_mut() {
            f("bwe.x_padded", &x);
        }
        let lp = x.shape()[x.shape().len() - 1];
        let signals = x.numel() / lp;
        // Causal conv-STFT: left pad n_fft − hop, stride hop, the file's windowed DFT basis.
        let flat = x.reshape(&[signals, 1, lp]).expect("same size");
        let args = Conv1dArgs { stride: b.hop_length, padding: [b.n_fft - b.hop_length, 0], ..Default::default() };
        let spec = conv1d(g, &flat, &self.forward_basis, &args)?;
        let mag = stft_magnitude(g, &spec)?;
        if let Some(f) = trace.as_mut() {
            f("bwe.stft_magnitude", &mag);
        }
        let lm = log_mel(g, &mag, &self.mel_basis)?;
        let frames = lm.shape()[2];
        let mut mel_shape = s.clone();
        let r = mel_shape.len();
        mel_shape[r - 1] = frames;
        mel_shape.insert(r - 1, b.num_mels);
        let bwe_mel = lm.reshape(&mel_shape).expect("same size");
        // The generator reads 'b s c t -> b (s c) t' of the [B, 2, 64, F] mel: a plain reshape.
        let mut gin = s.clone();
        gin[r - 2] = MEL_CHANNELS;
        gin[r - 1] = frames;
        let residual = self.bwe.forward(g, &lm.reshape(&gin).expect("2 · 64 channels"), "bwe.gen", trace)?;
        let (w, k) = (self.skip_width, self.skip_filter.numel());
        let skip = fir_upsample(
            g,
            &x,
            &FirUp {
                filter: &self.skip_filter,
                ratio,
                pad: w,
                padding: Pad::Replicate,
                pad_left: 2 * w * ratio,
                pad_right: k - ratio,
                gain: ratio as f32,
                snake: None,
            },
        )?;
        if residual.shape() != skip.shape() {
            return Err(ModelError::Config(format!(
                "BWE residual {:?} and skip {:?} differ: the generator's upsampling does not match the rates",
                residual.shape(),
                skip.shape()
            )));
        }
        let sum = binary(g, &residual, &skip, Binary::Add)?;
        unary_inplace(g, &sum, Unary::Clamp { lo: -1.0, hi: 1.0 })?;
        let wave = if sum.shape()[r - 1] == out_len {
            sum
        } else {
            let args = FirDown {
                filter: &self.unit,
                stride: 1,
                pad_left: 0,
                pad_right: 0,
                padding: Pad::Zero,
                max_len: Some(out_len),
            };
            fir_downsample(g, &sum, &args)?
        };
        Ok(VocoderOutput { main, bwe_mel, residual, skip, wave })
    }

    /// The released audio: [`Vocoder::forward`] then [`output_audio`] at `rate` (16000 as NAVA saves it, or 48000).
    pub fn decode_audio(&self, g: &Gpu, mel: &GpuTensor, rate: usize) -> Result<GpuTensor, ModelError> {
        let wave = self.forward(g, mel)?;
        output_audio(g, &wave, self.config.output_rate(), rate)
    }
}

/// NAVA's output step on `wave` `[.., L]` at `from` Hz: `torchaudio.functional.resample(from → rate)` when the
/// rates differ (rates whose ratio is an integer, e.g. 48000 → 16000), then `clamp(±0.99)`.
pub fn output_audio(g: &Gpu, wave: &GpuTensor, from: usize, rate: usize) -> Result<GpuTensor, ModelError> {
    if rate == from {
        return Ok(unary(g, wave, Unary::Clamp { lo: -OUTPUT_LIMIT, hi: OUTPUT_LIMIT })?);
    }
    let y = resample(g, wave, from, rate)?;
    unary_inplace(g, &y, Unary::Clamp { lo: -OUTPUT_LIMIT, hi: OUTPUT_LIMIT })?;
    Ok(y)
}

/// `torchaudio.functional.resample(wave, from, rate)` for `from` a multiple of `rate` (sinc_interp_hann, lowpass
/// width 6, rolloff 0.99): zero-padded polyphase FIR, `ceil(L · rate / from)` samples per row.
pub fn resample(g: &Gpu, wave: &GpuTensor, from: usize, rate: usize) -> Result<GpuTensor, ModelError> {
    let y = if rate == from {
        crate::kernels::elementwise::copy(g, wave)?
    } else {
        if rate == 0 || !from.is_multiple_of(rate) {
            return Err(ModelError::Input {
                what: "audio rate".into(),
                problem: format!(
                    "{rate} Hz: the vocoder produces {from} Hz and resamples only by integer factors; use {from}, \
                     {} or another divisor of {from}",
                    from / 3
                ),
            });
        }
        let orig = from / rate;
        let (f, width) = resample_filter(orig);
        let filter = g.upload_f32("resample filter", &f, &[f.len()])?;
        let len = wave.shape().last().copied().unwrap_or(0);
        let args = FirDown {
            filter: &filter,
            stride: orig,
            pad_left: width,
            pad_right: width + orig,
            padding: Pad::Zero,
            max_len: Some(len.div_ceil(orig)),
        };
        fir_downsample(g, wave, &args)?
    };
    Ok(y)
}

/// `_toWav` of NAVA's `inference_nava.py`, applied to the whole clip (all channels) before muxing:
/// `x · (0.95 / max(max |x|, 1e-12))`, then `clamp(±1)`.
pub fn peak_normalize(samples: &mut [f32]) {
    let peak = samples.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    let s = MUX_PEAK / peak;
    for v in samples {
        *v = (*v * s).clamp(-1.0, 1.0);
    }
}
