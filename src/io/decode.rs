//! Native H.264 decoding for the viewer: MP4 samples (length-prefixed NAL units) become an Annex B stream for
//! OpenH264 (built from source, as for encoding), and its I420 pictures become RGB8 [`Frame`]s in display order.

use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;
use openh264::OpenH264API;

use super::demux::{Mp4, ReadError};
use super::Frame;

/// An H.264 stream decoder that keeps B-frame reordering: pictures come out in display order, some samples late;
/// [`H264Decoder::finish`] returns the held-back ones.
pub struct H264Decoder {
    decoder: Decoder,
}

impl H264Decoder {
    pub fn new() -> Result<Self, ReadError> {
        // No flush after each sample: flushing would emit pictures before their reordering is known.
        let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| ReadError::Decode { sample: None, problem: format!("cannot start OpenH264: {e}") })?;
        Ok(Self { decoder })
    }

    /// Decodes sample number `sample` given as Annex B bytes; returns the picture it completes, if any.
    pub fn push(&mut self, sample: usize, annexb: &[u8]) -> Result<Option<Frame>, ReadError> {
        let err = |e: openh264::Error| ReadError::Decode { sample: Some(sample), problem: e.to_string() };
        let picture = self.decoder.decode(annexb).map_err(err)?;
        picture.map(|p| to_frame(&p, Some(sample))).transpose()
    }

    /// The pictures still held for reordering, after the last sample.
    pub fn finish(&mut self) -> Result<Vec<Frame>, ReadError> {
        let pictures = self
            .decoder
            .flush_remaining()
            .map_err(|e| ReadError::Decode { sample: None, problem: format!("flushing the decoder: {e}") })?;
        pictures.iter().map(|p| to_frame(p, None)).collect()
    }
}

fn to_frame(p: &DecodedYUV<'_>, sample: Option<usize>) -> Result<Frame, ReadError> {
    let (width, height) = p.dimensions();
    if width == 0 || height == 0 {
        return Err(ReadError::Decode { sample, problem: format!("decoded an empty {width}×{height} picture") });
    }
    let mut rgb = vec![0u8; width * height * 3];
    p.write_rgb8(&mut rgb);
    Ok(Frame { width, height, rgb })
}

/// Decodes the video track of `mp4` from its first sample, handing each picture to `each` in display order;
/// stops early when `each` returns false. Returns the number of pictures handed over.
pub fn decode_video(mp4: &Mp4, mut each: impl FnMut(Frame) -> bool) -> Result<usize, ReadError> {
    let mut decoder = H264Decoder::new()?;
    let mut count = 0;
    for i in 0..mp4.video.samples.len() {
        if let Some(frame) = decoder.push(i, &mp4.annexb_sample(i)?)? {
            count += 1;
            if !each(frame) {
                return Ok(count);
            }
        }
    }
    for frame in decoder.finish()? {
        count += 1;
        if !each(frame) {
            break;
        }
    }
    Ok(count)
}
