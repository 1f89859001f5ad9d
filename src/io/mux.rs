//! A minimal ISO-BMFF (MP4) muxer: one H.264 video track and/or one AAC audio track, already encoded, written
//! "fast start" (the `moov` index before the media data) so that browsers can play the file while it downloads.
//!
//! Pure Rust and target independent: the native app feeds it from its encoders, the web build from WebCodecs.
//! Samples of a track are stored in one chunk; a track's boxes follow ISO/IEC 14496-12 and 14496-15 (`avcC`),
//! 14496-14 (`esds`).

use std::io::Write;

/// One encoded H.264 access unit, NAL units length-prefixed (4 bytes, big endian), without SPS/PPS.
#[derive(Clone, Debug)]
pub struct VideoSample {
    pub data: Vec<u8>,
    /// An IDR picture: decoding can start here.
    pub sync: bool,
}

/// The video track: parameter sets and samples at a constant frame rate.
#[derive(Clone, Debug)]
pub struct VideoTrack {
    pub width: u16,
    pub height: u16,
    /// Frames per second (integer, e.g. 24).
    pub fps: u32,
    /// Sequence parameter set NAL unit (no start code).
    pub sps: Vec<u8>,
    /// Picture parameter set NAL unit (no start code).
    pub pps: Vec<u8>,
    pub samples: Vec<VideoSample>,
}

/// The audio track: raw AAC access units of `frame_len` samples per channel each.
#[derive(Clone, Debug)]
pub struct AudioTrack {
    pub sample_rate: u32,
    pub channels: u16,
    /// The AudioSpecificConfig (ISO/IEC 14496-3), as the encoder reports it.
    pub config: Vec<u8>,
    /// Samples per channel in one access unit (1024 for AAC-LC).
    pub frame_len: u32,
    /// Encoder priming: samples per channel at the start that are not part of the signal (skipped by an edit list).
    pub priming: u32,
    /// Samples per channel of the real signal.
    pub length: u64,
    pub frames: Vec<Vec<u8>>,
    pub bitrate: u32,
}

/// Movie timescale (ticks per second of `mvhd`/`tkhd`/`elst` durations).
const MOVIE_TIMESCALE: u32 = 1000;
/// Ticks per video frame in the video track's own timescale (`fps × VIDEO_TICKS` ticks per second).
const VIDEO_TICKS: u32 = 512;

/// Writes the MP4 file holding `video` and/or `audio`.
pub fn write_mp4(out: &mut impl Write, video: Option<&VideoTrack>, audio: Option<&AudioTrack>) -> std::io::Result<()> {
    let ftyp =
        boxed(b"ftyp", &[b"isom".as_slice(), &0x200u32.to_be_bytes(), b"isom", b"iso2", b"avc1", b"mp41"].concat());
    let video_bytes: usize = video.map_or(0, |v| v.samples.iter().map(|s| s.data.len()).sum());
    let audio_bytes: usize = audio.map_or(0, |a| a.frames.iter().map(Vec::len).sum());
    let mdat_payload = (video_bytes + audio_bytes) as u64;
    // A 64-bit mdat header and 64-bit chunk offsets when the media data passes 4 GiB.
    let large = mdat_payload + 16 > u32::MAX as u64;
    let mdat_header = if large { 16 } else { 8 };
    // The moov size does not depend on the offsets' values, so build it once to learn where the data starts.
    let probe = moov(video, audio, 0, large);
    let data_start = (ftyp.len() + probe.len() + mdat_header) as u64;
    let moov = moov(video, audio, data_start, large);
    out.write_all(&ftyp)?;
    out.write_all(&moov)?;
    if large {
        out.write_all(&1u32.to_be_bytes())?;
        out.write_all(b"mdat")?;
        out.write_all(&(mdat_payload + 16).to_be_bytes())?;
    } else {
        out.write_all(&((mdat_payload + 8) as u32).to_be_bytes())?;
        out.write_all(b"mdat")?;
    }
    if let Some(v) = video {
        for s in &v.samples {
            out.write_all(&s.data)?;
        }
    }
    if let Some(a) = audio {
        for f in &a.frames {
            out.write_all(f)?;
        }
    }
    Ok(())
}

