//! Native encoders behind the MP4 writer: H.264 through OpenH264 (built from source, no system library) and
//! AAC-LC through the Fraunhofer FDK encoder. Frames stream in as the decoder produces them; the file is muxed and
//! renamed into place only by [`Mp4Writer::finish`].

use std::path::{Path, PathBuf};

use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, QpRange, RateControlMode, VuiConfig,
};
use openh264::formats::{RgbSliceU8, YUVBuffer};
use openh264::OpenH264API;

use super::mux::{annexb_nals, write_mp4, AudioTrack, VideoSample, VideoTrack};
use super::{AtomicFile, Audio, Frame, OutputError};

fn h264_err(e: impl std::fmt::Display) -> OutputError {
    OutputError::Encode { what: "H.264", problem: e.to_string() }
}

fn aac_err(e: impl std::fmt::Display) -> OutputError {
    OutputError::Encode { what: "AAC", problem: e.to_string() }
}

/// H.264 quantiser: close to x264's crf 18 in visual quality.
const QP: u8 = 20;

/// H.264 (constrained baseline) encoder at a constant frame rate, one IDR picture every two seconds.
pub struct H264Encoder {
    encoder: Encoder,
    width: usize,
    height: usize,
    fps: u32,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    samples: Vec<VideoSample>,
}

impl H264Encoder {
    pub fn new(width: usize, height: usize, fps: u32) -> Result<Self, OutputError> {
        if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) || width > 4096 {
            return Err(OutputError::Input(format!("H.264 needs even frame sizes up to 4096; got {width}×{height}")));
        }
        // Constant quantiser instead of a bitrate target (the reference asks x264 for crf 18): every frame is kept
        // and quality does not depend on the clip's length. The bitrate is only a hint for the level.
        let bitrate = (width * height * fps as usize / 4).clamp(200_000, 40_000_000) as u32;
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(bitrate))
            .rate_control_mode(RateControlMode::Off)
            .qp(QpRange::new(QP, QP))
            .max_frame_rate(FrameRate::from_hz(fps as f32))
            .skip_frames(false)
            // The RGB → YUV conversion below uses BT.601 limited-range coefficients; say so to players.
            .vui(VuiConfig::bt601())
            .intra_frame_period(IntraFramePeriod::from_num_frames(2 * fps));
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config).map_err(h264_err)?;
        Ok(Self { encoder, width, height, fps, sps: None, pps: None, samples: Vec::new() })
    }

    pub fn frames(&self) -> usize {
        self.samples.len()
    }

    pub fn push(&mut self, frame: &Frame) -> Result<(), OutputError> {
        if frame.width != self.width || frame.height != self.height {
            return Err(OutputError::Input(format!(
                "frame {} is {}×{}; the video is {}×{}",
                self.samples.len(),
                frame.width,
                frame.height,
                self.width,
                self.height
            )));
        }
        let yuv = YUVBuffer::from_rgb8_source(RgbSliceU8::new(&frame.rgb, (self.width, self.height)));
        let ms = self.samples.len() as u64 * 1000 / self.fps as u64;
        let bits = self.encoder.encode_at(&yuv, openh264::Timestamp::from_millis(ms)).map_err(h264_err)?;
        if matches!(bits.frame_type(), FrameType::Skip | FrameType::Invalid) {
            return Err(h264_err(format!("the encoder dropped frame {}", self.samples.len())));
        }
        let stream = bits.to_vec();
        let mut data = Vec::with_capacity(stream.len());
        let mut sync = false;
        for nal in annexb_nals(&stream) {
            match nal[0] & 0x1f {
                7 => self.sps = Some(nal.to_vec()),
                8 => self.pps = Some(nal.to_vec()),
                t => {
                    sync |= t == 5;
                    data.extend((nal.len() as u32).to_be_bytes());
                    data.extend(nal);
                }
            }
        }
        self.samples.push(VideoSample { data, sync });
        Ok(())
    }

    pub fn finish(self) -> Result<VideoTrack, OutputError> {
        let (Some(sps), Some(pps)) = (self.sps, self.pps) else {
            return Err(h264_err("no frames were encoded"));
        };
        Ok(VideoTrack {
            width: self.width as u16,
            height: self.height as u16,
            fps: self.fps,
            sps,
            pps,
            samples: self.samples,
        })
    }
}

