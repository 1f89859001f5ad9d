//! Attention against a CPU reference written from the formula (f64 scores and softmax): odd lengths, Lq ≠ Lk,
//! head dims 16–128, segments, scale 1.0 with a bias, launches split over keys and queries, both kernels
//! (`attention` in two workgroup shapes and the subgroup kernel `attention_sg`), and bad shapes.
//! `attention_speed` (ignored) prints GFLOP/s next to the f32 GEMM's.

use nava::gpu::Gpu;
use nava::kernels::attention::{attention, variants, AttentionOptions, Segment, Variant};

use crate::common::{assert_close, rand_vec, test_gpu, Tol};

struct Case {
    lq: usize,
    lk: usize,
    heads: usize,
    d: usize,
}

/// softmax_j(scale·q_i·k_j + bias[h, i, j]) · v_j per head, only over the keys of the query's segment.
fn reference(
    c: &Case,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    scale: f64,
    segments: &[Segment],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (h_n, d) = (c.heads, c.d);
    let mut out = vec![0.0f32; c.lq * h_n * d];
    for s in segments {
        for i in s.q_start..s.q_start + s.q_len {
            for h in 0..h_n {
                let qi = &q[(i * h_n + h) * d..][..d];
                let scores: Vec<f64> = (s.k_start..s.k_start + s.k_len)
                    .map(|j| {
                        let kj = &k[(j * h_n + h) * d..][..d];
                        let dot: f64 = qi.iter().zip(kj).map(|(a, b)| *a as f64 * *b as f64).sum();
                        dot * scale + bias.map_or(0.0, |b| b[(h * c.lq + i) * c.lk + j] as f64)
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
                let sum: f64 = w.iter().sum();
                for e in 0..d {
                    let acc: f64 = (s.k_start..s.k_start + s.k_len)
                        .zip(&w)
                        .map(|(j, w)| w * v[(j * h_n + h) * d + e] as f64)
                        .sum();
                    out[(i * h_n + h) * d + e] = (acc / sum) as f32;
                }
            }
        }
    }
    out
}

/// Everything a case may set beyond the shapes; `Default` is plain joint attention.
#[derive(Default)]
struct Extra<'a> {
    scale: Option<f32>,
    segments: Option<&'a [Segment]>,
    bias: bool,
    /// (max queries, max keys) per launch.
    split: Option<(usize, usize)>,
    variant: Option<Variant>,
}

/// Uploads seeded q, k, v (and a bias when asked), runs the kernel and compares with the reference.
fn check(g: &Gpu, c: Case, seed: u64, x: Extra) {
    let Extra { scale, segments, bias: with_bias, split, variant } = x;
    let q = rand_vec(seed, c.lq * c.heads * c.d);
    let k = rand_vec(seed + 1, c.lk * c.heads * c.d);
    let v = rand_vec(seed + 2, c.lk * c.heads * c.d);
    let bias: Option<Vec<f32>> =
        with_bias.then(|| rand_vec(seed + 3, c.heads * c.lq * c.lk).into_iter().map(|x| 3.0 * x).collect());
    let qt = g.upload_f32("q", &q, &[c.lq, c.heads, c.d]).unwrap();
    let kt = g.upload_f32("k", &k, &[c.lk, c.heads, c.d]).unwrap();
    let vt = g.upload_f32("v", &v, &[c.lk, c.heads, c.d]).unwrap();
    let bt = bias.as_ref().map(|b| g.upload_f32("bias", b, &[c.heads, c.lq, c.lk]).unwrap());
    let opts = AttentionOptions {
        scale,
        segments,
        bias: bt.as_ref(),
        max_queries_per_launch: split.map(|s| s.0),
        max_keys_per_launch: split.map(|s| s.1),
        variant,
        half: false,
    };
    let o = attention(g, &qt, &kt, &vt, opts).unwrap();
    assert_eq!(o.shape(), &[c.lq, c.heads, c.d]);
    let got = g.read_f32_blocking(&o).unwrap();
    let whole = [Segment::new(0, c.lq, 0, c.lk)];
    let scale64 = scale.map_or(1.0 / (c.d as f64).sqrt(), |s| s as f64);
    let want = reference(&c, &q, &k, &v, scale64, segments.unwrap_or(&whole), bias.as_deref());
    assert_close(
        &format!(
            "attention Lq {} Lk {} H {} D {} scale {scale:?} segments {segments:?} bias {with_bias} split {split:?} \
             variant {variant:?}",
            c.lq, c.lk, c.heads, c.d
        ),
        &got,
        &want,
        Tol::new(2e-5, 2e-5),
    );
}

fn case(lq: usize, lk: usize, heads: usize, d: usize) -> Case {
    Case { lq, lk, heads, d }
}

#[test]
fn attention_matches_reference() {
    let g = test_gpu();
    for (i, c) in [
        case(1, 1, 1, 16),
        case(7, 33, 2, 16),
        case(33, 7, 3, 64),
        case(100, 100, 2, 64),
        case(40, 71, 1, 128),
        case(5, 130, 4, 24),
        case(65, 1, 2, 128),
        case(3, 9, 5, 4),
    ]
    .into_iter()
    .enumerate()
    {
        check(g, c, 100 + 10 * i as u64, Extra::default());
    }
}

#[test]
fn attention_segments_mask_modalities() {
    let g = test_gpu();
    // [video; audio] rows: video attends video keys only, audio attends audio keys only.
    let segs = [Segment::new(0, 50, 0, 50), Segment::new(50, 13, 50, 13)];
    check(g, case(63, 63, 2, 64), 200, Extra { segments: Some(&segs), ..Default::default() });
    // Lq ≠ Lk, a one-row segment, and keys shared by two segments.
    let segs = [Segment::new(0, 1, 10, 7), Segment::new(1, 30, 0, 40), Segment::new(31, 6, 5, 1)];
    check(g, case(37, 41, 3, 128), 210, Extra { segments: Some(&segs), ..Default::default() });
}

#[test]
fn attention_scale_one_with_bias() {
    let g = test_gpu();
    // UMT5: no 1/√D scaling, relative position bias per head.
    check(g, case(20, 37, 3, 64), 300, Extra { scale: Some(1.0), bias: true, ..Default::default() });
    check(g, case(9, 9, 1, 16), 310, Extra { scale: Some(1.0), ..Default::default() });
    check(g, case(33, 17, 2, 16), 320, Extra { scale: Some(0.3), bias: true, ..Default::default() });
}

#[test]
fn attention_split_over_launches() {
    let g = test_gpu();
    // Keys split across launches carry the softmax state; queries split into windows.
    check(g, case(70, 90, 2, 64), 400, Extra { split: Some((24, 16)), ..Default::default() });
    check(
        g,
        case(33, 50, 3, 128),
        410,
        Extra { scale: Some(1.0), bias: true, split: Some((8, 7)), ..Default::default() },
    );
    let segs = [Segment::new(0, 40, 0, 45), Segment::new(40, 11, 45, 30)];
    check(
        g,
        case(51, 75, 2, 32),
        420,
        Extra { segments: Some(&segs), bias: true, split: Some((13, 9)), ..Default::default() },
    );
}

#[test]
fn attention_both_workgroup_shapes() {
    let g = test_gpu();
    // The adapter picks one shape; run both here (8 rows per invocation for CPUs, 4 for GPUs).
    for (wg, qg) in [(16, 2), (64, 1), (8, 1)] {
        let variant = Some(Variant::Rows { wg, qg });
        let seed = 500 + 10 * wg as u64 + qg as u64;
        check(g, case(45, 29, 2, 64), seed, Extra { variant, ..Default::default() });
        let segs = [Segment::new(0, 30, 0, 20), Segment::new(30, 9, 20, 9)];
        check(
            g,
            case(39, 29, 3, 128),
            seed + 1,
            Extra { scale: Some(1.0), segments: Some(&segs), bias: true, split: Some((11, 6)), variant },
        );
    }
}

/// `attention_sg`, where the adapter can run it (CPU drivers with subgroups of one size, a multiple of 4 up to
/// 64): chosen automatically for the head dims it takes (unless `NAVA_ATTENTION_SUBGROUP=0`), and right for every
/// head dim it takes, lengths that are not multiples of its 8 rows per subgroup or 4·SG keys per block (and below
/// both), several heads, segments, a bias with scale 1 and keys split across launches. Elsewhere, asking for it
/// is refused by name.
#[test]
fn attention_subgroup_kernel() {
    let g = test_gpu();
    let sg = g.caps.subgroup_size as usize;
    let runs = g.adapter.is_cpu() && g.caps.subgroup && sg.is_multiple_of(4) && (4..=64).contains(&sg);
    let variant = Some(Variant::Subgroup);
    if !runs {
        let q = g.upload_f32("q", &[0.0; 64], &[1, 1, 64]).unwrap();
        let opts = AttentionOptions { variant, ..Default::default() };
        let e = attention(g, &q, &q, &q, opts).unwrap_err().to_string();
        assert!(e.contains("the subgroup attention kernel runs on CPU drivers with subgroups"), "{e}");
        return;
    }
    let chunk = 4 * sg;
    let off = std::env::var("NAVA_ATTENTION_SUBGROUP").is_ok_and(|v| v == "0");
    if chunk <= 128 && !off {
        let selected = nava::kernels::attention::selected(g);
        assert!(selected.iter().any(|l| l.contains("attention_sg")), "a CPU driver with subgroups: {selected:?}");
    }
    for (i, chunks) in (1..=4).filter(|c| c * chunk <= 128).enumerate() {
        let d = chunks * chunk;
        let seed = 600 + 100 * i as u64;
        for (j, c) in [case(1, 1, 1, d), case(3, 5, 2, d), case(37, 2 * chunk + 3, 3, d), case(70, 90, 1, d)]
            .into_iter()
            .enumerate()
        {
            check(g, c, seed + 10 * j as u64, Extra { variant, ..Default::default() });
        }
        let segs = [Segment::new(0, 30, 0, 20), Segment::new(30, 9, 20, 9)];
        let extra = Extra { scale: Some(1.0), segments: Some(&segs), bias: true, split: Some((11, 6)), variant };
        check(g, case(39, 29, 2, d), seed + 50, extra);
        check(g, case(45, 70, 2, d), seed + 60, Extra { split: Some((64, 33)), variant, ..Default::default() });
    }
    // Head dim 4 is never a multiple of 4·SG ≥ 16.
    let q = g.upload_f32("q", &[0.0; 4], &[1, 1, 4]).unwrap();
    let e = attention(g, &q, &q, &q, AttentionOptions { variant, ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains(&format!("head dim 4: the subgroup attention kernel takes multiples of {chunk}")), "{e}");
}

/// Rows whose every key is masked by a -inf bias give zeros, and keys masked for part of a row weigh nothing, in
/// both kernels, also where the keys end inside a block (11 keys) and where they are split across launches.
#[test]
fn attention_fully_masked_rows_give_zeros() {
    let g = test_gpu();
    let (lq, lk, heads) = (13, 11, 2);
    let sg = g.caps.subgroup_size as usize;
    let mut variants = vec![Some(Variant::CPU), Some(Variant::GPU)];
    let mut dims = vec![16];
    if g.adapter.is_cpu() && g.caps.subgroup && sg.is_multiple_of(4) && (4..=32).contains(&sg) {
        variants.push(Some(Variant::Subgroup));
        dims = vec![4 * sg];
    }
    for d in dims {
        let q = rand_vec(700, lq * heads * d);
        let k = rand_vec(701, lk * heads * d);
        let v = rand_vec(702, lk * heads * d);
        let mut bias = rand_vec(703, heads * lq * lk);
        for h in 0..heads {
            for i in 0..lq {
                let row = &mut bias[(h * lq + i) * lk..][..lk];
                match i % 3 {
                    0 => row.fill(f32::NEG_INFINITY),      // every key masked
                    1 => row[..7].fill(f32::NEG_INFINITY), // the first keys (a first key chunk) masked
                    _ => {}
                }
            }
        }
        let qt = g.upload_f32("q", &q, &[lq, heads, d]).unwrap();
        let kt = g.upload_f32("k", &k, &[lk, heads, d]).unwrap();
        let vt = g.upload_f32("v", &v, &[lk, heads, d]).unwrap();
        let bt = g.upload_f32("bias", &bias, &[heads, lq, lk]).unwrap();
        let c = case(lq, lk, heads, d);
        let whole = [Segment::new(0, lq, 0, lk)];
        let mut want = reference(&c, &q, &k, &v, 1.0, &whole, Some(&bias));
        for (e, x) in want.iter_mut().enumerate() {
            if (e / (heads * d)) % 3 == 0 {
                *x = 0.0;
            }
        }
        for variant in &variants {
            for split in [None, Some((5, 4))] {
                let opts = AttentionOptions {
                    scale: Some(1.0),
                    bias: Some(&bt),
                    variant: *variant,
                    max_queries_per_launch: split.map(|s| s.0),
                    max_keys_per_launch: split.map(|s| s.1),
                    ..Default::default()
                };
                let got = g.read_f32_blocking(&attention(g, &qt, &kt, &vt, opts).unwrap()).unwrap();
                assert_close(
                    &format!("masked rows D {d} {variant:?} split {split:?}"),
                    &got,
                    &want,
                    Tol::new(2e-5, 2e-5),
                );
            }
        }
    }
}

#[test]
fn attention_rejects_bad_shapes() {
    let g = test_gpu();
    let q = g.upload_f32("q", &[0.0; 2 * 2 * 8], &[2, 2, 8]).unwrap();
    let k = g.upload_f32("k", &[0.0; 3 * 2 * 4], &[3, 2, 4]).unwrap();
    let e = attention(g, &q, &k, &k, AttentionOptions::default()).unwrap_err().to_string();
    assert!(e.contains("attention: `k` has shape [3, 2, 4]; expected [Lk, 2, 8]"), "{e}");
    let k = g.upload_f32("k", &[0.0; 3 * 2 * 8], &[3, 2, 8]).unwrap();
    let v = g.upload_f32("v", &[0.0; 4 * 2 * 8], &[4, 2, 8]).unwrap();
    let e = attention(g, &q, &k, &v, AttentionOptions::default()).unwrap_err().to_string();
    assert!(e.contains("`v` has shape [4, 2, 8]; expected [3, 2, 8]"), "{e}");
    let b = g.upload_f32("b", &[0.0; 12], &[2, 3, 2]).unwrap();
    let opts = AttentionOptions { bias: Some(&b), ..Default::default() };
    let e = attention(g, &q, &k, &k, opts).unwrap_err().to_string();
    assert!(e.contains("`bias` has shape [2, 3, 2]; expected [2, 2, 3]"), "{e}");
    let segs = [Segment::new(0, 1, 0, 3)];
    let opts = AttentionOptions { segments: Some(&segs), ..Default::default() };
    let e = attention(g, &q, &k, &k, opts).unwrap_err().to_string();
    assert!(e.contains("cover all 2 rows (row 1 is in none)"), "{e}");
    let segs = [Segment::new(0, 2, 1, 3)];
    let opts = AttentionOptions { segments: Some(&segs), ..Default::default() };
    let e = attention(g, &q, &k, &k, opts).unwrap_err().to_string();
    assert!(e.contains("within Lq = 2 query rows and Lk = 3 keys"), "{e}");
    let q6 = g.upload_f32("q", &[0.0; 6], &[1, 1, 6]).unwrap();
    let e = attention(g, &q6, &q6, &q6, AttentionOptions::default()).unwrap_err().to_string();
    assert!(e.contains("head dim 6"), "{e}");
}

#[test]
fn attention_variants_validate() {
    for spec in variants() {
        let src = spec.source();
        let module =
            naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}: {}", spec.label, e.emit_to_string(&src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e:?}", spec.label));
    }
}

