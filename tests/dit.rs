//! The DiT's key table: the built-in NAVA_6B configuration names exactly the keys and shapes of the official
//! checkpoint (the `keys_full.json` of every `nava_dit` case), and a case's own config names its weights file.

use std::path::PathBuf;

use nava::model::dit::{DitConfig, PREFIX};
use nava::weights::{check_keys, Checkpoint};

/// A case's config, its weights file, and sub-case `sub`'s video, audio and context inputs.
fn open_case(
    g: &nava::gpu::Gpu,
    dir: &std::path::Path,
    sub: &str,
) -> (DitConfig, Checkpoint, [nava::gpu::GpuTensor; 3]) {
    use nava::weights::TensorSource;
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let config: DitConfig = serde_json::from_value(meta["config"].clone()).unwrap();
    let ck = Checkpoint::open(dir.join("weights.safetensors")).unwrap();
    let io = Checkpoint::open(dir.join("io.safetensors")).unwrap();
    let input = |name: &str| {
        let key = format!("in.{sub}.{name}");
        g.upload_f32(&key, &io.f32(&key).unwrap(), &io.info(&key).unwrap().shape).unwrap()
    };
    (config, ck, [input("vid"), input("audio"), input("context")])
}

fn oracle_root() -> PathBuf {
    nava::oracle::root(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracles"))
}

fn dit_cases() -> Vec<PathBuf> {
    nava::oracle::cases_of(&oracle_root(), "nava_dit")
}

#[test]
fn nava_6b_key_table_matches_the_official_checkpoint() {
    let cases = dit_cases();
    if cases.is_empty() {
        println!(
            "skipped: no nava_dit case under {}",
            nava::oracle::root(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracles")).display()
        );
        return;
    }
    let mut ours = DitConfig::nava_6b().key_table(PREFIX);
    ours.sort();
    for dir in cases {
        let text = std::fs::read_to_string(dir.join("keys_full.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut theirs: Vec<(String, Vec<usize>)> = v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let shape = e[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                (e[0].as_str().unwrap().to_string(), shape)
            })
            .collect();
        theirs.sort();
        assert_eq!(ours.len(), theirs.len(), "{}", dir.display());
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a, b, "{}", dir.display());
        }
    }
}

#[test]
fn case_weights_match_their_config_and_mismatches_are_named() {
    for dir in dit_cases() {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let config: DitConfig = serde_json::from_value(meta["config"].clone()).unwrap();
        let ck = Checkpoint::open(dir.join("weights.safetensors")).unwrap();
        check_keys(&ck, &config.key_table(PREFIX), "hint").unwrap();
        // The same file against the full-size table: every shape differs, nothing is missing.
        let e = check_keys(&ck, &DitConfig::nava_6b().key_table(PREFIX), "is this the tiny model?")
            .unwrap_err()
            .to_string();
        assert!(e.contains("with another shape") && e.contains("is this the tiny model?"), "{e}");
        assert!(e.contains("backbone.double_blocks.2.") || e.contains("missing"), "{e}");
    }
}

/// The DiT with its linear weights stored as f16 / bf16 / q8 / q4 / fp8, against the same model in f32 on the
/// `joint` sub-case of every `nava_dit` case: the deviation (max |y − y_f32| / max |y_f32| over both outputs) stays
/// under each format's stated bound.
#[test]
fn weight_formats_deviate_from_f32_within_bounds() {
    use nava::gpu::{Gpu, GpuOptions};
    use nava::kernels::gemm::WeightFormat;
    use nava::model::dit::{Dit, DitInput};
    let cases = dit_cases();
    if cases.is_empty() {
        println!("skipped: no nava_dit case");
        return;
    }
    let g = Gpu::new_blocking(&GpuOptions::from_env()).expect("a GPU adapter");
    for dir in cases {
        let (config, ck, [video, audio, context]) = open_case(&g, &dir, "joint");
        let run = |format: WeightFormat| -> Vec<f32> {
            let dit = Dit::load(&g, &ck, PREFIX, config.clone(), format).unwrap();
            let ctx = dit.prepare_context(&g, &context, &context, None).unwrap();
            let inp = DitInput {
                video: Some(&video),
                audio: &audio,
                t: 937.0,
                first_frame_is_clean: false,
                masking_modality: false,
            };
            let out = dit.forward(&g, &inp, &ctx, None).unwrap();
            let mut v = g.read_f32_blocking(out.video.as_ref().unwrap()).unwrap();
            v.extend(g.read_f32_blocking(&out.audio).unwrap());
            v
        };
        let reference = run(WeightFormat::F32);
        let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // Bounds: about 2.5× the deviation measured on the shipped case (f16 3.0e-4, bf16 1.7e-3, q8 5.7e-3,
        // q4 7.8e-2, fp8 2.7e-2; random weights, 2 + 2 blocks at width 64).
        for (format, bound) in [
            (WeightFormat::F16, 7.5e-4),
            (WeightFormat::BF16, 4.5e-3),
            (WeightFormat::Q8, 1.5e-2),
            (WeightFormat::Q4, 2e-1),
            (WeightFormat::Fp8, 7e-2),
        ] {
            let y = run(format);
            let dev = y.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max) / scale;
            println!("{}: {format:?} deviation from f32 {dev:.3e} (bound {bound:.1e})", dir.display());
            assert!(dev <= bound, "{format:?}: deviation {dev} over its bound {bound}");
        }
    }
}

