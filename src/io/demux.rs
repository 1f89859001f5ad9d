//! A minimal MP4 (ISO-BMFF) reader: the H.264 video track's parameter sets and sample table, and the audio
//! track's rate, channels and duration — what the viewer needs to play a file.
//!
//! Pure Rust and target independent. Reads files of any muxer, not only [`super::mux`]: `moov` before or after
//! `mdat`, many chunks (`stsc` runs), 32- or 64-bit chunk offsets (`stco`/`co64`), compact sizes (`stz2`),
//! composition offsets (`ctts`). Edit lists are ignored: every stored sample is played. Boxes follow
//! ISO/IEC 14496-12; `avcC` follows 14496-15. Every length read from the file is checked before use, so a
//! truncated or corrupt file gives a [`ReadError`], never a panic.

use std::path::{Path, PathBuf};

/// Errors of reading and decoding MP4 files.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: {source}", .path.display())]
    File { path: PathBuf, source: std::io::Error },
    #[error("not an MP4 file: it starts with {start:?} rather than MP4 boxes (`ftyp`, `moov`, `mdat`)")]
    NotMp4 { start: String },
    #[error(
        "the MP4 file is cut short: its {len} bytes end inside {what} — was it still being written, or copied in part?"
    )]
    Truncated { what: String, len: u64 },
    #[error("corrupt MP4: {0}")]
    Corrupt(String),
    #[error("the MP4 file has no index (`moov` box): it is truncated or was not finished by its writer")]
    NoIndex,
    #[error("no H.264 video track (tracks found: {found}); re-encode it, e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`")]
    NoVideo { found: String },
    #[error("H.264 {}: {problem}", at_sample(.sample))]
    Decode {
        /// The sample being decoded; `None` before the first or after the last.
        sample: Option<usize>,
        problem: String,
    },
}

fn at_sample(sample: &Option<usize>) -> String {
    sample.map_or_else(|| "decoder".to_string(), |i| format!("sample {i}"))
}

/// Where one coded picture lies in the file and when it is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Byte offset in the file.
    pub offset: u64,
    pub len_bytes: u32,
    /// Decode time in track ticks ([`VideoInfo::timescale`] per second).
    pub decode_time: u64,
    /// Presentation time minus decode time, in ticks (`ctts`; 0 without B-frames).
    pub composition_offset: i64,
    /// Duration in ticks.
    pub duration: u32,
    /// A sync (IDR) sample: decoding can start here.
    pub sync: bool,
}

/// The H.264 video track.
#[derive(Clone, Debug)]
pub struct VideoInfo {
    pub track_id: u32,
    /// Coded size from the sample entry.
    pub width: u16,
    pub height: u16,
    /// Ticks per second of the sample times.
    pub timescale: u32,
    /// `avc1` (parameter sets in `avcC`) or `avc3` (parameter sets may also be in band).
    pub codec: String,
    /// Bytes of each NAL unit's length prefix in the samples (1, 2 or 4).
    pub nal_length_size: u8,
    /// Sequence and picture parameter sets, NAL units without start codes.
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
    pub samples: Vec<Sample>,
}

impl VideoInfo {
    /// Track duration in seconds from the sample durations.
    pub fn seconds(&self) -> f64 {
        let ticks: u64 = self.samples.iter().map(|s| s.duration as u64).sum();
        ticks as f64 / self.timescale.max(1) as f64
    }

    /// Average frames per second; 0 for an empty track.
    pub fn fps(&self) -> f64 {
        let s = self.seconds();
        if s > 0.0 {
            self.samples.len() as f64 / s
        } else {
            0.0
        }
    }
}

/// The first audio track: enough to say what it is; the viewer does not play it.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioInfo {
    pub track_id: u32,
    /// Sample entry type, e.g. `mp4a`.
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    /// Media duration (`mdhd`) in seconds, priming included.
    pub seconds: f64,
}

/// An MP4 file held in memory with its video track indexed.
pub struct Mp4 {
    data: Vec<u8>,
    pub video: VideoInfo,
    pub audio: Option<AudioInfo>,
}

