//! Reference voices for timbre conditioning (NAVA.md §5.2 step 3): a WAV file read with `hound` (8–32-bit integer
//! or 32-bit float PCM, any channel count and sample rate), averaged to mono, resampled to 16 kHz and truncated to
//! 30 s, as the reference's `torchaudio.load` → `resample` → `mean(0)` → `[..., :30*16000]`.
//!
//! The resampler is band-limited polyphase windowed-sinc interpolation with the parameters of
//! `torchaudio.functional.resample`'s default (`sinc_interp_hann`, 6 zero crossings, roll-off 0.99): the ratio is
//! reduced by the gcd, and output phase j of each block of `new` samples is a dot product of the input around
//! `i·orig` with its own Hann-windowed sinc, the cutoff at 0.99 × the lower Nyquist frequency.

use std::path::Path;

use super::super::ModelError;

/// The speaker encoder's sample rate.
pub const SAMPLE_RATE: u32 = 16000;
/// The reference keeps at most 30 s of a reference voice.
pub const MAX_SECONDS: usize = 30;
/// Shorter voices are refused: ReDimNet needs a few frames and the embedding of a fraction of a second is noise.
pub const MIN_SECONDS: f64 = 0.5;
/// A peak below this (about −100 dBFS) counts as silence.
pub const SILENCE_PEAK: f32 = 1e-5;

const LOWPASS_FILTER_WIDTH: f64 = 6.0;
const ROLLOFF: f64 = 0.99;

fn bad(path: &Path, problem: String) -> ModelError {
    ModelError::Input { what: format!("reference voice {}", path.display()), problem }
}

/// Reads a WAV file as 16 kHz mono of at most 30 s, ready for [`super::SpeakerEncoder::embed`].
pub fn read_voice(path: impl AsRef<Path>) -> Result<Vec<f32>, ModelError> {
    let path = path.as_ref();
    let reader = hound::WavReader::open(path)
        .map_err(|e| bad(path, format!("cannot be read as a WAV file ({e}); give a PCM or float .wav")))?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    if channels == 0 || spec.sample_rate == 0 {
        return Err(bad(path, "declares no channels or a sample rate of 0".into()));
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => {
            if spec.bits_per_sample != 32 {
                return Err(bad(path, format!("is {}-bit float; only 32-bit float is read", spec.bits_per_sample)));
            }
            reader.into_samples::<f32>().collect::<Result<_, _>>()
        }
        hound::SampleFormat::Int => {
            if !(8..=32).contains(&spec.bits_per_sample) {
                return Err(bad(path, format!("has {}-bit samples; 8 to 32 bits are read", spec.bits_per_sample)));
            }
            // Full scale is 2^(bits−1), as torchaudio normalises integer PCM.
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f64;
            reader.into_samples::<i32>().map(|s| s.map(|v| (v as f64 * scale) as f32)).collect::<Result<_, _>>()
        }
    }
    .map_err(|e| bad(path, format!("is truncated or damaged ({e})")))?;
    let mono: Vec<f32> = interleaved
        .chunks_exact(channels)
        .map(|frame| (frame.iter().map(|&v| v as f64).sum::<f64>() / channels as f64) as f32)
        .collect();
    let seconds = mono.len() as f64 / spec.sample_rate as f64;
    if seconds < MIN_SECONDS {
        return Err(bad(
            path,
            format!("is {seconds:.3} s long; a reference voice needs at least {MIN_SECONDS} s of speech"),
        ));
    }
    let peak = mono.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if !peak.is_finite() {
        return Err(bad(path, "holds NaN or infinite samples".into()));
    }
    if peak < SILENCE_PEAK {
        return Err(bad(path, format!("is silent (peak {peak:e}); record the voice again or pick another file")));
    }
    // Only the first 30 s are kept: resample a little more than that (the filter reaches ahead) and cut.
    let keep_in = ((MAX_SECONDS + 1) as u64 * spec.sample_rate as u64) as usize;
    let mono = &mono[..mono.len().min(keep_in)];
    let mut out = resample(mono, spec.sample_rate, SAMPLE_RATE);
    out.truncate(MAX_SECONDS * SAMPLE_RATE as usize);
    Ok(out)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Band-limited resampling from `orig` to `new` Hz (torchaudio's default `sinc_interp_hann`, width 6, roll-off
/// 0.99); returns `ceil(new · len / orig)` samples. The same rate returns the input.
pub fn resample(x: &[f32], orig: u32, new: u32) -> Vec<f32> {
    if orig == new || x.is_empty() || orig == 0 || new == 0 {
        return x.to_vec();
    }
    let d = gcd(orig as u64, new as u64);
    let (o, n) = ((orig as u64 / d) as usize, (new as u64 / d) as usize);
    let base = o.min(n) as f64 * ROLLOFF;
    let width = (LOWPASS_FILTER_WIDTH * o as f64 / base).ceil() as usize;
    let taps = 2 * width + o;
    // kernels[j][k]: output phase j, input offset k − width from the block start.
    let mut kernels = vec![0.0f64; n * taps];
    let scale = base / o as f64;
    for j in 0..n {
        for k in 0..taps {
            let idx = (k as f64 - width as f64) / o as f64;
            let t = ((-(j as f64) / n as f64 + idx) * base).clamp(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH);
            let window = (t * std::f64::consts::PI / LOWPASS_FILTER_WIDTH / 2.0).cos().powi(2);
            let tp = t * std::f64::consts::PI;
            let sinc = if tp == 0.0 { 1.0 } else { tp.sin() / tp };
            kernels[j * taps + k] = sinc * window * scale;
        }
    }
    let len = x.len();
    let out_len = (n as u64 * len as u64).div_ceil(o as u64) as usize;
    let mut out = Vec::with_capacity(out_len);
    // Input zero-padded by `width` on the left (and enough on the right); block b starts at input b·o − width.
    'blocks: for b in 0.. {
        let start = (b * o) as isize - width as isize;
        for j in 0..n {
            if out.len() == out_len {
                break 'blocks;
            }
            let kern = &kernels[j * taps..(j + 1) * taps];
            let mut acc = 0.0f64;
            for (k, &w) in kern.iter().enumerate() {
                let i = start + k as isize;
                if i >= 0 && (i as usize) < len {
                    acc += w * x[i as usize] as f64;
                }
            }
            out.push(acc as f32);
        }
    }
    out
}