/// Duration of the video track in seconds.
pub fn video_seconds(v: &VideoTrack) -> f64 {
    v.samples.len() as f64 / v.fps as f64
}

fn moov(video: Option<&VideoTrack>, audio: Option<&AudioTrack>, data_start: u64, large: bool) -> Vec<u8> {
    let video_ms = video.map_or(0, |v| (video_seconds(v) * MOVIE_TIMESCALE as f64).round() as u64);
    let audio_ms = audio.map_or(0, |a| a.length * MOVIE_TIMESCALE as u64 / a.sample_rate as u64);
    let mut body = mvhd(video_ms.max(audio_ms), 3);
    let mut offset = data_start;
    if let Some(v) = video {
        body.extend(video_trak(v, offset, video_ms, large));
        offset += v.samples.iter().map(|s| s.data.len() as u64).sum::<u64>();
    }
    if let Some(a) = audio {
        body.extend(audio_trak(a, offset, audio_ms, large));
    }
    boxed(b"moov", &body)
}

fn boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(payload.len() + 8);
    b.extend(((payload.len() + 8) as u32).to_be_bytes());
    b.extend(kind);
    b.extend(payload);
    b
}

/// A "full box": version and flags before the payload.
fn full(kind: &[u8; 4], version: u8, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(payload.len() + 4);
    p.push(version);
    p.extend(&flags.to_be_bytes()[1..]);
    p.extend(payload);
    boxed(kind, &p)
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn mvhd(duration: u64, next_track: u32) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend(0u32.to_be_bytes()); // creation time
    p.extend(0u32.to_be_bytes()); // modification time
    p.extend(MOVIE_TIMESCALE.to_be_bytes());
    p.extend((duration as u32).to_be_bytes());
    p.extend(0x0001_0000u32.to_be_bytes()); // rate 1.0
    p.extend(0x0100u16.to_be_bytes()); // volume 1.0
    p.extend([0u8; 10]);
    MATRIX.iter().for_each(|m| p.extend(m.to_be_bytes()));
    p.extend([0u8; 24]); // pre_defined
    p.extend(next_track.to_be_bytes());
    full(b"mvhd", 0, 0, &p)
}

fn tkhd(track: u32, duration: u64, audio: bool, width: u16, height: u16) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend(0u32.to_be_bytes());
    p.extend(0u32.to_be_bytes());
    p.extend(track.to_be_bytes());
    p.extend(0u32.to_be_bytes());
    p.extend((duration as u32).to_be_bytes());
    p.extend([0u8; 8]);
    p.extend(0u16.to_be_bytes()); // layer
    p.extend(0u16.to_be_bytes()); // alternate group
    p.extend(if audio { 0x0100u16 } else { 0 }.to_be_bytes());
    p.extend(0u16.to_be_bytes());
    MATRIX.iter().for_each(|m| p.extend(m.to_be_bytes()));
    p.extend(((width as u32) << 16).to_be_bytes());
    p.extend(((height as u32) << 16).to_be_bytes());
    // Flags: enabled | in movie | in preview.
    full(b"tkhd", 0, 7, &p)
}

fn mdhd(timescale: u32, duration: u64) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend(0u32.to_be_bytes());
    p.extend(0u32.to_be_bytes());
    p.extend(timescale.to_be_bytes());
    p.extend((duration as u32).to_be_bytes());
    p.extend(0x55c4u16.to_be_bytes()); // language "und"
    p.extend(0u16.to_be_bytes());
    full(b"mdhd", 0, 0, &p)
}

fn hdlr(kind: &[u8; 4], name: &str) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend(0u32.to_be_bytes());
    p.extend(kind);
    p.extend([0u8; 12]);
    p.extend(name.as_bytes());
    p.push(0);
    full(b"hdlr", 0, 0, &p)
}

fn dinf() -> Vec<u8> {
    let url = full(b"url ", 0, 1, &[]); // flag 1: media in this file
    let mut dref = 1u32.to_be_bytes().to_vec();
    dref.extend(url);
    boxed(b"dinf", &full(b"dref", 0, 0, &dref))
}

