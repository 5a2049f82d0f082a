//! Python venvs in the bootstrap's cache directory ([`crate::libtorch::cache_dir`]), each
//! installed once per machine and marked complete ([`ensure_venv`]): the torch bootstrap's
//! ([`crate::libtorch`]), and one for each Python tool trainmon's tests run — not in the torch
//! venv, whose pins theirs could conflict with:
//!
//! - [`mlflow`]: MLflow's tracking server and client (`mlflow server`, `MlflowClient`), with
//!   which the tests of the `Mlflow` hook log to a real server and read back.

use crate::libtorch::{cache_dir, which_python};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The MLflow release the tests run: the newest that installs from the package index here
/// (3.18.0's `mlflow-skinny` was not published with it).
pub const MLFLOW_VERSION: &str = "3.17.2";

/// The name of the file that marks a venv as complete; it holds the requirements installed.
const MARKER: &str = ".trainmon-complete";

/// The `bin/` directory of a venv with `mlflow==`[`MLFLOW_VERSION`] (`mlflow`, `python`),
/// `<cache>/mlflow-<version>`, installed first if need be (about a minute, once).
pub fn mlflow() -> Result<PathBuf> {
    let venv = cache_dir()?.join(format!("mlflow-{MLFLOW_VERSION}"));
    let requirement = format!("mlflow=={MLFLOW_VERSION}");
    let install = Install {
        what: "MLflow",
        size: "about 850 MB; a minute or so",
        otherwise: "",
    };
    ensure_venv(&venv, &[requirement.as_str()], &install)?;
    Ok(venv.join("bin"))
}

/// How [`ensure_venv`] speaks of an install.
pub(crate) struct Install<'a> {
    /// What is installed, for messages: `libtorch`, `MLflow`.
    pub what: &'a str,
    /// How big and long the install is.
    pub size: &'a str,
    /// What else the user may do when no venv can be made (`, or …`).
    pub otherwise: &'a str,
}

/// Whether `venv` was finished with `requirements` (its marker says so, its Python is there).
fn complete(venv: &Path, requirements: &[&str]) -> bool {
    let marker = std::fs::read_to_string(venv.join(MARKER)).unwrap_or_default();
    marker.trim() == requirements.join(" ") && venv.join("bin/python").exists()
}

/// Makes `venv` a venv with `requirements` unless a previous run finished doing so (its marker
/// file holds the requirements). One finished with other requirements is brought up to date in
/// place (pip keeps what is already right: torch is not downloaded again); one half made (no
/// marker) starts over.
pub(crate) fn ensure_venv(venv: &Path, requirements: &[&str], install: &Install<'_>) -> Result<()> {
    if complete(venv, requirements) {
        return Ok(());
    }
    let wanted = requirements.join(" ");
    let what = install.what;
    if venv.join(MARKER).exists() && venv.join("bin/python").exists() {
        eprintln!("trainmon: {what} venv at {} updating to: {wanted}", venv.display());
        pip_install(venv, requirements)?;
        return std::fs::write(venv.join(MARKER), &wanted)
            .with_context(|| format!("could not write the marker of {}", venv.display()));
    }
    let python3 = which_python()?;
    if venv.exists() {
        std::fs::remove_dir_all(venv)
            .with_context(|| format!("could not remove the unfinished venv {}", venv.display()))?;
    }
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("could not create the cache directory {}", parent.display()))?;
    }
    eprintln!("trainmon: {what} [1/2] creating a Python venv at {}", venv.display());
    let status = Command::new(&python3)
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .with_context(|| format!("could not run {}", python3.display()))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(venv);
        bail!(
            "`{} -m venv {}` failed ({status}); on Debian/Ubuntu install the `python3-venv` package{}",
            python3.display(),
            venv.display(),
            install.otherwise
        );
    }
    eprintln!("trainmon: {what} [2/2] pip install {wanted} ({}, once)", install.size);
    if let Err(err) = pip_install(venv, requirements) {
        let _ = std::fs::remove_dir_all(venv);
        return Err(err.context("the unfinished venv was removed; the next run tries again"));
    }
    std::fs::write(venv.join(MARKER), &wanted)
        .with_context(|| format!("could not write the marker of {}", venv.display()))
}

fn pip_install(venv: &Path, requirements: &[&str]) -> Result<()> {
    let status = Command::new(venv.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .args(requirements)
        .status()
        .context("could not run pip in the venv")?;
    if !status.success() {
        bail!(
            "`pip install {}` failed ({status}); pip's message is above",
            requirements.join(" ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_venv_without_its_marker_is_not_complete() {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("v");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("bin/python"), "").unwrap();
        assert!(!complete(&venv, &["a==1"]), "no marker: half made");
        std::fs::write(venv.join(MARKER), "a==0").unwrap();
        assert!(!complete(&venv, &["a==1"]), "made for other requirements");
        std::fs::write(venv.join(MARKER), "a==1\n").unwrap();
        assert!(complete(&venv, &["a==1"]));
        std::fs::remove_file(venv.join("bin/python")).unwrap();
        assert!(!complete(&venv, &["a==1"]), "its Python is gone");
    }
}