/// Encodes `audio` (any rate AAC supports, 1 or 2 channels) as AAC-LC access units.
pub fn encode_aac(audio: &Audio) -> Result<AudioTrack, OutputError> {
    use fdk_aac::enc::{AudioObjectType, BitRate as AacRate, ChannelMode, Encoder as Aac, EncoderParams, Transport};
    let channels = match audio.channels {
        1 => ChannelMode::Mono,
        2 => ChannelMode::Stereo,
        n => return Err(OutputError::Input(format!("AAC output takes 1 or 2 channels; got {n}"))),
    };
    let bitrate = 64_000 * audio.channels as u32;
    let enc = Aac::new(EncoderParams {
        bit_rate: AacRate::Cbr(bitrate),
        sample_rate: audio.sample_rate,
        transport: Transport::Raw,
        channels,
        audio_object_type: AudioObjectType::Mpeg4LowComplexity,
    })
    .map_err(aac_err)?;
    let info = enc.info().map_err(aac_err)?;
    let frame_len = info.frameLength;
    let priming = info.nDelay;
    let config = info.confBuf[..info.confSize as usize].to_vec();
    let ch = audio.channels as usize;
    let length = audio.frames() as u64;
    // Every real sample must leave the encoder: feed silence after the signal until the delay has passed.
    let needed = (length + priming as u64).div_ceil(frame_len as u64) as usize;
    let mut pcm = audio.to_i16();
    pcm.resize((needed + 2) * frame_len as usize * ch, 0);
    let mut out = vec![0u8; info.maxOutBufBytes.max(8192) as usize];
    let mut frames = Vec::with_capacity(needed);
    let mut pos = 0;
    while frames.len() < needed && pos < pcm.len() {
        let end = (pos + frame_len as usize * ch).min(pcm.len());
        let r = enc.encode(&pcm[pos..end], &mut out).map_err(aac_err)?;
        if r.input_consumed == 0 && r.output_size == 0 {
            return Err(aac_err("the encoder made no progress"));
        }
        pos += r.input_consumed;
        if r.output_size > 0 {
            frames.push(out[..r.output_size].to_vec());
        }
    }
    if frames.len() < needed {
        return Err(aac_err(format!("{} of {needed} frames came out", frames.len())));
    }
    Ok(AudioTrack {
        sample_rate: audio.sample_rate,
        channels: audio.channels,
        config,
        frame_len,
        priming,
        length,
        frames,
        bitrate,
    })
}

/// An MP4 file being written: H.264 frames pushed as they are decoded, the audio given at the end.
pub struct Mp4Writer {
    target: PathBuf,
    video: Option<H264Encoder>,
}

impl Mp4Writer {
    /// A writer for `target`; `video` is `(width, height)` or `None` for an audio-only file.
    pub fn new(target: &Path, video: Option<(usize, usize)>) -> Result<Self, OutputError> {
        let video = video.map(|(w, h)| H264Encoder::new(w, h, super::FPS)).transpose()?;
        Ok(Self { target: target.to_path_buf(), video })
    }

    pub fn push_frame(&mut self, frame: &Frame) -> Result<(), OutputError> {
        match &mut self.video {
            Some(v) => v.push(frame),
            None => Err(OutputError::Input("this MP4 has no video track".into())),
        }
    }

    /// Encodes the audio, muxes, and renames the finished file into place.
    pub fn finish(self, audio: Option<&Audio>) -> Result<PathBuf, OutputError> {
        let video = self.video.map(H264Encoder::finish).transpose()?;
        let audio = audio.map(encode_aac).transpose()?;
        if video.is_none() && audio.is_none() {
            return Err(OutputError::Input("an MP4 needs video or audio".into()));
        }
        let mut file = AtomicFile::create(&self.target)?;
        let path = self.target.clone();
        write_mp4(&mut file, video.as_ref(), audio.as_ref()).map_err(|source| OutputError::File { path, source })?;
        file.commit()
    }
}
