//! Edge cases of the sampler and guidance (src/pipeline/): short schedules, the Euler fallback, exactness on a
//! straight flow path, and the errors for settings the reference cannot run. The `nava_sampler` oracle case
//! (tests/parity.rs) checks the numbers against the reference.

use nava::pipeline::{
    sample, FlowMatchEuler, Guidance, GuidanceScales, Pass, PassVelocities, PerModality, PipelineError, SampleConfig,
    Scheduler, Solver, Timestep, UniPc, SHIFT,
};

/// A point on the straight path `x_σ = (1 − σ)·x0 + σ·ε`, whose velocity is `ε − x0` everywhere.
fn path(x0: &[f32], eps: &[f32], sigma: f32) -> Vec<f32> {
    x0.iter().zip(eps).map(|(&a, &e)| (1.0 - sigma) * a + sigma * e).collect()
}

fn velocity(x0: &[f32], eps: &[f32]) -> Vec<f32> {
    x0.iter().zip(eps).map(|(&a, &e)| e - a).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 250.0 - 2.0).collect()
}

#[test]
fn unipc_schedule_matches_nava_md() {
    let s = UniPc::new(50, SHIFT).unwrap();
    assert_eq!(&s.timesteps()[..3], &[999, 995, 991]);
    assert_eq!(&s.timesteps()[47..], &[241, 172, 92]);
    let sig = s.sigmas();
    assert_eq!(sig.len(), 51);
    assert_eq!(sig[50], 0.0);
    for (got, want) in [(sig[0], 0.99996), (sig[1], 0.99589), (sig[2], 0.99169), (sig[49], 0.0926)] {
        assert!((got - want).abs() < 5e-5, "sigma {got} vs {want}");
    }
    assert!(sig.windows(2).all(|w| w[0] > w[1]));
}

#[test]
fn unipc_one_and_two_steps() {
    let s = UniPc::new(1, SHIFT).unwrap();
    assert_eq!(s.timesteps(), &[999]);
    assert_eq!(s.sigmas().len(), 2);
    assert_eq!(s.sigmas()[1], 0.0);
    let s = UniPc::new(2, SHIFT).unwrap();
    assert_eq!(s.timesteps().len(), 2);
    assert_eq!(s.sigmas().len(), 3);

    // One step lands on the x0 prediction x − σ·v (σ_next = 0).
    let (x, v) = (data(12, 1), data(12, 2));
    let mut s = UniPc::new(1, SHIFT).unwrap();
    let sigma = s.sigmas()[0];
    let out = s.step(&v, &x).unwrap();
    let want: Vec<f32> = x.iter().zip(&v).map(|(&x, &v)| x - sigma * v).collect();
    assert_eq!(out, want);
    assert_eq!(s.last_order(), 1);

    // Two steps: first order both times (warm-up, then lower_order_final).
    let mut s = UniPc::new(2, SHIFT).unwrap();
    let x1 = s.step(&v, &x).unwrap();
    assert_eq!(s.last_order(), 1);
    s.step(&v, &x1).unwrap();
    assert_eq!(s.last_order(), 1);
    assert_eq!(s.step_index(), 2);
}

#[test]
fn unipc_orders_warm_up_then_two_then_final_one() {
    let (x0, eps) = (data(8, 3), data(8, 4));
    let mut s = UniPc::new(6, SHIFT).unwrap();
    let mut x = path(&x0, &eps, s.sigmas()[0]);
    let mut orders = Vec::new();
    for _ in 0..6 {
        x = s.step(&velocity(&x0, &eps), &x).unwrap();
        orders.push(s.last_order());
    }
    assert_eq!(orders, [1, 2, 2, 2, 2, 1]);
}

#[test]
fn both_solvers_are_exact_on_a_straight_path() {
    let (x0, eps) = (data(16, 5), data(16, 6));
    for steps in [1, 2, 3, 10, 50] {
        for solver in [Solver::UniPc, Solver::Euler] {
            let mut s = Scheduler::new(solver, steps, SHIFT).unwrap();
            let sigma0 = match &s {
                Scheduler::UniPc(u) => u.sigmas()[0],
                Scheduler::Euler(e) => e.sigmas()[0],
            };
            let mut x = path(&x0, &eps, sigma0);
            for _ in 0..steps {
                x = s.step(&velocity(&x0, &eps), &x).unwrap();
            }
            let err = max_diff(&x, &x0);
            assert!(err < 2e-5, "{solver:?} with {steps} steps: off the path by {err}");
        }
    }
}

