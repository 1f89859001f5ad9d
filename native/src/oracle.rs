//! `nava oracle DIR…`: runs reference test cases and prints max abs / max rel error per tensor. Exit status 0 only
//! when every compared tensor is within tolerance.

use std::path::{Path, PathBuf};

use nava::gpu::{Gpu, GpuOptions};
use nava::oracle::{case_dirs, run_case};

pub fn run(opts: &GpuOptions, dirs: &[PathBuf]) -> Result<(), Box<dyn std::error::Error>> {
    let mut cases = Vec::new();
    for d in dirs {
        if d.join("meta.json").is_file() {
            cases.push(d.clone());
        } else {
            let inner = case_dirs(d);
            if inner.is_empty() {
                return Err(format!(
                    "{}: no meta.json here or in its subfolders: not an oracle case folder",
                    d.display()
                )
                .into());
            }
            cases.extend(inner);
        }
    }
    let g = Gpu::new_blocking(opts)?;
    let mut failed = 0;
    for dir in &cases {
        failed += run_one(&g, dir);
    }
    if failed > 0 {
        return Err(format!("{failed} of {} cases failed or could not run", cases.len()).into());
    }
    println!("all {} cases within tolerance", cases.len());
    Ok(())
}

fn run_one(g: &Gpu, dir: &Path) -> usize {
    match run_case(g, dir) {
        Ok(report) => {
            println!("{} ({})", dir.display(), report.case);
            for c in &report.comparisons {
                println!(
                    "  {} {:<48} max abs {:>10.3e}  max rel {:>10.3e}  tolerance {:>9.2e}",
                    if c.passed() { "ok  " } else { "FAIL" },
                    c.name,
                    c.max_abs,
                    c.max_rel,
                    c.tolerance
                );
            }
            usize::from(!report.passed())
        }
        Err(e) => {
            println!("{e}");
            1
        }
    }
}
