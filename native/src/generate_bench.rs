//! `nava bench generate`: one whole generation with the built-in tiny model (or converted weights), timed per
//! stage; prints each stage's seconds, the peak GPU memory, and last the frames generated per second.

use std::time::Instant;

use nava::gpu::Gpu;
use nava::model::dit::Offload;
use nava::pipeline::generate::{generate, Event, Mode, ModelSource, Models, Observer, Request, Stage, TINY_DEFAULTS};
use nava::pipeline::shape::Length;
use nava::pipeline::{PipelineError, SampleConfig};

struct Timer {
    current: Option<(Stage, Instant)>,
    stages: Vec<(Stage, f64)>,
}

impl Timer {
    fn close(&mut self) {
        if let Some((s, t)) = self.current.take() {
            self.stages.push((s, t.elapsed().as_secs_f64()));
        }
    }
}

impl Observer for Timer {
    fn event(&mut self, e: Event) -> Result<(), PipelineError> {
        if let Event::Stage { stage, .. } = e {
            if self.current.map(|(s, _)| s) != Some(stage) {
                self.close();
                self.current = Some((stage, Instant::now()));
            }
        }
        Ok(())
    }
}

pub fn run(
    g: &Gpu,
    weights: Option<&std::path::Path>,
    latent_frames: Option<usize>,
    steps: Option<usize>,
) -> Result<(), Box<dyn std::error::Error>> {
    let source = weights.map_or(ModelSource::Tiny, |p| ModelSource::Dir(p.to_path_buf()));
    let mut models = Models::open(&source, None, Offload::Never)?;
    let tiny = models.is_tiny();
    let length = match latent_frames {
        Some(f) => Length::from_latent_frames(f)?,
        None if tiny => TINY_DEFAULTS.length,
        None => Length::from_latent_frames(37)?,
    };
    let size = if tiny { TINY_DEFAULTS.size } else { nava::pipeline::shape::Size { width: 1280, height: 704 } };
    let request = Request {
        prompt: "A cat says <S>hello<E> in a sunny kitchen".into(),
        negative_prompt: None,
        first_frame: None,
        voices: Vec::new(),
        size,
        length,
        mode: Mode::AudioVideo,
        sample: SampleConfig {
            num_steps: steps.unwrap_or(if tiny { TINY_DEFAULTS.steps } else { 50 }),
            ..SampleConfig::default()
        },
        seed: 42,
        audio_rate: 16000,
    };
    g.reset_peak_memory();
    let mut timer = Timer { current: None, stages: Vec::new() };
    let start = Instant::now();
    let out = nava::gpu::block_on(generate(g, &mut models, &request, &mut timer))?;
    timer.close();
    let total = start.elapsed().as_secs_f64();
    println!(
        "generate {}×{} × {} frames, {} steps ({}):",
        size.width,
        size.height,
        length.pixel_frames(),
        request.sample.num_steps,
        if tiny { "built-in tiny model" } else { "converted weights" }
    );
    for (stage, s) in &timer.stages {
        println!("  {stage:?}: {s:.2} s");
    }
    println!("total: {total:.2} s for {} frames and {:.2} s of audio", out.frames, out.audio.seconds());
    println!("peak GPU memory: {:.1} MiB", g.memory().peak_bytes as f64 / (1 << 20) as f64);
    println!("frames/s: {:.3}", out.frames as f64 / total);
    Ok(())
}
