//! Seeded Gaussian noise for the initial latents. The reference draws from torch's global generator; bit-identical
//! noise across frameworks is not a goal, but the same seed must give the same latents on every machine, so this
//! is a fixed, portable generator (SplitMix64 → Box–Muller in f64, rounded to f32).

/// A deterministic normal(0, 1) stream.
pub struct Noise {
    state: u64,
    spare: Option<f64>,
}

impl Noise {
    pub fn new(seed: u64) -> Self {
        Self { state: seed ^ 0x6e61_7661_6e6f_6973, spare: None }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1], 53 bits.
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f32 {
        if let Some(v) = self.spare.take() {
            return v as f32;
        }
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * v).sin_cos();
        self.spare = Some(r * s);
        (r * c) as f32
    }

    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal()).collect()
    }
}

/// The initial latents, drawn as the reference does: video first as `[F·h·w, C]` (channels last), then audio
/// `[L, C_audio]`. The video is returned transposed to the denoiser's `[C, F, h, w]`.
pub fn initial_latents(seed: u64, video: Option<[usize; 4]>, audio: [usize; 2]) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Noise::new(seed);
    let video = video.map_or_else(Vec::new, |[c, f, h, w]| {
        let rows = rng.normals(f * h * w * c);
        let cells = f * h * w;
        let mut out = vec![0f32; rows.len()];
        for cell in 0..cells {
            for ch in 0..c {
                out[ch * cells + cell] = rows[cell * c + ch];
            }
        }
        out
    });
    let audio = rng.normals(audio[0] * audio[1]);
    (video, audio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_statistics_and_determinism() {
        let a = Noise::new(7).normals(200_000);
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.01, "mean {mean} var {var}");
        assert_eq!(a[..10], Noise::new(7).normals(10)[..]);
        assert_ne!(a[..10], Noise::new(8).normals(10)[..]);
    }

    #[test]
    fn video_is_drawn_channels_last() {
        let (v, a) = initial_latents(3, Some([2, 1, 1, 3]), [2, 2]);
        let raw = Noise::new(3).normals(10);
        // [cell, channel] order in the draw; [channel, cell] in the result.
        assert_eq!(v, vec![raw[0], raw[2], raw[4], raw[1], raw[3], raw[5]]);
        assert_eq!(a, raw[6..10].to_vec());
    }
}
