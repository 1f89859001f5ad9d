//! What a generation's size and length mean in latents — NAVA.md §3: the aspect buckets of `_RATIO2HWS`
//! (local_video_vae.py, resolution 960), 4× temporal and 16× spatial video compression, 24 fps, 25 audio tokens per
//! second (`audio_len` of data/t2v.py), and the position tables that bound the length.

use crate::kernels::rope::MAX_POSITIONS;

use super::PipelineError;

/// Frames per second of the video.
pub const FPS: u32 = 24;
/// Audio latent tokens per second.
pub const AUDIO_TOKENS_PER_SECOND: u32 = 25;
/// Pixels per latent cell (2×2 patchify, then three ×2 downsamples).
pub const SPATIAL: usize = 16;
/// Pixel sizes must be multiples of this: the DiT's (1, 2, 2) patch needs an even latent.
pub const SIZE_MULTIPLE: usize = 32;
/// The longest clip the model was trained on (10 s, 61 latent frames); longer ones run with a warning.
pub const TRAINED_LATENT_FRAMES: usize = 61;

/// One aspect bucket: its name and the landscape size (height ≤ width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub name: &'static str,
    pub height: usize,
    pub width: usize,
}

/// The seven buckets of §3.4, landscape order; portrait swaps the sizes.
pub const BUCKETS: [Bucket; 7] = [
    Bucket { name: "16:9", height: 704, width: 1280 },
    Bucket { name: "1:1", height: 960, width: 960 },
    Bucket { name: "5:4", height: 864, width: 1056 },
    Bucket { name: "4:3", height: 832, width: 1088 },
    Bucket { name: "3:2", height: 736, width: 1184 },
    Bucket { name: "2:1", height: 672, width: 1344 },
    Bucket { name: "5:2", height: 608, width: 1536 },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Orientation {
    #[default]
    Landscape,
    Portrait,
}

/// A video size in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub width: usize,
    pub height: usize,
}

impl Size {
    /// The bucket named `aspect` ("16:9", "9:16", "1:1", …; either order of the two numbers) in `orientation`.
    /// A name written portrait-first ("9:16") implies portrait.
    pub fn from_aspect(aspect: &str, orientation: Orientation) -> Result<Self, PipelineError> {
        let parse = |s: &str| -> Option<(usize, usize)> {
            let (a, b) = s.trim().split_once([':', '/', 'x'])?;
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        };
        let names = || BUCKETS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ");
        let Some((a, b)) = parse(aspect).filter(|&(a, b)| a > 0 && b > 0) else {
            return Err(PipelineError::Config {
                what: "aspect",
                problem: format!("`{aspect}` is not W:H; use one of {}", names()),
            });
        };
        let (long, short) = (a.max(b), a.min(b));
        let bucket = BUCKETS.iter().find(|k| {
            let (l, s) =
                k.name.split_once(':').map_or((0, 0), |(l, s)| (l.parse().unwrap_or(0), s.parse().unwrap_or(0)));
            l * short == s * long
        });
        let Some(bucket) = bucket else {
            return Err(PipelineError::Config {
                what: "aspect",
                problem: format!("{aspect} is not one of the model's buckets ({}), in either orientation", names()),
            });
        };
        let portrait = orientation == Orientation::Portrait || a < b;
        Ok(if portrait {
            Self { width: bucket.height, height: bucket.width }
        } else {
            Self { width: bucket.width, height: bucket.height }
        })
    }

    /// `WxH`, e.g. `1280x704`.
    pub fn parse(s: &str) -> Result<Self, PipelineError> {
        let bad =
            || PipelineError::Config { what: "size", problem: format!("`{s}` is not WIDTHxHEIGHT, e.g. 1280x704") };
        let (w, h) = s.trim().split_once(['x', 'X', '×']).ok_or_else(bad)?;
        let size = Self { width: w.trim().parse().map_err(|_| bad())?, height: h.trim().parse().map_err(|_| bad())? };
        size.check()?;
        Ok(size)
    }

    /// Sizes the latent grid can represent: positive multiples of 32 pixels.
    pub fn check(&self) -> Result<(), PipelineError> {
        let Self { width, height } = *self;
        if width == 0 || height == 0 || !width.is_multiple_of(SIZE_MULTIPLE) || !height.is_multiple_of(SIZE_MULTIPLE) {
            let round = |v: usize| (v.max(SIZE_MULTIPLE) + SIZE_MULTIPLE / 2) / SIZE_MULTIPLE * SIZE_MULTIPLE;
            return Err(PipelineError::Config {
                what: "size",
                problem: format!(
                    "{width}×{height} is not a multiple of {SIZE_MULTIPLE} pixels on both sides; the nearest is {}×{}",
                    round(width),
                    round(height)
                ),
            });
        }
        Ok(())
    }

