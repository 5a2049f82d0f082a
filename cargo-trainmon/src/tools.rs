//! Python venvs in the bootstrap's cache directory ([`crate::libtorch::cache_dir`]), each
//! installed once per machine and marked complete ([`ensure_venv`]): the torch bootstrap's
//! ([`crate::libtorch`]), and one for each Python tool trainmon's tests run — not in the torch
//! venv, whose pins theirs could conflict with:
//!
//! - [`mlflow`]: MLflow's tracking server and client (`mlflow server`, `MlflowClient`), with
//!   which the tests of the `Mlflow` hook log to a real server and read back.
//!
//! And [`gloo_headers`]: the headers trainmon's c10d shim compiles against, which the torch
//! wheel lacks (Debian's `libgloo-dev`, unpacked into the cache).

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

/// A directory holding gloo's headers (`gloo/algorithm.h`), for trainmon's c10d shim
/// (distributed training): the system's (`/usr/include`, Debian's or Ubuntu's `libgloo-dev`
/// installed), else Debian's `libgloo-dev` package fetched with `apt-get download` and unpacked
/// with `dpkg -x` into `<cache>/gloo`, once (headers only: gloo's code is inside libtorch).
/// An error says what is missing where there is no `apt-get`.
pub fn gloo_headers() -> Result<PathBuf> {
    let system = Path::new("/usr/include");
    if system.join("gloo/algorithm.h").exists() {
        return Ok(system.to_owned());
    }
    let dir = cache_dir()?.join("gloo");
    let include = dir.join("usr/include");
    if dir.join(MARKER).exists() && include.join("gloo/algorithm.h").exists() {
        return Ok(include);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("could not remove the unfinished {}", dir.display()))?;
    }
    let download = dir.join("download");
    std::fs::create_dir_all(&download).with_context(|| format!("could not create {}", download.display()))?;
    eprintln!("trainmon: gloo's headers (for distributed training): apt-get download libgloo-dev, once");
    let run = |program: &str, args: &[&std::ffi::OsStr], cwd: &Path| -> Result<()> {
        let out = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .output()
            .with_context(|| format!("could not run `{program}` (gloo's headers come from Debian's libgloo-dev)"))?;
        if !out.status.success() {
            bail!(
                "`{program}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    let fetch = || run("apt-get", &["download".as_ref(), "libgloo-dev".as_ref()], &download);
    if let Err(first) = fetch() {
        // A machine whose package lists were never fetched: fetch them (as root), then again.
        let updated = Command::new("apt-get").args(["update", "-qq"]).status();
        if !updated.is_ok_and(|s| s.success()) {
            return Err(first);
        }
        fetch()?;
    }
    let deb = std::fs::read_dir(&download)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    run("dpkg", &["-x".as_ref(), deb.as_os_str(), dir.as_os_str()], &dir)?;
    if !include.join("gloo/algorithm.h").exists() {
        bail!("{} holds no gloo/algorithm.h", deb.display());
    }
    let _ = std::fs::remove_dir_all(&download);
    std::fs::write(
        dir.join(MARKER),
        deb.file_name().unwrap_or_default().to_string_lossy().as_bytes(),
    )
    .with_context(|| format!("could not write the marker of {}", dir.display()))?;
    Ok(include)
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
