//! Flow-matching schedulers of the sampling loop, NAVA.md §6:
//! - [`UniPc`]: reference `FlowUniPCMultistepScheduler` (Wan2.2 `wan/utils/fm_solvers_unipc.py`, copied as
//!   `nava_src/models/nava/utils/fm_solvers_unipc.py`) as `AudioVideoPipeline.create` builds it: `solver_order` 2,
//!   `solver_type` bh2, `predict_x0` with `flow_prediction`, `lower_order_final`, `final_sigmas_type` zero, no
//!   dynamic shifting, no thresholding, no disabled corrector steps.
//! - [`FlowMatchEuler`]: reference `FlowMatchScheduler(extra_one_step=True)` (`nava_src/scheduler/flow_match.py`),
//!   the sampler when `scheduler_unipc` is off.
//!
//! Step state and arithmetic are f32 on the host, one rounding per reference tensor op and in the reference's
//! order (it steps fp32 CPU tensors); schedule tables are built in f64 where the reference uses numpy. Video and
//! audio each get their own instance; both step on the video scheduler's timesteps.

use super::PipelineError;

/// `num_train_timesteps` of both schedulers (configs/nava.yaml).
pub const NUM_TRAIN_TIMESTEPS: usize = 1000;
/// `shift` and `shift_audio` of configs/nava.yaml.
pub const SHIFT: f64 = 5.0;
/// `FlowMatchScheduler` defaults `sigma_max` and `sigma_min`.
const EULER_SIGMA_MAX: f64 = 1.0;
const EULER_SIGMA_MIN: f64 = 0.003 / 1.002;

/// The timestep a scheduler hands the denoiser: UniPC's are int64, `FlowMatchScheduler`'s float32 (σ·1000).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Timestep {
    Int(i64),
    Float(f32),
}

impl Timestep {
    /// The value as the float32 the denoiser computes with (`t.float()`; int64 timesteps are ≤ 1000, exact).
    pub fn as_f32(self) -> f32 {
        match self {
            Timestep::Int(t) => t as f32,
            Timestep::Float(t) => t,
        }
    }
}

/// Which scheduler samples: `scheduler_unipc` in configs/nava.yaml (true) or the Euler fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solver {
    UniPc,
    Euler,
}

fn check_settings(what: &'static str, steps: usize, shift: f64) -> Result<(), PipelineError> {
    if steps == 0 {
        return Err(PipelineError::Config { what, problem: "0 sampling steps: at least 1 is needed".into() });
    }
    if !(shift.is_finite() && shift > 0.0) {
        return Err(PipelineError::Config { what, problem: format!("shift {shift}: must be a finite number > 0") });
    }
    Ok(())
}

/// `numpy.linspace(start, stop, num)` with `num >= 2`: `i·step + start` in f64, the last point exactly `stop`.
fn numpy_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut y: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    y[num - 1] = stop;
    y
}

/// `torch.linspace(start, end, steps)` in float32 as its CPU kernel computes it: the first half counts up from
/// `start`, the second half down from `end`, each point one fused multiply-add (the reference build contracts
/// `start + step·i`; with the fused form the case's 10- and 50-step tables match bit for bit, without it 4 of 50
/// sigmas are 1 ulp off).
fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| if i < halfway { step.mul_add(i as f32, start) } else { (-step).mul_add((steps - i - 1) as f32, end) })
        .collect()
}

/// The shifted training grid, `FlowUniPCMultistepScheduler.__init__`: σ = 1 − linspace(1, 1/1000, 1000) reversed,
/// made float32, then `shift·σ / (1 + (shift − 1)·σ)` in float32 tensor ops. σ_max = 0.9998 at shift 5.
pub fn train_sigmas(shift: f64) -> Vec<f32> {
    let n = NUM_TRAIN_TIMESTEPS;
    let alphas = numpy_linspace(1.0, 1.0 / n as f64, n);
    let (s, s_minus_1) = (shift as f32, (shift - 1.0) as f32);
    alphas
        .iter()
        .rev()
        .map(|a| {
            let sigma = (1.0 - a) as f32;
            s * sigma / (1.0 + s_minus_1 * sigma)
        })
        .collect()
}

/// `λ(σ) = log α − log σ` with α = 1 − σ (`_sigma_to_alpha_sigma_t`), float32; +∞ at σ = 0.
fn lambda(sigma: f32) -> f32 {
    (1.0 - sigma).ln() - sigma.ln()
}

