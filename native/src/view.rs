//! `nava view FILE.mp4`: reads the file's H.264 track, decodes it beside the window and plays it looped in the
//! preview window at the file's frame rate. The audio track is described, not played.

use std::path::PathBuf;

use nava::io::decode::decode_video;
use nava::io::demux::Mp4;

use crate::preview::Preview;

#[derive(clap::Args)]
pub struct ViewArgs {
    /// The MP4 file to play (H.264 video).
    pub file: PathBuf,
}

/// Memory for decoded frames, which the window holds to loop them.
const MAX_FRAME_BYTES: usize = 4 << 30;

type WorkError = Box<dyn std::error::Error + Send + Sync>;

pub fn run(a: ViewArgs) -> Result<(), Box<dyn std::error::Error>> {
    // Reading the index first: a missing or broken file is reported without opening a window.
    let mp4 = Mp4::open(&a.file)?;
    let v = &mp4.video;
    println!(
        "{}: H.264 {}×{}, {} frames, {:.2} fps, {:.2} s",
        a.file.display(),
        v.width,
        v.height,
        v.samples.len(),
        v.fps(),
        v.seconds()
    );
    if let Some(au) = &mp4.audio {
        println!(
            "  audio: {} {} Hz, {} channels, {:.2} s (not played)",
            au.codec, au.sample_rate, au.channels, au.seconds
        );
    }
    if v.samples.is_empty() {
        return Err(format!("{}: the video track has no frames", a.file.display()).into());
    }
    let name = a.file.file_name().map_or_else(|| a.file.display().to_string(), |n| n.to_string_lossy().into_owned());
    // Small clips open magnified by a whole factor, large ones halved; the window can be resized either way.
    let (w, h) = (v.width.max(1) as u32, v.height.max(1) as u32);
    let (w, h) = match w {
        0..640 => (w * (640 / w), h * (640 / w)),
        1601.. => (w / 2, h / 2),
        _ => (w, h),
    };
    let preview = Preview::new(&format!("nava view — {name}")).size(w, h).fps(v.fps());
    // The window keeps every frame to loop them: a long or large file plays only its first part.
    let frame_bytes = v.width as usize * v.height as usize * 3;
    let total = v.samples.len().min(MAX_FRAME_BYTES / frame_bytes.max(1)).max(1);
    if total < v.samples.len() {
        println!("  playing the first {total} frames: the whole file would take over {} GiB", MAX_FRAME_BYTES >> 30);
    }
    let shown = preview.run(move |h| -> Result<usize, WorkError> {
        let mut done = 0;
        let n = decode_video(&mp4, |frame| {
            done += 1;
            h.stage("decoding", done, total);
            h.frame(frame);
            done < total && !h.cancelled()
        })?;
        h.finished();
        Ok(n)
    });
    shown.map(|_| ()).map_err(|e| e as Box<dyn std::error::Error>)
}