impl std::fmt::Debug for Mp4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mp4")
            .field("len_bytes", &self.data.len())
            .field("video", &self.video)
            .field("audio", &self.audio)
            .finish()
    }
}

impl Mp4 {
    /// Reads and indexes `path`.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let data = std::fs::read(path).map_err(|source| ReadError::File { path: path.to_path_buf(), source })?;
        Self::parse(data)
    }

    /// Indexes a whole file's bytes.
    pub fn parse(data: Vec<u8>) -> Result<Self, ReadError> {
        let (video, audio) = index(&data)?;
        Ok(Self { data, video, audio })
    }

    /// The bytes of video sample `i` (length-prefixed NAL units).
    pub fn sample(&self, i: usize) -> Option<&[u8]> {
        let s = self.video.samples.get(i)?;
        // `index` checked that every sample lies inside the data.
        self.data.get(s.offset as usize..s.offset as usize + s.len_bytes as usize)
    }

    /// Sample `i` as an Annex B stream (start codes instead of length prefixes), parameter sets first on sync
    /// samples, as stream decoders take it.
    pub fn annexb_sample(&self, i: usize) -> Result<Vec<u8>, ReadError> {
        let data =
            self.sample(i).ok_or_else(|| ReadError::Decode { sample: Some(i), problem: "no such sample".into() })?;
        let mut out = Vec::with_capacity(data.len() + 64);
        if self.video.samples[i].sync || i == 0 {
            for nal in self.video.sps.iter().chain(&self.video.pps) {
                out.extend([0, 0, 0, 1]);
                out.extend(nal);
            }
        }
        let n = self.video.nal_length_size as usize;
        let mut pos = 0;
        while pos < data.len() {
            let len = data
                .get(pos..pos + n)
                .ok_or_else(|| ReadError::Decode { sample: Some(i), problem: "NAL length prefix cut short".into() })?
                .iter()
                .fold(0usize, |acc, b| acc << 8 | *b as usize);
            let nal = data.get(pos + n..pos + n + len).ok_or_else(|| ReadError::Decode {
                sample: Some(i),
                problem: format!("NAL unit of {len} bytes at {pos} overruns the {}-byte sample", data.len()),
            })?;
            out.extend([0, 0, 0, 1]);
            out.extend(nal);
            pos += n + len;
        }
        Ok(out)
    }
}

/// A box: its type, its payload's position in the file, and the payload.
struct Atom<'a> {
    kind: [u8; 4],
    start: u64,
    body: &'a [u8],
}

impl Atom<'_> {
    fn name(&self) -> String {
        fourcc(&self.kind)
    }
}

fn fourcc(k: &[u8]) -> String {
    k.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '?' }).collect()
}

/// The boxes in `data`, which starts at file position `base`; a box of size 0 runs to the end of `data`.
fn atoms<'a>(data: &'a [u8], base: u64, file_len: u64, parent: &str) -> Result<Vec<Atom<'a>>, ReadError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    // Running past `data` is a truncation when `data` reaches the end of the file, corruption otherwise.
    let at_end = base + data.len() as u64 >= file_len;
    let overrun = |what: String, at: u64| {
        if at_end {
            truncated(what, file_len)
        } else {
            ReadError::Corrupt(format!("{what} at byte {at} overruns `{parent}`"))
        }
    };
    while pos < data.len() {
        let at = base + pos as u64;
        let head = data.get(pos..pos + 8).ok_or_else(|| overrun(format!("a box header in {parent}"), at))?;
        let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = [head[4], head[5], head[6], head[7]];
        let (header, size) = match size32 {
            0 => (8, (data.len() - pos) as u64),
            1 => {
                let ext = data
                    .get(pos + 8..pos + 16)
                    .ok_or_else(|| overrun(format!("the header of `{}`", fourcc(&kind)), at))?;
                (16, u64::from_be_bytes(ext.try_into().expect("8 bytes")))
            }
            n => (8, n as u64),
        };
        if size < header as u64 {
            return Err(ReadError::Corrupt(format!("box `{}` at byte {at} has size {size}", fourcc(&kind))));
        }
        let end = pos as u64 + size;
        if end > data.len() as u64 {
            return Err(overrun(format!("box `{}` ({size} bytes from byte {at})", fourcc(&kind)), at));
        }
        out.push(Atom { kind, start: at + header as u64, body: &data[pos + header..end as usize] });
        pos = end as usize;
    }
    Ok(out)
}