/// Solves the 2×2 system `R·x = b` as `torch.linalg.solve` does (LU with partial pivoting), float32.
fn solve2(r: [[f32; 2]; 2], b: [f32; 2]) -> [f32; 2] {
    let (r, b) = if r[1][0].abs() > r[0][0].abs() { ([r[1], r[0]], [b[1], b[0]]) } else { (r, b) };
    let l = r[1][0] / r[0][0];
    let u11 = r[1][1] - l * r[0][1];
    let y1 = b[1] - l * b[0];
    let x1 = y1 / u11;
    [(b[0] - r[0][1] * x1) / r[0][0], x1]
}

fn check_len(what: &str, expected: usize, found: usize) -> Result<(), PipelineError> {
    if expected != found {
        return Err(PipelineError::Length { what: what.to_string(), expected, found });
    }
    Ok(())
}

/// Reference `FlowUniPCMultistepScheduler` after `set_timesteps(steps)`: a predictor–corrector multistep solver on
/// the x0 predictions `x − σ·v`, order 2 after a first-order warm-up and a first-order final step.
#[derive(Clone, Debug)]
pub struct UniPc {
    /// `sigmas`: `steps + 1` values, the last 0.
    sigmas: Vec<f32>,
    /// `timesteps`: int(σ·1000), truncated.
    timesteps: Vec<i64>,
    /// `_step_index`: steps taken so far.
    step_index: usize,
    /// `model_outputs`: the x0 predictions of the last two steps, older first.
    model_outputs: [Option<Vec<f32>>; 2],
    /// `last_sample`: the (corrected) sample the last predictor started from.
    last_sample: Option<Vec<f32>>,
    /// `lower_order_nums`: warm-up counter, at most `SOLVER_ORDER`.
    lower_order_nums: usize,
    /// `this_order`: predictor order of the last step (0 before the first).
    this_order: usize,
}

impl UniPc {
    /// `solver_order`.
    pub const SOLVER_ORDER: usize = 2;

    /// `FlowUniPCMultistepScheduler(num_train_timesteps=1000, shift=shift).set_timesteps(steps)`. The shift is
    /// applied twice, as the reference does: once on the training grid, whose ends σ_max and σ_min (= 0) bound a
    /// linspace of `steps + 1` points (f64, last dropped), which is shifted again (f64); timesteps are σ·1000
    /// truncated to int64 and the sigmas get a final 0.
    ///
    /// From 210 steps on (shift 5) the first two integer timesteps are both 999; the reference then starts its
    /// step counter at the second (`index_for_timestep`) and fails its `this_order > 0` assertion on the last step.
    /// Here the counter starts at 0, so such schedules run (each σ once) where the reference cannot.
    pub fn new(steps: usize, shift: f64) -> Result<Self, PipelineError> {
        check_settings("UniPC scheduler", steps, shift)?;
        let train = train_sigmas(shift);
        let (sigma_max, sigma_min) = (train[0] as f64, train[NUM_TRAIN_TIMESTEPS - 1] as f64);
        let shifted: Vec<f64> = numpy_linspace(sigma_max, sigma_min, steps + 1)[..steps]
            .iter()
            .map(|&s| shift * s / (1.0 + (shift - 1.0) * s))
            .collect();
        let timesteps = shifted.iter().map(|&s| (s * NUM_TRAIN_TIMESTEPS as f64) as i64).collect();
        let sigmas = shifted.iter().map(|&s| s as f32).chain([0.0]).collect();
        Ok(Self {
            sigmas,
            timesteps,
            step_index: 0,
            model_outputs: [None, None],
            last_sample: None,
            lower_order_nums: 0,
            this_order: 0,
        })
    }

    pub fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    /// `steps + 1` values from σ_max to the final 0.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// Steps taken so far (`step_index`).
    pub fn step_index(&self) -> usize {
        self.step_index
    }

    /// The x0 prediction (`convert_model_output`) of the last step.
    pub fn x0_pred(&self) -> Option<&[f32]> {
        self.model_outputs[1].as_deref()
    }

    /// The sample the last predictor started from: the input after the UniC corrector (`last_sample`).
    pub fn corrected_sample(&self) -> Option<&[f32]> {
        self.last_sample.as_deref()
    }

    /// The predictor order the last step used (`this_order`; 0 before the first step).
    pub fn last_order(&self) -> usize {
        self.this_order
    }

