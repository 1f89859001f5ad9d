//! Checkpoint readers (src/weights/): safetensors and torch.save archives round-tripped through files these
//! tests write, the committed fixtures of CPython's pickler (tests/fixtures/make_pth_fixtures.py), refusals
//! of everything outside the state-dict pickle subset, every oracle case's safetensors, and a bounded
//! mutation run (truncations, byte flips, header edits) that must never panic.

#[path = "fixtures/torch_writer.rs"]
mod torch_writer;

use std::path::{Path, PathBuf};
use std::time::Instant;

use nava::weights::{
    f8e4m3_to_f32, safetensors_to_vec, write_safetensors, Checkpoint, PickleValue, Pth, Safetensors, SafetensorsHeader,
    SafetensorsWriter, TensorData, TensorInfo, TensorSource, WeightDType, WeightError,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use torch_writer::{contiguous, state_dict_pickle, torch_entries, torch_save, zip_stored, GenTensor, Pkl};

// ---------------------------------------------------------------- helpers

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect()
}
fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect()
}
fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nava-weights-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir is writable");
    d
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Reads every tensor (bytes and, for floats, f32) so a parsed file is fully exercised.
fn touch_all(src: &dyn TensorSource) {
    for t in src.tensors() {
        let v = src.view(&t.name).expect("listed tensors are readable");
        assert_eq!(v.bytes.len(), t.len_bytes(), "{}", t.name);
        if t.dtype.is_float() {
            assert_eq!(src.f32(&t.name).expect("float").len(), t.numel());
        }
    }
}

fn td<'a>(name: &'a str, dtype: WeightDType, shape: &'a [usize], bytes: &'a [u8]) -> TensorData<'a> {
    TensorData { name, dtype, shape, bytes }
}

fn err_text<T: std::fmt::Debug>(r: Result<T, WeightError>) -> String {
    r.expect_err("must fail").to_string()
}

// ---------------------------------------------------------------- safetensors

#[test]
fn safetensors_bf16_round_trip_through_a_file() {
    let dir = scratch("bf16");
    let path = dir.join("model.safetensors");
    let w: Vec<f32> = (0..24).map(|i| (i as f32 - 12.0) * 0.25).collect(); // exact in bf16
    let b = [1.5f32, -2.0, 0.0];
    let (wb, bb) = (bf16_bytes(&w), bf16_bytes(&b));
    write_safetensors(
        &path,
        &[
            td("blocks.0.linear.weight", WeightDType::BF16, &[3, 8], &wb),
            td("blocks.0.linear.bias", WeightDType::BF16, &[3], &bb),
        ],
        &[("format", "pt")],
    )
    .expect("write");
    assert!(!dir.join("model.safetensors.tmp").exists(), "temporary name is renamed");

    for ck in [
        Box::new(Safetensors::open(&path).expect("open")) as Box<dyn TensorSource>,
        Box::new(Checkpoint::open(&path).expect("open")),
    ] {
        let names: Vec<&str> = ck.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["blocks.0.linear.weight", "blocks.0.linear.bias"]);
        let info = ck.info("blocks.0.linear.weight").expect("present");
        assert_eq!((info.dtype, info.shape.as_slice()), (WeightDType::BF16, &[3usize, 8][..]));
        assert_eq!(ck.f32("blocks.0.linear.weight").expect("f32"), w);
        assert_eq!(ck.f32("blocks.0.linear.bias").expect("f32"), b);
        assert_eq!(&*ck.bytes("blocks.0.linear.weight").expect("bytes"), &wb[..]);
    }
    let st = Safetensors::open(&path).expect("open");
    assert_eq!(st.metadata(), [("format".to_string(), "pt".to_string())]);
    assert_eq!(st.header().data_start() % 8, 0, "data section is 8-byte aligned");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn fp8_e4m3_weight_with_its_scale() {
    // e4m3fn bytes and their values: 1.0, -1.75, max 448, min subnormal 2^-9, 2^-6, -0.0, 0.5, 3.0
    let codes: [u8; 8] = [0x38, 0xbe, 0x7e, 0x01, 0x08, 0x80, 0x30, 0x44];
    let values = [1.0f32, -1.75, 448.0, 1.0 / 512.0, 1.0 / 64.0, -0.0, 0.5, 3.0];
    for (&c, &v) in codes.iter().zip(&values) {
        assert_eq!(f8e4m3_to_f32(c).to_bits(), v.to_bits(), "code {c:#04x}");
    }
    assert!(f8e4m3_to_f32(0x7f).is_nan() && f8e4m3_to_f32(0xff).is_nan());

    let scale = [0.5f32, 4.0]; // one bf16 scale per output row, as NAVA_fp8 stores `weight_scale`
    let sb = bf16_bytes(&scale);
    let file = safetensors_to_vec(
        &[
            td("ffn.0.weight", WeightDType::F8E4M3, &[2, 4], &codes),
            td("ffn.0.weight_scale", WeightDType::BF16, &[2, 1], &sb),
        ],
        &[],
    )
    .expect("write");
    let ck = Checkpoint::from_blob("fp8.safetensors", file.into()).expect("parse");
    assert_eq!(ck.info("ffn.0.weight").expect("w").dtype, WeightDType::F8E4M3);
    assert_eq!(&*ck.bytes("ffn.0.weight").expect("raw"), &codes[..]);
    let w = ck.f32("ffn.0.weight").expect("w");
    let s = ck.f32("ffn.0.weight_scale").expect("s");
    let deq: Vec<f32> = w.iter().enumerate().map(|(i, x)| x * s[i / 4]).collect();
    assert_eq!(deq, [0.5, -0.875, 224.0, 1.0 / 1024.0, 1.0 / 16.0, -0.0, 2.0, 12.0]);
}