fn truncated(what: String, len: u64) -> ReadError {
    ReadError::Truncated { what, len }
}

fn child<'a>(boxes: &'a [Atom<'a>], kind: &[u8; 4]) -> Option<&'a Atom<'a>> {
    boxes.iter().find(|a| &a.kind == kind)
}

fn need<'a>(boxes: &'a [Atom<'a>], kind: &[u8; 4], parent: &str) -> Result<&'a Atom<'a>, ReadError> {
    child(boxes, kind).ok_or_else(|| ReadError::Corrupt(format!("`{parent}` has no `{}` box", fourcc(kind))))
}

/// A cursor over a box payload; every read is bounds-checked.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], what: &'static str) -> Self {
        Self { data, pos: 0, what }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        let b = self
            .data
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or_else(|| ReadError::Corrupt(format!("`{}` is too short ({} bytes)", self.what, self.data.len())))?;
        self.pos += n;
        Ok(b)
    }

    fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, ReadError> {
        Ok(u16::from_be_bytes(self.bytes(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_be_bytes(self.bytes(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, ReadError> {
        Ok(u64::from_be_bytes(self.bytes(8)?.try_into().expect("8 bytes")))
    }

    /// Version and flags of a full box.
    fn full(&mut self) -> Result<(u8, u32), ReadError> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0xff_ffff))
    }

    /// An entry count, checked against the bytes left so that a corrupt count cannot allocate gigabytes.
    fn count(&mut self, entry_bytes: usize) -> Result<usize, ReadError> {
        let n = self.u32()? as usize;
        let left = self.data.len() - self.pos;
        if n.saturating_mul(entry_bytes) > left {
            return Err(ReadError::Corrupt(format!("`{}` lists {n} entries but holds {left} bytes", self.what)));
        }
        Ok(n)
    }

    fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }
}

/// One `trak` as far as the reader cares.
enum Track {
    Video(VideoInfo),
    Audio(AudioInfo),
    /// Another handler or codec: its description, for the "no video" message.
    Other(String),
}

fn index(data: &[u8]) -> Result<(VideoInfo, Option<AudioInfo>), ReadError> {
    let len = data.len() as u64;
    // A file that does not begin with a box header of a known type is not worth parsing further.
    let known: [&[u8; 4]; 8] = [b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"styp", b"pdin"];
    let start = data.get(4..8).unwrap_or(&[]);
    if !known.iter().any(|k| k.as_slice() == start) {
        let head = data.get(..16.min(data.len())).unwrap_or(&[]);
        return Err(ReadError::NotMp4 { start: String::from_utf8_lossy(head).into_owned() });
    }
    // A file cut anywhere is reported as cut, even when the part of it that the video needs survived.
    let top = atoms(data, 0, len, "the file")?;
    let moov = child(&top, b"moov").ok_or(ReadError::NoIndex)?;
    let mut video = None;
    let mut audio = None;
    let mut others = Vec::new();
    for trak in atoms(moov.body, moov.start, len, "moov")?.iter().filter(|a| &a.kind == b"trak") {
        match track(trak, len)? {
            Track::Video(v) if video.is_none() => video = Some(v),
            Track::Audio(a) if audio.is_none() => audio = Some(a),
            Track::Video(v) => others.push(format!("second video track {}", v.track_id)),
            Track::Audio(a) => others.push(format!("second audio track {}", a.track_id)),
            Track::Other(d) => others.push(d),
        }
    }
    let Some(video) = video else {
        let mut found = others;
        if let Some(a) = &audio {
            found.insert(0, format!("{} audio", a.codec));
        }
        let found = if found.is_empty() { "none".to_string() } else { found.join(", ") };
        return Err(ReadError::NoVideo { found });
    };
    for (i, s) in video.samples.iter().enumerate() {
        if s.offset.saturating_add(s.len_bytes as u64) > len {
            return Err(ReadError::Corrupt(format!(
                "video sample {i} lies at bytes {}..{}, past the end of the {len}-byte file",
                s.offset,
                s.offset + s.len_bytes as u64
            )));
        }
    }
    Ok((video, audio))
}

fn track(trak: &Atom<'_>, len: u64) -> Result<Track, ReadError> {
    let boxes = atoms(trak.body, trak.start, len, "trak")?;
    let mut r = Reader::new(need(&boxes, b"tkhd", "trak")?.body, "tkhd");
    let (version, _) = r.full()?;
    r.bytes(if version == 1 { 16 } else { 8 })?;
    let track_id = r.u32()?;
    let mdia = need(&boxes, b"mdia", "trak")?;
    let mdia = atoms(mdia.body, mdia.start, len, "mdia")?;
    let mut r = Reader::new(need(&mdia, b"mdhd", "mdia")?.body, "mdhd");
    let (version, _) = r.full()?;
    let (timescale, duration) = if version == 1 {
        r.bytes(16)?;
        (r.u32()?, r.u64()?)
    } else {
        r.bytes(8)?;
        (r.u32()?, r.u32()? as u64)
    };
    let mut r = Reader::new(need(&mdia, b"hdlr", "mdia")?.body, "hdlr");
    r.full()?;
    r.u32()?;
    let handler: [u8; 4] = r.bytes(4)?.try_into().expect("4 bytes");
    let minf = need(&mdia, b"minf", "mdia")?;
    let minf = atoms(minf.body, minf.start, len, "minf")?;
    let stbl = need(&minf, b"stbl", "minf")?;
    let stbl = atoms(stbl.body, stbl.start, len, "stbl")?;
    let mut r = Reader::new(need(&stbl, b"stsd", "stbl")?.body, "stsd");
    r.full()?;
    if r.u32()? == 0 {
        return Ok(Track::Other(format!("track {track_id} without sample description")));
    }
    let entries = atoms(r.rest(), need(&stbl, b"stsd", "stbl")?.start + 8, len, "stsd")?;
    let entry = entries.first().ok_or_else(|| ReadError::Corrupt("empty `stsd`".into()))?;
    let codec = entry.name();
    match (&handler, &entry.kind) {
        (b"vide", b"avc1" | b"avc3") => {
            let mut r = Reader::new(entry.body, "avc1");
            r.bytes(24)?; // reserved, data reference index, pre-defined
            let width = r.u16()?;
            let height = r.u16()?;
            r.bytes(50)?; // resolution, frame count, compressor name, depth, pre-defined
            let inner = atoms(r.rest(), entry.start + 78, len, "avc1")?;
            let avcc = need(&inner, b"avcC", &codec)?;
            let AvcConfig { nal_length_size, sps, pps } = parse_avcc(avcc.body)?;
            let samples = sample_table(&stbl, len)?;
            Ok(Track::Video(VideoInfo {
                track_id,
                width,
                height,
                timescale,
                codec,
                nal_length_size,
                sps,
                pps,
                samples,
            }))
        }
        (b"vide", _) => Ok(Track::Other(format!("{codec} video"))),
        (b"soun", _) => {
            let mut r = Reader::new(entry.body, "audio sample entry");
            r.bytes(16)?; // reserved, data reference index, version/revision/vendor
            let channels = r.u16()?;
            r.bytes(6)?; // sample size, pre-defined, reserved
            let rate = r.u32()? >> 16;
            // Rates past 65535 do not fit the entry's 16.16 field; the media timescale is the rate then.
            let sample_rate = if rate == 0 { timescale } else { rate };
            let seconds = if timescale > 0 { duration as f64 / timescale as f64 } else { 0.0 };
            Ok(Track::Audio(AudioInfo { track_id, codec, sample_rate, channels, seconds }))
        }
        _ => Ok(Track::Other(format!("{codec} ({})", fourcc(&handler)))),
    }
}

/// The `avcC` fields the decoder needs.
struct AvcConfig {
    nal_length_size: u8,
    sps: Vec<Vec<u8>>,
    pps: Vec<Vec<u8>>,
}

fn parse_avcc(body: &[u8]) -> Result<AvcConfig, ReadError> {
    let mut r = Reader::new(body, "avcC");
    if r.u8()? != 1 {
        return Err(ReadError::Corrupt("`avcC` version is not 1".into()));
    }
    r.bytes(3)?; // profile, compatibility, level
    let nal_length_size = (r.u8()? & 3) + 1;
    if nal_length_size == 3 {
        return Err(ReadError::Corrupt("`avcC` gives 3-byte NAL lengths, which H.264 does not allow".into()));
    }
    let n_sps = (r.u8()? & 0x1f) as usize;
    let sps = parameter_sets(&mut r, n_sps)?;
    let n_pps = r.u8()? as usize;
    let pps = parameter_sets(&mut r, n_pps)?;
    Ok(AvcConfig { nal_length_size, sps, pps })
}

fn parameter_sets(r: &mut Reader<'_>, count: usize) -> Result<Vec<Vec<u8>>, ReadError> {
    (0..count)
        .map(|_| {
            let n = r.u16()? as usize;
            Ok(r.bytes(n)?.to_vec())
        })
        .collect()
}

/// Sample positions, sizes, times and sync flags from `stsz`/`stz2`, `stsc`, `stco`/`co64`, `stts`, `ctts`, `stss`.
fn sample_table(stbl: &[Atom<'_>], file_len: u64) -> Result<Vec<Sample>, ReadError> {
    let sizes = sample_sizes(stbl, file_len)?;
    let n = sizes.len();
    let offsets: Vec<u64> = if let Some(b) = child(stbl, b"stco") {
        let mut r = Reader::new(b.body, "stco");
        r.full()?;
        let k = r.count(4)?;
        (0..k).map(|_| r.u32().map(u64::from)).collect::<Result<_, _>>()?
    } else if let Some(b) = child(stbl, b"co64") {
        let mut r = Reader::new(b.body, "co64");
        r.full()?;
        let k = r.count(8)?;
        (0..k).map(|_| r.u64()).collect::<Result<_, _>>()?
    } else {
        return Err(ReadError::Corrupt("`stbl` has no chunk offsets (`stco` or `co64`)".into()));
    };
    let mut r = Reader::new(need(stbl, b"stsc", "stbl")?.body, "stsc");
    r.full()?;
    let k = r.count(12)?;
    let mut runs = Vec::with_capacity(k);
    for _ in 0..k {
        let first_chunk = r.u32()?;
        let per_chunk = r.u32()?;
        r.u32()?; // sample description index
        if first_chunk == 0 || runs.last().is_some_and(|&(f, _)| first_chunk <= f) {
            return Err(ReadError::Corrupt(format!("`stsc` chunk numbers are not increasing at {first_chunk}")));
        }
        runs.push((first_chunk, per_chunk));
    }
    // Walk the chunks: each run covers chunks from its first to the next run's first.
    let mut samples = Vec::with_capacity(n);
    for (ri, &(first, per_chunk)) in runs.iter().enumerate() {
        let last = runs.get(ri + 1).map_or(offsets.len() as u64, |&(f, _)| f as u64 - 1).min(offsets.len() as u64);
        for chunk in first as u64..=last {
            let mut pos = offsets[chunk as usize - 1];
            for _ in 0..per_chunk {
                if samples.len() == n {
                    break;
                }
                let size = sizes[samples.len()];
                samples.push(Sample {
                    offset: pos,
                    len_bytes: size,
                    decode_time: 0,
                    composition_offset: 0,
                    duration: 0,
                    sync: true,
                });
                pos = pos.saturating_add(size as u64);
            }
        }
    }
    if samples.len() < n {
        return Err(ReadError::Corrupt(format!(
            "`stsc`/`stco` place {} samples in chunks; `stsz` lists {n}",
            samples.len()
        )));
    }
    let mut r = Reader::new(need(stbl, b"stts", "stbl")?.body, "stts");
    r.full()?;
    let k = r.count(8)?;
    let (mut i, mut t) = (0usize, 0u64);
    for _ in 0..k {
        let count = r.u32()? as usize;
        let delta = r.u32()?;
        for s in samples.iter_mut().skip(i).take(count) {
            s.decode_time = t;
            s.duration = delta;
            t += delta as u64;
        }
        i = i.saturating_add(count);
    }
    if i < n {
        return Err(ReadError::Corrupt(format!("`stts` times {i} samples; `stsz` lists {n}")));
    }
    if let Some(b) = child(stbl, b"ctts") {
        let mut r = Reader::new(b.body, "ctts");
        let (version, _) = r.full()?;
        let k = r.count(8)?;
        let mut i = 0usize;
        for _ in 0..k {
            let count = r.u32()? as usize;
            let raw = r.u32()?;
            // Version 0 offsets are unsigned, version 1 signed.
            let offset = if version == 0 { raw as i64 } else { raw as i32 as i64 };
            for s in samples.iter_mut().skip(i).take(count) {
                s.composition_offset = offset;
            }
            i = i.saturating_add(count);
        }
    }
    if let Some(b) = child(stbl, b"stss") {
        let mut r = Reader::new(b.body, "stss");
        r.full()?;
        let k = r.count(4)?;
        samples.iter_mut().for_each(|s| s.sync = false);
        for _ in 0..k {
            let number = r.u32()? as usize;
            if let Some(s) = number.checked_sub(1).and_then(|i| samples.get_mut(i)) {
                s.sync = true;
            }
        }
    }
    Ok(samples)
}

fn sample_sizes(stbl: &[Atom<'_>], file_len: u64) -> Result<Vec<u32>, ReadError> {
    if let Some(b) = child(stbl, b"stsz") {
        let mut r = Reader::new(b.body, "stsz");
        r.full()?;
        let fixed = r.u32()?;
        if fixed != 0 {
            let n = r.u32()? as usize;
            // A constant size needs no table; samples that cannot fit in the file are corruption, not a request.
            if n as u64 * fixed as u64 > file_len {
                return Err(ReadError::Corrupt(format!("`stsz` lists {n} samples of {fixed} bytes")));
            }
            return Ok(vec![fixed; n]);
        }
        let n = r.count(4)?;
        return (0..n).map(|_| r.u32()).collect();
    }
    if let Some(b) = child(stbl, b"stz2") {
        let mut r = Reader::new(b.body, "stz2");
        r.full()?;
        r.bytes(3)?;
        let field = r.u8()?;
        let n = r.u32()? as usize;
        let bytes = match field {
            4 => n.div_ceil(2),
            8 => n,
            16 => 2 * n,
            f => return Err(ReadError::Corrupt(format!("`stz2` field size {f}"))),
        };
        let table = r.bytes(bytes)?;
        return Ok((0..n)
            .map(|i| match field {
                4 => {
                    let shift = if i.is_multiple_of(2) { 4 } else { 0 };
                    ((table[i / 2] >> shift) & 0xf) as u32
                }
                8 => table[i] as u32,
                _ => u16::from_be_bytes([table[2 * i], table[2 * i + 1]]) as u32,
            })
            .collect());
    }
    Err(ReadError::Corrupt("`stbl` has no sample sizes (`stsz` or `stz2`)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avcc_parameter_sets() {
        let avcc = [1, 66, 0, 30, 0xff, 0xe1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 3];
        let c = parse_avcc(&avcc).expect("valid avcC");
        assert_eq!((c.nal_length_size, c.sps, c.pps), (4, vec![vec![0x67, 1, 2]], vec![vec![0x68, 3]]));
        assert!(parse_avcc(&avcc[..10]).is_err());
    }

    #[test]
    fn garbage_is_not_mp4() {
        assert!(matches!(Mp4::parse(b"hello world, not a video".to_vec()), Err(ReadError::NotMp4 { .. })));
        assert!(matches!(Mp4::parse(Vec::new()), Err(ReadError::NotMp4 { .. })));
    }
}
