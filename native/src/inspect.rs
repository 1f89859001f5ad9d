//! `nava inspect`: what a checkpoint file (or a directory written by `nava convert`) holds — every tensor with
//! its dtype, shape and bytes, then totals — and, with `--expect MODEL`, every key that differs from the
//! official full-size file of that model.

use std::path::{Path, PathBuf};

use clap::builder::PossibleValuesParser;
use nava::model::KnownModel;
use nava::weights::{compare_keys, Checkpoint, Manifest, ManifestSource, TensorSource};

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Checkpoint files (.safetensors, .pth, .pt) or directories written by `nava convert`.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Check each file against the full-size key table of this model and list every missing, unexpected or
    /// mis-shaped key (for a converted directory: its model of that name).
    #[arg(long, value_name = "MODEL", value_parser = model_names())]
    expect: Option<String>,
    /// Print only the totals (and the check), not every tensor.
    #[arg(long)]
    summary: bool,
}

pub fn model_names() -> PossibleValuesParser {
    PossibleValuesParser::new(KnownModel::ALL.map(KnownModel::name))
}

pub fn run(a: InspectArgs) -> Result<(), Box<dyn std::error::Error>> {
    let expect = a.expect.as_deref().and_then(KnownModel::parse);
    let table = expect.map(KnownModel::key_table);
    let mut failed = Vec::new();
    for path in &a.files {
        let sources = open(path, expect)?;
        for (title, opened) in &sources {
            println!("== {title}");
            list(opened, a.summary);
            if let (Some(model), Some(table)) = (expect, &table) {
                let report = compare_keys(opened.source(), table);
                if report.is_clean() {
                    println!("matches {} ({} keys, shapes as expected)", model.name(), table.len());
                } else {
                    println!(
                        "does NOT match {}: {} missing, {} unexpected, {} mis-shaped",
                        model.name(),
                        report.missing.len(),
                        report.unexpected.len(),
                        report.misshaped.len()
                    );
                    for line in report.lines() {
                        println!("  {line}");
                    }
                    println!("  ({})", model.hint());
                    failed.push(title.clone());
                }
            }
            println!();
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of the inputs do not match the expected model: {}", failed.len(), failed.join(", ")).into())
    }
}

/// A checkpoint file, or one model of a converted directory (listed with its stored formats).
enum Opened {
    File(Checkpoint),
    Converted(ManifestSource),
}

impl Opened {
    fn source(&self) -> &dyn TensorSource {
        match self {
            Self::File(c) => c,
            Self::Converted(m) => m,
        }
    }
}

/// The sources to list: the file, or each model of a converted directory (only `expect`'s, if given).
fn open(path: &Path, expect: Option<KnownModel>) -> Result<Vec<(String, Opened)>, Box<dyn std::error::Error>> {
    if path.is_dir() {
        let manifest = Manifest::read(path)?;
        let mut out = Vec::new();
        for m in &manifest.models {
            if expect.is_some_and(|e| e.name() != m.name) {
                continue;
            }
            let title = format!("{} — model {} ({}, from {})", path.display(), m.name, m.quant, m.source);
            out.push((title, Opened::Converted(ManifestSource::open(path, &m.name)?)));
        }
        if out.is_empty() {
            let names: Vec<&str> = manifest.models.iter().map(|m| m.name.as_str()).collect();
            return Err(format!(
                "{}: no model {:?} here (it holds {names:?})",
                path.display(),
                expect.map(KnownModel::name)
            )
            .into());
        }
        return Ok(out);
    }
    let c = match expect {
        Some(m) => m.open(path)?,
        None => Checkpoint::open(path)?,
    };
    let kind = match c {
        Checkpoint::Safetensors(_) => "safetensors",
        Checkpoint::Pth(_) => "torch.save archive",
    };
    Ok(vec![(format!("{} ({kind})", path.display()), Opened::File(c))])
}

fn list(opened: &Opened, summary: bool) {
    let src = opened.source();
    let manifest = match opened {
        Opened::Converted(m) => Some(m),
        Opened::File(_) => None,
    };
    let (mut bytes, mut params) = (0u64, 0u64);
    let width = src.tensors().iter().map(|t| t.name.len()).max().unwrap_or(0);
    for t in src.tensors() {
        let (stored, len) = match manifest.and_then(|m| m.entry(&t.name)) {
            Some(e) => match e.packed_format() {
                Some(f) => (format!("{} packed", f.name()), e.bytes),
                None => (t.dtype.to_string(), e.bytes),
            },
            None => (t.dtype.to_string(), t.len_bytes() as u64),
        };
        bytes += len;
        params += t.numel() as u64;
        if !summary {
            let shape = format!("{:?}", t.shape);
            println!("  {:width$}  {stored:9}  {shape:22}  {}", t.name, human(len));
        }
    }
    println!("{} tensors, {}, {} params", src.tensors().len(), human(bytes), count(params));
    if let Some(m) = manifest {
        let worst = m
            .model()
            .tensors
            .iter()
            .filter_map(|t| t.max_rel_err.map(|e| (e, &t.name)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((e, name)) = worst {
            println!("worst quantisation error: {e:.3e} (max |Wq - W| / max |W|) in {name}");
        }
    }
}

/// Bytes with a binary unit.
pub fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// A count with an SI suffix (6.297 B params).
fn count(n: u64) -> String {
    match n {
        0..1_000_000 => n.to_string(),
        1_000_000..1_000_000_000 => format!("{:.3} M", n as f64 / 1e6),
        _ => format!("{:.3} B", n as f64 / 1e9),
    }
}