    /// Whether this is one of the trained buckets (other sizes run, with a warning from the app).
    pub fn is_bucket(&self) -> bool {
        BUCKETS.iter().any(|b| {
            (b.width, b.height) == (self.width, self.height) || (b.height, b.width) == (self.width, self.height)
        })
    }

    /// The latent grid `(h, w)`.
    pub fn latent(&self) -> (usize, usize) {
        (self.height / SPATIAL, self.width / SPATIAL)
    }
}

/// The length of a clip in latent frames, and what it means in pixels frames, seconds and audio tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Length {
    pub latent_frames: usize,
}

impl Length {
    /// The longest clip the position tables allow: audio tokens and latent frames each ≤ [`MAX_POSITIONS`].
    pub fn max() -> Self {
        let mut f = MAX_POSITIONS;
        while f > 1 && (Self { latent_frames: f }).audio_tokens() > MAX_POSITIONS {
            f -= 1;
        }
        Self { latent_frames: f }
    }

    pub fn from_latent_frames(latent_frames: usize) -> Result<Self, PipelineError> {
        let l = Self { latent_frames };
        if latent_frames == 0 {
            return Err(PipelineError::Config {
                what: "length",
                problem: "at least one latent frame is needed".into(),
            });
        }
        let max = Self::max();
        if latent_frames > max.latent_frames {
            return Err(PipelineError::Config {
                what: "length",
                problem: format!(
                    "{latent_frames} latent frames ({:.2} s) is longer than the model's position tables allow: at most \
                     {} latent frames ({:.2} s, {} audio tokens of {MAX_POSITIONS})",
                    l.seconds(),
                    max.latent_frames,
                    max.seconds(),
                    max.audio_tokens()
                ),
            });
        }
        Ok(l)
    }

    /// The shortest clip of at least `seconds` (the reference's lengths are `4(F−1)+1` frames).
    pub fn from_seconds(seconds: f64) -> Result<Self, PipelineError> {
        if !seconds.is_finite() || seconds <= 0.0 {
            return Err(PipelineError::Config { what: "seconds", problem: format!("{seconds} is not a duration") });
        }
        let frames = (seconds * FPS as f64 - 1e-9).ceil().max(1.0);
        if frames > (4 * MAX_POSITIONS) as f64 {
            return Self::from_latent_frames(MAX_POSITIONS + 1);
        }
        Self::from_latent_frames(((frames as usize).saturating_sub(1)).div_ceil(4) + 1)
    }

    /// Pixel frames: `4(F − 1) + 1`.
    pub fn pixel_frames(&self) -> usize {
        4 * (self.latent_frames - 1) + 1
    }

    pub fn seconds(&self) -> f64 {
        self.pixel_frames() as f64 / FPS as f64
    }

    /// Audio latent tokens: `ceil(pixel_frames / 24 · 25)` in integer arithmetic.
    pub fn audio_tokens(&self) -> usize {
        (self.pixel_frames() * AUDIO_TOKENS_PER_SECOND as usize).div_ceil(FPS as usize)
    }

    /// Longer than the clips the model saw in training.
    pub fn beyond_training(&self) -> bool {
        self.latent_frames > TRAINED_LATENT_FRAMES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_table_of_the_spec() {
        // §3.3: 31 / 37 / 61 latent frames → 121 / 145 / 241 frames and 127 / 152 / 252 audio tokens.
        for (f, px, audio) in [(31, 121, 127), (37, 145, 152), (61, 241, 252)] {
            let l = Length::from_latent_frames(f).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((l.pixel_frames(), l.audio_tokens()), (px, audio));
        }
        assert_eq!(Length::from_seconds(6.0).map(|l| l.latent_frames).ok(), Some(37));
        assert_eq!(Length::from_seconds(5.0).map(|l| l.latent_frames).ok(), Some(31));
        let max = Length::max();
        assert!(max.audio_tokens() <= MAX_POSITIONS);
        assert!(Length { latent_frames: max.latent_frames + 1 }.audio_tokens() > MAX_POSITIONS);
        let e = Length::from_seconds(60.0).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("position tables"), "{e}");
    }

    #[test]
    fn buckets_and_sizes() {
        let s = Size::from_aspect("16:9", Orientation::Landscape).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.width, s.height), (1280, 704));
        let p = Size::from_aspect("9:16", Orientation::Landscape).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.width, p.height), (704, 1280));
        let q = Size::from_aspect("1:1", Orientation::Portrait).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((q.width, q.height), (960, 960));
        for b in BUCKETS {
            assert!(Size { width: b.width, height: b.height }.check().is_ok(), "{}", b.name);
        }
        assert!(Size::from_aspect("7:3", Orientation::Landscape).is_err());
        let e = Size::parse("1280x700").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("multiple of 32") && e.contains("1280×704"), "{e}");
        assert_eq!(Size::parse("64x96").map(|s| s.latent()).ok(), Some((6, 4)));
    }
}
