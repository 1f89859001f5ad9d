//! The MP4 reader and H.264 decoder: our own files round-trip; ffmpeg's (many chunks, moov after mdat, B-frames)
//! decode like ffmpeg decodes them; 64-bit chunk offsets; truncated, corrupt and non-video files give errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use nava::io::decode::decode_video;
use nava::io::demux::{Mp4, ReadError};
use nava::io::encode::Mp4Writer;
use nava::io::{Audio, Frame};
use rand::{Rng, SeedableRng};

/// A fresh folder for one test, removed again when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nava-demux-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Moving colour gradients, distinct per frame.
fn test_frames(n: usize, w: usize, h: usize) -> Vec<Frame> {
    (0..n)
        .map(|i| {
            let plane = w * h;
            let planar: Vec<f32> = (0..3 * plane)
                .map(|k| {
                    let (c, p) = (k / plane, k % plane);
                    let (x, y) = ((p % w) as f32 / w as f32, (p / w) as f32 / h as f32);
                    let t = i as f32 / n as f32;
                    [x, y, (x + t).fract()][c] * 2.0 - 1.0
                })
                .collect();
            Frame::from_planar(&planar, h, w).expect("frame size")
        })
        .collect()
}

fn stereo(seconds: f64, rate: u32) -> Audio {
    let n = (seconds * rate as f64) as usize;
    let left: Vec<f32> = (0..n).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
    Audio::from_planar(rate, &[left.clone(), left])
}

fn write_ours(path: &Path, frames: &[Frame], audio: Option<&Audio>) {
    let mut w = Mp4Writer::new(path, Some((frames[0].width, frames[0].height))).expect("writer");
    for f in frames {
        w.push_frame(f).expect("encode");
    }
    w.finish(audio).expect("mux");
}

fn mean_abs_diff(a: &Frame, b: &Frame) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height));
    a.rgb.iter().zip(&b.rgb).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum::<f64>() / a.rgb.len() as f64
}

fn decode_all(mp4: &Mp4) -> Vec<Frame> {
    let mut frames = Vec::new();
    let n = decode_video(mp4, |f| {
        frames.push(f);
        true
    })
    .expect("decodes");
    assert_eq!(n, frames.len());
    frames
}

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is needed by these tests (the test command installs it)");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// ffmpeg's own decode of `path` as RGB8 frames.
fn ffmpeg_frames(path: &Path, w: usize, h: usize) -> Vec<Frame> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(w * h * 3).map(|c| Frame { width: w, height: h, rgb: c.to_vec() }).collect()
}

#[test]
fn round_trip_with_our_writer() {
    let dir = TempDir::new("round_trip_with_our_writer");
    let path = dir.path("ours.mp4");
    let frames = test_frames(30, 64, 48);
    write_ours(&path, &frames, Some(&stereo(1.25, 16000)));
    let mp4 = Mp4::open(&path).expect("our file reads back");
    let v = &mp4.video;
    assert_eq!((v.width, v.height, v.codec.as_str(), v.nal_length_size), (64, 48, "avc1", 4));
    assert_eq!(v.samples.len(), 30);
    assert!((v.fps() - 24.0).abs() < 1e-9, "fps {}", v.fps());
    assert!(v.samples[0].sync && v.sps.len() == 1 && v.pps.len() == 1);
    assert!(v.samples.windows(2).all(|p| p[1].decode_time > p[0].decode_time));
    let a = mp4.audio.as_ref().expect("audio track");
    assert_eq!((a.codec.as_str(), a.sample_rate, a.channels), ("mp4a", 16000, 2));
    assert!((a.seconds - 1.25).abs() < 0.2, "audio {} s (priming included)", a.seconds);
    let decoded = decode_all(&mp4);
    assert_eq!(decoded.len(), 30);
    for (i, (d, f)) in decoded.iter().zip(&frames).enumerate() {
        let diff = mean_abs_diff(d, f);
        assert!(diff < 6.0, "frame {i}: mean |decoded - original| = {diff}");
    }
}

