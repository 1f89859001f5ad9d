//! Output files: MP4 (H.264 + AAC) accepted by ffprobe with the right codecs, size, rate and duration; WAV; the
//! atomic writer leaves nothing behind on failure.

use std::path::Path;
use std::process::Command;

use nava::io::encode::Mp4Writer;
use nava::io::{AtomicFile, Audio, Frame};

fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_streams", "-show_format"])
        .arg(path)
        .output()
        .expect("ffprobe is needed by these tests (the test command installs ffmpeg)");
    assert!(out.status.success(), "ffprobe rejected {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

fn stream<'a>(probe: &'a serde_json::Value, kind: &str) -> Option<&'a serde_json::Value> {
    probe["streams"].as_array()?.iter().find(|s| s["codec_type"] == kind)
}

fn test_frames(n: usize, w: usize, h: usize) -> Vec<Frame> {
    (0..n)
        .map(|i| {
            let planar: Vec<f32> = (0..3 * w * h)
                .map(|k| (((k % w) as f32 / w as f32) * 2.0 - 1.0) * (1.0 - i as f32 / n as f32))
                .collect();
            Frame::from_planar(&planar, h, w).expect("frame size")
        })
        .collect()
}

fn tone(seconds: f64, rate: u32) -> Audio {
    let n = (seconds * rate as f64) as usize;
    let left: Vec<f32> = (0..n).map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 0.5).collect();
    let right: Vec<f32> = left.iter().map(|v| -v).collect();
    Audio::from_planar(rate, &[left, right])
}

#[test]
fn mp4_with_video_and_audio_is_accepted_by_ffprobe() {
    let dir = tempdir();
    let path = dir.join("clip.mp4");
    let (w, h, n) = (96, 64, 17);
    let mut mp4 = Mp4Writer::new(&path, Some((w, h))).expect("writer");
    for f in test_frames(n, w, h) {
        mp4.push_frame(&f).expect("frame");
    }
    assert!(!path.exists(), "nothing may appear before finish");
    let audio = tone(n as f64 / 24.0, 16000);
    mp4.finish(Some(&audio)).expect("finish");
    let probe = ffprobe(&path);
    let v = stream(&probe, "video").expect("a video stream");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(w as u64), Some(h as u64)));
    assert_eq!(v["r_frame_rate"], "24/1");
    assert_eq!(v["nb_frames"].as_str(), Some(n.to_string().as_str()));
    let a = stream(&probe, "audio").expect("an audio stream");
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["channels"].as_u64(), Some(2));
    assert_eq!(a["sample_rate"].as_str(), Some("16000"));
    let duration: f64 = probe["format"]["duration"].as_str().and_then(|d| d.parse().ok()).expect("duration");
    assert!((duration - n as f64 / 24.0).abs() < 0.05, "duration {duration}");
    // Decoding every frame works and gives the frame count back.
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn audio_only_mp4_and_wav() {
    let dir = tempdir();
    let path = dir.join("sound.mp4");
    let audio = tone(1.5, 16000);
    Mp4Writer::new(&path, None).expect("writer").finish(Some(&audio)).expect("finish");
    let probe = ffprobe(&path);
    assert!(stream(&probe, "video").is_none());
    let a = stream(&probe, "audio").expect("audio");
    assert_eq!(a["channels"].as_u64(), Some(2));
    let duration: f64 = probe["format"]["duration"].as_str().and_then(|d| d.parse().ok()).expect("duration");
    assert!((duration - 1.5).abs() < 0.05, "duration {duration}");

    let wav = dir.join("sound.wav");
    let mut f = AtomicFile::create(&wav).expect("create");
    nava::io::wav::write_wav(&mut f, &audio).expect("write");
    f.commit().expect("commit");
    let probe = ffprobe(&wav);
    let a = stream(&probe, "audio").expect("audio");
    assert_eq!((a["codec_name"].as_str(), a["channels"].as_u64()), (Some("pcm_s16le"), Some(2)));
    assert_eq!(a["duration_ts"].as_u64(), Some(audio.frames() as u64));
}

#[test]
fn unfinished_outputs_leave_nothing() {
    let dir = tempdir();
    let path = dir.join("never.mp4");
    {
        let mut mp4 = Mp4Writer::new(&path, Some((64, 64))).expect("writer");
        mp4.push_frame(&test_frames(1, 64, 64)[0]).expect("frame");
        let wrong = test_frames(1, 32, 32).remove(0);
        let e = mp4.push_frame(&wrong).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("32×32") && e.contains("64×64"), "{e}");
    }
    {
        let mut f = AtomicFile::create(&path).expect("create");
        std::io::Write::write_all(&mut f, b"partial").expect("write");
        // dropped without commit, as on an error or Ctrl-C
    }
    let left: Vec<_> = std::fs::read_dir(&*dir).expect("dir").flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let e = Mp4Writer::new(&path, Some((63, 64))).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("even"), "{e}");
    let e = AtomicFile::create(dir.join("no/such/dir/x.mp4")).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("does not exist"), "{e}");
}

/// A fresh folder removed again when the test ends.
struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> TempDir {
    let base = std::env::temp_dir().join(format!("nava-io-{}-{:?}", std::process::id(), std::thread::current().id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("temp dir");
    TempDir(base)
}
