//! The GPU core: adapter choice errors, buffer reuse, limits, and splitting a weight over bindings at real size.

use nava::gpu::{DType, Gpu, GpuError, GpuOptions};
use nava::kernels::gemm::{gemm, Epilogue, Weight, WeightFormat};

use crate::common::{assert_close, rand_vec, test_gpu, Tol};

#[test]
fn unknown_adapter_is_a_clear_error() {
    let opts = GpuOptions { adapter: Some("no-such-adapter-xyz".into()), ..Default::default() };
    let e = match Gpu::new_blocking(&opts) {
        Err(e) => e,
        Ok(_) => panic!("an adapter named no-such-adapter-xyz was found"),
    };
    assert!(matches!(e, GpuError::NoAdapter { .. }));
    let msg = e.to_string();
    assert!(msg.contains("matching `no-such-adapter-xyz`") && msg.contains("Adapters present"), "{msg}");
}

#[test]
fn buffers_are_reused_after_drop() {
    let g = test_gpu();
    // A size no other test uses, so the count is not disturbed by tests running in parallel.
    let shape = [12_345usize, 7];
    let a = g.alloc("a", &shape, DType::F32).unwrap();
    let id = a.binding_id();
    drop(a);
    let b = g.alloc("b", &shape, DType::F32).unwrap();
    assert_eq!(b.binding_id(), id, "the freed buffer was not handed out again");
}

#[test]
fn oversized_buffer_is_refused_with_the_limit() {
    let g = test_gpu();
    let limit = g.limits.max_buffer_size;
    let e = g.alloc("huge activation", &[(limit / 4 + 1) as usize], DType::F32).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("huge activation") && msg.contains("max_buffer_size") && msg.contains(&limit.to_string()),
        "{msg}"
    );
}

#[test]
fn upload_size_mismatch_is_an_error() {
    let g = test_gpu();
    let e = g.upload_f32("t", &[1.0; 5], &[2, 3]).unwrap_err().to_string();
    assert!(e.contains("t: 20 bytes of data for a tensor of 24 bytes"), "{e}");
}

/// A real-size FFN weight (3072 × 14336 f32 = 168 MiB) exceeds lavapipe's 128 MiB binding: the launcher splits it
/// along k and must still give the exact product.
#[test]
fn gemm_weight_larger_than_a_binding_is_split() {
    let g = test_gpu();
    let (m, n, k) = (3, 3072, 14336);
    let bytes = (n * k * 4) as u64;
    if bytes <= g.max_binding() {
        println!("skipped: this adapter binds {} bytes at once, the weight fits", g.max_binding());
        return;
    }
    let x = rand_vec(41, m * k);
    let w = rand_vec(42, n * k);
    let xt = g.upload_f32("x", &x, &[m, k]).unwrap();
    let wt = Weight::from_f32(g, "ffn.2.weight", WeightFormat::F32, n, k, &w).unwrap();
    let bias = rand_vec(43, n);
    let bt = g.upload_f32("b", &bias, &[n]).unwrap();
    let y =
        g.read_f32_blocking(&gemm(g, &xt, &wt, Epilogue { bias: Some(&bt), ..Default::default() }).unwrap()).unwrap();
    let mut want = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k).map(|t| x[i * k + t] as f64 * w[j * k + t] as f64).sum();
            want[i * n + j] = (s + bias[j] as f64) as f32;
        }
    }
    // k = 14336 terms of O(1): f32 accumulation error grows with √k.
    assert_close("split gemm", &y, &want, Tol::new(1e-4, 1e-4));
    // The gated residual of the FFN's down projection takes the same split.
    let gate = rand_vec(44, n);
    let res = rand_vec(45, m * n);
    let gt = g.upload_f32("gate", &gate, &[n]).unwrap();
    let yt = g.upload_f32("y", &res, &[m, n]).unwrap();
    nava::kernels::gemm::gemm_gated_add(g, &xt, &wt, Some(&bt), &gt, &yt).unwrap();
    let want: Vec<f32> = (0..m * n).map(|i| res[i] + want[i] * gate[i % n]).collect();
    assert_close("split gated gemm", &g.read_f32_blocking(&yt).unwrap(), &want, Tol::new(1e-4, 1e-4));
}
