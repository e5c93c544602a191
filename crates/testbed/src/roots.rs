//! Debian roots built with debootstrap, cached under target/reach/ so a
//! later run reuses them (about a minute each to build).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::paths::ROOT;
use crate::process::output_text;

/// target/reach/NAME: `debootstrap --variant=minbase [--include=…] SUITE`.
pub fn debian_root(name: &str, suite: &str, include: &[&str]) -> PathBuf {
    let root = Path::new(ROOT).join("target/reach").join(name);
    if root.join(".complete").exists() {
        return root;
    }
    let partial = root.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(root.parent().unwrap()).unwrap();
    let mut cmd = Command::new("debootstrap");
    cmd.arg("--variant=minbase");
    if !include.is_empty() {
        cmd.arg(format!("--include={}", include.join(",")));
    }
    let start = Instant::now();
    let out = cmd.arg(suite).arg(&partial).output().expect("debootstrap (make test installs it)");
    assert!(out.status.success(), "debootstrap {suite} failed: {}", output_text(&out));
    eprintln!("debootstrap {suite} ({name}): {:.1}s", start.elapsed().as_secs_f64());
    std::fs::write(partial.join(".complete"), "").unwrap();
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&partial, &root).unwrap();
    root
}