#[test]
fn safetensors_every_dtype_in_memory() {
    let cases: Vec<(WeightDType, Vec<u8>, Option<Vec<f32>>)> = vec![
        (WeightDType::F32, f32_bytes(&[1.0, -2.5]), Some(vec![1.0, -2.5])),
        (WeightDType::F16, f16_bytes(&[0.5, 65504.0]), Some(vec![0.5, 65504.0])),
        (WeightDType::BF16, bf16_bytes(&[-3.0, 1e30]), Some(vec![-3.0, half::bf16::from_f32(1e30).to_f32()])),
        (WeightDType::F64, [0.25f64, -8.0].iter().flat_map(|x| x.to_le_bytes()).collect(), Some(vec![0.25, -8.0])),
        (WeightDType::F8E5M2, vec![0x3c, 0xc0], Some(vec![1.0, -2.0])),
        (WeightDType::I8, vec![0xff, 0x01], None),
        (WeightDType::U8, vec![7, 9], None),
        (WeightDType::I64, i64_bytes(&[-1, 1 << 40]), None),
        (WeightDType::Bool, vec![0, 1], None),
    ];
    let names: Vec<String> = cases.iter().map(|(d, _, _)| format!("t.{d}")).collect();
    let data: Vec<TensorData> = cases.iter().zip(&names).map(|((d, b, _), n)| td(n, *d, &[2], b)).collect();
    let bytes = safetensors_to_vec(&data, &[("k", "v \"quoted\"")]).expect("write");
    let st = Safetensors::from_blob("mem.safetensors", bytes).expect("parse");
    assert_eq!(st.metadata(), [("k".to_string(), "v \"quoted\"".to_string())]);
    for ((d, b, want), n) in cases.iter().zip(&names) {
        let v = st.view(n).expect("view");
        assert_eq!((v.dtype(), &*v.bytes), (*d, &b[..]));
        match want {
            Some(w) => assert_eq!(&st.f32(n).expect("float"), w, "{n}"),
            None => {
                let e = err_text(st.f32(n));
                assert!(e.contains("expected a float tensor") && e.contains(n.as_str()), "{e}");
            }
        }
    }
    // Scalars and empty tensors are legal.
    let one = f32_bytes(&[7.0]);
    let bytes = safetensors_to_vec(
        &[td("scalar", WeightDType::F32, &[], &one), td("empty", WeightDType::F32, &[0, 5], &[])],
        &[],
    )
    .expect("write");
    let st = Safetensors::from_blob("mem", bytes).expect("parse");
    assert_eq!(st.f32("scalar").expect("scalar"), [7.0]);
    assert!(st.f32("empty").expect("empty").is_empty());
}

#[test]
fn safetensors_header_length_may_look_like_a_pickle() {
    // A header of 0x0580 bytes starts the file with 0x80 0x05, as a pickle's PROTO 5 would.
    let a = f32_bytes(&[1.0]);
    let file = (0..2000)
        .map(|n| {
            let pad = "x".repeat(n);
            safetensors_to_vec(&[td("a", WeightDType::F32, &[1], &a)], &[("pad", &pad)]).expect("write")
        })
        .find(|f| f[..2] == [0x80, 0x05])
        .expect("some padding gives that length");
    let ck = Checkpoint::from_blob("x.safetensors", file.into()).expect("still safetensors");
    assert_eq!(ck.f32("a").expect("a"), [1.0]);
}

#[test]
fn safetensors_header_alone_gives_byte_ranges() {
    let a = f32_bytes(&[1.0, 2.0, 3.0]);
    let b = f16_bytes(&[4.0]);
    let file = safetensors_to_vec(&[td("a", WeightDType::F32, &[3], &a), td("b", WeightDType::F16, &[1], &b)], &[])
        .expect("write");
    // A browser fetches the first 8 bytes, then the header, then tensors by range.
    let need = SafetensorsHeader::prefix_len(&file[..8]).expect("length") as usize;
    let h = SafetensorsHeader::parse("remote.safetensors", &file[..need], file.len() as u64).expect("header");
    let r = h.byte_range("b").expect("b");
    assert_eq!(&file[r.start as usize..r.end as usize], &b[..]);
    assert_eq!(h.view(&file, "a").expect("a").to_f32().expect("f32"), [1.0, 2.0, 3.0]);
    assert!(h.byte_range("c").is_none());
}

