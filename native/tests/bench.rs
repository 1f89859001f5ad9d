//! `nava bench`: the conv3d benchmark's output (headline last), and benchmarks that cannot run on the adapter
//! exit non-zero naming the limit (sizes far over any 2 GiB buffer limit).

mod common;

use common::nava;

#[test]
fn bench_conv3d_reports_gflops_last() {
    let o = nava(&["bench", "conv3d", "--channels", "16", "--height", "8", "--width", "8", "--seconds", "0.2"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("peak GPU memory:"), "{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(last.starts_with("GFLOP/s: "), "{out}");
}

/// The activation product's bench names the kernel it ran (the subgroup one on CPU drivers with subgroups) and
/// puts the headline last.
#[test]
fn bench_matmul_reports_gflops_last() {
    let o = nava(&["bench", "matmul", "--m", "40", "--n", "24", "--k", "36", "--trans-b", "--seconds", "0.1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("matmul 40x24x36 (b transposed) [matmul"), "{out}");
    assert!(out.lines().last().unwrap_or_default().starts_with("GFLOP/s: "), "{out}");
}

#[test]
fn bench_over_the_buffer_limit_fails_with_the_limit() {
    // 2^31 f32 values: over any max_buffer_size below 8 GiB, lavapipe's 2 GiB included.
    for args in [
        &["bench", "gemm", "--m", "65536", "--k", "32768", "--n", "64"][..],
        &["bench", "conv3d", "--channels", "1024", "--frames", "2", "--height", "1024", "--width", "1024"],
        &["bench", "matmul", "--m", "65536", "--k", "32768", "--n", "64"],
    ] {
        let o = nava(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains("max_buffer_size"), "{args:?}: {err}");
    }
    let o = nava(&["bench", "conv3d", "--dtype", "q4", "--seconds", "0.1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("f32, f16 or bf16"));
}

/// `--shapes dit`: every GEMM shape of the denoiser at the tokens given, one line each, the headline last; an
/// unknown shape set is an error naming the one there is.
#[test]
fn bench_gemm_dit_shapes() {
    let o = nava(&["bench", "gemm", "--shapes", "dit", "--tokens", "48", "--dtype", "q8", "--seconds", "0.05"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for name in ["video patch embed", "block Q/K/V/O (video)", "cross-attn K/V", "FFN up", "FFN down", "video head"] {
        assert!(out.lines().any(|l| l.starts_with(name) && l.contains(" q8 ")), "no {name} line: {out}");
    }
    assert!(out.lines().any(|l| l.starts_with("FFN up") && l.contains("48 x 14336 x  3072")), "{out}");
    assert!(out.lines().last().unwrap_or_default().starts_with("GFLOP/s: "), "{out}");
    let o = nava(&["bench", "gemm", "--shapes", "unet"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("`dit`"));
}
