//! Finding libtorch 2.11.0, or installing it once per machine into a cache directory.
//!
//! In this order: `LIBTORCH` in the environment (a libtorch directory with `include/` and `lib/`,
//! or a pip-installed `torch` package directory), `LIBTORCH_USE_PYTORCH=1` (the `torch` of
//! `python3`, or `python` in a venv), a directory the caller names (the workspace's hand-placed
//! `.libtorch`), and otherwise the bootstrap: a Python venv in the cache directory
//! (`$TRAINMON_CACHE_DIR`, `$XDG_CACHE_HOME/trainmon` or `~/.cache/trainmon`) with
//! `torch==2.11.0` from the Python package index — made once, reused by every crate after.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The PyTorch release that `tch` 0.24.0 is built against.
pub const TORCH_VERSION: &str = "2.11.0";
/// What the bootstrap venv holds: torch for libtorch (and CUDA's headers that its CUDA wheels
/// lack), and TensorBoard's reader, safetensors and pandas, with which trainmon's tests read
/// back the event files, checkpoints and histories it writes.
pub const REQUIREMENTS: [&str; 6] = [
    "torch==2.11.0",
    "tensorboard==2.21.0",
    "safetensors==0.7.0",
    "pandas==3.1.1",
    // CUDA's headers that c10d's NCCL headers include and torch's CUDA wheels do not bring
    // (trainmon's data-parallel training on CUDA compiles against them).
    "nvidia-cuda-crt==13.0.88",
    "nvidia-cuda-cccl==13.0.85",
];

/// A libtorch found or installed.
#[derive(Debug, Clone)]
pub struct Libtorch {
    /// What `LIBTORCH` should be for torch-sys: the directory holding `include/` and `lib/`.
    pub dir: PathBuf,
    /// The directory holding `libtorch_cpu.so` and friends.
    pub lib: PathBuf,
    /// Where it came from, for messages.
    pub source: &'static str,
    /// The Python of the venv it lives in, when there is one (TensorBoard's reader is there).
    pub python: Option<PathBuf>,
}

/// How to look: what the caller knows beyond the environment.
#[derive(Debug, Default)]
pub struct Search<'a> {
    /// A value of `LIBTORCH` that is the caller's own, not the user's (the workspace's
    /// `.cargo/config.toml` sets one for every process cargo starts): it is not taken as given.
    pub own_var: Option<&'a Path>,
    /// A directory to use, when it is a real directory (not a link), before bootstrapping.
    pub hand_placed: Option<&'a Path>,
}

impl Libtorch {
    /// Finds libtorch 2.11.0, installing it into the cache if nothing else provides it.
    pub fn locate(search: &Search<'_>) -> Result<Self> {
        if let Some(dir) = non_empty_var("LIBTORCH").filter(|dir| Some(dir.as_path()) != search.own_var) {
            return Self::at(dir, "LIBTORCH", None);
        }
        if non_empty_var("LIBTORCH_USE_PYTORCH").is_some() {
            let python = if std::env::var_os("VIRTUAL_ENV").is_some() {
                "python"
            } else {
                "python3"
            };
            let dir = torch_package_dir(Path::new(python))?;
            return Self::at(dir, "LIBTORCH_USE_PYTORCH", Some(python.into()));
        }
        if let Some(dir) = search.hand_placed {
            let is_symlink = dir.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink());
            if dir.is_dir() && !is_symlink {
                return Self::at(dir.to_owned(), "a .libtorch directory in the workspace", None);
            }
        }
        let venv = cache_dir()?.join(format!("torch-{TORCH_VERSION}"));
        crate::tools::ensure_venv(
            &venv,
            &REQUIREMENTS,
            &crate::tools::Install {
                what: "libtorch",
                size: "about 4.6 GB with torch's CUDA libraries; a few minutes",
                otherwise: &format!(", or point LIBTORCH at a libtorch {TORCH_VERSION}"),
            },
        )?;
        let python = venv.join("bin/python");
        let dir = torch_package_dir(&python)?;
        Self::at(dir, "the trainmon cache", Some(python))
    }

    /// The libtorch in `dir`, checked: its libraries are there and it is version 2.11.0.
    /// With `from` = `"LIBTORCH"`, a set `LIBTORCH_LIB` holds the `lib/` directory instead (as for
    /// torch-sys).
    pub fn at(dir: PathBuf, from: &'static str, python: Option<PathBuf>) -> Result<Self> {
        let lib = match non_empty_var("LIBTORCH_LIB") {
            Some(lib) if from == "LIBTORCH" => lib.join("lib"),
            _ => dir.join("lib"),
        };
        if !(lib.join("libtorch_cpu.so").exists() || lib.join("libtorch_cpu.dylib").exists()) {
            bail!(
                "{from}: no libtorch_cpu in {} (expected a libtorch {TORCH_VERSION} directory)",
                lib.display()
            );
        }
        match version(&dir) {
            Some(found) if found.split('+').next() == Some(TORCH_VERSION) => {}
            Some(found) => bail!(
                "{from}: {} is libtorch {found}, but trainmon's tch 0.24.0 needs libtorch {TORCH_VERSION} exactly: \
                 point it at a libtorch {TORCH_VERSION}, or unset it to use (or install) the one in the trainmon cache",
                dir.display()
            ),
            None => bail!(
                "{from}: cannot tell which libtorch {} is (it has neither `build-version` nor `version.py`); \
                 trainmon's tch 0.24.0 needs libtorch {TORCH_VERSION}",
                dir.display()
            ),
        }
        Ok(Self {
            dir,
            lib,
            source: from,
            python,
        })
    }

    /// Whether this libtorch has CUDA (then binaries must load `libtorch_cuda`).
    pub fn has_cuda(&self) -> bool {
        self.lib.join("libtorch_cuda.so").exists()
    }

    /// `LD_LIBRARY_PATH` with libtorch's directory first.
    pub fn library_path(&self) -> Result<OsString> {
        let mut paths = vec![self.lib.clone()];
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
            paths.extend(std::env::split_paths(&old));
        }
        std::env::join_paths(paths).context("LD_LIBRARY_PATH holds a path with a ':' in it")
    }
}

