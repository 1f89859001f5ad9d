//! LTX-2.3 audio VAE decoder — reference `AudioDecoder`, `ResnetBlock`, `Upsample`, `CausalConv2d`,
//! `PerChannelStatistics` (Lightricks/LTX-2 `packages/ltx-core/.../audio_vae/`, vendored by NAVA) as NAVA's
//! `LtxAudioVAE.wrapped_decode` drives it (NAVA.md §3.2, §7.2, §10.4).
//!
//! Latent tokens `[T, 128]` → `x · std + mean` per feature (the file's per-channel statistics) → `[8, T, 16]`
//! ('b t (c f) -> b c t f') → causal conv_in → mid (2 resnet blocks) → levels 2, 1, 0 (num_res_blocks + 1 resnet
//! blocks each; levels 2 and 1 end in nearest ×2 + causal conv + dropping the first time row) → PixelNorm → SiLU →
//! conv_out → stereo log-mel `[2, 4T − 3, 64]` (100 frames/s), the input of [`crate::model::vocoder`].
//!
//! Every 2-D convolution is causal in time (the height axis): 3×3 kernels pad time (2, 0) and frequency (1, 1).
//! The upsampler's conv followed by dropping its first output row equals the same conv with time padding (1, 0),
//! which is what runs here. Wide convolutions run as im2col + GEMM with their weights in the loader's format (f32
//! reproduces the reference). Keys are those of `ltx-2.3-22b-dev_audio_vae.safetensors` under `audio_vae.`.
//!
//! [`AudioEncoder`] is the reverse path of `LtxAudioVAE.wrapped_encode` (the pipeline only decodes; the encoder
//! is here for completeness and parity): 16 kHz stereo waveform → torchaudio `MelSpectrogram` (n_fft 1024, hop
//! 160, periodic Hann, centred with reflect padding, magnitude, slaney mel scale and norm) → `log(max(·, 1e-5))`
//! → causal conv_in → levels 0..2 (resnet blocks; levels 0 and 1 end in a stride-2 conv after padding time
//! (2, 0) and frequency (0, 1)) → mid → PixelNorm → SiLU → conv_out → the first z channels (the mean) →
//! `(x − mean) / std` per token feature → tokens `[T, 128]`. The STFT is a direct windowed DFT (a convolution
//! with a host-built basis), not an FFT.

use serde::{Deserialize, Serialize};

use crate::gpu::{DType, Gpu, GpuTensor};
use crate::kernels::audio::{conv2d_gemm, fir_downsample, log_mel, stft_magnitude, FirDown, GemmConv2d, Pad};
use crate::kernels::conv::{conv1d, conv2d, permute, upsample_nearest2x, Conv1dArgs, Conv2dArgs};
use crate::kernels::elementwise::{binary, binary_inplace, Binary};
use crate::kernels::gemm::{Weight, WeightFormat};
use crate::kernels::norm::pixel_norm_silu;
use crate::weights::{KeyTable, Scope, TensorSource};

use super::dit::Trace;
use super::vocoder::check_part;
use super::ModelError;

/// `PixelNorm` epsilon.
pub const EPS: f32 = 1e-6;
/// Key prefix of the audio VAE in the official file.
pub const PREFIX: &str = "audio_vae.";
/// Mel frames per latent step (`LATENT_DOWNSAMPLE_FACTOR`).
pub const TIME_FACTOR: usize = 4;

