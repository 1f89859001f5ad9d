//! What the CLI tests share: running the built `nava` binary.

use std::process::{Command, Output};

/// Runs `nava ARGS` (lavapipe's loader wants a runtime dir) and echoes its output into the test's log.
pub fn nava(args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nava"));
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let out = c.args(args).output().expect("run nava");
    eprintln!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}