#[test]
fn safetensors_errors_name_file_tensor_and_fix() {
    let a = f32_bytes(&[1.0, 2.0]);
    let file = safetensors_to_vec(&[td("a", WeightDType::F32, &[2], &a)], &[]).expect("write");
    let st = Safetensors::from_blob("dit.safetensors", file.clone()).expect("parse");
    let e = st.view("backbone.head.weight").expect_err("missing");
    assert!(matches!(&e, WeightError::Missing { keys, .. } if keys == &["backbone.head.weight"]));
    assert!(e.to_string().starts_with("dit.safetensors: 1 tensors missing, e.g. `backbone.head.weight`"), "{e}");

    let e = err_text(Safetensors::from_blob("dit.safetensors", file[..file.len() - 1].to_vec()));
    assert!(
        e.contains("dit.safetensors: tensor `a` (data_offsets [0, 8]) needs") && e.contains("the file is truncated"),
        "{e}"
    );

    let e = err_text(Safetensors::from_blob("x.safetensors", with_header(&file, |h| h.replace("F32", "F4"))));
    assert!(e.contains("dtype `F4` of tensor `a` is not supported"), "{e}");
    let e = err_text(Safetensors::from_blob("x.safetensors", with_header(&file, |h| h.replace("[2]", "[3]"))));
    assert!(e.contains("`a`") && e.contains("needs 12 bytes but data_offsets [0, 8] span 8"), "{e}");

    // The writer checks what it is given.
    let e = err_text(safetensors_to_vec(&[td("w", WeightDType::BF16, &[3], &a)], &[]));
    assert!(e.contains("`w`") && e.contains("8 bytes given; shape [3] of BF16 needs 6"), "{e}");
    let t = td("w", WeightDType::F32, &[2], &a);
    assert!(err_text(safetensors_to_vec(&[t, t], &[])).contains("reserved or repeated"));
}

#[test]
fn safetensors_streaming_writer_checks_the_plan() {
    let dir = scratch("writer");
    let path = dir.join("out.safetensors");
    let plan = vec![
        TensorInfo { name: "x".into(), dtype: WeightDType::F32, shape: vec![2] },
        TensorInfo { name: "y".into(), dtype: WeightDType::U8, shape: vec![3] },
    ];
    let mut w = SafetensorsWriter::create(&path, plan.clone(), &[]).expect("create");
    assert!(err_text(w.write("y", &[1, 2, 3])).contains("expected `x` next"));
    w.write("x", &f32_bytes(&[1.0, 2.0])).expect("x");
    assert!(err_text(w.finish()).contains("`y`: planned but never written"));
    assert!(!path.exists() && !dir.join("out.safetensors.tmp").exists(), "nothing left behind");

    let mut w = SafetensorsWriter::create(&path, plan, &[]).expect("create");
    w.write("x", &f32_bytes(&[1.0, 2.0])).expect("x");
    w.write("y", &[1, 2, 3]).expect("y");
    w.finish().expect("finish");
    let st = Safetensors::open(&path).expect("open");
    assert_eq!(&*st.bytes("y").expect("y"), &[1, 2, 3]);
    std::fs::remove_dir_all(dir).ok();
}

/// Rewrites the JSON header of a safetensors file (keeping the data section) through `edit`.
fn with_header(file: &[u8], edit: impl FnOnce(String) -> String) -> Vec<u8> {
    let n = u64::from_le_bytes(file[..8].try_into().expect("8")) as usize;
    let json = String::from_utf8(file[8..8 + n].to_vec()).expect("utf8");
    let json = edit(json);
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json.as_bytes());
    out.extend(&file[8 + n..]);
    out
}

// ---------------------------------------------------------------- oracles

