//! `nava view` end to end: plays a generated MP4 in a real window on a private Xvfb server and exits after
//! `NAVA_VIEW_EXIT_AFTER_FRAMES` frames; clear errors for a missing file, a non-MP4 file and a missing display.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nava::io::encode::Mp4Writer;
use nava::io::Frame;

/// A fresh folder for one test, removed again when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nava-view-{}-{test}", std::process::id()));
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

/// A 10-frame clip, 64×48, a bar moving across.
fn clip(path: &Path) {
    let (w, h, n) = (64, 48, 10);
    let mut writer = Mp4Writer::new(path, Some((w, h))).expect("writer");
    for i in 0..n {
        let mut rgb = vec![40u8; w * h * 3];
        for y in 0..h {
            for x in (i * 6)..(i * 6 + 6) {
                rgb[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[250, 200, 20]);
            }
        }
        writer.push_frame(&Frame { width: w, height: h, rgb }).expect("encode");
    }
    writer.finish(None).expect("mux");
}

/// Runs `cmd`, killing it after `limit`.
fn run_for(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start nava");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "nava did not exit within {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn nava() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nava"));
    c.env_remove("NAVA_VIEW_EXIT_AFTER_FRAMES");
    c
}

fn text(out: &Output) -> String {
    format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn which(program: &str) -> bool {
    Command::new("which").arg(program).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// A private X server (Xvfb) on a display number it picks itself; stopped when dropped.
struct VirtualDisplay {
    server: Child,
    display: String,
}

impl VirtualDisplay {
    fn start() -> Self {
        assert!(
            which("Xvfb"),
            "Xvfb is not installed: these tests open a real window; install it (`apt-get install xvfb`), as CI does"
        );
        // `-displayfd 1`: Xvfb picks a free display and writes its number to stdout once it accepts clients.
        let mut server = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "800x600x24", "-nolisten", "tcp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Xvfb");
        let mut line = String::new();
        let stdout = server.stdout.take().expect("piped stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        let number = line.trim().to_string();
        if number.parse::<u32>().is_err() {
            let _ = server.kill();
            panic!("Xvfb did not start (it printed {line:?})");
        }
        Self { server, display: format!(":{number}") }
    }
}

impl Drop for VirtualDisplay {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[test]
fn plays_a_clip_under_xvfb_and_exits_after_n_frames() {
    let dir = TempDir::new("plays_a_clip_under_xvfb_and_exits_after_n_frames");
    let x = VirtualDisplay::start();
    let path = dir.path("clip.mp4");
    clip(&path);
    // 15 frames of a 10-frame clip: playback must loop to get there.
    let mut cmd = nava();
    cmd.arg("view").arg(&path).env("NAVA_VIEW_EXIT_AFTER_FRAMES", "15").env("DISPLAY", &x.display);
    cmd.env_remove("WAYLAND_DISPLAY");
    let start = Instant::now();
    let out = run_for(&mut cmd, Duration::from_secs(60));
    assert!(out.status.success(), "nava view failed\n{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("64×48, 10 frames, 24.00 fps"), "{}", text(&out));
    // 14 frame periods at 24 fps at least.
    assert!(start.elapsed() >= Duration::from_millis(14 * 1000 / 24), "exited too early: {:?}", start.elapsed());
}

#[test]
fn closing_while_decoding_ends_the_work() {
    let dir = TempDir::new("closing_while_decoding_ends_the_work");
    let x = VirtualDisplay::start();
    let path = dir.path("long.mp4");
    let p = path.to_str().expect("utf-8 temp path");
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=24:duration=10"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", p])
        .status()
        .expect("ffmpeg is needed by this test (the test command installs it)");
    assert!(made.success());
    // The window closes after its first frame, while frames are still being decoded: the worker must stop.
    let mut cmd = nava();
    cmd.arg("view").arg(&path).env("NAVA_VIEW_EXIT_AFTER_FRAMES", "1").env("DISPLAY", &x.display);
    cmd.env_remove("WAYLAND_DISPLAY");
    let out = run_for(&mut cmd, Duration::from_secs(60));
    assert!(out.status.success(), "nava view failed\n{}", text(&out));
}

#[test]
fn missing_file_is_a_clear_error() {
    let dir = TempDir::new("missing_file_is_a_clear_error");
    let path = dir.path("does-not-exist.mp4");
    let out = run_for(nava().arg("view").arg(&path), Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does-not-exist.mp4") && err.contains("error:"), "{}", text(&out));
}

#[test]
fn non_mp4_file_is_a_clear_error() {
    let dir = TempDir::new("non_mp4_file_is_a_clear_error");
    let path = dir.path("notes.mp4");
    std::fs::write(&path, "these are notes, not a video\n").expect("write");
    let out = run_for(nava().arg("view").arg(&path), Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an MP4 file"), "{}", text(&out));
}

#[test]
fn no_display_is_a_clear_error() {
    let dir = TempDir::new("no_display_is_a_clear_error");
    let path = dir.path("clip-nodisplay.mp4");
    clip(&path);
    let mut cmd = nava();
    cmd.arg("view").arg(&path).env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY");
    let out = run_for(&mut cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no display"), "{}", text(&out));
    // A display that is named but not there: an error too, not a panic.
    let mut cmd = nava();
    cmd.arg("view").arg(&path).env("DISPLAY", ":7391").env_remove("WAYLAND_DISPLAY");
    let out = run_for(&mut cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open the preview window"), "{}", text(&out));
}

/// `nava generate --preview`: the window shows the progress and the frames, the generation finishes and writes
/// its file, and the window closes after showing the clip (looped to reach the count).
#[test]
fn generate_with_preview_under_xvfb() {
    let dir = TempDir::new("generate_with_preview_under_xvfb");
    let x = VirtualDisplay::start();
    let out_path = dir.path("clip.mp4");
    let mut cmd = nava();
    cmd.args(["generate", "--prompt", "a lamp", "--size", "64x64", "--frames", "2", "--steps", "2", "--preview", "-o"])
        .arg(&out_path)
        .env("NAVA_VIEW_EXIT_AFTER_FRAMES", "12")
        .env("DISPLAY", &x.display)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir());
    cmd.env_remove("WAYLAND_DISPLAY");
    let out = run_for(&mut cmd, Duration::from_secs(300));
    assert!(out.status.success(), "nava generate --preview failed\n{}", text(&out));
    assert!(out_path.is_file(), "no output file\n{}", text(&out));
}