/// Process CPU seconds (user + system, all threads) from /proc: on a shared machine, lavapipe's CPU time is a
/// steadier measure of a kernel's cost than wall time.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ
}

/// Prints attention GFLOP/s (4·Lq·Lk·D·H) at L = 1024 next to the f32 GEMM's at 1024³, from wall time and from
/// CPU time ÷ worker threads (`LP_NUM_THREADS`, default 2 here), which does not suffer from other processes.
/// `cargo test --test kernels attention_speed -- --ignored --nocapture`
#[test]
#[ignore]
fn attention_speed() {
    use nava::kernels::gemm::{gemm, Epilogue, Weight, WeightFormat};
    use std::time::Instant;
    let g = test_gpu();
    let threads: f64 = std::env::var("LP_NUM_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    // (wall s, CPU s / threads) per call.
    let time = |f: &dyn Fn()| {
        f();
        g.wait().unwrap();
        let reps = 10;
        let c0 = cpu_seconds().unwrap_or(0.0);
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        g.wait().unwrap();
        let wall = t.elapsed().as_secs_f64() / reps as f64;
        let cpu = (cpu_seconds().unwrap_or(0.0) - c0) / reps as f64 / threads;
        (wall, cpu)
    };
    let report = |what: &str, flop: f64, (wall, cpu): (f64, f64)| {
        println!(
            "{what}: {:.1} ms wall, {:.2} GFLOP/s wall, {:.2} GFLOP/s by CPU time",
            wall * 1e3,
            flop / wall / 1e9,
            flop / cpu / 1e9
        );
    };
    let n = 1024;
    let x = g.upload_f32("x", &rand_vec(1, n * n), &[n, n]).unwrap();
    let w = Weight::from_f32(g, "w", WeightFormat::F32, n, n, &rand_vec(2, n * n)).unwrap();
    let gemm_time = || {
        time(&|| {
            gemm(g, &x, &w, Epilogue::default()).unwrap();
        })
    };
    report("gemm f32 1024^3", 2.0 * (n * n * n) as f64, gemm_time());
    for (l, heads, d) in [(1024, 1, 64), (1024, 4, 64), (1024, 2, 128)] {
        let q = g.upload_f32("q", &rand_vec(3, l * heads * d), &[l, heads, d]).unwrap();
        let k = g.upload_f32("k", &rand_vec(4, l * heads * d), &[l, heads, d]).unwrap();
        let v = g.upload_f32("v", &rand_vec(5, l * heads * d), &[l, heads, d]).unwrap();
        let t = time(&|| {
            attention(g, &q, &k, &v, AttentionOptions::default()).unwrap();
        });
        report(&format!("attention L {l} H {heads} D {d}"), 4.0 * (l * l * d * heads) as f64, t);
    }
    report("gemm f32 1024^3 again", 2.0 * (n * n * n) as f64, gemm_time());
}