#[test]
fn every_oracle_safetensors_loads_with_its_header_keys() {
    let dir = nava::oracle::root(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles"));
    let Ok(cases) = std::fs::read_dir(&dir) else {
        println!("skipped: no oracle folder at {} (set NAVA_ORACLES)", dir.display());
        return;
    };
    let mut cases: Vec<PathBuf> = cases.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    cases.sort();
    let mut files = 0;
    for case in cases {
        for name in ["weights.safetensors", "io.safetensors"] {
            let path = case.join(name);
            if !path.exists() {
                continue;
            }
            // The header as plain JSON, read here independently of the reader.
            let raw = std::fs::read(&path).expect("read");
            let n = u64::from_le_bytes(raw[..8].try_into().expect("8")) as usize;
            let json: serde_json::Value = serde_json::from_slice(&raw[8..8 + n]).expect("json");
            let mut want: Vec<(String, String, Vec<usize>)> = json
                .as_object()
                .expect("object")
                .iter()
                .filter(|(k, _)| *k != "__metadata__")
                .map(|(k, v)| {
                    let shape = v["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize);
                    (k.clone(), v["dtype"].as_str().expect("dtype").to_string(), shape.collect())
                })
                .collect();
            want.sort();
            let ck = Checkpoint::open(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(ck, Checkpoint::Safetensors(_)));
            let mut got: Vec<(String, String, Vec<usize>)> =
                ck.tensors().iter().map(|t| (t.name.clone(), t.dtype.to_string(), t.shape.clone())).collect();
            got.sort();
            assert_eq!(got, want, "{}", path.display());
            touch_all(&ck);
            files += 1;
        }
    }
    println!("{files} oracle safetensors files checked under {}", dir.display());
}

// ---------------------------------------------------------------- torch.save archives

fn sample_tensors() -> Vec<GenTensor> {
    let w: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
    let big: Vec<f32> = (0..300).map(|i| i as f32).collect();
    vec![
        GenTensor::new("encoder.conv1.weight", "BFloat16Storage", "0", bf16_bytes(&w)).view(0, &[2, 3], &[3, 1]),
        GenTensor::new("encoder.norm.gamma", "HalfStorage", "1", f16_bytes(&[1.0, -2.0, 0.5, 65504.0])).view(
            0,
            &[4],
            &[1],
        ),
        // Two views of one storage: a transpose (strided) and an offset slice.
        GenTensor::new("decoder.proj.weight", "FloatStorage", "2", f32_bytes(&w)).view(0, &[3, 2], &[1, 3]),
        GenTensor::new("decoder.proj.bias", "FloatStorage", "2", f32_bytes(&w)).view(4, &[2], &[1]),
        // Size-1 dims may carry any stride and still be contiguous.
        GenTensor::new("decoder.mod", "FloatStorage", "3", f32_bytes(&big)).view(0, &[1, 300, 1], &[7, 1, 9]),
        GenTensor::new("bn.num_batches_tracked", "LongStorage", "4", i64_bytes(&[70000])).view(0, &[], &[]),
        GenTensor::new("empty", "FloatStorage", "5", Vec::new()).view(0, &[0, 4], &[4, 1]),
    ]
}

fn check_sample(p: &dyn TensorSource) {
    let names: Vec<&str> = p.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "encoder.conv1.weight",
            "encoder.norm.gamma",
            "decoder.proj.weight",
            "decoder.proj.bias",
            "decoder.mod",
            "bn.num_batches_tracked",
            "empty"
        ]
    );
    let w: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
    assert_eq!(p.info("encoder.conv1.weight").expect("w").dtype, WeightDType::BF16);
    assert_eq!(p.f32("encoder.conv1.weight").expect("w"), w);
    assert_eq!(p.f32("encoder.norm.gamma").expect("g"), [1.0, -2.0, 0.5, 65504.0]);
    // transpose of [[w0 w1 w2] [w3 w4 w5]]
    assert_eq!(p.f32("decoder.proj.weight").expect("t"), [w[0], w[3], w[1], w[4], w[2], w[5]]);
    assert_eq!(p.f32("decoder.proj.bias").expect("b"), [w[4], w[5]]);
    assert_eq!(p.f32("decoder.mod").expect("m").len(), 300);
    assert!(
        matches!(p.bytes("decoder.mod").expect("m"), std::borrow::Cow::Borrowed(_)),
        "contiguous views are not copied"
    );
    let n = p.view("bn.num_batches_tracked").expect("n");
    assert_eq!((n.dtype(), n.shape(), &*n.bytes), (WeightDType::I64, &[][..], &i64_bytes(&[70000])[..]));
    assert!(p.f32("empty").expect("empty").is_empty());
}

#[test]
fn pth_round_trip_as_torch_save_writes_it() {
    let t = sample_tensors();
    for (top, zip64) in [("archive", false), ("Wan2.2_VAE", true)] {
        let bytes = torch_save(top, &t, zip64);
        let p = Pth::from_blob("model.pth", bytes.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.archive_name(), top);
        check_sample(&p);
        // Through a file and format sniffing.
        let dir = scratch(&format!("pth{zip64}"));
        let path = dir.join("model.pth");
        std::fs::write(&path, &bytes).expect("write");
        let ck = Checkpoint::open(&path).expect("open");
        assert!(matches!(ck, Checkpoint::Pth(_)));
        check_sample(&ck);
        std::fs::remove_dir_all(dir).ok();
    }
}

#[test]
fn pth_rebuild_parameter_and_large_ints() {
    let mut p = Pkl::new();
    p.op(b'}');
    p.put();
    p.op(b'(');
    p.str("weight");
    p.global("torch._utils", "_rebuild_parameter");
    let t = GenTensor::new("", "FloatStorage", "0", f32_bytes(&[1.0, 2.0]));
    p.op(b'(');
    p.tensor(&t);
    p.op(0x88);
    p.global("collections", "OrderedDict");
    p.op(b')');
    p.op(b'R');
    p.op(b't');
    p.op(b'R');
    for (k, v) in [("big", 1i64 << 40), ("neg", -(1i64 << 35)), ("min", i64::MIN), ("m1", -1)] {
        p.str(k);
        p.int(v);
    }
    p.op(b'u');
    p.op(b'.');
    let bytes = zip_stored(&torch_entries("archive", p.b, &[t]), false);
    let pth = Pth::from_blob("p.pth", bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pth.f32("weight").expect("w"), [1.0, 2.0]);
    let r = pth.root();
    assert_eq!(r.get("big").and_then(PickleValue::as_int), Some(1 << 40));
    assert_eq!(r.get("neg").and_then(PickleValue::as_int), Some(-(1 << 35)));
    assert_eq!(r.get("min").and_then(PickleValue::as_int), Some(i64::MIN));
    assert_eq!(r.get("m1").and_then(PickleValue::as_int), Some(-1));
}