    /// `step(model_output, timestep, sample)`: the velocity `model_output` at the current timestep turns `sample`
    /// into the sample at the next one (σ = 0 after the last).
    pub fn step(&mut self, model_output: &[f32], sample: &[f32]) -> Result<Vec<f32>, PipelineError> {
        let steps = self.timesteps.len();
        let k = self.step_index;
        if k >= steps {
            return Err(PipelineError::Finished { scheduler: "UniPC scheduler", steps });
        }
        let n = self.last_sample.as_ref().map_or(sample.len(), Vec::len);
        check_len("UniPC sample", n, sample.len())?;
        check_len("UniPC model output", n, model_output.len())?;
        // convert_model_output, flow_prediction with predict_x0: x0 = x − σ·v.
        let sigma = self.sigmas[k];
        let x0: Vec<f32> = sample.iter().zip(model_output).map(|(&x, &v)| x - sigma * v).collect();
        let sample = match &self.last_sample {
            Some(last) if k > 0 => self.correct(&x0, last),
            _ => sample.to_vec(),
        };
        let newest = self.model_outputs[1].take();
        self.model_outputs = [newest, Some(x0)];
        // lower_order_final, then the warm-up limit.
        self.this_order = Self::SOLVER_ORDER.min(steps - k).min(self.lower_order_nums + 1);
        let next = self.predict(&sample, self.this_order);
        self.last_sample = Some(sample);
        self.lower_order_nums = (self.lower_order_nums + 1).min(Self::SOLVER_ORDER);
        self.step_index += 1;
        Ok(next)
    }

    /// `multistep_uni_p_bh_update`: from σ_k to σ_{k+1} with the stored x0 predictions.
    fn predict(&self, x: &[f32], order: usize) -> Vec<f32> {
        let k = self.step_index;
        let m0 = self.model_outputs[1].as_deref().expect("step() stores this step's x0 before predicting");
        let (sigma_t, sigma_s0) = (self.sigmas[k + 1], self.sigmas[k]);
        let alpha_t = 1.0 - sigma_t;
        let lambda_s0 = lambda(sigma_s0);
        let h = lambda(sigma_t) - lambda_s0;
        let hh = -h; // predict_x0
        let h_phi_1 = hh.exp_m1();
        let b_h = hh.exp_m1(); // bh2
        let ratio = sigma_t / sigma_s0;
        let c_m0 = alpha_t * h_phi_1;
        let c_res = alpha_t * b_h;
        let base = x.iter().zip(m0).map(|(&x, &m0)| ratio * x - c_m0 * m0);
        if order < 2 {
            return base.collect();
        }
        // Order 2 uses the x0 of step k−1; rhos_p is fixed to 0.5 for order 2.
        let m1 = self.model_outputs[0].as_deref().expect("order 2 follows a stored step");
        let rk = (lambda(self.sigmas[k - 1]) - lambda_s0) / h;
        base.zip(m1.iter().zip(m0))
            .map(|(xt, (&m1, &m0))| {
                let d1 = (m1 - m0) / rk;
                xt - c_res * (0.5 * d1)
            })
            .collect()
    }

    /// `multistep_uni_c_bh_update`: the sample at σ_k recomputed with the new x0 `model_t`, from `last_sample`
    /// (at σ_{k−1}) and the stored x0 predictions, with the order of the last predictor. The uncorrected sample
    /// is not an input: the reference reads only its device.
    fn correct(&self, model_t: &[f32], last_sample: &[f32]) -> Vec<f32> {
        let k = self.step_index;
        let order = self.this_order;
        let m0 = self.model_outputs[1].as_deref().expect("a corrected step follows a stored step");
        let (sigma_t, sigma_s0) = (self.sigmas[k], self.sigmas[k - 1]);
        let alpha_t = 1.0 - sigma_t;
        let lambda_s0 = lambda(sigma_s0);
        let h = lambda(sigma_t) - lambda_s0;
        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        let b_h = hh.exp_m1();
        let ratio = sigma_t / sigma_s0;
        let c_m0 = alpha_t * h_phi_1;
        let c_res = alpha_t * b_h;
        if order < 2 {
            // rhos_c = [0.5] for order 1.
            return last_sample
                .iter()
                .zip(m0)
                .zip(model_t)
                .map(|((&x, &m0), &mt)| (ratio * x - c_m0 * m0) - c_res * (0.5 * (mt - m0)))
                .collect();
        }
        // Order 2: rhos_c solves [[1, 1], [rk, 1]]·ρ = b with b_i from the φ-functions of −h.
        let m1 = self.model_outputs[0].as_deref().expect("order 2 follows two stored steps");
        let rk = (lambda(self.sigmas[k - 2]) - lambda_s0) / h;
        let h_phi_k1 = h_phi_1 / hh - 1.0;
        let h_phi_k2 = h_phi_k1 / hh - 0.5;
        let b = [h_phi_k1 / b_h, h_phi_k2 * 2.0 / b_h];
        let rho = solve2([[1.0, 1.0], [rk, 1.0]], b);
        last_sample
            .iter()
            .zip(m0)
            .zip(m1.iter().zip(model_t))
            .map(|((&x, &m0), (&m1, &mt))| {
                let d1 = (m1 - m0) / rk;
                (ratio * x - c_m0 * m0) - c_res * (rho[0] * d1 + rho[1] * (mt - m0))
            })
            .collect()
    }
}

