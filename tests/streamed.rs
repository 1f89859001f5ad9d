//! Converted directories streamed into GPU memory (src/weights/streamed.rs, `Gpu::write_at`, `TensorWriter`),
//! the way the browser page loads them: the built-in tiny model is written as a converted directory (q8, with a
//! small shard limit so that arrays are split across shards), every shard is fed in chunks of odd sizes (7,
//! 4093 and about a MiB, so that chunks end mid-word and mid-array), and then
//! - every array in GPU memory equals the shard file's bytes exactly;
//! - a generation from the streamed store gives the same frames and audio as one from the directory on disk;
//! - a shard of the wrong length, a shard lacking an array, an array of another dtype and a shard that never
//!   arrived are each refused with a message naming the shard and the problem.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use nava::gpu::{block_on, DType, Gpu, GpuOptions, GpuTensor, TensorWriter};
use nava::model::dit::Offload;
use nava::pipeline::generate::{generate, write_tiny, Event, Mode, ModelSource, Models, Observer, Request};
use nava::pipeline::shape::{Length, Size};
use nava::pipeline::{PipelineError, SampleConfig};
use nava::weights::{ConvertOptions, Manifest, Quant, Safetensors, StreamedWeights, TensorSource};

/// Chunk sizes, in turn: a few bytes, just under a page, and about a MiB — all odd.
const CHUNKS: [usize; 3] = [7, 4093, (1 << 20) + 3];

fn gpu() -> &'static Gpu {
    static G: OnceLock<Gpu> = OnceLock::new();
    G.get_or_init(|| Gpu::new_blocking(&GpuOptions::from_env()).unwrap_or_else(|e| panic!("{e}")))
}

/// The tiny model as a converted directory, written once per test binary.
fn tiny_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("nava-streamed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("temp dir is writable");
        let out = root.join("tiny-q8");
        let opts = ConvertOptions { shard_limit_bytes: 4 << 20, overwrite: false };
        write_tiny(&out, Quant::Q8, &opts).unwrap_or_else(|e| panic!("{e}"));
        out
    })
}

/// Streams every shard of `dir` (as `manifest` lists them) in chunks of [`CHUNKS`] sizes.
fn stream(g: &Gpu, dir: &Path, manifest: &[u8]) -> Result<StreamedWeights, String> {
    let mut w = StreamedWeights::new(dir, manifest).map_err(|e| e.to_string())?;
    let shards: Vec<(String, String)> =
        w.manifest().models.iter().flat_map(|m| m.shards.iter().map(|s| (m.name.clone(), s.file.clone()))).collect();
    for (model, file) in shards {
        feed(g, &mut w, &model, &file, &std::fs::read(dir.join(&file)).map_err(|e| e.to_string())?)?;
    }
    Ok(w)
}

fn feed(g: &Gpu, w: &mut StreamedWeights, model: &str, file: &str, bytes: &[u8]) -> Result<(), String> {
    let mut s = w.begin_shard(model, file).map_err(|e| e.to_string())?;
    let mut rest = bytes;
    for &n in CHUNKS.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, next) = rest.split_at(n.min(rest.len()));
        s.push(g, w, chunk).map_err(|e| e.to_string())?;
        rest = next;
    }
    s.finish(g, w).map_err(|e| e.to_string())
}

fn manifest_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("manifest.json")).expect("manifest.json")
}