#[test]
fn python_fixture_state_dict_protocols_2_and_4() {
    for (name, top) in [("tiny_state_dict.pth", "tiny_vae"), ("tiny_state_dict_p4.pth", "archive")] {
        let p = Pth::open(fixture(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.archive_name(), top);
        let names: Vec<&str> = p.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "conv.weight",
                "conv.bias",
                "norm.gamma",
                "emb.weight",
                "conv.weight_t",
                "head.slice",
                "bn.num_batches_tracked",
                "scale"
            ]
        );
        let w: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
        assert_eq!(p.info("conv.weight").expect("w").shape, [2, 3, 1, 1]);
        assert_eq!(p.f32("conv.weight").expect("w"), w);
        assert_eq!(p.f32("conv.bias").expect("b"), [0.25, -0.75]);
        assert_eq!(p.f32("norm.gamma").expect("g"), [1.0, -2.0, 0.5, 65504.0]);
        assert_eq!(p.info("emb.weight").expect("e").dtype, WeightDType::BF16);
        assert_eq!(p.f32("emb.weight").expect("e"), [1.0, 2.0, -3.0, 0.125, 256.0, -0.5]);
        assert_eq!(p.f32("conv.weight_t").expect("t"), [w[0], w[3], w[1], w[4], w[2], w[5]]);
        assert_eq!(p.f32("head.slice").expect("s"), [12.0, 13.0, 14.0]);
        assert_eq!(&*p.bytes("bn.num_batches_tracked").expect("n"), &i64_bytes(&[7])[..]);
        assert_eq!(p.f32("scale").expect("scale"), [3.5]);
    }
}

#[test]
fn python_fixture_redimnet_style_checkpoint() {
    let p = Pth::open(fixture("redimnet_like.pt")).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = p.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["state_dict.stem.0.weight", "state_dict.stem.0.bias"]);
    let cfg = p.root().get("model_config").expect("model_config");
    assert_eq!(cfg.get("F").and_then(PickleValue::as_int), Some(72));
    assert_eq!(cfg.get("block_1d_type").and_then(PickleValue::as_str), Some("conv+att"));
    assert_eq!(cfg.get("out_channels"), Some(&PickleValue::None));
    assert_eq!(cfg.get("feat_agg_dropout").and_then(PickleValue::as_f64), Some(0.0));
    assert_eq!(cfg.get("pi").and_then(PickleValue::as_f64), Some(3.25));
    assert_eq!(cfg.get("return_2d_output").and_then(PickleValue::as_bool), Some(false));
    assert_eq!(cfg.get("big").and_then(PickleValue::as_int), Some(1 << 40));
    assert_eq!(cfg.get("neg").and_then(PickleValue::as_int), Some(-5));
    assert_eq!(cfg.get("neg_big").and_then(PickleValue::as_int), Some(-(1 << 35)));
    let stages = cfg.get("stages_setup").and_then(PickleValue::as_seq).expect("stages");
    assert_eq!(stages.len(), 2);
    let s0 = stages[0].as_seq().expect("tuple");
    assert!(matches!(stages[0], PickleValue::Tuple(_)));
    assert_eq!(s0[3], PickleValue::List(vec![PickleValue::Int(4), PickleValue::Int(8)]));
    assert_eq!(s0[4].as_int(), Some(48));

    let sd = p.select("state_dict").expect("select");
    let names: Vec<&str> = sd.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["stem.0.weight", "stem.0.bias"]);
    assert_eq!(sd.f32("stem.0.weight").expect("w"), (0..8).map(|i| i as f32).collect::<Vec<_>>());
    assert_eq!(sd.f32("stem.0.bias").expect("b"), [0.5, 1.5]);
    assert!(sd.root().get("model_config").is_some(), "root stays whole after select");
    let e = err_text(Pth::open(fixture("redimnet_like.pt")).expect("open").select("model"));
    assert!(e.contains("`model`") && e.contains("\"model_config\", \"state_dict\""), "{e}");
}

/// A zip around a hand-written pickle with one float storage `0`.
fn pth_with_pickle(pickle: Vec<u8>) -> Vec<u8> {
    let t = GenTensor::new("", "FloatStorage", "0", f32_bytes(&[1.0]));
    zip_stored(&torch_entries("archive", pickle, &[t]), false)
}