/// The sample table of a track stored as one chunk at `offset`.
fn stbl(stsd: Vec<u8>, stts: &[(u32, u32)], sizes: &[u32], sync: Option<&[u32]>, offset: u64, large: bool) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend(stsd);
    let mut t = (stts.len() as u32).to_be_bytes().to_vec();
    for &(count, delta) in stts {
        t.extend(count.to_be_bytes());
        t.extend(delta.to_be_bytes());
    }
    p.extend(full(b"stts", 0, 0, &t));
    if let Some(sync) = sync {
        let mut s = (sync.len() as u32).to_be_bytes().to_vec();
        sync.iter().for_each(|i| s.extend(i.to_be_bytes()));
        p.extend(full(b"stss", 0, 0, &s));
    }
    let n = sizes.len() as u32;
    let mut c = 1u32.to_be_bytes().to_vec();
    [1u32, n, 1].iter().for_each(|v| c.extend(v.to_be_bytes()));
    p.extend(full(b"stsc", 0, 0, &c));
    let mut z = 0u32.to_be_bytes().to_vec();
    z.extend(n.to_be_bytes());
    sizes.iter().for_each(|s| z.extend(s.to_be_bytes()));
    p.extend(full(b"stsz", 0, 0, &z));
    let mut o = 1u32.to_be_bytes().to_vec();
    if large {
        o.extend(offset.to_be_bytes());
        p.extend(full(b"co64", 0, 0, &o));
    } else {
        o.extend((offset as u32).to_be_bytes());
        p.extend(full(b"stco", 0, 0, &o));
    }
    boxed(b"stbl", &p)
}

fn video_trak(v: &VideoTrack, offset: u64, duration_ms: u64, large: bool) -> Vec<u8> {
    let mut avcc = vec![1, v.sps.get(1).copied().unwrap_or(66), v.sps.get(2).copied().unwrap_or(0)];
    avcc.push(v.sps.get(3).copied().unwrap_or(30));
    avcc.push(0xff); // 4-byte NAL lengths
    avcc.push(0xe1); // one SPS
    avcc.extend((v.sps.len() as u16).to_be_bytes());
    avcc.extend(&v.sps);
    avcc.push(1); // one PPS
    avcc.extend((v.pps.len() as u16).to_be_bytes());
    avcc.extend(&v.pps);
    let mut entry = vec![0u8; 6];
    entry.extend(1u16.to_be_bytes()); // data reference index
    entry.extend([0u8; 16]);
    entry.extend(v.width.to_be_bytes());
    entry.extend(v.height.to_be_bytes());
    entry.extend(0x0048_0000u32.to_be_bytes()); // 72 dpi
    entry.extend(0x0048_0000u32.to_be_bytes());
    entry.extend(0u32.to_be_bytes());
    entry.extend(1u16.to_be_bytes()); // frames per sample
    entry.extend([0u8; 32]); // compressor name
    entry.extend(0x0018u16.to_be_bytes()); // depth
    entry.extend(0xffffu16.to_be_bytes());
    entry.extend(boxed(b"avcC", &avcc));
    let mut stsd = 1u32.to_be_bytes().to_vec();
    stsd.extend(boxed(b"avc1", &entry));
    let stsd = full(b"stsd", 0, 0, &stsd);
    let n = v.samples.len() as u32;
    let sizes: Vec<u32> = v.samples.iter().map(|s| s.data.len() as u32).collect();
    let sync: Vec<u32> = (1..=n).filter(|&i| v.samples[i as usize - 1].sync).collect();
    let stbl = stbl(stsd, &[(n, VIDEO_TICKS)], &sizes, Some(&sync), offset, large);
    let minf = boxed(b"minf", &[full(b"vmhd", 0, 1, &[0u8; 8]), dinf(), stbl].concat());
    let timescale = v.fps * VIDEO_TICKS;
    let mdia = boxed(b"mdia", &[mdhd(timescale, n as u64 * VIDEO_TICKS as u64), hdlr(b"vide", "Video"), minf].concat());
    boxed(b"trak", &[tkhd(1, duration_ms, false, v.width, v.height), mdia].concat())
}

