//! The preview window: progress (stage name and a bar) while work runs on a worker thread, frames as they arrive,
//! then the finished frames looped until the window is closed. A CPU blit (softbuffer) into a winit window; no GPU.
//!
//! Keys: Space pauses and resumes, Esc or Q closes. Closing the window while the work runs asks it to stop
//! ([`PreviewHandle::cancelled`]); [`Preview::run`] returns the work's result once its thread has ended.
//!
//! `NAVA_VIEW_EXIT_AFTER_FRAMES=N` closes the window by itself after N frames have been shown (for tests).

use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nava::io::Frame;
use winit::application::ApplicationHandler;
use winit::dpi::LogicalSize;
use winit::event::{ElementState, KeyEvent, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop, EventLoopProxy};
use winit::keyboard::{Key, NamedKey};
use winit::window::{Window, WindowId};

use crate::font;

/// Environment variable: close the window after this many frames have been shown.
pub const EXIT_AFTER_FRAMES_ENV: &str = "NAVA_VIEW_EXIT_AFTER_FRAMES";

/// Why the window could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("no display: the preview window needs a desktop session (DISPLAY or WAYLAND_DISPLAY is not set)")]
    NoDisplay,
    #[error("the preview window must be opened from the main thread")]
    NotMainThread,
    #[error("cannot open the preview window: {0} (is a desktop session running and reachable?)")]
    Open(String),
    #[error("{}: {} is not a number of frames", EXIT_AFTER_FRAMES_ENV, .0)]
    BadExitAfter(String),
}

/// Messages from the worker thread to the window.
enum Msg {
    Stage {
        name: String,
        done: usize,
        total: usize,
    },
    Frame(Frame),
    /// No more frames will come; playback loops.
    Finished,
    /// The work returned (`ok`: with success).
    WorkDone {
        ok: bool,
    },
}

/// The worker's side of the window: report progress and frames, check for cancellation. Cheap to clone.
#[derive(Clone)]
pub struct PreviewHandle {
    proxy: EventLoopProxy<Msg>,
    cancel: Arc<AtomicBool>,
}

impl PreviewHandle {
    /// The current stage (e.g. "denoising") and its progress, `done` of `total` steps.
    pub fn stage(&self, name: &str, done: usize, total: usize) {
        let _ = self.proxy.send_event(Msg::Stage { name: name.to_string(), done, total });
    }

    /// A finished frame, in display order.
    pub fn frame(&self, frame: Frame) {
        let _ = self.proxy.send_event(Msg::Frame(frame));
    }

    /// All frames have been sent: the window loops them.
    pub fn finished(&self) {
        let _ = self.proxy.send_event(Msg::Finished);
    }

