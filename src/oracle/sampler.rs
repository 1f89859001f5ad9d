//! The `nava_sampler` case: the UniPC and Euler schedule tables, solver trajectories under a linear stand-in
//! velocity, the CFG combinations, and whole guided sampling runs (`AudioVideoPipeline.sample`) with the case's
//! stand-in model — every `out.*` and `trace.*` compared. Host arithmetic only; the GPU is not used.

use std::path::Path;

use serde_json::Value;

use super::{compare, Comparison, Io, OracleError};
use crate::gpu::Gpu;
use crate::pipeline::{
    sample, Context, FlowMatchEuler, Guidance, GuidanceScales, Pass, PassVelocities, PerModality, PipelineError,
    SampleConfig, Solver, Timestep, UniPc,
};

/// Tolerances from the case's `tolerance_advice`: tables exact (int64) or 1 ulp (float32 sigmas, counted at the
/// largest value), trajectories rtol 1e-5, CFG fp32 rounding (~1e-6).
const EXACT: (f64, f64) = (0.0, 0.0);
const ULP: (f64, f64) = (0.0, f32::EPSILON as f64);
const TRAJECTORY: (f64, f64) = (0.0, 1e-5);
const CFG: (f64, f64) = (0.0, 1e-6);

/// mean(ctx) of the stand-in text model (`stand_in_contexts`): positive, video negative, audio negative.
const CTX_POSITIVE: f32 = 0.25;
const CTX_VIDEO_NEGATIVE: f32 = -0.5;
const CTX_AUDIO_NEGATIVE: f32 = 0.75;

struct Case<'a> {
    dir: &'a Path,
    io: Io,
    out: Vec<Comparison>,
}

impl Case<'_> {
    fn problem(&self, problem: impl Into<String>) -> OracleError {
        OracleError::Case { dir: self.dir.to_path_buf(), problem: problem.into() }
    }

    fn need(&self, key: &str) -> Result<Vec<f32>, OracleError> {
        self.io.get(key).ok_or_else(|| self.problem(format!("missing {key}")))
    }

    /// Compares `got` with the stored `key` (absent keys are skipped: they belong to other case versions).
    fn check(&mut self, key: &str, got: &[f32], (abs, rel): (f64, f64)) {
        if let Some(want) = self.io.get(key) {
            self.out.push(compare(key, got, &want, abs, rel));
        }
    }

    fn pipeline(&self, e: PipelineError) -> OracleError {
        self.problem(e.to_string())
    }
}

