//! ReDimNet's feature front end — reference `MelBanks` (IDRnD/ReDimNet `redimnet/layers/features.py`) with
//! torchaudio's `MelSpectrogram`, NAVA.md §5.2: pre-emphasis by the stored 2-tap filter after a one-sample
//! reflect pad, centred STFT (reflect pad n_fft/2, the stored window zero-padded to n_fft in the middle), power
//! spectrum, the stored mel matrix, `log(x + 1e-6)`, and the mean over time subtracted per mel bin.
//!
//! Host code in f64 (an FFT per frame): at 30 s this is 3001 frames of 512 points, a few milliseconds, and f64
//! keeps the near-silent bins that `log` amplifies as exact as the reference's f32 allows.

use crate::weights::Scope;

use super::super::ModelError;

/// Added to the mel power before the log (`x = self.torchfbank(x) + 1e-6`).
pub const LOG_FLOOR: f64 = 1e-6;
/// `MelBanks` defaults that `ReDimNetWrap` does not override: FFT size and window length at 16 kHz.
pub const N_FFT: usize = 512;
pub const WIN_LENGTH: usize = 400;

/// The buffers of `spec.torchfbank`: pre-emphasis filter, analysis window and mel matrix.
#[derive(Clone, Debug)]
pub struct MelBanks {
    /// `spec.torchfbank.1.flipped_filter` `[1, 1, 2]`: `y[n] = f0·x[n−1] + f1·x[n]` (−0.97, 1).
    pub flipped_filter: [f32; 2],
    /// `spec.torchfbank.2.spectrogram.window` `[win_length]` (periodic Hamming).
    pub window: Vec<f32>,
    /// `spec.torchfbank.2.mel_scale.fb` `[n_fft/2 + 1, n_mels]`.
    pub fb: Vec<f32>,
    pub n_fft: usize,
    pub n_mels: usize,
    pub hop_length: usize,
}

/// The front end's intermediate and final values, each row-major.
#[derive(Clone, Debug)]
pub struct Features {
    /// Pre-emphasised waveform `[N]`.
    pub preemph: Vec<f32>,
    /// Mel power before the floor and log, `[n_mels, frames]`.
    pub power: Vec<f32>,
    /// Mean-subtracted log-mel features `[n_mels, frames]`.
    pub features: Vec<f32>,
    pub frames: usize,
}

impl MelBanks {
    /// The reference defaults (`MelBanks(n_mels, hop_length)`: 16 kHz, n_fft 512, window 400, 20–7600 Hz, HTK mel
    /// without normalisation), computed here; used where a file holds no trained buffers (seeded models).
    pub fn standard(n_mels: usize, hop_length: usize) -> Self {
        let (sr, n_fft, win) = (16000.0, N_FFT, WIN_LENGTH);
        let window =
            (0..win).map(|n| (0.54 - 0.46 * (2.0 * std::f64::consts::PI * n as f64 / win as f64).cos()) as f32);
        Self {
            flipped_filter: [-0.97, 1.0],
            window: window.collect(),
            fb: mel_filterbank(n_fft / 2 + 1, 20.0, 7600.0, n_mels, sr),
            n_fft,
            n_mels,
            hop_length,
        }
    }

    /// Reads the three buffers under `spec.torchfbank.` (shapes as `ReDimNetWrap` builds them: window
    /// [`WIN_LENGTH`], mel matrix `[N_FFT/2 + 1, n_mels]`).
    pub fn load(w: Scope, n_mels: usize, hop_length: usize) -> Result<Self, ModelError> {
        if hop_length == 0 {
            return Err(ModelError::Config("hop_length must be positive".into()));
        }
        let f = w.f32("torchfbank.1.flipped_filter", &[1, 1, 2])?;
        Ok(Self {
            flipped_filter: [f[0], f[1]],
            window: w.f32("torchfbank.2.spectrogram.window", &[WIN_LENGTH])?,
            fb: w.f32("torchfbank.2.mel_scale.fb", &[N_FFT / 2 + 1, n_mels])?,
            n_fft: N_FFT,
            n_mels,
            hop_length,
        })
    }

    /// Frames of a waveform of `n` samples (`center=True`).
    pub fn frames(&self, n: usize) -> usize {
        1 + n / self.hop_length
    }

