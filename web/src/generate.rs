//! The page's Generate: the form's request → `nava::pipeline::generate::generate` on the built-in tiny model or
//! the converted directory streamed into GPU memory;
//! progress, frames (as RGBA for `ImageData`) and the stereo audio go back to the page.

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Float32Array, Function, Object, Reflect, Uint8Array, Uint8ClampedArray};
use nava::io::Frame;
use nava::model::speaker::{resample, MAX_SECONDS, MIN_SECONDS, SAMPLE_RATE, SILENCE_PEAK};
use nava::pipeline::generate::{Event, Image, Mode, Observer, Output, Request, Stage};
use nava::pipeline::shape::{Length, Size, FPS};
use nava::pipeline::{PipelineError, SampleConfig};
use wasm_bindgen::prelude::*;

use crate::error::WebError;

/// The names the page's progress list uses.
fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::Loading => "weights",
        Stage::Text => "text",
        Stage::Voices => "voices",
        Stage::Image => "image",
        Stage::Denoise => "denoise",
        Stage::VideoDecode => "video",
        Stage::AudioDecode => "audio",
    }
}

fn field(o: &JsValue, name: &str) -> JsValue {
    Reflect::get(o, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

fn number(o: &JsValue, name: &str) -> Result<f64, WebError> {
    field(o, name).as_f64().filter(|v| v.is_finite()).ok_or_else(|| WebError::Input(format!("{name} must be a number")))
}

fn set(o: &Object, name: &str, v: impl Into<JsValue>) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(o, &JsValue::from_str(name), &v.into());
}

/// The page's request object for the built-in tiny model: `{prompt, negativePrompt, width, height, seconds,
/// steps, seed, firstFrame?: {width, height, rgba}, voices: [{rate, samples: Float32Array}]}` (voices decoded and
/// mixed to mono by the page).
pub fn request(o: &JsValue) -> Result<Request, WebError> {
    let prompt = field(o, "prompt").as_string().unwrap_or_default();
    if prompt.trim().is_empty() {
        return Err(WebError::Input("write a prompt".into()));
    }
    // Empty: the reference's default negative prompt.
    let negative = field(o, "negativePrompt").as_string().filter(|s| !s.trim().is_empty());
    let size = Size { width: number(o, "width")? as usize, height: number(o, "height")? as usize };
    size.check()?;
    let steps = number(o, "steps")?;
    if !(1.0..=1000.0).contains(&steps) {
        return Err(WebError::Input(format!("steps must be between 1 and 1000, not {steps}")));
    }
    let seed = number(o, "seed")?;
    if seed < 0.0 || seed.fract() != 0.0 {
        return Err(WebError::Input(format!("the seed must be a whole number ≥ 0, not {seed}")));
    }
    let first = field(o, "firstFrame");
    let first_frame = if first.is_object() {
        let (width, height) = (number(&first, "width")? as usize, number(&first, "height")? as usize);
        let rgba = Uint8Array::new(&field(&first, "rgba")).to_vec();
        if width == 0 || height == 0 || rgba.len() != width * height * 4 {
            return Err(WebError::Input(format!("the first frame's pixels do not fill {width}×{height}")));
        }
        let rgb = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
        Some(Image { width, height, rgb })
    } else {
        None
    };
    let mut voices = Vec::new();
    for (i, v) in js_sys::Array::from(&field(o, "voices")).iter().enumerate() {
        voices.push(voice(i, number(&v, "rate")? as u32, &Float32Array::new(&field(&v, "samples")).to_vec())?);
    }
    Ok(Request {
        prompt,
        negative_prompt: negative,
        first_frame,
        voices,
        size,
        length: Length::from_seconds(number(o, "seconds")?)?,
        mode: Mode::AudioVideo,
        sample: SampleConfig { num_steps: steps as usize, ..SampleConfig::default() },
        seed: seed as u64,
        audio_rate: 16000,
    })
}

/// Which model the request is for: `'tiny'` (the default) or `'converted'` (the loaded directory).
pub fn model(o: &JsValue) -> String {
    field(o, "model").as_string().unwrap_or_else(|| "tiny".into())
}

/// A reference voice as the speaker encoder takes it: 16 kHz mono, checked as `read_voice` checks files.
fn voice(i: usize, rate: u32, mono: &[f32]) -> Result<Vec<f32>, WebError> {
    let bad = |problem: String| WebError::Input(format!("voice {}: {problem}", i + 1));
    if rate == 0 {
        return Err(bad("has no sample rate".into()));
    }
    let seconds = mono.len() as f64 / rate as f64;
    if seconds < MIN_SECONDS {
        return Err(bad(format!("is {seconds:.3} s long; a reference voice needs at least {MIN_SECONDS} s of speech")));
    }
    let peak = mono.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if !peak.is_finite() || peak < SILENCE_PEAK {
        return Err(bad("is silent or damaged; record the voice again or pick another file".into()));
    }
    let keep = ((MAX_SECONDS + 1) as u64 * rate as u64) as usize;
    let mut out = resample(&mono[..mono.len().min(keep)], rate, SAMPLE_RATE);
    out.truncate(MAX_SECONDS * SAMPLE_RATE as usize);
    Ok(out)
}

/// Sends events to the page's callback; stops the run when Cancel was pressed.
pub struct PageObserver {
    pub on_event: Function,
    pub cancel: Rc<Cell<bool>>,
    totals: [u64; 7],
}

impl PageObserver {
    pub fn new(on_event: Function, cancel: Rc<Cell<bool>>) -> Self {
        Self { on_event, cancel, totals: [0; 7] }
    }

    fn post(&self, ev: &Object) {
        if let Err(e) = self.on_event.call1(&JsValue::NULL, ev) {
            web_sys_log(&e);
        }
    }

    fn stage(&self, stage: Stage, done: u64) {
        let ev = Object::new();
        set(&ev, "type", "stage");
        set(&ev, "stage", stage_name(stage));
        set(&ev, "done", done as f64);
        set(&ev, "total", self.totals[stage as usize] as f64);
        self.post(&ev);
    }

    fn frame(&self, index: usize, f: &Frame) {
        let rgba: Vec<u8> = f.rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
        let ev = Object::new();
        set(&ev, "type", "frame");
        set(&ev, "index", index as f64);
        set(&ev, "width", f.width as f64);
        set(&ev, "height", f.height as f64);
        set(&ev, "rgba", Uint8ClampedArray::from(&rgba[..]));
        self.post(&ev);
    }
}

impl Observer for PageObserver {
    fn event(&mut self, e: Event) -> Result<(), PipelineError> {
        if self.cancel.get() {
            return Err(PipelineError::Cancelled);
        }
        match e {
            Event::Stage { stage, total } => {
                self.totals[stage as usize] = total;
                self.stage(stage, 0);
            }
            Event::Progress { stage, done } => self.stage(stage, done),
            Event::Frame { index, frame } => self.frame(index, frame),
            Event::Warning(w) => {
                let ev = Object::new();
                set(&ev, "type", "warning");
                set(&ev, "message", w);
                self.post(&ev);
            }
        }
        Ok(())
    }
}

fn web_sys_log(e: &JsValue) {
    web_log(&format!("progress callback failed: {e:?}"));
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = warn)]
    fn web_log(s: &str);
}

/// `{fps, frames, sampleRate, left, right}` for the page's player.
pub fn output(out: &Output) -> JsValue {
    let a = &out.audio;
    let channels = usize::from(a.channels.max(1));
    let plane =
        |c: usize| -> Vec<f32> { a.samples.iter().skip(c.min(channels - 1)).step_by(channels).copied().collect() };
    let o = Object::new();
    set(&o, "fps", FPS as f64);
    set(&o, "frames", out.frames as f64);
    set(&o, "sampleRate", a.sample_rate as f64);
    set(&o, "left", Float32Array::from(&plane(0)[..]));
    set(&o, "right", Float32Array::from(&plane(1)[..]));
    o.into()
}