#[test]
fn ffmpeg_file_with_many_chunks_and_b_frames() {
    let dir = TempDir::new("ffmpeg_file_with_many_chunks_and_b_frames");
    let path = dir.path("ffmpeg.mp4");
    let p = path.to_str().expect("utf-8 temp path");
    // Interleaved audio makes ffmpeg write many chunks; moov stays at the end; x264 uses B-frames by default.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=96x64:rate=24:duration=3",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100:duration=3",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-bf",
        "2",
        "-g",
        "24",
        "-c:a",
        "aac",
        "-ac",
        "2",
        p,
    ]);
    let mp4 = Mp4::open(&path).expect("ffmpeg's file reads");
    let v = &mp4.video;
    assert_eq!((v.width, v.height, v.samples.len()), (96, 64, 72));
    assert!((v.fps() - 24.0).abs() < 1e-6, "fps {}", v.fps());
    let contiguous = v.samples.windows(2).filter(|p| p[0].offset + p[0].len_bytes as u64 == p[1].offset).count();
    assert!(contiguous < 71, "expected several chunks, got one run of samples");
    assert_eq!(v.samples.iter().filter(|s| s.sync).count(), 3, "one IDR per second (-g 24)");
    assert!(v.samples.iter().any(|s| s.composition_offset != 0), "B-frames need composition offsets");
    let a = mp4.audio.as_ref().expect("audio track");
    assert_eq!((a.sample_rate, a.channels), (44100, 2));
    assert!((a.seconds - 3.0).abs() < 0.1, "audio {} s", a.seconds);
    let ours = decode_all(&mp4);
    let theirs = ffmpeg_frames(&path, 96, 64);
    assert_eq!(ours.len(), theirs.len());
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let diff = mean_abs_diff(a, b);
        assert!(diff < 3.0, "frame {i} differs from ffmpeg's decode by {diff} on average (display order?)");
    }
}

/// Rewrites a file whose moov precedes mdat so that its `stco` boxes become `co64`, shifting offsets by the growth.
fn with_co64(data: &[u8]) -> Vec<u8> {
    fn walk(data: &[u8], delta: u64, out: &mut Vec<u8>) -> u64 {
        let mut pos = 0;
        let mut grown = 0;
        while pos + 8 <= data.len() {
            let size = u32::from_be_bytes(data[pos..pos + 4].try_into().expect("4")) as usize;
            let kind = &data[pos + 4..pos + 8];
            let body = &data[pos + 8..pos + size];
            let start = out.len();
            out.extend([0u8; 4]);
            out.extend(kind);
            match kind {
                b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" => grown += walk(body, delta, out),
                b"stco" => {
                    out[start + 4..start + 8].copy_from_slice(b"co64");
                    out.extend(&body[..8]);
                    for o in body[8..].chunks_exact(4) {
                        let o = u32::from_be_bytes(o.try_into().expect("4")) as u64;
                        out.extend((o + delta).to_be_bytes());
                    }
                    grown += (body.len() as u64 - 8) / 4 * 4;
                }
                _ => out.extend(body),
            }
            let len = (out.len() - start) as u32;
            out[start..start + 4].copy_from_slice(&len.to_be_bytes());
            pos += size;
        }
        grown
    }
    let mut probe = Vec::new();
    let delta = walk(data, 0, &mut probe);
    let mut out = Vec::new();
    walk(data, delta, &mut out);
    out
}

#[test]
fn sixty_four_bit_chunk_offsets() {
    let dir = TempDir::new("sixty_four_bit_chunk_offsets");
    let path = dir.path("co64-src.mp4");
    let frames = test_frames(6, 32, 32);
    write_ours(&path, &frames, Some(&stereo(0.3, 16000)));
    let data = std::fs::read(&path).expect("read");
    let rewritten = with_co64(&data);
    assert!(rewritten.windows(4).any(|w| w == b"co64") && !rewritten.windows(4).any(|w| w == b"stco"));
    let a = Mp4::parse(data).expect("stco file");
    let b = Mp4::parse(rewritten).expect("co64 file");
    assert_eq!(a.video.samples.len(), b.video.samples.len());
    for i in 0..a.video.samples.len() {
        assert_eq!(a.sample(i), b.sample(i), "sample {i}");
    }
    assert_eq!(decode_all(&b).len(), 6);
}

