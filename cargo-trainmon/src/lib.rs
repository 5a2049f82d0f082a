//! **Sets a crate up for trainmon: libtorch found or installed once per machine, then plain
//! `cargo run`, `cargo test`, `cargo bench`.**
//!
//! The `cargo-trainmon` binary (`cargo install --path cargo-trainmon`, then `cargo trainmon …`):
//!
//! ```text
//! cargo trainmon setup        in your crate: libtorch, and .cargo/config.toml merged
//! cargo trainmon new NAME     a new project: a training binary and a crate of hooks, set up
//! cargo trainmon env          shell exports to run a binary built elsewhere (LD_LIBRARY_PATH)
//! cargo trainmon watch DIR    a live dashboard of a training run, from the files it writes
//! ```
//!
//! The same commands come as a plain `trainmon` binary too (`trainmon watch DIR`).
//!
//! The library is what the binary and trainmon's own `cargo xtask` share: [`libtorch`] finds
//! or bootstraps libtorch 2.11.0, [`config`] merges a crate's `.cargo/config.toml`,
//! [`scaffold`] writes a new project, [`watch`] draws the dashboard, [`cli`] is the binaries'
//! command line. It does not depend on tch: it runs before libtorch exists, and `watch` only
//! reads files.

pub mod cli;
pub mod config;
pub mod libtorch;
pub mod scaffold;
pub mod tools;
pub mod watch;

use anyhow::{bail, Context, Result};
use libtorch::{Libtorch, Search};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `setup` did, for its report.
#[derive(Debug)]
pub struct Setup {
    /// The config file.
    pub config: PathBuf,
    /// The libtorch it points at.
    pub libtorch: Libtorch,
    /// One line per change; empty when the file already had everything.
    pub changes: Vec<String>,
}

/// Sets up the crate or workspace that `dir` is in: checks that its `.cargo/config.toml` can be
/// written, finds libtorch (or installs it into the cache), then merges the file.
pub fn setup(dir: &Path) -> Result<Setup> {
    let root = workspace_root(dir)?;
    let file = config::path(&root);
    config::check_writable(&file)?;
    let existing = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", file.display())),
    };
    // Refuse a file that cannot be merged before the long part.
    config::check(&existing).with_context(|| format!("{}: nothing was changed", file.display()))?;
    let libtorch = Libtorch::locate(&Search::default())?;
    let mut wanted = config::Wanted::from(&libtorch);
    // Distributed training's headers; without them trainmon builds without it.
    match tools::gloo_headers() {
        Ok(include) => wanted.gloo = Some(include),
        Err(err) => eprintln!("trainmon: warning: no gloo headers, so no distributed training: {err:#}"),
    }
    let (text, changes) =
        config::merge(&existing, &wanted).with_context(|| format!("{}: nothing was changed", file.display()))?;
    if !changes.is_empty() {
        config::write(&file, &text)?;
    }
    Ok(Setup {
        config: file,
        libtorch,
        changes,
    })
}

/// The root of the workspace (or lone crate) that `dir` is in, as cargo finds it.
pub fn workspace_root(dir: &Path) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .current_dir(dir)
        .output()
        .context("could not run `cargo locate-project`")?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        if why.contains("could not find `Cargo.toml`") {
            bail!(
                "no Cargo.toml in {} or any directory above it: run `cargo trainmon setup` inside your crate, \
                 or start one with `cargo trainmon new NAME`",
                dir.display()
            );
        }
        bail!("cargo could not read the crate in {}: {}", dir.display(), why.trim());
    }
    let manifest = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(manifest.parent().context("a manifest has a directory")?.to_owned())
}