/// An MPEG-4 descriptor: tag, length (one byte when it fits, else the 4-byte form), payload.
fn descriptor(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![tag];
    let n = payload.len() as u32;
    if n < 0x80 {
        d.push(n as u8);
    } else {
        d.extend([0x80 | (n >> 21) as u8 & 0x7f, 0x80 | (n >> 14) as u8 & 0x7f, 0x80 | (n >> 7) as u8 & 0x7f]);
        d.push(n as u8 & 0x7f);
    }
    d.extend(payload);
    d
}

fn audio_trak(a: &AudioTrack, offset: u64, duration_ms: u64, large: bool) -> Vec<u8> {
    let mut dcd = vec![0x40, 0x15]; // MPEG-4 audio, audio stream
    let max_frame = a.frames.iter().map(Vec::len).max().unwrap_or(0) as u32;
    dcd.extend(&max_frame.to_be_bytes()[1..]); // buffer size (24 bits)
    dcd.extend(a.bitrate.to_be_bytes()); // max bitrate
    dcd.extend(a.bitrate.to_be_bytes()); // average bitrate
    dcd.extend(descriptor(5, &a.config));
    let mut es = vec![0, 0, 0]; // ES id 0, no flags
    es.extend(descriptor(4, &dcd));
    es.extend(descriptor(6, &[2]));
    let esds = full(b"esds", 0, 0, &descriptor(3, &es));
    let mut entry = vec![0u8; 6];
    entry.extend(1u16.to_be_bytes());
    entry.extend([0u8; 8]);
    entry.extend(a.channels.to_be_bytes());
    entry.extend(16u16.to_be_bytes());
    entry.extend([0u8; 4]);
    entry.extend((a.sample_rate << 16).to_be_bytes());
    entry.extend(esds);
    let mut stsd = 1u32.to_be_bytes().to_vec();
    stsd.extend(boxed(b"mp4a", &entry));
    let stsd = full(b"stsd", 0, 0, &stsd);
    let n = a.frames.len() as u32;
    let sizes: Vec<u32> = a.frames.iter().map(|f| f.len() as u32).collect();
    let stbl = stbl(stsd, &[(n, a.frame_len)], &sizes, None, offset, large);
    let minf = boxed(b"minf", &[full(b"smhd", 0, 0, &[0u8; 4]), dinf(), stbl].concat());
    let media_duration = n as u64 * a.frame_len as u64;
    let mdia = boxed(b"mdia", &[mdhd(a.sample_rate, media_duration), hdlr(b"soun", "Sound"), minf].concat());
    // The edit list plays `length` samples starting after the encoder's priming samples.
    let mut elst = 1u32.to_be_bytes().to_vec();
    elst.extend((duration_ms as u32).to_be_bytes());
    elst.extend(a.priming.to_be_bytes());
    elst.extend(0x0001_0000u32.to_be_bytes());
    let edts = boxed(b"edts", &full(b"elst", 0, 0, &elst));
    boxed(b"trak", &[tkhd(2, duration_ms, true, 0, 0), edts, mdia].concat())
}

/// Splits an Annex B byte stream (start-code delimited) into NAL units without their start codes.
pub fn annexb_nals(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &(_, begin)) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(stream.len(), |&(s, _)| s);
        // A 4-byte start code leaves one zero byte at the end of the previous unit.
        while end > begin && stream[end - 1] == 0 {
            end -= 1;
        }
        if end > begin {
            nals.push(&stream[begin..end]);
        }
    }
    nals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_split() {
        let s = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5];
        let nals = annexb_nals(&s);
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]);
    }

    #[test]
    fn descriptor_lengths() {
        assert_eq!(descriptor(5, &[1, 2]), vec![5, 2, 1, 2]);
        let long = descriptor(4, &[0u8; 200]);
        assert_eq!(&long[..5], &[4, 0x80, 0x80, 0x81, 0x48]);
    }
}