#[test]
fn pickle_outside_the_subset_is_refused() {
    // os.system via GLOBAL + REDUCE: refused at the GLOBAL, before anything could be called.
    let mut p = Pkl::new();
    p.global("os", "system");
    p.str("echo hacked");
    p.op(0x85);
    p.op(b'R');
    p.op(b'.');
    let e = err_text(Pth::from_blob("evil.pth", pth_with_pickle(p.b)));
    assert!(e.contains("evil.pth: refusing to unpickle `os.system`: only state-dict classes are allowed"), "{e}");

    // builtins.eval via protocol 4's STACK_GLOBAL.
    let mut b = vec![0x80, 4, 0x8c, 8];
    b.extend(b"builtins");
    b.extend([0x8c, 4]);
    b.extend(b"eval");
    b.extend([0x93, b'.']);
    assert!(err_text(Pth::from_blob("evil.pth", pth_with_pickle(b))).contains("`builtins.eval`"));

    // A torch name that is not on the allow-list.
    let mut p = Pkl::new();
    p.global("torch", "load");
    p.op(b'.');
    assert!(err_text(Pth::from_blob("evil.pth", pth_with_pickle(p.b))).contains("`torch.load`"));

    // Object-building opcodes are refused by name.
    let e = err_text(Pth::from_blob("evil.pth", pth_with_pickle(b"\x80\x02(ios\nsystem\n.".to_vec())));
    assert!(e.contains("opcode 0x69 (INST)") && e.contains("`archive/data.pkl`"), "{e}");
    let e = err_text(Pth::from_blob("evil.pth", pth_with_pickle(b"\x80\x02N)\x81.".to_vec())));
    assert!(e.contains("(NEWOBJ)"), "{e}");

    // BUILD on anything but a dict, and a REDUCE of a storage class.
    let mut p = Pkl::new();
    p.op(b']');
    p.op(b'}');
    p.op(b'b');
    p.op(b'.');
    assert!(err_text(Pth::from_blob("x.pth", pth_with_pickle(p.b))).contains("BUILD (setting object state) on a list"));
    let mut p = Pkl::new();
    p.global("torch", "FloatStorage");
    p.op(b')');
    p.op(b'R');
    p.op(b'.');
    assert!(err_text(Pth::from_blob("x.pth", pth_with_pickle(p.b))).contains("called directly"));
}

#[test]
fn pickle_bombs_and_cycles_fail_cleanly() {
    // Each list holds the previous one twice: 2^40 nodes if expanded.
    let mut b = vec![0x80, 2, b']', b'r', 0, 0, 0, 0];
    for i in 1..40u32 {
        b.extend([b']', b'(', b'j']);
        b.extend((i - 1).to_le_bytes());
        b.push(b'j');
        b.extend((i - 1).to_le_bytes());
        b.push(b'e');
        b.push(b'r');
        b.extend(i.to_le_bytes());
    }
    b.push(b'.');
    let e = err_text(Pth::from_blob("bomb.pth", pth_with_pickle(b)));
    assert!(e.contains("shared values expand"), "{e}");
    // A list that contains itself.
    let e = err_text(Pth::from_blob("cycle.pth", pth_with_pickle(b"\x80\x02]q\x00h\x00a.".to_vec())));
    assert!(e.contains("nest deeper"), "{e}");
    // Very deep nesting of tuples stays a clean error.
    let mut b = vec![0x80, 2, b'N'];
    b.extend(std::iter::repeat_n(0x85u8, 100_000));
    b.push(b'.');
    let e = err_text(Pth::from_blob("deep.pth", pth_with_pickle(b)));
    assert!(e.contains("tuples nest deeper than 100 levels"), "{e}");
    // Huge declared lengths do not allocate.
    let e = err_text(Pth::from_blob("len.pth", pth_with_pickle(b"\x80\x02X\xff\xff\xff\xff".to_vec())));
    assert!(e.contains("needs 4294967295 more bytes"), "{e}");
}

