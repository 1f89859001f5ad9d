//! Parity with the reference: every oracle case under `NAVA_ORACLES` (default `tests/oracles`) whose kind is
//! implemented must pass `nava oracle`'s comparison; kinds not built yet are listed and skipped.

use std::path::PathBuf;

use nava::gpu::{Gpu, GpuOptions};
use nava::oracle::{case_dirs, run_case, OracleError};

fn oracle_root() -> PathBuf {
    nava::oracle::root(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracles"))
}

#[test]
fn every_implemented_oracle_case_passes() {
    let root = oracle_root();
    let dirs = case_dirs(&root);
    assert!(!dirs.is_empty(), "no oracle cases under {}", root.display());
    let g = Gpu::new_blocking(&GpuOptions::from_env()).expect("parity tests need a GPU adapter");
    let mut ran = 0;
    let mut failures = Vec::new();
    for dir in &dirs {
        match run_case(&g, dir) {
            Ok(report) => {
                ran += 1;
                for c in &report.comparisons {
                    let mark = if c.passed() { "ok  " } else { "FAIL" };
                    println!(
                        "{mark} {}: {}  max abs {:.3e} (tolerance {:.3e}), max rel {:.3e}",
                        report.case, c.name, c.max_abs, c.tolerance, c.max_rel
                    );
                    if !c.passed() {
                        failures.push(format!(
                            "{}: {} worst at {}: got {} want {} (|err| {:.3e} > {:.3e})",
                            dir.display(),
                            c.name,
                            c.worst_index,
                            c.got,
                            c.want,
                            c.max_abs,
                            c.tolerance
                        ));
                    }
                }
                if report.comparisons.is_empty() {
                    failures.push(format!("{}: nothing was compared", dir.display()));
                }
            }
            Err(OracleError::NotImplemented { kind, .. }) => {
                println!("skipped {}: `{kind}` not implemented yet", dir.display())
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(ran > 0, "no implemented case kind under {}", root.display());
    assert!(failures.is_empty(), "{} comparisons failed:\n{}", failures.len(), failures.join("\n"));
}