    /// The whole front end on one 16 kHz waveform. It needs more than n_fft/2 samples (the reflect pad).
    pub fn compute(&self, wave: &[f32]) -> Result<Features, ModelError> {
        let n = wave.len();
        let half = self.n_fft / 2;
        if n <= half {
            return Err(ModelError::Input {
                what: "waveform".into(),
                problem: format!("{n} samples is too short: the centred STFT needs more than {half}"),
            });
        }
        // Pre-emphasis after reflect-padding one sample on the left (x[-1] = x[1]).
        let [f0, f1] = self.flipped_filter.map(|v| v as f64);
        let preemph: Vec<f64> =
            (0..n).map(|i| f0 * wave[if i == 0 { 1 } else { i - 1 }] as f64 + f1 * wave[i] as f64).collect();
        let frames = self.frames(n);
        let bins = half + 1;
        let fft = Fft::new(self.n_fft);
        let pad_left = (self.n_fft - self.window.len()) / 2;
        let mut power = vec![0.0f64; self.n_mels * frames];
        let mut re = vec![0.0f64; self.n_fft];
        let mut im = vec![0.0f64; self.n_fft];
        let mut spec = vec![0.0f64; bins];
        for t in 0..frames {
            re.iter_mut().for_each(|v| *v = 0.0);
            im.iter_mut().for_each(|v| *v = 0.0);
            for (j, &wv) in self.window.iter().enumerate() {
                // Sample index in the signal reflect-padded by n_fft/2 on both sides.
                let p = (t * self.hop_length + pad_left + j) as isize - half as isize;
                re[pad_left + j] = preemph[reflect(p, n)] * wv as f64;
            }
            fft.run(&mut re, &mut im);
            for (k, s) in spec.iter_mut().enumerate() {
                *s = re[k] * re[k] + im[k] * im[k];
            }
            for m in 0..self.n_mels {
                let acc: f64 = spec.iter().enumerate().map(|(k, &s)| self.fb[k * self.n_mels + m] as f64 * s).sum();
                power[m * frames + t] = acc;
            }
        }
        let mut features = vec![0.0f32; self.n_mels * frames];
        for m in 0..self.n_mels {
            let row = &power[m * frames..(m + 1) * frames];
            let logs: Vec<f64> = row.iter().map(|&p| (p + LOG_FLOOR).ln()).collect();
            let mean = logs.iter().sum::<f64>() / frames as f64;
            for (o, l) in features[m * frames..(m + 1) * frames].iter_mut().zip(&logs) {
                *o = (l - mean) as f32;
            }
        }
        Ok(Features {
            preemph: preemph.iter().map(|&v| v as f32).collect(),
            power: power.iter().map(|&v| v as f32).collect(),
            features,
            frames,
        })
    }
}

/// Index into a signal of `n` samples after reflect padding (no edge repeat), for `-n < p < 2n − 1`.
fn reflect(p: isize, n: usize) -> usize {
    let n = n as isize;
    let q = if p < 0 { -p } else { p };
    (if q >= n { 2 * (n - 1) - q } else { q }) as usize
}

/// torchaudio's `melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate, norm=None, mel_scale="htk")`,
/// `[n_freqs, n_mels]`: triangles between mel-spaced points over the linear frequency grid.
pub fn mel_filterbank(n_freqs: usize, f_min: f64, f_max: f64, n_mels: usize, sample_rate: f64) -> Vec<f32> {
    let hz_to_mel = |f: f64| 2595.0 * (1.0 + f / 700.0).log10();
    let mel_to_hz = |m: f64| 700.0 * (10f64.powf(m / 2595.0) - 1.0);
    let (m_min, m_max) = (hz_to_mel(f_min), hz_to_mel(f_max));
    let f_pts: Vec<f64> =
        (0..n_mels + 2).map(|i| mel_to_hz(m_min + (m_max - m_min) * i as f64 / (n_mels + 1) as f64)).collect();
    let nyquist = (sample_rate as i64 / 2) as f64;
    let mut fb = vec![0.0f32; n_freqs * n_mels];
    for k in 0..n_freqs {
        let f = if n_freqs > 1 { nyquist * k as f64 / (n_freqs - 1) as f64 } else { 0.0 };
        for m in 0..n_mels {
            let down = (f - f_pts[m]) / (f_pts[m + 1] - f_pts[m]);
            let up = (f_pts[m + 2] - f) / (f_pts[m + 2] - f_pts[m + 1]);
            fb[k * n_mels + m] = down.min(up).max(0.0) as f32;
        }
    }
    fb
}

/// An in-place iterative radix-2 complex FFT of a fixed power-of-two size, in f64.
struct Fft {
    n: usize,
    cos: Vec<f64>,
    sin: Vec<f64>,
}

impl Fft {
    fn new(n: usize) -> Self {
        let angle = |k: usize| -2.0 * std::f64::consts::PI * k as f64 / n as f64;
        Self { n, cos: (0..n / 2).map(|k| angle(k).cos()).collect(), sin: (0..n / 2).map(|k| angle(k).sin()).collect() }
    }

    fn run(&self, re: &mut [f64], im: &mut [f64]) {
        let n = self.n;
        let bits = n.trailing_zeros();
        for i in 0..n {
            let j = i.reverse_bits() >> (usize::BITS - bits);
            if j > i {
                re.swap(i, j);
                im.swap(i, j);
            }
        }
        let mut len = 2;
        while len <= n {
            let step = n / len;
            for start in (0..n).step_by(len) {
                for k in 0..len / 2 {
                    let (c, s) = (self.cos[k * step], self.sin[k * step]);
                    let (a, b) = (start + k, start + k + len / 2);
                    let tr = re[b] * c - im[b] * s;
                    let ti = re[b] * s + im[b] * c;
                    re[b] = re[a] - tr;
                    im[b] = im[a] - ti;
                    re[a] += tr;
                    im[a] += ti;
                }
            }
            len *= 2;
        }
    }
}