/// Latents that do not fit the model get errors that say what was expected.
#[test]
fn bad_latents_are_named() {
    use nava::gpu::{Gpu, GpuOptions};
    use nava::kernels::gemm::WeightFormat;
    use nava::model::dit::{Dit, DitInput};
    let Some(dir) = dit_cases().into_iter().next() else {
        println!("skipped: no nava_dit case");
        return;
    };
    let g = Gpu::new_blocking(&GpuOptions::from_env()).expect("a GPU adapter");
    let (c, ck, _) = open_case(&g, &dir, "joint");
    let dit = Dit::load(&g, &ck, PREFIX, c.clone(), WeightFormat::F32).unwrap();
    let zeros = |shape: &[usize]| g.upload_f32("t", &vec![0.0; shape.iter().product()], shape).unwrap();
    let audio = zeros(&[4, c.audio_in_dim]);
    let check = |video: &nava::gpu::GpuTensor, audio: &nava::gpu::GpuTensor, needle: &str| {
        let inp =
            DitInput { video: Some(video), audio, t: 500.0, first_frame_is_clean: false, masking_modality: false };
        let e = dit.rows(&inp).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    };
    check(&zeros(&[c.vid_in_dim + 1, 1, 4, 4]), &audio, &format!("the model expects {}", c.vid_in_dim));
    check(&zeros(&[c.vid_in_dim, 1, 3, 4]), &audio, "divisible by the patch 2×2");
    check(
        &zeros(&[c.vid_in_dim, 1, 4, 4]),
        &zeros(&[4, c.audio_in_dim + 2]),
        &format!("the model expects {}", c.audio_in_dim),
    );
    // A context longer than the model's text length.
    let long = zeros(&[c.text_len + 1, c.text_dim]);
    let e = dit.prepare_context(&g, &long, &long, None).err().unwrap().to_string();
    assert!(e.contains(&format!("at most {}", c.text_len)), "{e}");
}

/// Block offload: blocks kept in host memory and uploaded when they run give bit-identical outputs, and the
/// upload cost per forward is reported. A VRAM budget decides how many blocks stay resident.
#[test]
fn block_offload_gives_identical_outputs() {
    use nava::gpu::{Gpu, GpuOptions};
    use nava::kernels::gemm::WeightFormat;
    use nava::model::dit::{Dit, DitInput, LoadOptions, Offload};
    let Some(dir) = dit_cases().into_iter().next() else {
        println!("skipped: no nava_dit case");
        return;
    };
    let g = Gpu::new_blocking(&GpuOptions::from_env()).expect("a GPU adapter");
    let (c, ck, [video, audio, context]) = open_case(&g, &dir, "joint");
    let run = |offload: Offload| {
        let opts = LoadOptions { format: WeightFormat::Q8, offload };
        let dit = Dit::load_with(&g, &ck, PREFIX, c.clone(), &opts).unwrap();
        let ctx = dit.prepare_context(&g, &context, &context, None).unwrap();
        let inp = DitInput {
            video: Some(&video),
            audio: &audio,
            t: 937.0,
            first_frame_is_clean: false,
            masking_modality: false,
        };
        let out = dit.forward(&g, &inp, &ctx, None).unwrap();
        let mut v = g.read_f32_blocking(out.video.as_ref().unwrap()).unwrap();
        v.extend(g.read_f32_blocking(&out.audio).unwrap());
        (v, dit.offload_report())
    };
    let blocks = c.num_double_layers + c.num_single_layers;
    let (resident, none) = run(Offload::Never);
    assert_eq!(none, (0, 0));
    let (offloaded, (n, bytes)) = run(Offload::Always);
    assert_eq!(offloaded, resident, "offloaded blocks must compute the same");
    assert_eq!(n, blocks);
    assert!(bytes > 0);
    println!("{n} blocks offloaded: {bytes} bytes uploaded per forward");
    assert_eq!(run(Offload::Budget(u64::MAX)).1, (0, 0));
    assert_eq!(run(Offload::Budget(1 << 10)).1 .0, blocks);
}

/// The offload plan at NAVA_6B size: more VRAM keeps more blocks resident; f16 weights fit whole in 24 GiB, and a
/// 4 GiB budget offloads most blocks.
#[test]
fn offload_plan_at_real_size() {
    use nava::kernels::gemm::WeightFormat;
    use nava::model::dit::{resident_blocks, LoadOptions, Offload};
    let c = DitConfig::nava_6b();
    let total = c.num_double_layers + c.num_single_layers;
    let plan =
        |format, gib: u64| resident_blocks(&c, PREFIX, &LoadOptions { format, offload: Offload::Budget(gib << 30) });
    assert_eq!(plan(WeightFormat::F16, 24), total);
    assert!(plan(WeightFormat::F16, 4) < total / 4, "{}", plan(WeightFormat::F16, 4));
    let mut last = 0;
    for gib in 1..=24 {
        let n = plan(WeightFormat::Q4, gib);
        assert!(n >= last, "more VRAM must not offload more blocks");
        last = n;
    }
    assert_eq!(last, total);
    assert_eq!(resident_blocks(&c, PREFIX, &LoadOptions { format: WeightFormat::Q4, offload: Offload::Always }), 0);
}