fn read(g: &Gpu, t: &GpuTensor) -> Vec<u8> {
    block_on(g.read_bytes(t)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn chunked_writes_carry_unaligned_tails() {
    let g = gpu();
    // An f16 tensor of odd length ends mid-word; the chunks split words everywhere.
    let data: Vec<u8> = (0..2 * 1001).map(|i| (i * 37 % 251) as u8).collect();
    for chunk in [1, 3, 7, 4093] {
        let t = g.alloc("f16", &[1001], DType::F16).expect("alloc");
        let mut w = TensorWriter::new(t, data.len() as u64).expect("writer");
        for c in data.chunks(chunk) {
            w.push(g, c).expect("push");
        }
        let t = w.finish(g).expect("finish");
        assert_eq!(&read(g, &t)[..data.len()], &data[..], "chunks of {chunk}");
    }
    // Writing past the end, or finishing early, is refused.
    let t = g.alloc("short", &[2], DType::F32).expect("alloc");
    let mut w = TensorWriter::new(t.clone(), 8).expect("writer");
    assert!(w.push(g, &[0; 9]).is_err());
    w.push(g, &[0; 5]).expect("push");
    assert!(w.finish(g).unwrap_err().to_string().contains("only 5 of 8 bytes"));
    assert!(g.write_at(&t, 2, &[0; 4]).unwrap_err().to_string().contains("not a multiple of 4"));
}

#[test]
fn streamed_arrays_equal_the_shards() {
    let g = gpu();
    let dir = tiny_dir();
    let w = stream(g, dir, &manifest_bytes(dir)).unwrap_or_else(|e| panic!("{e}"));
    w.check_complete().unwrap_or_else(|e| panic!("{e}"));
    let manifest = Manifest::read(dir).expect("manifest");
    assert!(manifest.models.iter().any(|m| m.tensors.iter().any(|t| t.parts.len() > 1)), "no array is split");
    let mut arrays = 0;
    for m in &manifest.models {
        for s in &m.shards {
            let file = Safetensors::open(dir.join(&s.file)).expect("shard");
            for key in &s.tensors {
                let want = file.view(key).expect("array").bytes;
                if want.is_empty() {
                    continue;
                }
                let t = w.array(&m.name, key).unwrap_or_else(|| panic!("{}/{key} is not in GPU memory", m.name));
                assert_eq!(&read(g, t)[..want.len()], &want[..], "{}/{key}", m.name);
                arrays += 1;
            }
        }
    }
    assert_eq!(arrays, w.array_count());
}

#[derive(Default)]
struct Collect {
    frames: Vec<Vec<u8>>,
}

impl Observer for Collect {
    fn event(&mut self, e: Event) -> Result<(), PipelineError> {
        if let Event::Frame { index, frame } = e {
            assert_eq!(index, self.frames.len());
            self.frames.push(frame.rgb.clone());
        }
        Ok(())
    }
}

fn run(g: &Gpu, source: &ModelSource) -> (Vec<Vec<u8>>, Vec<f32>) {
    let mut models = Models::open(source, None, Offload::Never).unwrap_or_else(|e| panic!("{e}"));
    let req = Request {
        prompt: "a red kite over a beach".into(),
        negative_prompt: None,
        first_frame: None,
        voices: Vec::new(),
        size: Size { width: 32, height: 32 },
        length: Length::from_seconds(0.5).expect("length"),
        mode: Mode::AudioVideo,
        sample: SampleConfig { num_steps: 2, ..SampleConfig::default() },
        seed: 11,
        audio_rate: 16000,
    };
    let mut obs = Collect::default();
    let out = block_on(generate(g, &mut models, &req, &mut obs)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.frames, obs.frames.len());
    (obs.frames, out.audio.samples)
}

#[test]
fn generation_from_streamed_weights_equals_the_directory() {
    let g = gpu();
    let dir = tiny_dir();
    let w = stream(g, dir, &manifest_bytes(dir)).unwrap_or_else(|e| panic!("{e}"));
    let (frames, audio) = run(g, &ModelSource::Streamed(Arc::new(w)));
    let (want_frames, want_audio) = run(g, &ModelSource::Dir(dir.to_path_buf()));
    assert!(!frames.is_empty() && frames.iter().any(|f| f.iter().any(|&v| v != f[0])), "constant frames");
    assert_eq!(frames.len(), want_frames.len());
    for (i, (a, b)) in frames.iter().zip(&want_frames).enumerate() {
        assert!(a == b, "frame {i} differs");
    }
    assert!(!audio.is_empty() && audio == want_audio, "the audio differs");
}

#[test]
fn bad_streams_are_named() {
    let g = gpu();
    let dir = tiny_dir();
    let manifest = Manifest::read(dir).expect("manifest");
    let model = manifest.model("nava-dit").expect("dit");
    let file = &model.shards[0].file;
    let bytes = std::fs::read(dir.join(file)).expect("shard");
    let fresh = || StreamedWeights::new(dir, &manifest_bytes(dir)).expect("manifest");

    // Cut off: one byte short.
    let mut w = fresh();
    let e = feed(g, &mut w, "nava-dit", file, &bytes[..bytes.len() - 1]).unwrap_err();
    assert!(e.contains(file) && e.contains(&format!("received {} bytes", bytes.len() - 1)), "{e}");
    // Longer than written.
    let longer = [&bytes[..], &[0u8]].concat();
    let e = feed(g, &mut fresh(), "nava-dit", file, &longer).unwrap_err();
    assert!(e.contains(file) && e.contains("longer than written"), "{e}");

    // The manifest lists an array the shard lacks, or another dtype for one it has.
    let text = String::from_utf8(manifest_bytes(dir)).expect("UTF-8");
    let key = &model.shards[0].tensors[0];
    let renamed = text.replace(&format!("\"{key}\""), &format!("\"{key}.renamed\""));
    let e = stream(g, dir, renamed.as_bytes()).unwrap_err();
    assert!(e.contains(&format!("`{key}.renamed` that manifest.json lists is not in the shard")), "{e}");
    // A plainly stored array whose manifest entry says F16: the shard's header says F32.
    let plain = model.tensors.iter().find(|t| t.packed_format().is_none()).expect("a plain tensor");
    let mut m: serde_json::Value = serde_json::from_str(&text).expect("json");
    let tensors = m["models"]
        .as_array_mut()
        .expect("models")
        .iter_mut()
        .flat_map(|m| m["tensors"].as_array_mut().expect("tensors").iter_mut());
    for t in tensors.filter(|t| t["name"] == plain.name.as_str()) {
        t["stored"] = serde_json::json!({ "dtype": "F16" });
        t["bytes"] = serde_json::json!(plain.bytes / 2);
    }
    let e = stream(g, dir, m.to_string().as_bytes()).unwrap_err();
    assert!(e.contains(&format!("`{}` is F32", plain.parts[0].key)) && e.contains("manifest.json expects F16"), "{e}");

    // A shard that never arrived.
    let w = fresh();
    let e = w.check_complete().unwrap_err().to_string();
    assert!(e.contains("missing") && e.contains(&manifest.models[0].shards[0].file), "{e}");
    let e = block_on(w.source(g, "nava-dit", &[])).err().expect("refused").to_string();
    assert!(e.contains("missing"), "{e}");
}