#[test]
fn truncated_files_are_errors() {
    let dir = TempDir::new("truncated_files_are_errors");
    let path = dir.path("cut.mp4");
    write_ours(&path, &test_frames(12, 32, 32), Some(&stereo(0.5, 16000)));
    let data = std::fs::read(&path).expect("read");
    // Cut inside the media data: reported as cut even though the index survived.
    let e = Mp4::parse(data[..data.len() - 100].to_vec()).expect_err("cut file");
    assert!(matches!(e, ReadError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("cut short") && e.to_string().contains("mdat"), "{e}");
    // Every other cut gives some error, never a panic.
    for cut in (0..data.len()).step_by(7) {
        assert!(Mp4::parse(data[..cut].to_vec()).is_err(), "a file cut at byte {cut} of {} parsed", data.len());
    }
}

#[test]
fn garbage_and_corruption_never_panic() {
    let dir = TempDir::new("garbage_and_corruption_never_panic");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let path = dir.path("noise.mp4");
    std::fs::write(&path, (0..4000).map(|_| rng.random::<u8>()).collect::<Vec<u8>>()).expect("write");
    let e = Mp4::open(&path).expect_err("noise");
    assert!(matches!(e, ReadError::NotMp4 { .. }), "{e}");
    let e = Mp4::open(&dir.path("missing.mp4")).expect_err("missing file");
    assert!(matches!(e, ReadError::File { .. }) && e.to_string().contains("missing.mp4"), "{e}");

    let src = dir.path("flip.mp4");
    write_ours(&src, &test_frames(8, 32, 32), Some(&stereo(0.3, 16000)));
    let data = std::fs::read(&src).expect("read");
    let moov_end = 32 + u32::from_be_bytes(data[32..36].try_into().expect("4")) as usize;
    for _ in 0..3000 {
        let mut d = data.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..moov_end);
            d[at] = rng.random();
        }
        if let Ok(mp4) = Mp4::parse(d) {
            for i in 0..mp4.video.samples.len() {
                let _ = mp4.annexb_sample(i);
            }
        }
    }
}

#[test]
fn files_without_h264_video() {
    let dir = TempDir::new("files_without_h264_video");
    let audio_only = dir.path("audio.mp4");
    Mp4Writer::new(&audio_only, None).expect("writer").finish(Some(&stereo(0.5, 16000))).expect("mux");
    let e = Mp4::open(&audio_only).expect_err("no video");
    assert!(matches!(e, ReadError::NoVideo { .. }) && e.to_string().contains("mp4a"), "{e}");

    let mpeg4 = dir.path("mpeg4.mp4");
    let p = mpeg4.to_str().expect("utf-8 temp path");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc=size=32x32:rate=24:duration=0.5", "-c:v", "mpeg4", p]);
    let e = Mp4::open(&mpeg4).expect_err("MPEG-4 part 2 video");
    assert!(e.to_string().contains("mp4v") && e.to_string().contains("libx264"), "{e}");
}

#[test]
fn corrupt_sample_data_decodes_or_fails_cleanly() {
    let dir = TempDir::new("corrupt_sample_data_decodes_or_fails_cleanly");
    let src = dir.path("damaged.mp4");
    write_ours(&src, &test_frames(12, 64, 48), None);
    let clean = std::fs::read(&src).expect("read");
    let mp4 = Mp4::parse(clean.clone()).expect("clean file");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    for _ in 0..20 {
        let mut d = clean.clone();
        // Damage NAL payloads (past each 4-byte length and 1-byte header), not the index: decoding must cope.
        for s in &mp4.video.samples {
            if s.len_bytes > 8 && rng.random_range(0..3) == 0 {
                let at = s.offset as usize + rng.random_range(5..s.len_bytes as usize);
                d[at] = rng.random();
            }
        }
        let damaged = Mp4::parse(d).expect("the index is intact");
        let _ = decode_video(&damaged, |f| f.rgb.len() == 64 * 48 * 3);
    }
}