#[test]
fn euler_fallback_tables_and_step() {
    let s = FlowMatchEuler::new(1, SHIFT).unwrap();
    assert_eq!(s.sigmas(), &[1.0]);
    assert_eq!(s.timesteps(), &[1000.0]);
    let s = FlowMatchEuler::new(10, SHIFT).unwrap();
    assert_eq!(s.sigmas().len(), 10);
    // extra_one_step: the last σ is above σ_min, the step after it goes to 0.
    assert!(s.sigmas()[9] > 0.1);
    assert!(s.timesteps().iter().any(|t| t.fract() != 0.0), "Euler timesteps are not integers");

    let mut s = FlowMatchEuler::new(2, SHIFT).unwrap();
    let (x, v) = (vec![1.0f32, -2.0], vec![0.5f32, 0.25]);
    let (s0, s1) = (s.sigmas()[0], s.sigmas()[1]);
    let x1 = s.step(&v, &x).unwrap();
    assert_eq!(x1, vec![1.0 + 0.5 * (s1 - s0), -2.0 + 0.25 * (s1 - s0)]);
    let x2 = s.step(&v, &x1).unwrap();
    assert_eq!(x2, vec![x1[0] + 0.5 * (0.0 - s1), x1[1] + 0.25 * (0.0 - s1)]);
}

#[test]
fn bad_settings_and_inputs_are_clear_errors() {
    let msg = UniPc::new(0, SHIFT).unwrap_err().to_string();
    assert!(msg.contains("0 sampling steps"), "{msg}");
    let msg = FlowMatchEuler::new(0, SHIFT).unwrap_err().to_string();
    assert!(msg.contains("Euler scheduler: 0 sampling steps"), "{msg}");
    for shift in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let msg = UniPc::new(10, shift).unwrap_err().to_string();
        assert!(msg.contains("shift"), "{msg}");
    }

    let mut s = UniPc::new(1, SHIFT).unwrap();
    let msg = s.step(&[1.0, 2.0], &[1.0]).unwrap_err().to_string();
    assert!(msg.contains("UniPC model output: 2 values, expected 1"), "{msg}");
    s.step(&[1.0], &[1.0]).unwrap();
    let e = s.step(&[1.0], &[1.0]).unwrap_err();
    assert!(matches!(e, PipelineError::Finished { steps: 1, .. }), "{e}");

    let mut s = UniPc::new(3, SHIFT).unwrap();
    s.step(&[1.0, 2.0], &[1.0, 2.0]).unwrap();
    let msg = s.step(&[1.0], &[1.0]).unwrap_err().to_string();
    assert!(msg.contains("UniPC sample: 1 values, expected 2"), "{msg}");

    let mut s = FlowMatchEuler::new(1, SHIFT).unwrap();
    assert!(s.step(&[1.0], &[1.0, 2.0]).is_err());
}

#[test]
fn guidance_passes_and_combinations() {
    let g = Guidance::default();
    assert_eq!(g.scales, GuidanceScales::default());
    assert_eq!(g.passes(true), [Pass::Cond, Pass::Uncond, Pass::Align, Pass::Timbre]);
    assert_eq!(g.passes(false), [Pass::Cond, Pass::Uncond, Pass::Align]);
    let plain = Guidance { align_3d_cfg: false, timbre_cfg: false, ..g };
    assert_eq!(plain.passes(true), [Pass::Cond, Pass::Uncond]);
    assert!(Pass::Align.speaker_embeddings() && !Pass::Align.speaker_positions() && Pass::Align.masking_modality());
    assert!(!Pass::Timbre.speaker_embeddings() && Pass::Timbre.speaker_positions());
    assert_eq!(Pass::Uncond.slg_layer(), Some(11));

    let (c, u, a, t) = ([1.0f32], [0.5f32], [0.25f32], [2.0f32]);
    let all = PassVelocities { cond: &c, uncond: &u, align: Some(&a), timbre: Some(&t) };
    // video: c + 3(c − u) + 3(c − a); timbre never used.
    assert_eq!(g.video(&all).unwrap(), [1.0 + 3.0 * 0.5 + 3.0 * 0.75]);
    // audio: c + 2(c − u) + 2(c − a) + 3(c − t).
    assert_eq!(g.audio(&all).unwrap(), [1.0 + 2.0 * 0.5 + 2.0 * 0.75 + 3.0 * (1.0 - 2.0)]);
    // timbre only (align off): c + 2(c − u) + 3(c − t); video falls back to u + 3(c − u).
    let timbre_only = Guidance { align_3d_cfg: false, ..g };
    let no_align = PassVelocities { align: None, ..all };
    assert_eq!(timbre_only.audio(&no_align).unwrap(), [1.0 + 2.0 * 0.5 + 3.0 * (1.0 - 2.0)]);
    assert_eq!(timbre_only.video(&no_align).unwrap(), [0.5 + 3.0 * 0.5]);
    // Plain fallback: u + g(c − u).
    let plain_v = PassVelocities { align: None, timbre: None, ..all };
    assert_eq!(plain.audio(&plain_v).unwrap(), [0.5 + 2.0 * 0.5]);
}

