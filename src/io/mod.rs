//! Outputs: frames as RGB8 pictures, stereo audio as WAV, both muxed into MP4; files appear only when complete.
//!
//! The conversions follow the reference's writer (inference_nava.py): pixels `clamp((x + 1) / 2, 0, 1) · 255`
//! truncated to u8, audio peak-normalised to 0.95 (`_toWav`) and clamped to [-1, 1].

pub mod atomic;
pub mod demux;
pub mod mux;
pub mod wav;

#[cfg(not(target_arch = "wasm32"))]
pub mod decode;
#[cfg(not(target_arch = "wasm32"))]
pub mod encode;
#[cfg(not(target_arch = "wasm32"))]
pub mod png;

pub use atomic::AtomicFile;

/// Frames per second of NAVA's video.
pub const FPS: u32 = 24;

/// One RGB8 picture, rows top to bottom, 3 bytes per pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Frame {
    /// From a decoder frame `[3, height, width]` with values in [-1, 1], as the reference converts it.
    pub fn from_planar(values: &[f32], height: usize, width: usize) -> Option<Self> {
        let plane = height * width;
        if values.len() != 3 * plane {
            return None;
        }
        let mut rgb = vec![0u8; 3 * plane];
        for (p, px) in rgb.chunks_exact_mut(3).enumerate() {
            for (c, v) in px.iter_mut().enumerate() {
                let x = ((values[c * plane + p] + 1.0) / 2.0).clamp(0.0, 1.0);
                // `(x · 255).clamp(0, 255).to(uint8)` truncates toward zero; NaN becomes 0.
                *v = (x * 255.0) as u8;
            }
        }
        Some(Self { width, height, rgb })
    }
}

/// Stereo (or mono) audio, samples interleaved by channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    pub sample_rate: u32,
    pub channels: u16,
    pub samples: Vec<f32>,
}

impl Audio {
    /// From planar channels `[channels][n]`.
    pub fn from_planar(sample_rate: u32, planes: &[Vec<f32>]) -> Self {
        let channels = planes.len();
        let n = planes.iter().map(Vec::len).min().unwrap_or(0);
        let mut samples = Vec::with_capacity(n * channels);
        for i in 0..n {
            samples.extend(planes.iter().map(|p| p[i]));
        }
        Self { sample_rate, channels: channels as u16, samples }
    }

    /// Samples per channel.
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1) as usize
    }

    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / self.sample_rate as f64
    }

    /// The reference's `_toWav`: scale so that the peak is 0.95 (peaks under 1e-12 count as 1e-12), clamp to
    /// [-1, 1].
    pub fn normalize_peak(&mut self) {
        let peak = self.samples.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let scale = 0.95 / peak;
        for v in &mut self.samples {
            *v = (*v * scale).clamp(-1.0, 1.0);
        }
    }

    /// 16-bit PCM samples, rounded, as encoders and WAV files take them.
    pub fn to_i16(&self) -> Vec<i16> {
        self.samples.iter().map(|&v| (v.clamp(-1.0, 1.0) * 32767.0).round() as i16).collect()
    }
}

/// Errors of writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{path}: {source}")]
    File { path: std::path::PathBuf, source: std::io::Error },
    #[error("{what}: {problem}")]
    Encode { what: &'static str, problem: String },
    #[error("{0}")]
    Input(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_follow_the_reference_rounding() {
        // (x + 1) / 2 · 255, truncated: -1 → 0, 1 → 255, 0 → 127, out of range clamps.
        let f = Frame::from_planar(&[-1.0, 0.0, 1.0, 2.0, -3.0, 0.5], 1, 2).unwrap_or_else(|| unreachable!());
        assert_eq!(f.rgb, vec![0, 255, 0, 127, 255, 191]);
        assert!(Frame::from_planar(&[0.0; 5], 1, 2).is_none());
    }

    #[test]
    fn peak_normalisation() {
        let mut a = Audio::from_planar(16000, &[vec![0.5, -0.25], vec![0.1, 0.0]]);
        assert_eq!(a.samples, vec![0.5, 0.1, -0.25, 0.0]);
        a.normalize_peak();
        assert!((a.samples[0] - 0.95).abs() < 1e-6 && (a.samples[2] + 0.475).abs() < 1e-6);
        let mut silent = Audio::from_planar(16000, &[vec![0.0; 4]]);
        silent.normalize_peak();
        assert!(silent.samples.iter().all(|v| *v == 0.0));
    }
}