/// Reference `FlowMatchScheduler(num_train_timesteps=1000, shift, extra_one_step=True)` after
/// `set_timesteps(steps)`: Euler steps `x + v·(σ_next − σ)` on float32 sigmas, σ_next = 0 after the last.
#[derive(Clone, Debug)]
pub struct FlowMatchEuler {
    sigmas: Vec<f32>,
    timesteps: Vec<f32>,
    step_index: usize,
}

impl FlowMatchEuler {
    /// σ = torch.linspace(σ_start, σ_min, steps + 1)[:-1] in float32 (σ_start = 1, σ_min = 0.003/1.002), shifted
    /// once in float32; timesteps σ·1000 stay float32 (not integers).
    pub fn new(steps: usize, shift: f64) -> Result<Self, PipelineError> {
        check_settings("Euler scheduler", steps, shift)?;
        // denoising_strength 1.
        let sigma_start = EULER_SIGMA_MIN + (EULER_SIGMA_MAX - EULER_SIGMA_MIN) * 1.0;
        let (s, s_minus_1) = (shift as f32, (shift - 1.0) as f32);
        let sigmas: Vec<f32> = torch_linspace_f32(sigma_start as f32, EULER_SIGMA_MIN as f32, steps + 1)[..steps]
            .iter()
            .map(|&sigma| s * sigma / (1.0 + s_minus_1 * sigma))
            .collect();
        let timesteps = sigmas.iter().map(|&s| s * NUM_TRAIN_TIMESTEPS as f32).collect();
        Ok(Self { sigmas, timesteps, step_index: 0 })
    }

    /// `steps` values (no final 0: the step after the last goes to σ = 0).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    pub fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    pub fn step_index(&self) -> usize {
        self.step_index
    }

    /// `step(model_output, timestep, sample)`: `sample + model_output·(σ_next − σ)`. The reference finds σ by the
    /// timestep nearest the one passed; the schedule's own timesteps are distinct, so a counter finds the same.
    pub fn step(&mut self, model_output: &[f32], sample: &[f32]) -> Result<Vec<f32>, PipelineError> {
        let steps = self.sigmas.len();
        let k = self.step_index;
        if k >= steps {
            return Err(PipelineError::Finished { scheduler: "Euler scheduler", steps });
        }
        check_len("Euler model output", sample.len(), model_output.len())?;
        let next = if k + 1 < steps { self.sigmas[k + 1] } else { 0.0 };
        let dt = next - self.sigmas[k];
        self.step_index += 1;
        Ok(sample.iter().zip(model_output).map(|(&x, &v)| x + v * dt).collect())
    }
}

/// One of the two schedulers, as the sampling loop uses them.
#[derive(Clone, Debug)]
pub enum Scheduler {
    UniPc(UniPc),
    Euler(FlowMatchEuler),
}

impl Scheduler {
    pub fn new(solver: Solver, steps: usize, shift: f64) -> Result<Self, PipelineError> {
        Ok(match solver {
            Solver::UniPc => Scheduler::UniPc(UniPc::new(steps, shift)?),
            Solver::Euler => Scheduler::Euler(FlowMatchEuler::new(steps, shift)?),
        })
    }

    pub fn timesteps(&self) -> Vec<Timestep> {
        match self {
            Scheduler::UniPc(s) => s.timesteps().iter().map(|&t| Timestep::Int(t)).collect(),
            Scheduler::Euler(s) => s.timesteps().iter().map(|&t| Timestep::Float(t)).collect(),
        }
    }

    pub fn step(&mut self, model_output: &[f32], sample: &[f32]) -> Result<Vec<f32>, PipelineError> {
        match self {
            Scheduler::UniPc(s) => s.step(model_output, sample),
            Scheduler::Euler(s) => s.step(model_output, sample),
        }
    }
}