#[test]
fn guidance_errors() {
    let g = Guidance::default();
    let one = Guidance { scales: GuidanceScales { audio_guidance_scale: 1.0, ..g.scales }, ..g };
    let msg = one.check().unwrap_err().to_string();
    assert!(msg.contains("scale of 1"), "{msg}");
    let nan = Guidance { scales: GuidanceScales { timbre_align_guidance_scale: f32::NAN, ..g.scales }, ..g };
    assert!(nan.check().is_err());

    let (c, u) = ([1.0f32, 2.0], [0.5f32, 0.5]);
    let v = PassVelocities { cond: &c, uncond: &u, align: None, timbre: None };
    let msg = g.video(&v).unwrap_err().to_string();
    assert!(msg.contains("no align-pass velocity"), "{msg}");
    let no_timbre = Guidance { timbre_cfg: false, ..g };
    let msg = no_timbre.audio(&PassVelocities { align: Some(&c), timbre: Some(&c), ..v }).unwrap_err().to_string();
    assert!(msg.contains("timbre_cfg is off"), "{msg}");
    let short = [1.0f32];
    let msg = g.audio(&PassVelocities { align: Some(&short), ..v }).unwrap_err().to_string();
    assert!(msg.contains("audio velocity of the align pass: 1 values, expected 2"), "{msg}");
}

#[test]
fn sample_loop_runs_every_pass_and_lands_on_x0() {
    let (x0v, ev, x0a, ea) = (data(24, 7), data(24, 8), data(6, 9), data(6, 10));
    for solver in [Solver::UniPc, Solver::Euler] {
        let config = SampleConfig { num_steps: 5, solver, ..SampleConfig::default() };
        let sigma0 = match Scheduler::new(solver, 5, SHIFT).unwrap() {
            Scheduler::UniPc(u) => u.sigmas()[0],
            Scheduler::Euler(e) => e.sigmas()[0],
        };
        let noise = PerModality { video: path(&x0v, &ev, sigma0), audio: path(&x0a, &ea, sigma0) };
        let mut calls = Vec::new();
        let mut steps = Vec::new();
        let out = sample(
            &config,
            noise,
            true,
            |pass, t, _x| {
                calls.push((pass, t));
                Ok(PerModality { video: velocity(&x0v, &ev), audio: velocity(&x0a, &ea) })
            },
            |r| steps.push(r.timestep),
        )
        .unwrap();
        assert_eq!(calls.len(), 5 * 4, "{solver:?}: cond, uncond, align and timbre every step");
        assert_eq!(steps.len(), 5);
        match (solver, steps[0]) {
            (Solver::UniPc, Timestep::Int(999)) | (Solver::Euler, Timestep::Float(_)) => {}
            other => panic!("unexpected first timestep {other:?}"),
        }
        assert!(max_diff(&out.video, &x0v) < 2e-5 && max_diff(&out.audio, &x0a) < 2e-5, "{solver:?}");
    }
}

#[test]
fn sample_loop_reports_bad_denoiser_output() {
    let config = SampleConfig { num_steps: 2, ..SampleConfig::default() };
    let noise = PerModality { video: vec![0.0; 4], audio: vec![0.0; 2] };
    let e = sample(
        &config,
        noise.clone(),
        false,
        |_, _, _| Ok(PerModality { video: vec![0.0; 3], audio: vec![0.0; 2] }),
        |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("video velocity of the cond pass: 3 values, expected 4"), "{e}");
    let zero = SampleConfig { num_steps: 0, ..config };
    let e = sample(&zero, noise, false, |_, _, x| Ok(x.clone()), |_| {}).unwrap_err();
    assert!(e.to_string().contains("0 sampling steps"), "{e}");
}

#[test]
fn sample_loop_runs_the_passes_in_reference_order() {
    let noise = PerModality { video: vec![0.5; 4], audio: vec![0.5; 2] };
    for (guidance, speakers, want) in [
        (Guidance::default(), true, vec![Pass::Cond, Pass::Uncond, Pass::Align, Pass::Timbre]),
        (Guidance::default(), false, vec![Pass::Cond, Pass::Uncond, Pass::Align]),
        (Guidance { align_3d_cfg: false, ..Guidance::default() }, true, vec![Pass::Cond, Pass::Uncond, Pass::Timbre]),
        (
            Guidance { align_3d_cfg: false, timbre_cfg: false, ..Guidance::default() },
            true,
            vec![Pass::Cond, Pass::Uncond],
        ),
    ] {
        assert_eq!(guidance.passes(speakers), want);
        let config = SampleConfig { num_steps: 1, guidance, ..SampleConfig::default() };
        let mut seen = Vec::new();
        sample(
            &config,
            noise.clone(),
            speakers,
            |pass, _, x| {
                seen.push(pass);
                Ok(x.clone())
            },
            |_| {},
        )
        .unwrap();
        assert_eq!(seen, want);
    }
}