    /// True once the window was closed: the work should stop at its next chance.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Opens a preview window titled `title` and runs `work` beside it; see [`Preview::run`].
#[allow(dead_code, reason = "the entry point for generation with a preview; `nava view` sets size and rate")]
pub fn run<T, E>(title: &str, work: impl FnOnce(PreviewHandle) -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<PreviewError> + Send + 'static,
{
    Preview::new(title).run(work)
}

/// Window settings.
pub struct Preview {
    title: String,
    size: (u32, u32),
    fps: f64,
}

impl Preview {
    pub fn new(title: &str) -> Self {
        Self { title: title.to_string(), size: (960, 540), fps: nava::io::FPS as f64 }
    }

    /// The window's initial inner size in logical pixels (it is resizable; frames scale to fit).
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.size = (width.max(64), height.max(64));
        self
    }

    /// Playback rate in frames per second (default 24).
    pub fn fps(mut self, fps: f64) -> Self {
        if fps.is_finite() && fps > 0.0 {
            self.fps = fps;
        }
        self
    }

    /// Runs the window's event loop on this (the main) thread and `work` on a worker thread, which starts once
    /// the window is open. Returns the work's result when the window is closed and the work has ended; an error
    /// without running `work` when no window can be opened.
    pub fn run<T, E>(self, work: impl FnOnce(PreviewHandle) -> Result<T, E> + Send + 'static) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<PreviewError> + Send + 'static,
    {
        let exit_after = match std::env::var(EXIT_AFTER_FRAMES_ENV) {
            Ok(v) => Some(v.trim().parse::<usize>().map_err(|_| PreviewError::BadExitAfter(v.clone()))?),
            Err(_) => None,
        };
        check_display()?;
        if std::thread::current().name() != Some("main") {
            return Err(PreviewError::NotMainThread.into());
        }
        let event_loop = EventLoop::<Msg>::with_user_event().build().map_err(|e| PreviewError::Open(tidy(&e)))?;
        let mut app = App {
            settings: self,
            work: Some(Box::new(work)),
            worker: None,
            proxy: event_loop.create_proxy(),
            cancel: Arc::new(AtomicBool::new(false)),
            open_error: None,
            view: None,
            state: State::new(exit_after),
        };
        let loop_result = event_loop.run_app(&mut app);
        let worker = app.worker.take();
        let Some(worker) = worker else {
            let problem = app.open_error.take().or_else(|| loop_result.err().map(|e| e.to_string()));
            return Err(
                PreviewError::Open(problem.unwrap_or_else(|| "the window closed before it opened".into())).into()
            );
        };
        if let Err(e) = loop_result {
            eprintln!("warning: the preview window failed ({e}); waiting for the work to end");
        }
        app.cancel.store(true, Ordering::Relaxed);
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// winit's OS errors start with the source location that raised them; users need only the message.
fn tidy(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    match text.split_once(".rs:").and_then(|(_, rest)| rest.split_once(": ")) {
        Some((_, message)) => message.to_string(),
        None => text,
    }
}

/// A display must exist before winit is asked for one: some of its backends panic rather than fail without it.
fn check_display() -> Result<(), PreviewError> {
    if cfg!(all(unix, not(target_os = "macos"), not(target_os = "ios"), not(target_os = "android"))) {
        let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        if !set("DISPLAY") && !set("WAYLAND_DISPLAY") {
            return Err(PreviewError::NoDisplay);
        }
    }
    Ok(())
}

type Work<T, E> = Box<dyn FnOnce(PreviewHandle) -> Result<T, E> + Send>;

/// The window and its framebuffer surface.
struct View {
    window: Rc<Window>,
    surface: softbuffer::Surface<Rc<Window>, Rc<Window>>,
}

struct App<T, E> {
    settings: Preview,
    work: Option<Work<T, E>>,
    worker: Option<JoinHandle<Result<T, E>>>,
    proxy: EventLoopProxy<Msg>,
    cancel: Arc<AtomicBool>,
    open_error: Option<String>,
    view: Option<View>,
    state: State,
}

/// What the window shows; independent of winit so that playback rules read on their own.
struct State {
    stage: Option<(String, usize, usize)>,
    frames: Vec<Frame>,
    /// The frame on screen.
    cursor: usize,
    finished: bool,
    working: bool,
    paused: bool,
    next_due: Option<Instant>,
    shown: usize,
    exit_after: Option<usize>,
}

impl State {
    fn new(exit_after: Option<usize>) -> Self {
        Self {
            stage: None,
            frames: Vec::new(),
            cursor: 0,
            finished: false,
            working: true,
            paused: false,
            next_due: None,
            shown: 0,
            exit_after,
        }
    }

    /// Moves to the next frame when it is due: never past the last frame received, back to the first once all
    /// have come. Returns true when the frame on screen changed.
    fn tick(&mut self, now: Instant, period: Duration) -> bool {
        let Some(due) = self.next_due else { return false };
        if self.paused || now < due || self.frames.is_empty() {
            return false;
        }
        // Late by more than a frame (a slow blit, a stalled loop): keep the pace from now rather than race.
        self.next_due = Some(if now > due + period { now + period } else { due + period });
        if self.cursor + 1 < self.frames.len() {
            self.cursor += 1;
            true
        } else if self.finished && self.frames.len() > 1 {
            self.cursor = 0;
            true
        } else {
            false
        }
    }
}

impl<T: Send + 'static, E: Send + 'static> App<T, E> {
    fn open(&mut self, event_loop: &ActiveEventLoop) -> Result<View, String> {
        let (w, h) = self.settings.size;
        let attrs = Window::default_attributes()
            .with_title(self.settings.title.clone())
            .with_inner_size(LogicalSize::new(w, h));
        let window = Rc::new(event_loop.create_window(attrs).map_err(|e| tidy(&e))?);
        let context = softbuffer::Context::new(window.clone()).map_err(|e| tidy(&e))?;
        let surface = softbuffer::Surface::new(&context, window.clone()).map_err(|e| tidy(&e))?;
        Ok(View { window, surface })
    }

    fn start_work(&mut self) {
        let Some(work) = self.work.take() else { return };
        let handle = PreviewHandle { proxy: self.proxy.clone(), cancel: self.cancel.clone() };
        let proxy = self.proxy.clone();
        let spawned = std::thread::Builder::new().name("nava-work".into()).spawn(move || {
            // Dropped on the way out, also when `work` panics, so that the window never waits for a dead thread.
            let mut done = WorkDone { proxy, ok: false };
            let result = work(handle);
            done.ok = result.is_ok();
            result
        });
        match spawned {
            Ok(h) => self.worker = Some(h),
            Err(e) => self.open_error = Some(format!("cannot start the worker thread: {e}")),
        }
    }

    fn update_title(&self) {
        let Some(view) = &self.view else { return };
        let mut title = self.settings.title.clone();
        if self.state.working {
            if let Some((name, done, total)) = &self.state.stage {
                title = format!("{title} — {name} {done}/{total}");
            }
        } else if self.state.paused {
            title = format!("{title} — paused");
        }
        view.window.set_title(&title);
    }

    fn redraw(&mut self, event_loop: &ActiveEventLoop) {
        let Some(view) = &mut self.view else { return };
        let size = view.window.inner_size();
        let (Some(w), Some(h)) = (NonZeroU32::new(size.width), NonZeroU32::new(size.height)) else { return };
        let drawn = view.surface.resize(w, h).and_then(|()| {
            let mut buffer = view.surface.buffer_mut()?;
            draw(&self.state, &mut buffer, w.get() as usize, h.get() as usize);
            buffer.present()
        });
        if let Err(e) = drawn {
            eprintln!("warning: the preview window cannot draw ({e}); closing it");
            event_loop.exit();
        }
    }
}

/// Tells the window that the work ended.
struct WorkDone {
    proxy: EventLoopProxy<Msg>,
    ok: bool,
}

impl Drop for WorkDone {
    fn drop(&mut self) {
        let _ = self.proxy.send_event(Msg::WorkDone { ok: self.ok });
    }
}

impl<T: Send + 'static, E: Send + 'static> ApplicationHandler<Msg> for App<T, E> {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.view.is_some() || self.open_error.is_some() {
            return;
        }
        match self.open(event_loop) {
            Ok(view) => {
                self.view = Some(view);
                self.update_title();
                self.start_work();
                if self.worker.is_none() {
                    event_loop.exit();
                }
            }
            Err(e) => {
                self.open_error = Some(e);
                event_loop.exit();
            }
        }
    }

    fn user_event(&mut self, event_loop: &ActiveEventLoop, msg: Msg) {
        match msg {
            Msg::Stage { name, done, total } => {
                self.state.stage = Some((name, done, total));
                self.update_title();
            }
            Msg::Frame(frame) => {
                self.state.frames.push(frame);
                if self.state.frames.len() == 1 {
                    self.state.shown += 1;
                    self.state.next_due = Some(Instant::now() + self.period());
                }
            }
            Msg::Finished => self.state.finished = true,
            Msg::WorkDone { ok } => {
                self.state.working = false;
                self.state.finished = true;
                self.update_title();
                // Nothing to play, or the work failed: the caller reports the result, the window has done its job.
                if !ok || self.state.frames.is_empty() {
                    event_loop.exit();
                }
            }
        }
        self.request_redraw();
        self.check_exit_after(event_loop);
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        match event {
            WindowEvent::CloseRequested => event_loop.exit(),
            WindowEvent::KeyboardInput {
                event: KeyEvent { logical_key, state: ElementState::Pressed, .. }, ..
            } => match logical_key.as_ref() {
                Key::Named(NamedKey::Escape) => event_loop.exit(),
                Key::Character(c) if c.eq_ignore_ascii_case("q") => event_loop.exit(),
                Key::Named(NamedKey::Space) => {
                    self.state.paused = !self.state.paused;
                    if !self.state.paused && self.state.next_due.is_some() {
                        self.state.next_due = Some(Instant::now() + self.period());
                    }
                    self.update_title();
                    self.request_redraw();
                }
                _ => {}
            },
            WindowEvent::Resized(_) => self.request_redraw(),
            WindowEvent::RedrawRequested => self.redraw(event_loop),
            _ => {}
        }
    }

    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        if self.state.tick(Instant::now(), self.period()) {
            self.state.shown += 1;
            self.request_redraw();
            self.check_exit_after(event_loop);
        }
        match (self.state.paused, self.state.next_due) {
            (false, Some(due)) if !self.state.frames.is_empty() => {
                event_loop.set_control_flow(ControlFlow::WaitUntil(due))
            }
            _ => event_loop.set_control_flow(ControlFlow::Wait),
        }
    }
}

impl<T: Send + 'static, E: Send + 'static> App<T, E> {
    fn period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.settings.fps)
    }