/// Text→audio: with no video latent the sequence is the audio tokens alone, with the positions, weights and
/// modulation they have in joint generation. The modality-masked joint pass computes exactly that for its audio
/// rows (they attend only each other), so the two must agree.
#[test]
fn audio_only_equals_the_audio_rows_of_the_masked_joint_pass() {
    use nava::gpu::{Gpu, GpuOptions};
    use nava::kernels::gemm::WeightFormat;
    use nava::model::dit::{Dit, DitInput};
    let Some(dir) = dit_cases().into_iter().next() else {
        println!("skipped: no nava_dit case");
        return;
    };
    let g = Gpu::new_blocking(&GpuOptions::from_env()).expect("a GPU adapter");
    let (c, ck, [video, audio, context]) = open_case(&g, &dir, "joint");
    let dit = Dit::load(&g, &ck, PREFIX, c, WeightFormat::F32).unwrap();
    let ctx = dit.prepare_context(&g, &context, &context, None).unwrap();
    let joint =
        DitInput { video: Some(&video), audio: &audio, t: 611.0, first_frame_is_clean: false, masking_modality: true };
    let want = g.read_f32_blocking(&dit.forward(&g, &joint, &ctx, None).unwrap().audio).unwrap();
    let alone = DitInput { video: None, masking_modality: false, ..joint };
    let out = dit.forward(&g, &alone, &ctx, None).unwrap();
    assert!(out.video.is_none());
    let got = g.read_f32_blocking(&out.audio).unwrap();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err <= 1e-5 * scale.max(1.0), "max |audio-only − masked joint| = {err:e} (scale {scale})");
    // Image-to-video needs a video.
    let bad = DitInput { first_frame_is_clean: true, ..alone };
    let e = dit.rows(&bad).unwrap_err().to_string();
    assert!(e.contains("needs a video latent"), "{e}");
}

/// The guidance passes of a step as one batch: stacked sequences with their own contexts, masked and unmasked,
/// give what each pass gives alone (plain and image-to-video layouts).
#[test]
fn batched_passes_equal_separate_passes() {
    use nava::gpu::{Gpu, GpuOptions};
    use nava::kernels::gemm::WeightFormat;
    use nava::model::dit::{Dit, DitInput};
    let Some(dir) = dit_cases().into_iter().next() else {
        println!("skipped: no nava_dit case");
        return;
    };
    let g = Gpu::new_blocking(&GpuOptions::from_env()).expect("a GPU adapter");
    let (c, ck, [video, audio, context]) = open_case(&g, &dir, "joint");
    let dit = Dit::load(&g, &ck, PREFIX, c.clone(), WeightFormat::F32).unwrap();
    let positive = dit.prepare_context(&g, &context, &context, None).unwrap();
    let n = context.shape()[0];
    let neg_values: Vec<f32> = (0..n * c.text_dim).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let neg = g.upload_f32("negative", &neg_values, &[n, c.text_dim]).unwrap();
    let negative = dit.prepare_context(&g, &neg, &neg, None).unwrap();
    for i2v in [false, true] {
        let pass = |masked| DitInput {
            video: Some(&video),
            audio: &audio,
            t: 733.0,
            first_frame_is_clean: i2v,
            masking_modality: masked,
        };
        let inputs = [pass(false), pass(false), pass(true)];
        let ctxs = [&positive, &negative, &positive];
        let batched = dit.forward_batch(&g, &inputs, &ctxs, None).unwrap();
        for (k, (inp, ctx)) in inputs.iter().zip(ctxs).enumerate() {
            let alone = dit.forward(&g, inp, ctx, None).unwrap();
            for (what, a, b) in [
                ("video", alone.video.as_ref().unwrap(), batched[k].video.as_ref().unwrap()),
                ("audio", &alone.audio, &batched[k].audio),
            ] {
                let (a, b) = (g.read_f32_blocking(a).unwrap(), g.read_f32_blocking(b).unwrap());
                let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
                let err = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(err <= 1e-5 * scale, "i2v {i2v}, pass {k}, {what}: max diff {err:e}");
            }
        }
    }
    // Passes of different timesteps cannot share a batch.
    let a =
        DitInput { video: Some(&video), audio: &audio, t: 1.0, first_frame_is_clean: false, masking_modality: false };
    let b = DitInput { t: 2.0, ..a };
    let e = dit.forward_batch(&g, &[a, b], &[&positive, &positive], None).err().unwrap().to_string();
    assert!(e.contains("run it separately"), "{e}");
}