pub(crate) fn run(_g: &Gpu, dir: &Path, meta: &Value) -> Result<Vec<Comparison>, OracleError> {
    let mut c = Case { dir, io: Io::open(dir)?, out: Vec::new() };
    let shift = meta["config"]["shift"].as_f64().ok_or_else(|| c.problem("config.shift missing"))?;
    let keys: Vec<String> = meta["io_keys"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    tables(&mut c, &keys, shift)?;
    trajectories(&mut c, shift)?;
    cfg(&mut c, &meta["subcases"]["cfg"])?;
    let subcases = meta["subcases"].as_object().ok_or_else(|| c.problem("meta.json has no subcases"))?;
    for (name, spec) in subcases.iter().filter(|(n, _)| n.starts_with("pipe_")) {
        pipe(&mut c, name, spec, shift)?;
    }
    Ok(c.out)
}

/// `out.unipc_N.*`, `out.euler_N.*` for every N the case holds, and the training grid.
fn tables(c: &mut Case, keys: &[String], shift: f64) -> Result<(), OracleError> {
    let steps_of = |prefix: &str| -> Vec<usize> {
        keys.iter().filter_map(|k| k.strip_prefix(prefix)?.strip_suffix(".sigmas")?.parse().ok()).collect()
    };
    for n in steps_of("out.unipc_") {
        let s = UniPc::new(n, shift).map_err(|e| c.pipeline(e))?;
        let t: Vec<f32> = s.timesteps().iter().map(|&t| t as f32).collect(); // ≤ 1000: exact in f32
        c.check(&format!("out.unipc_{n}.sigmas"), s.sigmas(), ULP);
        c.check(&format!("out.unipc_{n}.timesteps"), &t, EXACT);
    }
    for n in steps_of("out.euler_") {
        let s = FlowMatchEuler::new(n, shift).map_err(|e| c.pipeline(e))?;
        c.check(&format!("out.euler_{n}.sigmas"), s.sigmas(), ULP);
        c.check(&format!("out.euler_{n}.timesteps"), s.timesteps(), ULP);
    }
    c.check("trace.unipc.train_sigmas_1000", &crate::pipeline::train_sigmas(shift), ULP);
    Ok(())
}

/// `x @ A` for row-major `x [rows, k]`, `A [k, cols]`: f64 sums rounded once (the reference's sgemm order is not
/// known; either is within an ulp or two).
fn matmul(x: &[f32], a: &[f32], k: usize) -> Vec<f32> {
    let cols = a.len() / k;
    x.chunks(k)
        .flat_map(|row| {
            (0..cols).map(move |j| row.iter().enumerate().map(|(i, &v)| v as f64 * a[i * cols + j] as f64).sum::<f64>())
        })
        .map(|v| v as f32)
        .collect()
}

/// `traj`: `v_i = x_i @ A + 0.01·i`, ten steps of each solver from `x_init`.
fn trajectories(c: &mut Case, shift: f64) -> Result<(), OracleError> {
    let a = c.need("in.traj.A")?;
    let x_init = c.need("in.traj.x_init")?;
    let k = (a.len() as f64).sqrt() as usize;
    let steps = c.need("trace.traj_unipc.timesteps")?.len();
    let velocity = |x: &[f32], i: usize| -> Vec<f32> {
        let offset = (0.01 * i as f64) as f32; // a Python float added to a float32 tensor
        matmul(x, &a, k).into_iter().map(|v| v + offset).collect()
    };
    let mut unipc = UniPc::new(steps, shift).map_err(|e| c.pipeline(e))?;
    let (mut xs, mut vs, mut x0s, mut corrected, mut orders) = (x_init.clone(), vec![], vec![], vec![], vec![]);
    let mut x = x_init.clone();
    for i in 0..steps {
        let v = velocity(&x, i);
        x = unipc.step(&v, &x).map_err(|e| c.pipeline(e))?;
        vs.extend_from_slice(&v);
        xs.extend_from_slice(&x);
        x0s.extend_from_slice(unipc.x0_pred().unwrap_or_default());
        corrected.extend_from_slice(unipc.corrected_sample().unwrap_or_default());
        orders.push(unipc.last_order() as f32);
    }
    let timesteps: Vec<f32> = unipc.timesteps().iter().map(|&t| t as f32).collect();
    c.check("out.traj_unipc.x", &xs, TRAJECTORY);
    c.check("trace.traj_unipc.v", &vs, TRAJECTORY);
    c.check("trace.traj_unipc.timesteps", &timesteps, EXACT);
    c.check("trace.traj_unipc.x0_pred", &x0s, TRAJECTORY);
    c.check("trace.traj_unipc.sample_corrected", &corrected, TRAJECTORY);
    c.check("trace.traj_unipc.order", &orders, EXACT);

    let mut euler = FlowMatchEuler::new(steps, shift).map_err(|e| c.pipeline(e))?;
    let (mut xs, mut vs) = (x_init.clone(), vec![]);
    let mut x = x_init;
    for i in 0..steps {
        let v = velocity(&x, i);
        x = euler.step(&v, &x).map_err(|e| c.pipeline(e))?;
        vs.extend_from_slice(&v);
        xs.extend_from_slice(&x);
    }
    let timesteps = euler.timesteps().to_vec();
    c.check("out.traj_euler.x", &xs, TRAJECTORY);
    c.check("trace.traj_euler.v", &vs, TRAJECTORY);
    c.check("trace.traj_euler.timesteps", &timesteps, ULP);
    Ok(())
}

/// `cfg`: the combined velocities from fixed per-pass velocities, for every scale set and flag combination.
fn cfg(c: &mut Case, spec: &Value) -> Result<(), OracleError> {
    let Some(runs) = spec["runs"].as_object() else { return Ok(()) };
    let mut inputs = Vec::new();
    for pass in ["cond", "uncond", "align", "timbre"] {
        inputs.push([c.need(&format!("in.cfg.v_{pass}_vid"))?, c.need(&format!("in.cfg.v_{pass}_audio"))?]);
    }
    for (name, run) in runs {
        let scales: GuidanceScales =
            serde_json::from_value(run["scales"].clone()).map_err(|e| c.problem(format!("cfg.{name}: {e}")))?;
        let flag = |f: &str| run[f].as_bool().unwrap_or(false);
        let guidance = Guidance { scales, align_3d_cfg: flag("align_3d_cfg"), timbre_cfg: flag("timbre_cfg") };
        let ran = |p: &str| run["passes"].as_array().is_some_and(|a| a.iter().any(|v| v == p));
        for (m, key) in [(0, "vid"), (1, "audio")] {
            let v = PassVelocities {
                cond: &inputs[0][m],
                uncond: &inputs[1][m],
                align: ran("align").then_some(inputs[2][m].as_slice()),
                timbre: ran("timbre").then_some(inputs[3][m].as_slice()),
            };
            let got = if m == 0 { guidance.video(&v) } else { guidance.audio(&v) }.map_err(|e| c.pipeline(e))?;
            c.check(&format!("out.cfg.{name}.eps_{key}"), &got, CFG);
        }
    }
    Ok(())
}

/// The run's settings from its `python_call`: `num_steps=N`, the flags and the scales dict.
fn run_config(c: &Case, name: &str, spec: &Value, shift: f64) -> Result<SampleConfig, OracleError> {
    let call = spec["python_call"].as_str().ok_or_else(|| c.problem(format!("{name}: no python_call")))?;
    let bad = |what: &str| c.problem(format!("{name}: cannot read {what} from python_call `{call}`"));
    let num_steps = call
        .split("num_steps=")
        .nth(1)
        .and_then(|s| s.split(|ch: char| !ch.is_ascii_digit()).next()?.parse().ok())
        .ok_or_else(|| bad("num_steps"))?;
    let dict = call.find('{').zip(call.rfind('}')).map(|(a, b)| call[a..=b].replace('\'', "\""));
    let scales: GuidanceScales =
        dict.and_then(|d| serde_json::from_str(&d).ok()).ok_or_else(|| bad("the guidance scales"))?;
    let solver = match spec["scheduler"].as_str().unwrap_or("") {
        s if s.starts_with("FlowUniPCMultistepScheduler") => Solver::UniPc,
        s if s.starts_with("FlowMatchScheduler") => Solver::Euler,
        s => return Err(c.problem(format!("{name}: unknown scheduler `{s}`"))),
    };
    let guidance = Guidance {
        scales,
        align_3d_cfg: call.contains("align_3d_cfg=True"),
        timbre_cfg: call.contains("timbre_cfg=True"),
    };
    Ok(SampleConfig { num_steps, solver, shift, shift_audio: shift, guidance })
}

/// Checks our pass table against the reference's step-0 pass log: order, contexts and speaker/masking arguments.
fn check_pass_log(c: &Case, name: &str, log: &Value, passes: &[Pass], has_spk: bool) -> Result<(), OracleError> {
    let entries = log.as_array().ok_or_else(|| c.problem(format!("{name}: no pass_log_step0")))?;
    for (i, &pass) in passes.iter().enumerate() {
        let e = entries.get(i).ok_or_else(|| c.problem(format!("{name}: pass log shorter than {passes:?}")))?;
        let context = if pass.context() == Context::Positive { "positive" } else { "negative_video" };
        let ok = e["pass"] == pass.name()
            && e["vid_context"] == context
            && e["masking_modality"] == pass.masking_modality()
            && e["spk_embs"].is_null() != (pass.speaker_embeddings() && has_spk)
            && e["spk_pos"].is_null() != pass.speaker_positions()
            && e["slg_layer"].as_u64().map(|l| l as usize) == pass.slg_layer();
        if !ok {
            return Err(c.problem(format!("{name}: pass {i} is {pass:?} here but the reference logged {e}")));
        }
    }
    Ok(())
}

/// The case's stand-in for `NAVA.predict_eps` (mode 'linear'), per modality
/// `v = x @ A + (t/1000)·b + mean(ctx)·c + [masking]·m + [spk_embs given]·s + [spk_pos given]·p`.
struct StandIn {
    /// `(A, b, c, m, s, p)` for video and audio.
    video: [Vec<f32>; 6],
    audio: [Vec<f32>; 6],
}

impl StandIn {
    fn load(c: &Case) -> Result<Self, OracleError> {
        let load = |m: &str| -> Result<[Vec<f32>; 6], OracleError> {
            let get = |p: &str| c.need(&format!("in.pipe.{p}_{m}"));
            Ok([get("A")?, get("b")?, get("c")?, get("m")?, get("s")?, get("p")?])
        };
        Ok(Self { video: load("vid")?, audio: load("audio")? })
    }

    fn velocity(w: &[Vec<f32>; 6], x: &[f32], t: Timestep, ctx_mean: f32, pass: Pass, spk: bool) -> Vec<f32> {
        let [a, b, c, m, s, p] = w;
        let ch = b.len();
        let tf = t.as_f32() / 1000.0;
        let mut v = matmul(x, a, ch);
        for row in v.chunks_mut(ch) {
            for (j, o) in row.iter_mut().enumerate() {
                *o = *o + tf * b[j] + ctx_mean * c[j];
                if pass.masking_modality() {
                    *o += m[j];
                }
                if pass.speaker_embeddings() && spk {
                    *o += s[j];
                }
                if pass.speaker_positions() {
                    *o += p[j];
                }
            }
        }
        v
    }
}

/// `pipe_*`: a whole `sample()` run with the stand-in model from the stored initial noise.
fn pipe(c: &mut Case, name: &str, spec: &Value, shift: f64) -> Result<(), OracleError> {
    let config = run_config(c, name, spec, shift)?;
    let has_spk = !spec["pass_log_step0"][0]["spk_embs"].is_null();
    check_pass_log(c, name, &spec["pass_log_step0"], &config.guidance.passes(has_spk), has_spk)?;
    let model = StandIn::load(c)?;
    let (x_vid, x_audio) = (c.need(&format!("trace.{name}.x_vid"))?, c.need(&format!("trace.{name}.x_audio"))?);
    let per_step = |v: &[f32]| v.len() / (config.num_steps + 1);
    let noise =
        PerModality { video: x_vid[..per_step(&x_vid)].to_vec(), audio: x_audio[..per_step(&x_audio)].to_vec() };
    let mut trace = PerModality { video: noise.video.clone(), audio: noise.audio.clone() };
    let (mut eps, mut timesteps) = (PerModality::<Vec<f32>>::default(), Vec::new());
    let denoise = |pass: Pass, t: Timestep, x: &mut PerModality<Vec<f32>>| {
        let (ctx_video, ctx_audio) = match pass.context() {
            Context::Positive => (CTX_POSITIVE, CTX_POSITIVE),
            Context::Negative => (CTX_VIDEO_NEGATIVE, CTX_AUDIO_NEGATIVE),
        };
        Ok(PerModality {
            video: StandIn::velocity(&model.video, &x.video, t, ctx_video, pass, has_spk),
            audio: StandIn::velocity(&model.audio, &x.audio, t, ctx_audio, pass, has_spk),
        })
    };
    let last = sample(&config, noise, has_spk, denoise, |r| {
        trace.video.extend_from_slice(r.latents.video);
        trace.audio.extend_from_slice(r.latents.audio);
        eps.video.extend_from_slice(r.velocity.video);
        eps.audio.extend_from_slice(r.velocity.audio);
        timesteps.push(r.timestep.as_f32());
    })
    .map_err(|e| c.pipeline(e))?;
    // save_vid_latent: video as [F, h, w, C] (same order as the rows); audio decoded as [C, L] (transposed).
    let audio_channels = model.audio[1].len();
    let rows = last.audio.len() / audio_channels;
    let audio_cl: Vec<f32> = (0..audio_channels)
        .flat_map(|j| (0..rows).map(move |r| (r, j)))
        .map(|(r, j)| last.audio[r * audio_channels + j])
        .collect();
    c.check(&format!("out.{name}.video_latent"), &last.video, TRAJECTORY);
    c.check(&format!("out.{name}.audio_latent"), &audio_cl, TRAJECTORY);
    c.check(&format!("trace.{name}.x_vid"), &trace.video, TRAJECTORY);
    c.check(&format!("trace.{name}.x_audio"), &trace.audio, TRAJECTORY);
    c.check(&format!("trace.{name}.eps_vid"), &eps.video, TRAJECTORY);
    c.check(&format!("trace.{name}.eps_audio"), &eps.audio, TRAJECTORY);
    let t_tol = if config.solver == Solver::UniPc { EXACT } else { ULP };
    c.check(&format!("trace.{name}.timesteps"), &timesteps, t_tol);
    Ok(())
}