    fn request_redraw(&self) {
        if let Some(v) = &self.view {
            v.window.request_redraw();
        }
    }

    fn check_exit_after(&mut self, event_loop: &ActiveEventLoop) {
        if self.state.exit_after.is_some_and(|n| self.state.shown >= n) {
            // Draw the last counted frame before leaving, so that "shown" means on screen.
            self.redraw(event_loop);
            event_loop.exit();
        }
    }
}

const BACKGROUND: u32 = 0x0018_1818;
const BAR_EMPTY: u32 = 0x0040_4040;
const BAR_FULL: u32 = 0x0050_a0f0;
const TEXT: u32 = 0x00e0_e0e0;

/// Draws the current frame scaled to fit (aspect kept, nearest neighbour) and, while work runs, the stage and its
/// progress bar along the bottom. `buffer` is `width × height` pixels of `0x00RRGGBB`.
fn draw(state: &State, buffer: &mut [u32], width: usize, height: usize) {
    buffer.fill(BACKGROUND);
    if let Some(frame) = state.frames.get(state.cursor) {
        blit_fit(frame, buffer, width, height);
    }
    let scale = if width >= 640 { 2 } else { 1 };
    if state.working {
        if let Some((name, done, total)) = &state.stage {
            let bar_h = 6 * scale;
            let margin = 8 * scale;
            let bar_y = height.saturating_sub(margin + bar_h);
            let bar_w = width.saturating_sub(2 * margin);
            let filled = if *total > 0 { bar_w * (*done).min(*total) / total } else { 0 };
            fill_rect(buffer, width, height, (margin, bar_y, bar_w, bar_h), BAR_EMPTY);
            fill_rect(buffer, width, height, (margin, bar_y, filled, bar_h), BAR_FULL);
            let label = format!("{name} {done}/{total}");
            let text_y = bar_y.saturating_sub(margin + font::HEIGHT * scale);
            let text_w = font::width(&label) * scale;
            fill_rect(
                buffer,
                width,
                height,
                (margin - scale, text_y - scale.min(text_y), text_w + 2 * scale, (font::HEIGHT + 2) * scale),
                BACKGROUND,
            );
            font::draw(buffer, width, height, (margin, text_y), scale, &label, TEXT);
        }
    }
    if state.paused {
        // Two bars in the top left corner.
        let s = 4 * scale;
        fill_rect(buffer, width, height, (s, s, s, 4 * s), TEXT);
        fill_rect(buffer, width, height, (3 * s, s, s, 4 * s), TEXT);
    }
}

