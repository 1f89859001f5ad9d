//! `nava plan` and `nava generate --max-vram`: the per-stage plan of the released models without weights, the
//! `--quant` advice when the asked format does not fit a budget, and the error before any loading when nothing
//! fits. Budgets are derived from the plans the binary prints, not written in.

mod common;

use common::nava;
use std::process::Output;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The `peak: X GiB` of a printed plan.
fn peak_gib(o: &Output) -> f64 {
    let t = text(o);
    let line = t.lines().find(|l| l.starts_with("peak: ")).unwrap_or_else(|| panic!("no peak line in\n{t}"));
    line["peak: ".len()..].split_whitespace().next().and_then(|v| v.parse().ok()).expect("a number of GiB")
}

#[test]
fn plan_prints_every_stage_at_real_size() {
    let o = nava(&["plan", "--size", "1280x704", "--seconds", "6", "--quant", "q4"]);
    assert!(o.status.success());
    let t = text(&o);
    for stage in ["text encoder", "denoise", "video decode", "audio decode", "peak:"] {
        assert!(t.contains(stage), "no `{stage}` in\n{t}");
    }
}

#[test]
fn plan_advises_a_smaller_format_and_refuses_the_impossible() {
    // What q4 needs under a 16 GiB budget (one pass at a time, tiled VAE, nothing offloaded), then f16 with just
    // that budget: the f16 denoiser cannot keep its blocks resident in it, and q4 can.
    let q4 = nava(&["plan", "--seconds", "6", "--quant", "q4", "--max-vram", "16"]);
    assert!(q4.status.success());
    let budget = format!("{:.2}", peak_gib(&q4) + 0.05);
    let f16 = nava(&["plan", "--seconds", "6", "--quant", "f16", "--max-vram", &budget]);
    let t = text(&f16);
    assert!(t.contains("--quant") && t.contains("q4"), "no advice in\n{t}");

    let tiny = nava(&["plan", "--seconds", "6", "--max-vram", "0.5"]);
    assert!(!tiny.status.success());
    assert!(text(&tiny).contains("does not fit --max-vram 0.5 GiB in any weight format"), "{}", text(&tiny));
}

#[test]
fn generate_refuses_an_impossible_budget_before_loading() {
    let dir = std::env::temp_dir().join(format!("nava-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("never.mp4");
    let o = nava(&["generate", "--prompt", "a cat", "--max-vram", "0.001", "-o", out.to_str().expect("utf-8 path")]);
    let t = text(&o);
    assert!(!o.status.success());
    assert!(t.contains("does not fit --max-vram"), "{t}");
    // Refused before the adapter was opened and anything loaded.
    assert!(!t.contains("adapter:"), "{t}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
