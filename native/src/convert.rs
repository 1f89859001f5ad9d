//! `nava convert`: official checkpoint files → the runtime layout (a directory of `manifest.json` and
//! safetensors shards; see nava::weights::manifest), optionally quantising the GEMM weights. Shows a progress
//! bar, then the size before and after and the worst quantisation error.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use nava::model::KnownModel;
use nava::weights::{compare_keys, convert, ConvertOptions, ModelInput, Quant, TensorSource};

use crate::inspect::human;

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// Official files as MODEL=FILE, or MODEL:QUANT=FILE to give one model its own mode. MODEL is one of
    /// nava-dit, umt5, wan-vae, ltx-audio-vae, redimnet.
    #[arg(required_unless_present = "tiny", value_name = "MODEL[:QUANT]=FILE")]
    inputs: Vec<String>,
    /// The output directory. It is written under a hidden temporary name and appears only when complete.
    #[arg(short, long, value_name = "DIR")]
    out: PathBuf,
    /// How to store the large linear and conv weights: none (as the file has them), f32, f16 (bf16 weights keep
    /// their bits), q8, q4 (blocks of 32 with f16 scales) or fp8 (e4m3, per-channel scale). Norms, biases,
    /// modulation tables and embeddings keep their dtype; the official fp8 weights pass through as fp8.
    #[arg(long, default_value = "none", value_parser = ["none", "f32", "f16", "q8", "q4", "fp8"])]
    quant: String,
    /// Most data per shard, MiB (a tensor larger than that is split by rows across shards).
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    shard_mib: u64,
    /// Replace the output directory if it exists and is not empty.
    #[arg(long)]
    overwrite: bool,
    /// Convert even when a file's keys differ from the official full-size file of its model.
    #[arg(long)]
    no_check: bool,
    /// The umt5-xxl `tokenizer.json` (or `.json.gz`, google/umt5-xxl) to copy into the directory, so that
    /// `nava generate --weights DIR` finds everything in one place.
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// Write the built-in tiny model (seeded weights, every model, the tokenizer) instead of official files: a
    /// small converted directory for testing the paths that read one (the browser page's tests).
    #[arg(long, hide = true, conflicts_with_all = ["inputs", "tokenizer", "no_check"])]
    tiny: bool,
}

struct Input {
    model: KnownModel,
    quant: Quant,
    file: PathBuf,
}

fn parse_input(s: &str, default: Quant) -> Result<Input, String> {
    let (lhs, file) = s.split_once('=').ok_or_else(|| format!("`{s}`: expected MODEL=FILE or MODEL:QUANT=FILE"))?;
    let (name, quant) = match lhs.split_once(':') {
        Some((name, q)) => {
            (name, Quant::parse(q).ok_or_else(|| format!("`{s}`: unknown mode `{q}` (none, f32, f16, q8, q4, fp8)"))?)
        }
        None => (lhs, default),
    };
    let model = KnownModel::parse(name).ok_or_else(|| {
        let names: Vec<&str> = KnownModel::ALL.iter().map(|m| m.name()).collect();
        format!("`{s}`: unknown model `{name}` (one of {})", names.join(", "))
    })?;
    Ok(Input { model, quant, file: PathBuf::from(file) })
}

pub fn run(a: ConvertArgs) -> Result<(), Box<dyn std::error::Error>> {
    // A wrong tokenizer fails before minutes of converting.
    if let Some(t) = &a.tokenizer {
        nava::model::tokenizer::Tokenizer::from_file(t).map_err(|e| format!("--tokenizer {}: {e}", t.display()))?;
    }
    let default = Quant::parse(&a.quant).ok_or("unknown --quant")?;
    let opts = ConvertOptions { shard_limit_bytes: a.shard_mib.max(1) << 20, overwrite: a.overwrite };
    if a.tiny {
        let reports = nava::pipeline::generate::write_tiny(&a.out, default, &opts)?;
        let bytes: u64 = reports.iter().map(|r| r.bytes_out).sum();
        println!("wrote the tiny model to {} ({} in {} models)", a.out.display(), human(bytes), reports.len());
        return Ok(());
    }
    let inputs = a.inputs.iter().map(|s| parse_input(s, default)).collect::<Result<Vec<_>, _>>()?;
    let mut opened = Vec::with_capacity(inputs.len());
    for i in &inputs {
        let src = i.model.open(&i.file)?;
        if !a.no_check {
            let report = compare_keys(&src, &i.model.key_table());
            if !report.is_clean() {
                eprintln!("{} does not match the official {} file:", i.file.display(), i.model.name());
                for line in report.lines() {
                    eprintln!("  {line}");
                }
                return Err(format!("{} — or pass --no-check to convert it anyway", i.model.hint()).into());
            }
        }
        opened.push(src);
    }
    let models: Vec<ModelInput<'_>> = inputs
        .iter()
        .zip(&opened)
        .map(|(i, src)| ModelInput {
            name: i.model.name().to_string(),
            source_name: i.file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            source: src as &dyn TensorSource,
            config: i.model.config(),
            quant: i.quant,
        })
        .collect();

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}  {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let reports = convert(&a.out, &models, &opts, &mut |p| {
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_done);
        bar.set_message(p.tensor.to_string());
    });
    bar.finish_and_clear();
    let reports = reports?;

    if let Some(t) = &a.tokenizer {
        let name = if t.extension().is_some_and(|e| e == "gz") { "tokenizer.json.gz" } else { "tokenizer.json" };
        let mut f = nava::io::AtomicFile::create(a.out.join(name))?;
        std::io::Write::write_all(&mut f, &std::fs::read(t).map_err(|e| format!("{}: {e}", t.display()))?)?;
        f.commit()?;
    }
    println!("wrote {}", a.out.display());
    let (mut before, mut after) = (0u64, 0u64);
    for (r, i) in reports.iter().zip(&inputs) {
        before += r.bytes_in;
        after += r.bytes_out;
        println!(
            "  {:14} {:5}  {} -> {} ({:.0}%), {} tensors ({} packed), {} shards{}",
            r.name,
            i.quant.name(),
            human(r.bytes_in),
            human(r.bytes_out),
            100.0 * r.bytes_out as f64 / r.bytes_in.max(1) as f64,
            r.tensors,
            r.packed,
            r.shards,
            if r.split > 0 { format!(", {} arrays split across shards", r.split) } else { String::new() }
        );
        if let Some(w) = &r.worst {
            println!("      worst quantisation error {:.3e} ({}) in {}", w.rel_err, w.format.name(), w.tensor);
        }
    }
    println!("  total          {} -> {}", human(before), human(after));
    let worst = reports.iter().filter_map(|r| r.worst.as_ref()).max_by(|a, b| a.rel_err.total_cmp(&b.rel_err));
    if let Some(w) = worst {
        println!(
            "worst quantisation error: {:.3e} = max |Wq - W| / max |W| of {} ({})",
            w.rel_err,
            w.tensor,
            w.format.name()
        );
    }
    Ok(())
}