/// Fills `(x, y, w, h)`, clipped to the buffer.
fn fill_rect(buffer: &mut [u32], width: usize, height: usize, (x, y, w, h): (usize, usize, usize, usize), colour: u32) {
    for row in y.min(height)..(y + h).min(height) {
        let line = &mut buffer[row * width..(row + 1) * width];
        line[x.min(width)..(x + w).min(width)].fill(colour);
    }
}

/// Scales `frame` to the largest size that fits, centred.
fn blit_fit(frame: &Frame, buffer: &mut [u32], width: usize, height: usize) {
    let (fw, fh) = (frame.width, frame.height);
    if fw == 0 || fh == 0 || frame.rgb.len() < fw * fh * 3 {
        return;
    }
    // The smaller ratio decides: width × fh against height × fw avoids floats.
    let (dw, dh) =
        if width * fh <= height * fw { (width, (width * fh / fw).max(1)) } else { ((height * fw / fh).max(1), height) };
    let (x0, y0) = ((width - dw) / 2, (height - dh) / 2);
    let columns: Vec<usize> = (0..dw).map(|x| (x * fw / dw).min(fw - 1)).collect();
    for y in 0..dh {
        let sy = (y * fh / dh).min(fh - 1);
        let src = &frame.rgb[sy * fw * 3..(sy + 1) * fw * 3];
        let dst = &mut buffer[(y0 + y) * width + x0..(y0 + y) * width + x0 + dw];
        for (d, &sx) in dst.iter_mut().zip(&columns) {
            let p = &src[sx * 3..sx * 3 + 3];
            *d = (p[0] as u32) << 16 | (p[1] as u32) << 8 | p[2] as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: usize, h: usize, rgb: [u8; 3]) -> Frame {
        Frame { width: w, height: h, rgb: rgb.repeat(w * h) }
    }

    #[test]
    fn blit_keeps_the_aspect_ratio() {
        // A 2:1 frame in a 10×10 window: rows 0–1 and 7–9 stay background... exactly 5 rows of picture, centred.
        let mut buf = vec![0u32; 100];
        blit_fit(&solid(4, 2, [255, 0, 0]), &mut buf, 10, 10);
        let rows: Vec<bool> = (0..10).map(|y| buf[y * 10 + 5] == 0x00ff_0000).collect();
        assert_eq!(rows, [false, false, true, true, true, true, true, false, false, false]);
        assert!(buf[2 * 10..7 * 10].iter().all(|&p| p == 0x00ff_0000));
    }

    #[test]
    fn playback_waits_for_frames_then_loops() {
        let period = Duration::from_millis(10);
        let t0 = Instant::now();
        let mut s = State::new(None);
        s.frames = vec![solid(1, 1, [0; 3]), solid(1, 1, [1; 3])];
        s.next_due = Some(t0);
        assert!(s.tick(t0, period) && s.cursor == 1);
        // The last frame received stays on screen while more may come.
        assert!(!s.tick(t0 + period, period) && s.cursor == 1);
        s.finished = true;
        assert!(s.tick(t0 + 2 * period, period) && s.cursor == 0);
        s.paused = true;
        assert!(!s.tick(t0 + 3 * period, period));
    }

    #[test]
    fn progress_is_drawn_without_frames() {
        let mut s = State::new(None);
        s.stage = Some(("denoising".into(), 5, 10));
        let (w, h) = (200, 100);
        let mut buf = vec![0u32; w * h];
        draw(&s, &mut buf, w, h);
        let full = buf.iter().filter(|&&p| p == BAR_FULL).count();
        let empty = buf.iter().filter(|&&p| p == BAR_EMPTY).count();
        assert!(full > 0 && (full as f64 / (full + empty) as f64 - 0.5).abs() < 0.05, "{full} {empty}");
        assert!(buf.contains(&TEXT), "the stage name is drawn");
    }
}