/// The version a libtorch directory says it is: `build-version` (libtorch's archives) or
/// `version.py` (a pip-installed `torch` package).
pub fn version(dir: &Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(dir.join("build-version")) {
        return Some(text.trim().to_owned());
    }
    let text = std::fs::read_to_string(dir.join("version.py")).ok()?;
    text.lines().find_map(|line| {
        let value = line.strip_prefix("__version__")?.trim_start().strip_prefix('=')?.trim();
        Some(value.trim_matches(|c| c == '\'' || c == '"').to_owned())
    })
}

/// The cache directory of the bootstrap: `$TRAINMON_CACHE_DIR`, `$XDG_CACHE_HOME/trainmon`, or
/// `~/.cache/trainmon` — outside any `target/`, so that `cargo clean` keeps it.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = non_empty_var("TRAINMON_CACHE_DIR") {
        Ok(dir)
    } else if let Some(dir) = non_empty_var("XDG_CACHE_HOME") {
        Ok(dir.join("trainmon"))
    } else if let Some(home) = non_empty_var("HOME") {
        Ok(home.join(".cache").join("trainmon"))
    } else {
        bail!("no cache directory: set TRAINMON_CACHE_DIR (or HOME) so the bootstrap knows where to install torch")
    }
}

/// A Python 3.9 or newer with `venv` and `pip` on `PATH` (`python3`, else `python`): the one
/// the bootstrap makes its venvs with ([`crate::tools`]' too).
pub(crate) fn which_python() -> Result<PathBuf> {
    for name in ["python3", "python"] {
        let ok = Command::new(name)
            .args(["-c", "import sys, venv, ensurepip; assert sys.version_info >= (3, 9)"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Ok(PathBuf::from(name));
        }
    }
    bail!(
        "no python3 (3.9 or newer, with venv and pip) on PATH: the bootstrap needs it to install \
         torch=={TORCH_VERSION}. Install Python, or point LIBTORCH at a libtorch {TORCH_VERSION} directory"
    )
}

/// The `torch` package directory of a Python, found without importing torch (which is slow).
fn torch_package_dir(python: &Path) -> Result<PathBuf> {
    let out = Command::new(python)
        .args([
            "-c",
            "import importlib.util as u; s = u.find_spec('torch'); print(s.submodule_search_locations[0] if s else '')",
        ])
        .output()
        .with_context(|| format!("could not run {}", python.display()))?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || dir.is_empty() {
        bail!(
            "{} has no `torch` package (pip install torch=={TORCH_VERSION})",
            python.display()
        );
    }
    Ok(PathBuf::from(dir))
}

/// An environment variable's value as a path, when it is set and not empty.
pub fn non_empty_var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_both_layouts() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(version(dir.path()), None);
        std::fs::write(
            dir.path().join("version.py"),
            "from typing import Optional\n__version__ = '2.11.0+cu130'\ndebug = False\n",
        )
        .unwrap();
        assert_eq!(version(dir.path()).as_deref(), Some("2.11.0+cu130"));
        std::fs::write(dir.path().join("build-version"), "2.10.1+cpu\n").unwrap();
        assert_eq!(
            version(dir.path()).as_deref(),
            Some("2.10.1+cpu"),
            "build-version first"
        );
    }
}
