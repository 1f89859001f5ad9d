//! `matmul` (shaders/matmul.wgsl): a product of two activations with optional transposes, against f64 loops;
//! edges that are not tile multiples, row views as operands, the Params layout and bad shapes.

use nava::kernels::matmul::{matmul, MatmulArgs, PARAMS_BYTES};

use crate::common::{assert_close, rand_vec, test_gpu, Tol};

#[test]
fn matmul_matches_reference() {
    let g = test_gpu();
    for (m, n, k) in [(1, 1, 1), (17, 5, 33), (40, 18, 7), (16, 16, 16)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            // `a` is a view one row into a larger tensor, so its binding starts mid-buffer.
            let sa = if ta { [k + 1, m] } else { [m + 1, k] };
            let big = rand_vec(1, sa[0] * sa[1]);
            let host_a = &big[sa[1]..];
            let av = g.upload_f32("a", &big, &sa).unwrap().rows(1, sa[0] - 1).unwrap();
            let b = rand_vec(2, k * n);
            let bt = g.upload_f32("b", &b, &if tb { [n, k] } else { [k, n] }).unwrap();
            let y = matmul(g, &av, &bt, MatmulArgs { trans_a: ta, trans_b: tb, alpha: 0.5 }).unwrap();
            assert_eq!(y.shape(), [m, n]);
            let y = g.read_f32_blocking(&y).unwrap();
            let at = |i: usize, kk: usize| if ta { host_a[kk * m + i] } else { host_a[i * k + kk] } as f64;
            let bv = |kk: usize, j: usize| if tb { b[j * k + kk] } else { b[kk * n + j] } as f64;
            let want: Vec<f32> = (0..m * n)
                .map(|e| (0.5 * (0..k).map(|kk| at(e / n, kk) * bv(kk, e % n)).sum::<f64>()) as f32)
                .collect();
            assert_close(&format!("matmul {m}×{n}×{k} ta {ta} tb {tb}"), &y, &want, Tol::F32);
        }
    }
}

/// Operands whose B rows are whole vec4s (row stride and offset multiples of 4): on CPU drivers with fixed-size
/// subgroups these run on matmul_sg.wgsl. Every transpose, m not a multiple of its 8 rows, k not a multiple of
/// the subgroup size and below it, narrow and wide n (the workgroup narrows to the columns), B inside a larger
/// tensor at an offset.
#[test]
fn matmul_aligned_operands_match_reference() {
    let g = test_gpu();
    let sg = g.caps.subgroup_size;
    if g.adapter.is_cpu() && g.caps.subgroup && sg.is_multiple_of(4) && (4..=64).contains(&sg) {
        let selected = nava::kernels::matmul::selected(g);
        assert!(selected.iter().all(|l| l.contains("matmul_sg")), "a CPU driver with subgroups: {selected:?}");
    }
    for (m, n, k) in [(1, 4, 3), (19, 8, 36), (9, 300, 21), (33, 64, 64), (8, 12, 40)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = rand_vec(3, m * k);
            let at = g.upload_f32("a", &a, &if ta { [k, m] } else { [m, k] }).unwrap();
            // B in rows 1.. of a larger tensor whose row length is a multiple of 4.
            let bs = if tb { [n + 1, k] } else { [k + 1, n] };
            let big = rand_vec(4, bs[0] * bs[1]);
            let host_b = &big[bs[1]..];
            let bv = g.upload_f32("b", &big, &bs).unwrap().rows(1, bs[0] - 1).unwrap();
            let y = matmul(g, &at, &bv, MatmulArgs { trans_a: ta, trans_b: tb, alpha: 0.75 }).unwrap();
            assert_eq!(y.shape(), [m, n]);
            let y = g.read_f32_blocking(&y).unwrap();
            let av = |i: usize, kk: usize| if ta { a[kk * m + i] } else { a[i * k + kk] } as f64;
            let bvv = |kk: usize, j: usize| if tb { host_b[j * k + kk] } else { host_b[kk * n + j] } as f64;
            let want: Vec<f32> = (0..m * n)
                .map(|e| (0.75 * (0..k).map(|kk| av(e / n, kk) * bvv(kk, e % n)).sum::<f64>()) as f32)
                .collect();
            assert_close(&format!("aligned matmul {m}×{n}×{k} ta {ta} tb {tb}"), &y, &want, Tol::F32);
        }
    }
}

#[test]
fn matmul_params_match_the_shader() {
    // Both kernels, matmul.wgsl and matmul_sg.wgsl, take the same Params.
    for spec in nava::kernels::matmul::variants() {
        let src = spec.source();
        let module = naga::front::wgsl::parse_str(&src).unwrap();
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let (params, _) = module.types.iter().find(|(_, t)| t.name.as_deref() == Some("Params")).unwrap();
        assert_eq!(layouter[params].size as usize, PARAMS_BYTES, "{}", spec.label);
    }
}

#[test]
fn matmul_rejects_mismatched_inner_dims() {
    let g = test_gpu();
    let a = g.upload_f32("a", &[0.0; 6], &[2, 3]).unwrap();
    let e = matmul(g, &a, &a, MatmulArgs::default()).unwrap_err().to_string();
    assert!(e.contains("K = 3"), "{e}");
    let v = g.upload_f32("v", &[0.0; 6], &[6]).unwrap();
    let e = matmul(g, &v, &a, MatmulArgs::default()).unwrap_err().to_string();
    assert!(e.contains("2 dimensions"), "{e}");
}