#[test]
fn archive_problems_are_named() {
    let t = sample_tensors();
    let good = torch_entries("archive", state_dict_pickle(&t), &t);

    let without: Vec<_> = good.iter().filter(|(n, _)| n != "archive/data/3").cloned().collect();
    let e = err_text(Pth::from_blob("m.pth", zip_stored(&without, false)));
    assert!(e.contains("the archive has no entry `archive/data/3`"), "{e}");

    let short: Vec<_> = good
        .iter()
        .map(|(n, d)| (n.clone(), if n == "archive/data/1" { d[..6].to_vec() } else { d.clone() }))
        .collect();
    let e = err_text(Pth::from_blob("m.pth", zip_stored(&short, false)));
    assert!(e.contains("`archive/data/1`: a F16 storage of 4 elements needs 8 bytes; the entry has 6"), "{e}");

    let big: Vec<_> = good
        .iter()
        .map(|(n, d)| (n.clone(), if n.ends_with("byteorder") { b"big".to_vec() } else { d.clone() }))
        .collect();
    assert!(err_text(Pth::from_blob("m.pth", zip_stored(&big, false))).contains("byte order `big` is not supported"));

    let no_pkl: Vec<_> = good.iter().filter(|(n, _)| !n.ends_with("data.pkl")).cloned().collect();
    assert!(err_text(Pth::from_blob("m.pth", zip_stored(&no_pkl, false))).contains("no entry `<top>/data.pkl`"));

    // A view past the end of its storage.
    let mut bad = t.clone();
    bad[3].offset = 5;
    let e = err_text(Pth::from_blob("m.pth", torch_save("archive", &bad, false)));
    assert!(e.contains("`decoder.proj.bias`") && e.contains("reaches past its storage `2` of 6 elements"), "{e}");

    // A second reference to a storage that claims more elements than the entry holds.
    let mut lie = t.clone();
    lie[3].storage_numel = 1000;
    lie[3].offset = 900;
    let e = err_text(Pth::from_blob("m.pth", torch_save("archive", &lie, false)));
    assert!(e.contains("of 1000 elements needs 4000 bytes; the entry has 24"), "{e}");

    // A compressed entry (method 8) is refused with the fix.
    let mut z = torch_save("archive", &t, false);
    let cd = find(&z, &0x0201_4b50u32.to_le_bytes()).expect("central directory");
    z[cd + 10] = 8;
    let e = err_text(Pth::from_blob("m.pth", z));
    assert!(e.contains("compressed archive entry `archive/data.pkl` (method 8)") && e.contains("STORED"), "{e}");

    // A bare pickle (pre-1.6 torch.save).
    let e = err_text(Checkpoint::from_blob(
        "old.pth",
        vec![0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.'].into(),
    ));
    assert!(e.contains("legacy torch.save file"), "{e}");
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------- mutations

/// Parses `bytes` as whatever it claims to be and reads every tensor; returns whether it parsed.
fn parses(bytes: Vec<u8>) -> bool {
    match Checkpoint::from_blob("mutant", bytes.into()) {
        Ok(ck) => {
            touch_all(&ck);
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

fn sample_safetensors() -> Vec<u8> {
    let a = bf16_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = [0x38u8, 0x40, 0x7e];
    let c = f32_bytes(&[0.5]);
    let d = i64_bytes(&[3, -4]);
    safetensors_to_vec(
        &[
            td("a.weight", WeightDType::BF16, &[2, 3], &a),
            td("b.weight", WeightDType::F8E4M3, &[3], &b),
            td("b.weight_scale", WeightDType::F32, &[], &c),
            td("empty", WeightDType::F16, &[0], &[]),
            td("ids", WeightDType::I64, &[2], &d),
        ],
        &[("format", "pt")],
    )
    .expect("write")
}

/// Header edits that each make the file invalid.
type Edit = Box<dyn Fn(String) -> String>;

fn invalid_header_edits() -> Vec<(&'static str, Edit)> {
    vec![
        ("unknown dtype", Box::new(|h: String| h.replacen("\"BF16\"", "\"BF17\"", 1))),
        ("shape grows", Box::new(|h: String| h.replacen("[2, 3]", "[2, 4]", 1))),
        ("shape shrinks", Box::new(|h: String| h.replacen("[2, 3]", "[2, 2]", 1))),
        ("negative dim", Box::new(|h: String| h.replacen("[2, 3]", "[-2, 3]", 1))),
        ("float dim", Box::new(|h: String| h.replacen("[2, 3]", "[2.0, 3]", 1))),
        ("overflowing shape", Box::new(|h: String| h.replacen("[2, 3]", "[4294967296,4294967296,4294967296]", 1))),
        ("offsets backwards", Box::new(|h: String| h.replacen("[0,12]", "[12,0]", 1))),
        ("overlap", Box::new(|h: String| h.replacen("[12,15]", "[11,14]", 1))),
        ("gap", Box::new(|h: String| h.replacen("[0,12]", "[1,13]", 1))),
        ("past the end", Box::new(|h: String| h.replacen("[19,35]", "[1019,1035]", 1))),
        ("duplicate name", Box::new(|h: String| h.replacen("\"ids\"", "\"a.weight\"", 1))),
        ("missing offsets", Box::new(|h: String| h.replacen("\"data_offsets\"", "\"data_offset\"", 1))),
        ("three offsets", Box::new(|h: String| h.replacen("[0,12]", "[0,6,12]", 1))),
        ("non-string metadata", Box::new(|h: String| h.replacen("\"pt\"", "1", 1))),
        ("metadata not an object", Box::new(|h: String| h.replacen("{\"format\":\"pt\"}", "[]", 1))),
        (
            "entry not an object",
            Box::new(|h: String| {
                let i = h.find("\"ids\":").expect("ids");
                format!("{}\"ids\":5}}", &h[..i])
            }),
        ),
        ("not an object", Box::new(|h: String| format!("[{h}]"))),
        ("not JSON", Box::new(|h: String| h.replacen("{", "{{", 1))),
        ("lone surrogate", Box::new(|h: String| h.replacen("\"a.weight\"", "\"a.weight\\ud800\"", 1))),
        ("trailing garbage", Box::new(|h: String| format!("{} x", h.trim_end()))),
    ]
}

#[test]
fn mutations_never_panic_and_invalid_files_fail() {
    let start = Instant::now();
    let mut rng = SmallRng::seed_from_u64(0x5eed);

    // ---- safetensors
    let st = sample_safetensors();
    assert!(parses(st.clone()));
    for len in 0..st.len() {
        assert!(!parses(st[..len].to_vec()), "truncated to {len} bytes must fail");
    }
    for (what, edit) in invalid_header_edits() {
        let bytes = with_header(&st, edit);
        assert_ne!(bytes, st, "edit `{what}` changed nothing");
        assert!(!parses(bytes), "header edit `{what}` must fail");
    }
    for (what, len) in
        [("zero", 0u64), ("one", 1), ("past the file", st.len() as u64), ("huge", u64::MAX), ("limit", (100 << 20) + 1)]
    {
        let mut b = st.clone();
        b[..8].copy_from_slice(&len.to_le_bytes());
        assert!(!parses(b), "header length `{what}` must fail");
    }
    let mut b = st.clone();
    let name_at = find(&b, b"a.weight").expect("name");
    b[name_at] = 0xff; // not UTF-8
    assert!(!parses(b), "a header that is not UTF-8 must fail");
    let header_end = 8 + u64::from_le_bytes(st[..8].try_into().expect("8")) as usize;
    for _ in 0..3000 {
        let mut b = st.clone();
        let at = rng.random_range(0..b.len());
        b[at] ^= rng.random_range(1..=255u8);
        let ok = parses(b);
        if at < 8 {
            assert!(!ok, "a changed header length (byte {at}) must fail");
        }
        // Flips in the JSON may still be valid (a letter of a name); in the data they always are.
        if at >= header_end {
            assert!(ok, "a flip in tensor data (byte {at}) changes values, not structure");
        }
    }
    for _ in 0..500 {
        // Several random edits at once, header and data.
        let mut b = st.clone();
        for _ in 0..rng.random_range(1..8) {
            let at = rng.random_range(0..b.len());
            b[at] = rng.random();
        }
        parses(b);
    }

    // ---- torch.save archives
    let tensors = sample_tensors();
    for zip64 in [false, true] {
        let z = torch_save("archive", &tensors, zip64);
        assert!(parses(z.clone()));
        for len in 0..z.len() {
            assert!(!parses(z[..len].to_vec()), "archive truncated to {len} bytes must fail");
        }
        let pkl_len = state_dict_pickle(&tensors).len();
        let pkl_at = find(&z, &state_dict_pickle(&tensors)).expect("data.pkl is stored as is");
        for _ in 0..3000 {
            let mut b = z.clone();
            let at = rng.random_range(0..b.len());
            b[at] ^= rng.random_range(1..=255u8);
            let ok = parses(b);
            if (pkl_at..pkl_at + pkl_len).contains(&at) {
                assert!(!ok, "a flip in data.pkl (byte {at}) fails its CRC");
            }
            if at + 22 == z.len() || at + 21 == z.len() {
                assert!(!ok, "a flip in the end-record signature must fail");
            }
        }
    }

    // Pickle-level mutations inside a well-formed zip (CRC recomputed): the parser itself is fuzzed.
    let pickle = state_dict_pickle(&tensors);
    let entries = |p: Vec<u8>| zip_stored(&torch_entries("archive", p, &tensors), false);
    for len in 0..pickle.len() {
        assert!(!parses(entries(pickle[..len].to_vec())), "pickle truncated to {len} bytes must fail");
    }
    let mut still_valid = 0;
    for _ in 0..3000 {
        let mut p = pickle.clone();
        match rng.random_range(0..3) {
            0 => {
                let at = rng.random_range(0..p.len());
                p[at] ^= rng.random_range(1..=255u8);
            }
            1 => {
                let at = rng.random_range(0..p.len());
                p.insert(at, rng.random());
            }
            _ => {
                let at = rng.random_range(0..p.len());
                p.remove(at);
            }
        }
        still_valid += parses(entries(p)) as usize;
    }
    println!("{still_valid} of 3000 mutated pickles still parse (names or values changed)");
    // Random opcode soup.
    for _ in 0..2000 {
        let mut p = vec![0x80, 2];
        let n = rng.random_range(1..64);
        p.extend((0..n).map(|_| rng.random::<u8>()));
        p.push(b'.');
        parses(entries(p));
    }

    let elapsed = start.elapsed();
    println!("mutation run took {elapsed:?}");
    assert!(elapsed.as_secs() < 10, "the mutation run must stay bounded; took {elapsed:?}");
}

#[test]
fn sample_tensor_layouts_are_what_torch_would_give() {
    // Guards the generator itself: contiguous strides are row-major.
    assert_eq!(contiguous(&[2, 3, 4]), [12, 4, 1]);
    assert_eq!(contiguous(&[]), Vec::<usize>::new());
}
