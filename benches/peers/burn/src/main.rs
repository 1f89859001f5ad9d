//! Bench-only peer: times Burn 0.20's wgpu `matmul` (f32) on the default wgpu
//! adapter so nava's GEMM can be compared against it on the same device.
//!
//! Usage: burn-matmul [--m M] [--n N] [--k K] [--seconds S] [--warmup W]
//!
//! Burn's default `autotune` benchmarks candidate matmul kernels on the first
//! call for a shape and persists the choice. The cache is kept next to this
//! executable (`<exe dir>/autotune/`), or under `BURN_PEER_AUTOTUNE_DIR`, so it
//! never lands in whatever project happens to be the working directory.

use std::time::{Duration, Instant};

use burn::backend::wgpu::{graphics::AutoGraphicsApi, init_setup, RuntimeOptions, WgpuDevice};
use burn::backend::Wgpu;
use burn::cubecl::config::{cache::CacheConfig, GlobalConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

type B = Wgpu<f32, i32, u32>;

struct Args {
    m: usize,
    n: usize,
    k: usize,
    seconds: f64,
    warmup: usize,
}

fn usage() -> ! {
    eprintln!("usage: burn-matmul [--m M] [--n N] [--k K] [--seconds S] [--warmup W]");
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut args = Args { m: 1024, n: 1024, k: 1024, seconds: 3.0, warmup: 5 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            usage();
        }
        let value = it.next().unwrap_or_else(|| {
            eprintln!("missing value for {flag}");
            usage()
        });
        let bad = |what: &str| -> ! {
            eprintln!("invalid value {value:?} for {what}");
            usage()
        };
        match flag.as_str() {
            "--m" => args.m = value.parse().unwrap_or_else(|_| bad("--m")),
            "--n" => args.n = value.parse().unwrap_or_else(|_| bad("--n")),
            "--k" => args.k = value.parse().unwrap_or_else(|_| bad("--k")),
            "--seconds" => args.seconds = value.parse().unwrap_or_else(|_| bad("--seconds")),
            "--warmup" => args.warmup = value.parse().unwrap_or_else(|_| bad("--warmup")),
            _ => {
                eprintln!("unknown argument {flag}");
                usage()
            }
        }
    }
    if args.m == 0 || args.n == 0 || args.k == 0 || !(args.seconds > 0.0) {
        eprintln!("--m, --n, --k and --seconds must be positive");
        usage();
    }
    args
}

/// Waits until every queued operation on `device` has finished on the GPU.
/// For the fusion backend this drains the lazy op queue first, then waits for
/// the wgpu queue's submitted work to complete.
fn sync(device: &WgpuDevice) {
    B::sync(device).expect("burn backend sync failed");
}

/// Points cubecl's persistent autotune cache away from the working directory
/// (its default is `<nearest dir with a Cargo.toml>/target`). Must run before
/// any cubecl use; keeps `CUBECL_*` environment overrides.
fn configure_cubecl() -> std::path::PathBuf {
    let root = match std::env::var_os("BURN_PEER_AUTOTUNE_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|p| p.to_path_buf()))
            .unwrap_or_else(std::env::temp_dir),
    };
    let mut config = GlobalConfig::default().override_from_env();
    config.autotune.cache = CacheConfig::File(root.clone());
    GlobalConfig::set(config);
    root.join("autotune")
}

fn main() {
    let args = parse_args();
    let cache_dir = configure_cubecl();
    let (m, n, k) = (args.m, args.n, args.k);

    let device = WgpuDevice::DefaultDevice;
    // Initialising the runtime explicitly (instead of lazily on first use)
    // gives us the wgpu adapter so we can report which one was picked.
    let setup = init_setup::<AutoGraphicsApi>(&device, RuntimeOptions::default());
    let info = setup.adapter.get_info();
    println!(
        "adapter: {} ({:?}, {:?}, driver: {} {})",
        info.name, info.device_type, info.backend, info.driver, info.driver_info
    );
    println!("burn backend: {}", B::name(&device));
    println!("shape: M={m} N={n} K={k} (f32)");
    println!("autotune cache: {}", cache_dir.display());

    B::seed(&device, 0x5eed);
    let a = Tensor::<B, 2>::random([m, k], Distribution::Uniform(-1.0, 1.0), &device);
    let b = Tensor::<B, 2>::random([k, n], Distribution::Uniform(-1.0, 1.0), &device);
    sync(&device);

    // Warm-up: first calls compile kernels and (with the default `autotune`
    // feature) benchmark the candidate matmul kernels for this shape.
    let t0 = Instant::now();
    for _ in 0..args.warmup.max(1) {
        let c = a.clone().matmul(b.clone());
        sync(&device);
        drop(c);
    }
    println!("warm-up: {} iterations in {:.3} s", args.warmup.max(1), t0.elapsed().as_secs_f64());

    // Timed loop: one matmul, then a full device sync, per iteration. The
    // output is kept alive until after the sync so the work cannot be elided.
    let budget = Duration::from_secs_f64(args.seconds);
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget {
        let t = Instant::now();
        let c = a.clone().matmul(b.clone());
        sync(&device);
        times.push(t.elapsed().as_secs_f64());
        drop(c);
    }
    let total: f64 = times.iter().sum();
    let iters = times.len();
    let mean = total / iters as f64;
    let mut sorted = times.clone();
    sorted.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let median = sorted[iters / 2];
    let min = sorted[0];

    // Correctness spot-check (outside the timed region): a few entries of C
    // against an f64 CPU dot product.
    let c = a.clone().matmul(b.clone());
    let av = a.into_data().to_vec::<f32>().expect("read a");
    let bv = b.into_data().to_vec::<f32>().expect("read b");
    let cv = c.into_data().to_vec::<f32>().expect("read c");
    let mut max_err = 0.0f64;
    for s in 0..16usize {
        let i = (s * 7919) % m;
        let j = (s * 104_729 + 13) % n;
        let mut acc = 0.0f64;
        for p in 0..k {
            acc += av[i * k + p] as f64 * bv[p * n + j] as f64;
        }
        let err = (cv[i * n + j] as f64 - acc).abs() / (k as f64).sqrt();
        max_err = max_err.max(err);
    }
    println!("spot-check: max |c - ref| / sqrt(K) over 16 entries = {max_err:.3e}");

    let flops = 2.0 * m as f64 * n as f64 * k as f64;
    println!(
        "iterations: {iters}, per-iteration: mean {:.3} ms, median {:.3} ms, min {:.3} ms",
        mean * 1e3,
        median * 1e3,
        min * 1e3
    );
    println!("GFLOP/s: {:.2}", flops / mean / 1e9);
}