/// `audio_vae.model.params.ddconfig`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct DdConfig {
    pub double_z: bool,
    pub mel_bins: usize,
    pub z_channels: usize,
    pub resolution: usize,
    pub downsample_time: bool,
    pub in_channels: usize,
    pub out_ch: usize,
    pub ch: usize,
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    pub attn_resolutions: Vec<usize>,
    pub dropout: f64,
    pub mid_block_add_attention: bool,
    pub norm_type: String,
    pub causality_axis: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct ModelParams {
    pub ddconfig: DdConfig,
    pub sampling_rate: usize,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct ModelSection {
    pub params: ModelParams,
}

/// `preprocessing.stft` (the encoder's mel front end; recorded, not used by the decoder).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct StftConfig {
    pub filter_length: usize,
    pub hop_length: usize,
    pub win_length: usize,
    pub causal: bool,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct MelConfig {
    pub n_mel_channels: usize,
    pub mel_fmin: f64,
    pub mel_fmax: f64,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Preprocessing {
    pub stft: StftConfig,
    pub mel: MelConfig,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct AudioVaeSection {
    pub model: ModelSection,
    pub preprocessing: Preprocessing,
}

/// `{"audio_vae": {..}}` as in the checkpoint metadata and the oracle's `meta.json` (other top-level keys, such
/// as `vocoder`, are ignored).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct AudioVaeConfig {
    pub audio_vae: AudioVaeSection,
}

impl AudioVaeConfig {
    /// The LTX-2.3 checkpoint: ch 128, ch_mult (1, 2, 4), 2 resnet blocks per encoder level, z 8, 64 mel bins.
    pub fn ltx23() -> Self {
        Self::with_ch(128)
    }

    /// The seeded demo model: the same design at ch 8 (levels 8, 16, 32); still 128 features per token.
    pub fn tiny() -> Self {
        Self::with_ch(8)
    }

    fn with_ch(ch: usize) -> Self {
        Self {
            audio_vae: AudioVaeSection {
                model: ModelSection {
                    params: ModelParams {
                        ddconfig: DdConfig {
                            double_z: true,
                            mel_bins: 64,
                            z_channels: 8,
                            resolution: 256,
                            downsample_time: false,
                            in_channels: 2,
                            out_ch: 2,
                            ch,
                            ch_mult: vec![1, 2, 4],
                            num_res_blocks: 2,
                            attn_resolutions: vec![],
                            dropout: 0.0,
                            mid_block_add_attention: false,
                            norm_type: "pixel".into(),
                            causality_axis: "height".into(),
                        },
                        sampling_rate: 16000,
                    },
                },
                preprocessing: Preprocessing {
                    stft: StftConfig { filter_length: 1024, hop_length: 160, win_length: 1024, causal: true },
                    mel: MelConfig { n_mel_channels: 64, mel_fmin: 0.0, mel_fmax: 8000.0 },
                },
            },
        }
    }

    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let c: Self =
            serde_json::from_str(text).map_err(|e| ModelError::Config(format!("audio VAE config JSON: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    pub fn dd(&self) -> &DdConfig {
        &self.audio_vae.model.params.ddconfig
    }

    /// Frequency bins of the latent (64 mel bins / 4).
    pub fn latent_bins(&self) -> usize {
        self.dd().mel_bins / TIME_FACTOR
    }

    /// Features per latent token: z_channels × latent bins (128).
    pub fn token_dim(&self) -> usize {
        self.dd().z_channels * self.latent_bins()
    }

    /// Mel frames decoded from `t` latent steps: `max(4t − 3, 1)` (causal).
    pub fn mel_frames(t: usize) -> usize {
        (TIME_FACTOR * t).saturating_sub(TIME_FACTOR - 1).max(1)
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        let d = self.dd();
        let bad = |m: String| Err(ModelError::Config(format!("audio VAE: {m}")));
        if d.norm_type != "pixel" || d.causality_axis != "height" {
            return bad(format!(
                "norm_type {:?}, causality_axis {:?}: only the LTX-2.3 form (pixel, height) is implemented",
                d.norm_type, d.causality_axis
            ));
        }
        if !d.attn_resolutions.is_empty() || d.mid_block_add_attention {
            return bad("attention blocks are not implemented (LTX-2.3 has none)".into());
        }
        if d.ch_mult.len() != 3 || d.ch_mult.contains(&0) || d.ch == 0 {
            return bad(format!(
                "ch_mult {:?}: the reference fixes the latent at 4× fewer frames and bins, i.e. three levels",
                d.ch_mult
            ));
        }
        if d.mel_bins == 0 || !d.mel_bins.is_multiple_of(TIME_FACTOR) || d.z_channels == 0 || d.out_ch == 0 {
            return bad(format!(
                "mel_bins {} must be a positive multiple of 4; z_channels and out_ch positive",
                d.mel_bins
            ));
        }
        Ok(())
    }

    /// Every `audio_vae.*` key of the official file (statistics, encoder, decoder), in module order.
    pub fn key_table(&self) -> KeyTable {
        let mut t = self.stats_keys();
        self.encoder_keys(&mut t);
        self.decoder_keys(&mut t);
        t
    }

    fn stats_keys(&self) -> KeyTable {
        let n = self.token_dim();
        vec![
            (format!("{PREFIX}per_channel_statistics.std-of-means"), vec![n]),
            (format!("{PREFIX}per_channel_statistics.mean-of-means"), vec![n]),
        ]
    }

    /// The decoder's keys and the statistics: what [`AudioDecoder::load`] reads.
    pub fn decoder_key_table(&self) -> KeyTable {
        let mut t = self.stats_keys();
        self.decoder_keys(&mut t);
        t
    }

    fn encoder_keys(&self, t: &mut KeyTable) {
        let d = self.dd();
        let p = format!("{PREFIX}encoder.");
        let mut add = |k: String, s: Vec<usize>| t.push((format!("{p}{k}"), s));
        let conv = |add: &mut dyn FnMut(String, Vec<usize>), name: String, o: usize, i: usize, k: usize| {
            add(format!("{name}.conv.weight"), vec![o, i, k, k]);
            add(format!("{name}.conv.bias"), vec![o]);
        };
        conv(&mut add, "conv_in".into(), d.ch, d.in_channels, 3);
        let mut block_in = d.ch;
        let levels = d.ch_mult.len();
        for (l, &m) in d.ch_mult.iter().enumerate() {
            let out = d.ch * m;
            for j in 0..d.num_res_blocks {
                resnet_keys(&mut add, &format!("down.{l}.block.{j}"), block_in, out);
                block_in = out;
            }
            if l + 1 != levels {
                conv(&mut add, format!("down.{l}.downsample"), block_in, block_in, 3);
            }
        }
        resnet_keys(&mut add, "mid.block_1", block_in, block_in);
        resnet_keys(&mut add, "mid.block_2", block_in, block_in);
        let z = if d.double_z { 2 * d.z_channels } else { d.z_channels };
        conv(&mut add, "conv_out".into(), z, block_in, 3);
    }

    fn decoder_keys(&self, t: &mut KeyTable) {
        let d = self.dd();
        let p = format!("{PREFIX}decoder.");
        let mut add = |k: String, s: Vec<usize>| t.push((format!("{p}{k}"), s));
        let top = d.ch * d.ch_mult[d.ch_mult.len() - 1];
        add("conv_in.conv.weight".into(), vec![top, d.z_channels, 3, 3]);
        add("conv_in.conv.bias".into(), vec![top]);
        resnet_keys(&mut add, "mid.block_1", top, top);
        resnet_keys(&mut add, "mid.block_2", top, top);
        for l in 0..d.ch_mult.len() {
            let (block_in, out) = self.up_channels(l);
            for j in 0..=d.num_res_blocks {
                resnet_keys(&mut add, &format!("up.{l}.block.{j}"), if j == 0 { block_in } else { out }, out);
            }
            if l != 0 {
                add(format!("up.{l}.upsample.conv.conv.weight"), vec![out, out, 3, 3]);
                add(format!("up.{l}.upsample.conv.conv.bias"), vec![out]);
            }
        }
        add("conv_out.conv.weight".into(), vec![d.out_ch, d.ch * d.ch_mult[0], 3, 3]);
        add("conv_out.conv.bias".into(), vec![d.out_ch]);
    }

    /// (input, output) channels of decoder level `l` (levels run from the last down to 0).
    fn up_channels(&self, l: usize) -> (usize, usize) {
        let d = self.dd();
        let n = d.ch_mult.len();
        let block_in = if l + 1 == n { d.ch * d.ch_mult[n - 1] } else { d.ch * d.ch_mult[l + 1] };
        (block_in, d.ch * d.ch_mult[l])
    }
}

fn resnet_keys(add: &mut dyn FnMut(String, Vec<usize>), name: &str, cin: usize, cout: usize) {
    add(format!("{name}.conv1.conv.weight"), vec![cout, cin, 3, 3]);
    add(format!("{name}.conv1.conv.bias"), vec![cout]);
    add(format!("{name}.conv2.conv.weight"), vec![cout, cout, 3, 3]);
    add(format!("{name}.conv2.conv.bias"), vec![cout]);
    if cin != cout {
        add(format!("{name}.nin_shortcut.conv.weight"), vec![cout, cin, 1, 1]);
        add(format!("{name}.nin_shortcut.conv.bias"), vec![cout]);
    }
}

/// A `CausalConv2d` (causal in time): k×k kernel, time padded (k − 1, 0), frequency symmetric. Wide ones run as
/// im2col + GEMM with the weight in the requested format; narrow ones (few outputs or inputs) convolve directly.
struct CausalConv {
    kernel: ConvWeight,
    bias: GpuTensor,
    k: usize,
}

enum ConvWeight {
    Direct(GpuTensor),
    Gemm(Weight),
}

/// Output channels and `Cin·k²` from which a convolution runs as a GEMM.
const GEMM_MIN_OUT: usize = 32;
const GEMM_MIN_K: usize = 64;

impl CausalConv {
    fn load(
        g: &Gpu,
        w: Scope,
        name: &str,
        cout: usize,
        cin: usize,
        k: usize,
        format: WeightFormat,
    ) -> Result<Self, ModelError> {
        let key = format!("{name}.conv.weight");
        let kernel = if cout >= GEMM_MIN_OUT && cin * k * k >= GEMM_MIN_K {
            ConvWeight::Gemm(w.weight(g, &key, &[cout, cin, k, k], format)?)
        } else {
            ConvWeight::Direct(w.tensor(g, &key, &[cout, cin, k, k])?)
        };
        Ok(Self { kernel, bias: w.tensor(g, &format!("{name}.conv.bias"), &[cout])?, k })
    }

    /// `x` `[C, T, F]`; `drop_first` drops the first output row (the upsampler's), computing one row fewer.
    fn forward(&self, g: &Gpu, x: &GpuTensor, drop_first: bool) -> Result<GpuTensor, ModelError> {
        let p = self.k - 1;
        let top = p - usize::from(drop_first && p > 0);
        let padding = [top, 0, p / 2, p - p / 2];
        Ok(match &self.kernel {
            ConvWeight::Direct(w) => {
                conv2d(g, x, w, &Conv2dArgs { bias: Some(&self.bias), padding, ..Default::default() })?
            }
            ConvWeight::Gemm(w) => {
                conv2d_gemm(g, x, &GemmConv2d { weight: w, k: self.k, bias: Some(&self.bias), padding })?
            }
        })
    }
}

/// `ResnetBlock`: `x + conv2(silu(pn(conv1(silu(pn(x))))))`, a 1×1 shortcut when the width changes.
struct ResnetBlock {
    conv1: CausalConv,
    conv2: CausalConv,
    nin_shortcut: Option<CausalConv>,
}

/// `PixelNorm` + SiLU over the channels of `[C, T, F]`.
fn pn_silu(g: &Gpu, x: &GpuTensor) -> Result<GpuTensor, ModelError> {
    let s = x.shape().to_vec();
    let flat = x.reshape(&[s[0], s[1] * s[2]]).expect("same size");
    let y = pixel_norm_silu(g, &flat, EPS)?;
    Ok(y.reshape(&s).expect("same size"))
}

impl ResnetBlock {
    fn load(g: &Gpu, w: Scope, cin: usize, cout: usize, f: WeightFormat) -> Result<Self, ModelError> {
        Ok(Self {
            conv1: CausalConv::load(g, w, "conv1", cout, cin, 3, f)?,
            conv2: CausalConv::load(g, w, "conv2", cout, cout, 3, f)?,
            nin_shortcut: if cin != cout {
                Some(CausalConv::load(g, w, "nin_shortcut", cout, cin, 1, f)?)
            } else {
                None
            },
        })
    }

    fn forward(&self, g: &Gpu, x: &GpuTensor) -> Result<GpuTensor, ModelError> {
        let h = self.conv1.forward(g, &pn_silu(g, x)?, false)?;
        let h = self.conv2.forward(g, &pn_silu(g, &h)?, false)?;
        match &self.nin_shortcut {
            Some(s) => {
                let xs = s.forward(g, x, false)?;
                binary_inplace(g, &h, &xs, Binary::Add)?;
            }
            None => binary_inplace(g, &h, x, Binary::Add)?,
        }
        Ok(h)
    }
}

struct UpLevel {
    blocks: Vec<ResnetBlock>,
    upsample: Option<CausalConv>,
}

/// `AudioDecoder` with its statistics, on the GPU (f32).
pub struct AudioDecoder {
    pub config: AudioVaeConfig,
    std: GpuTensor,
    mean: GpuTensor,
    conv_in: CausalConv,
    mid: [ResnetBlock; 2],
    /// Indexed by level (level 0 last to run).
    up: Vec<UpLevel>,
    conv_out: CausalConv,
}

impl AudioDecoder {
    /// Reads `audio_vae.per_channel_statistics.*` and `audio_vae.decoder.*` of `src` (the official audio VAE file,
    /// or any file with those keys). Encoder and vocoder keys are ignored; missing, mis-shaped or unknown decoder
    /// keys are errors. `format` is the storage of the wide convolutions' weights (run as GEMMs); the rest is f32.
    pub fn load(
        g: &Gpu,
        src: &dyn TensorSource,
        config: AudioVaeConfig,
        format: WeightFormat,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        check_part(
            src,
            &config.decoder_key_table(),
            &[&format!("{PREFIX}decoder."), &format!("{PREFIX}per_channel_statistics.")],
            "is this the LTX-2.3 audio VAE file (ltx-2.3-22b-dev_audio_vae.safetensors) with this config?",
        )?;
        let d = config.dd().clone();
        let n = config.token_dim();
        let root = Scope::root(src, PREFIX);
        let stats = root.scope("per_channel_statistics");
        let stats = stats.get();
        let dec = root.scope("decoder");
        let w = dec.get();
        let top = d.ch * d.ch_mult[d.ch_mult.len() - 1];
        let mid = w.scope("mid");
        let mid = mid.get();
        let block = |name: &str, cin, cout| ResnetBlock::load(g, mid.scope(name).get(), cin, cout, format);
        let mid = [block("block_1", top, top)?, block("block_2", top, top)?];
        let mut up = Vec::new();
        let ups = w.scope("up");
        for l in 0..d.ch_mult.len() {
            let (block_in, out) = config.up_channels(l);
            let lw = ups.get().at(l);
            let lw = lw.get();
            let bl = lw.scope("block");
            let mut blocks = Vec::new();
            for j in 0..=d.num_res_blocks {
                let bw = bl.get().at(j);
                blocks.push(ResnetBlock::load(g, bw.get(), if j == 0 { block_in } else { out }, out, format)?);
            }
            let upsample = if l != 0 {
                Some(CausalConv::load(g, lw.scope("upsample").get(), "conv", out, out, 3, format)?)
            } else {
                None
            };
            up.push(UpLevel { blocks, upsample });
        }
        Ok(Self {
            std: stats.tensor(g, "std-of-means", &[n])?,
            mean: stats.tensor(g, "mean-of-means", &[n])?,
            conv_in: CausalConv::load(g, w, "conv_in", top, d.z_channels, 3, format)?,
            mid,
            up,
            conv_out: CausalConv::load(g, w, "conv_out", d.out_ch, d.ch * d.ch_mult[0], 3, format)?,
            config,
        })
    }

    /// Latent tokens `[T, 128]` (or `[1, T, 128]`) → stereo log-mel `[2, 4T − 3, 64]`. `trace` receives
    /// `dec.latent_denorm` `[8, T, 16]`, `dec.conv_in`, `dec.mid.block_{1,2}`, `dec.up{l}.block{j}`,
    /// `dec.up{l}.upsample` (levels 2, 1, 0) and `dec.conv_out`.
    pub fn decode(&self, g: &Gpu, tokens: &GpuTensor, mut trace: Option<&mut Trace>) -> Result<GpuTensor, ModelError> {
        let d = self.config.dd();
        let n = self.config.token_dim();
        let s = tokens.shape();
        let t = match s {
            [t, f] | [1, t, f] if *f == n && *t > 0 => *t,
            _ => {
                return Err(ModelError::Input {
                    what: "audio latent tokens".into(),
                    problem: format!(
                        "have shape {s:?}; expected [T, {n}] ({} channels × {} bins per token, T ≥ 1 steps at 25 \
                         per second)",
                        d.z_channels,
                        self.config.latent_bins()
                    ),
                });
            }
        };
        if tokens.dtype() != DType::F32 {
            return Err(ModelError::Input {
                what: "audio latent tokens".into(),
                problem: format!("are {}; expected f32", tokens.dtype().name()),
            });
        }
        let flat = tokens.reshape(&[t, n]).expect("same size");
        let x = binary(g, &flat, &self.std, Binary::Mul)?;
        binary_inplace(g, &x, &self.mean, Binary::Add)?;
        let (z, bins) = (d.z_channels, self.config.latent_bins());
        let x = permute(g, &x.reshape(&[t, z, bins]).expect("token = z · bins"), &[1, 0, 2])?;
        let mut emit = |name: &str, x: &GpuTensor| {
            if let Some(f) = trace.as_mut() {
                f(name, x);
            }
        };
        emit("dec.latent_denorm", &x);
        let mut x = self.conv_in.forward(g, &x, false)?;
        emit("dec.conv_in", &x);
        for (i, b) in self.mid.iter().enumerate() {
            x = b.forward(g, &x)?;
            emit(&format!("dec.mid.block_{}", i + 1), &x);
        }
        for l in (0..self.up.len()).rev() {
            let level = &self.up[l];
            for (j, b) in level.blocks.iter().enumerate() {
                x = b.forward(g, &x)?;
                // Launches hold their buffers (im2col columns included) until the submit: one per block keeps
                // the peak at one block's intermediates.
                g.flush()?;
                emit(&format!("dec.up{l}.block{j}"), &x);
            }
            if let Some(conv) = &level.upsample {
                let u = upsample_nearest2x(g, &x)?;
                x = conv.forward(g, &u, true)?;
                g.flush()?;
                emit(&format!("dec.up{l}.upsample"), &x);
            }
        }
        let y = self.conv_out.forward(g, &pn_silu(g, &x)?, false)?;
        emit("dec.conv_out", &y);
        let want = [d.out_ch, AudioVaeConfig::mel_frames(t), d.mel_bins];
        if y.shape() != want {
            return Err(ModelError::Config(format!("decoded {:?}, expected {want:?}", y.shape())));
        }
        Ok(y)
    }
}

/// A stride-2 `Downsample` conv of the encoder (plain `Conv2d`, padded time (2, 0), frequency (0, 1)).
struct Downsample {
    weight: GpuTensor,
    bias: GpuTensor,
}

struct DownLevel {
    blocks: Vec<ResnetBlock>,
    downsample: Option<Downsample>,
}

/// torchaudio's `melscale_fbanks(n_freqs, 0, f_max, n_mels, rate, norm="slaney", mel_scale="slaney")`,
/// transposed to `[n_mels, n_freqs]`.
pub fn slaney_mel_basis(n_freqs: usize, f_max: f64, n_mels: usize, rate: f64) -> Vec<f32> {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    let hz_to_mel = |f: f64| if f >= min_log_hz { min_log_mel + (f / min_log_hz).ln() / logstep } else { f / f_sp };
    let mel_to_hz = |m: f64| if m >= min_log_mel { min_log_hz * (logstep * (m - min_log_mel)).exp() } else { f_sp * m };
    let (m_min, m_max) = (hz_to_mel(0.0), hz_to_mel(f_max));
    let f_pts: Vec<f64> =
        (0..n_mels + 2).map(|i| mel_to_hz(m_min + (m_max - m_min) * i as f64 / (n_mels + 1) as f64)).collect();
    let nyquist = (rate as usize / 2) as f64;
    let mut fb = vec![0.0f32; n_mels * n_freqs];
    for k in 0..n_freqs {
        let f = nyquist * k as f64 / (n_freqs - 1).max(1) as f64;
        for m in 0..n_mels {
            let down = (f - f_pts[m]) / (f_pts[m + 1] - f_pts[m]);
            let up = (f_pts[m + 2] - f) / (f_pts[m + 2] - f_pts[m + 1]);
            let enorm = 2.0 / (f_pts[m + 2] - f_pts[m]);
            fb[m * n_freqs + k] = (down.min(up).max(0.0) * enorm) as f32;
        }
    }
    fb
}

/// `[2·(n/2 + 1), 1, n]`: rows k = cos(2πkt/n)·w[t], rows n/2 + 1 + k = −sin(2πkt/n)·w[t], w the periodic Hann
/// window (torch.stft's onesided DFT of a windowed frame).
pub fn stft_basis(n_fft: usize) -> Vec<f32> {
    let bins = n_fft / 2 + 1;
    let mut b = vec![0.0f32; 2 * bins * n_fft];
    for t in 0..n_fft {
        let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * t as f64 / n_fft as f64).cos();
        for k in 0..bins {
            // Reduce k·t modulo n so that the angle stays small and exact.
            let a = 2.0 * std::f64::consts::PI * ((k * t) % n_fft) as f64 / n_fft as f64;
            b[k * n_fft + t] = (a.cos() * w) as f32;
            b[(bins + k) * n_fft + t] = (-a.sin() * w) as f32;
        }
    }
    b
}

/// `AudioEncoder` with its statistics and the `AudioProcessor` mel front end, on the GPU (f32).
pub struct AudioEncoder {
    pub config: AudioVaeConfig,
    neg_mean: GpuTensor,
    inv_std: GpuTensor,
    stft: GpuTensor,
    mel: GpuTensor,
    unit: GpuTensor,
    conv_in: CausalConv,
    down: Vec<DownLevel>,
    mid: [ResnetBlock; 2],
    conv_out: CausalConv,
}

impl AudioEncoder {
    /// Reads `audio_vae.per_channel_statistics.*` and `audio_vae.encoder.*` of `src` (other keys are ignored).
    pub fn load(
        g: &Gpu,
        src: &dyn TensorSource,
        config: AudioVaeConfig,
        format: WeightFormat,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let mut table = config.stats_keys();
        config.encoder_keys(&mut table);
        check_part(
            src,
            &table,
            &[&format!("{PREFIX}encoder."), &format!("{PREFIX}per_channel_statistics.")],
            "is this the LTX-2.3 audio VAE file (ltx-2.3-22b-dev_audio_vae.safetensors) with this config?",
        )?;
        let d = config.dd().clone();
        let n = config.token_dim();
        let root = Scope::root(src, PREFIX);
        let stats = root.scope("per_channel_statistics");
        let stats = stats.get();
        let std = stats.f32("std-of-means", &[n])?;
        let mean = stats.f32("mean-of-means", &[n])?;
        let enc = root.scope("encoder");
        let w = enc.get();
        let downs = w.scope("down");
        let mut down = Vec::new();
        let mut block_in = d.ch;
        let levels = d.ch_mult.len();
        for (l, &m) in d.ch_mult.iter().enumerate() {
            let out = d.ch * m;
            let lw = downs.get().at(l);
            let lw = lw.get();
            let bl = lw.scope("block");
            let mut blocks = Vec::new();
            for j in 0..d.num_res_blocks {
                blocks.push(ResnetBlock::load(g, bl.get().at(j).get(), block_in, out, format)?);
                block_in = out;
            }
            let downsample = if l + 1 != levels {
                let dw = lw.scope("downsample");
                let dw = dw.get();
                Some(Downsample {
                    weight: dw.tensor(g, "conv.weight", &[out, out, 3, 3])?,
                    bias: dw.tensor(g, "conv.bias", &[out])?,
                })
            } else {
                None
            };
            down.push(DownLevel { blocks, downsample });
        }
        let mid = w.scope("mid");
        let mid = mid.get();
        let block = |name: &str| ResnetBlock::load(g, mid.scope(name).get(), block_in, block_in, format);
        let mid = [block("block_1")?, block("block_2")?];
        let z = if d.double_z { 2 * d.z_channels } else { d.z_channels };
        let pre = &config.audio_vae.preprocessing;
        let n_fft = pre.stft.filter_length;
        let bins = n_fft / 2 + 1;
        let rate = config.audio_vae.model.params.sampling_rate as f64;
        let neg_mean: Vec<f32> = mean.iter().map(|v| -v).collect();
        let inv_std: Vec<f32> = std.iter().map(|v| 1.0 / v).collect();
        Ok(Self {
            neg_mean: g.upload_f32("audio VAE −mean", &neg_mean, &[n])?,
            inv_std: g.upload_f32("audio VAE 1/std", &inv_std, &[n])?,
            stft: g.upload_f32("stft basis", &stft_basis(n_fft), &[2 * bins, 1, n_fft])?,
            // `AudioProcessor` uses f_max = rate / 2 whatever the config's mel_fmax says.
            mel: g.upload_f32(
                "mel basis",
                &slaney_mel_basis(bins, rate / 2.0, d.mel_bins, rate),
                &[d.mel_bins, bins],
            )?,
            unit: g.upload_f32("unit filter", &[1.0], &[1])?,
            conv_in: CausalConv::load(g, w, "conv_in", d.ch, d.in_channels, 3, format)?,
            down,
            mid,
            conv_out: CausalConv::load(g, w, "conv_out", z, block_in, 3, format)?,
            config,
        })
    }

    /// `AudioProcessor.waveform_to_mel`: waveform `[C, L]` at the model rate → log-mel `[C, 1 + L/hop, mel_bins]`.
    pub fn waveform_to_mel(&self, g: &Gpu, wave: &GpuTensor) -> Result<GpuTensor, ModelError> {
        let d = self.config.dd();
        let stft = &self.config.audio_vae.preprocessing.stft;
        let (n_fft, hop) = (stft.filter_length, stft.hop_length);
        let s = wave.shape();
        let ok = matches!(s, [c, l] if *c == d.in_channels && *l > n_fft / 2) && wave.dtype() == DType::F32;
        if !ok {
            return Err(ModelError::Input {
                what: "waveform".into(),
                problem: format!(
                    "has shape {s:?}; expected [{}, samples] f32 at {} Hz with more than {} samples (duplicate a mono \
                     signal, downmix more channels)",
                    d.in_channels,
                    self.config.audio_vae.model.params.sampling_rate,
                    n_fft / 2
                ),
            });
        }
        let (c, l) = (s[0], s[1]);
        // center=True: reflect-pad n_fft/2 per side, then frames every hop.
        let args = FirDown {
            filter: &self.unit,
            stride: 1,
            pad_left: n_fft / 2,
            pad_right: n_fft / 2,
            padding: Pad::Reflect,
            max_len: None,
        };
        let padded = fir_downsample(g, wave, &args)?;
        let lp = l + n_fft;
        let spec = conv1d(
            g,
            &padded.reshape(&[c, 1, lp]).expect("same size"),
            &self.stft,
            &Conv1dArgs { stride: hop, ..Default::default() },
        )?;
        let mag = stft_magnitude(g, &spec)?;
        let mel = log_mel(g, &mag, &self.mel)?; // [C, mels, frames]
        Ok(permute(g, &mel, &[0, 2, 1])?)
    }

    /// Waveform `[2, L]` (16 kHz) → normalised latent tokens `[T, 128]`, T = ⌈(1 + L/160)/4⌉. `trace` receives
    /// `enc.mel` (`[2, frames, 64]`), `enc.conv_in`, `enc.down{l}.block{j}`, `enc.down{l}.downsample`,
    /// `enc.mid.block_{1,2}`, `enc.conv_out` and `enc.latent` (normalised, `[8, T, 16]`).
    pub fn encode(&self, g: &Gpu, wave: &GpuTensor, mut trace: Option<&mut Trace>) -> Result<GpuTensor, ModelError> {
        let mel = self.waveform_to_mel(g, wave)?;
        let mut emit = |name: &str, x: &GpuTensor| {
            if let Some(f) = trace.as_mut() {
                f(name, x);
            }
        };
        emit("enc.mel", &mel);
        let mut x = self.conv_in.forward(g, &mel, false)?;
        emit("enc.conv_in", &x);
        for (l, level) in self.down.iter().enumerate() {
            for (j, b) in level.blocks.iter().enumerate() {
                x = b.forward(g, &x)?;
                emit(&format!("enc.down{l}.block{j}"), &x);
            }
            if let Some(ds) = &level.downsample {
                let args =
                    Conv2dArgs { bias: Some(&ds.bias), padding: [2, 0, 0, 1], stride: [2, 2], ..Default::default() };
                x = conv2d(g, &x, &ds.weight, &args)?;
                emit(&format!("enc.down{l}.downsample"), &x);
            }
        }
        for (i, b) in self.mid.iter().enumerate() {
            x = b.forward(g, &x)?;
            emit(&format!("enc.mid.block_{}", i + 1), &x);
        }
        let y = self.conv_out.forward(g, &pn_silu(g, &x)?, false)?;
        emit("enc.conv_out", &y);
        let d = self.config.dd();
        let [_, t, f] = y.shape()[..] else { unreachable!("conv2d keeps [C, T, F]") };
        let (z, n) = (d.z_channels, self.config.token_dim());
        if f * z != n {
            return Err(ModelError::Config(format!("encoded {:?}: {f} bins × {z} channels is not {n}", y.shape())));
        }
        // The mean half, as tokens 'c t f -> t (c f)', normalised per feature.
        let means = y.rows(0, z).expect("2z channels");
        let tokens = permute(g, &means, &[1, 0, 2])?.reshape(&[t, n]).expect("token = z · bins");
        binary_inplace(g, &tokens, &self.neg_mean, Binary::Add)?;
        binary_inplace(g, &tokens, &self.inv_std, Binary::Mul)?;
        if let Some(f) = trace.as_mut() {
            let latent = permute(g, &tokens.reshape(&[t, z, n / z]).expect("same size"), &[1, 0, 2])?;
            f("enc.latent", &latent);
        }
        Ok(tokens)
    }
}
