//! `cargo xtask`: the project's task runner.
//!
//! ```text
//! cargo xtask run  [cargo run args]    bootstrap libtorch, then `cargo run …`
//! cargo xtask test [cargo test args]   bootstrap libtorch, then `cargo test --workspace …`
//! cargo xtask bench [--rounds N] [--workloads seed,tiny,mlp]
//!                                      the training-loop benchmark against a hand-written loop
//! cargo xtask bootstrap                only make sure libtorch is there
//! cargo xtask env                      print the shell exports for running binaries by hand
//! ```
//!
//! libtorch comes from, in this order: `LIBTORCH` in the environment (a libtorch directory or a
//! pip-installed `torch` package directory), `LIBTORCH_USE_PYTORCH=1` (the `torch` of `python3`),
//! a `.libtorch` directory placed in the workspace root by hand, or the bootstrap: a Python venv
//! in the cache directory with `torch==2.11.0` from the Python package index, linked as `.libtorch`.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The PyTorch release that `tch` 0.24.0 is built against.
const TORCH_VERSION: &str = "2.11.0";
/// What the bootstrap venv holds: torch for libtorch, and TensorBoard's reader, which the
/// tests use to read back the event files trainmon writes.
const REQUIREMENTS: [&str; 2] = ["torch==2.11.0", "tensorboard==2.21.0"];
/// The workspace-relative link that `.cargo/config.toml` points `LIBTORCH` at.
const LINK_NAME: &str = ".libtorch";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    let task = args.next().map(|a| a.to_string_lossy().into_owned());
    let rest: Vec<OsString> = args.collect();
    match task.as_deref() {
        Some("run") => cargo(&["run"], rest),
        Some("test") => cargo(&["test", "--workspace"], rest),
        Some("bench") => {
            let mut args: Vec<OsString> = vec!["--".into()];
            args.extend(rest);
            cargo(&["bench", "--package", "trainmon", "--bench", "training_loop"], args)
        }
        Some("bootstrap") => {
            let torch = Libtorch::locate()?;
            println!(
                "xtask: libtorch {TORCH_VERSION}: {} ({})",
                torch.lib.display(),
                torch.source
            );
            Ok(ExitCode::SUCCESS)
        }
        Some("env") => {
            let torch = Libtorch::locate()?;
            println!("export LD_LIBRARY_PATH={}", shell_quote(&torch.library_path()?));
            if let Some(python) = &torch.python {
                println!("export TRAINMON_PYTHON={}", shell_quote(python.as_os_str()));
            }
            Ok(ExitCode::SUCCESS)
        }
        Some("help" | "-h" | "--help") | None => {
            println!("{}", USAGE.trim());
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => bail!("unknown task `{other}`\n\n{}", USAGE.trim()),
    }
}

const USAGE: &str = "
usage: cargo xtask <task> [args…]

  run  [args]   bootstrap libtorch, then `cargo run [args]`
  test [args]   bootstrap libtorch, then `cargo test --workspace [args]`
  bench [--rounds N] [--workloads seed,tiny,mlp]
                the training-loop benchmark: trainmon against a hand-written tch loop
                (and PyTorch's plain loop, with the bootstrap's Python)
  bootstrap     only make sure libtorch is installed and linked
  env           print shell exports (LD_LIBRARY_PATH) to run built binaries by hand
";

/// Runs cargo with the library path set, passing its exit code through.
fn cargo(sub: &[&str], rest: Vec<OsString>) -> Result<ExitCode> {
    let torch = Libtorch::locate()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args(sub).args(rest);
    cmd.env("LD_LIBRARY_PATH", torch.library_path()?);
    if let Some(python) = &torch.python {
        cmd.env("TRAINMON_PYTHON", python);
    }
    let status = cmd.status().context("could not start cargo")?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

struct Libtorch {
    /// The directory holding `libtorch_cpu.so` and friends.
    lib: PathBuf,
    /// Where it came from, for the progress line.
    source: &'static str,
    /// The Python of the bootstrap venv, when there is one (benchmarks and readers use it).
    python: Option<PathBuf>,
}

impl Libtorch {
    fn locate() -> Result<Self> {
        let link = workspace_root().join(LINK_NAME);
        // `.cargo/config.toml` sets LIBTORCH to the link for every process cargo starts, this
        // one included: only another value is the user's own.
        if let Some(dir) = non_empty_var("LIBTORCH").filter(|dir| *dir != link) {
            let lib = non_empty_var("LIBTORCH_LIB").unwrap_or_else(|| dir.clone()).join("lib");
            check_lib_dir(&lib, "LIBTORCH")?;
            return Ok(Self {
                lib,
                source: "LIBTORCH from the environment",
                python: None,
            });
        }
        if non_empty_var("LIBTORCH_USE_PYTORCH").is_some() {
            let python = if std::env::var_os("VIRTUAL_ENV").is_some() {
                "python"
            } else {
                "python3"
            };
            let dir = torch_package_dir(Path::new(python))?;
            let lib = dir.join("lib");
            check_lib_dir(&lib, "LIBTORCH_USE_PYTORCH")?;
            return Ok(Self {
                lib,
                source: "LIBTORCH_USE_PYTORCH",
                python: Some(python.into()),
            });
        }
        let is_symlink = link
            .symlink_metadata()
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if link.is_dir() && !is_symlink {
            let lib = link.join("lib");
            check_lib_dir(&lib, LINK_NAME)?;
            return Ok(Self {
                lib,
                source: "a .libtorch directory in the workspace",
                python: None,
            });
        }
        let venv = Bootstrap::new()?.ensure()?;
        let python = venv.join("bin/python");
        let dir = torch_package_dir(&python)?;
        check_lib_dir(&dir.join("lib"), "the bootstrap venv")?;
        link_to(&dir, &link)?;
        Ok(Self {
            lib: link.join("lib"),
            source: "bootstrap",
            python: Some(python),
        })
    }

    /// `LD_LIBRARY_PATH` with libtorch's directory first.
    fn library_path(&self) -> Result<OsString> {
        let mut paths = vec![self.lib.clone()];
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
            paths.extend(std::env::split_paths(&old));
        }
        std::env::join_paths(paths).context("LD_LIBRARY_PATH holds a path with a ':' in it")
    }
}

/// The venv in the cache directory, outside `target/` so that `cargo clean` keeps it.
struct Bootstrap {
    venv: PathBuf,
}

impl Bootstrap {
    fn new() -> Result<Self> {
        let cache = if let Some(dir) = non_empty_var("TRAINMON_CACHE_DIR") {
            dir
        } else if let Some(dir) = non_empty_var("XDG_CACHE_HOME") {
            dir.join("trainmon")
        } else if let Some(home) = non_empty_var("HOME") {
            home.join(".cache").join("trainmon")
        } else {
            bail!("no cache directory: set TRAINMON_CACHE_DIR (or HOME) so the bootstrap knows where to install torch");
        };
        Ok(Self {
            venv: cache.join(format!("torch-{TORCH_VERSION}")),
        })
    }

    fn marker(&self) -> PathBuf {
        self.venv.join(".trainmon-complete")
    }

    /// Installs the requirements into the venv unless a previous run finished doing so; a venv
    /// made for other requirements is brought up to date. Returns the venv.
    fn ensure(self) -> Result<PathBuf> {
        let wanted = REQUIREMENTS.join(" ");
        if let Ok(installed) = std::fs::read_to_string(self.marker()) {
            if installed.trim() == wanted {
                return Ok(self.venv);
            }
            eprintln!("xtask: libtorch venv at {} updating to: {wanted}", self.venv.display());
            self.pip_install()?;
            std::fs::write(self.marker(), &wanted).context("could not write the bootstrap marker")?;
            return Ok(self.venv);
        }
        let python3 = which_python()?;
        if self.venv.exists() {
            // An earlier install stopped half way: start over.
            std::fs::remove_dir_all(&self.venv)
                .with_context(|| format!("could not remove the unfinished venv {}", self.venv.display()))?;
        }
        if let Some(parent) = self.venv.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("could not create the cache directory {}", parent.display()))?;
        }
        eprintln!(
            "xtask: libtorch [1/3] creating a Python venv at {}",
            self.venv.display()
        );
        let status = Command::new(&python3)
            .args(["-m", "venv"])
            .arg(&self.venv)
            .status()
            .with_context(|| format!("could not run {}", python3.display()))?;
        if !status.success() {
            bail!(
                "`{} -m venv` failed ({status}); on Debian/Ubuntu install the `python3-venv` package, \
                 or point LIBTORCH at a libtorch {TORCH_VERSION}",
                python3.display()
            );
        }
        eprintln!(
            "xtask: libtorch [2/3] pip install {wanted} (about 4.6 GB with torch's CUDA libraries; a few minutes)"
        );
        if let Err(err) = self.pip_install() {
            let _ = std::fs::remove_dir_all(&self.venv);
            return Err(err.context("the unfinished venv was removed; the next `cargo xtask` tries again"));
        }
        std::fs::write(self.marker(), &wanted).context("could not write the bootstrap marker")?;
        eprintln!("xtask: libtorch [3/3] linking {LINK_NAME} to it");
        Ok(self.venv)
    }

    fn pip_install(&self) -> Result<()> {
        let status = Command::new(self.venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .args(REQUIREMENTS)
            .status()
            .context("could not run pip in the venv")?;
        if !status.success() {
            bail!(
                "`pip install {}` failed ({status}); pip's message is above",
                REQUIREMENTS.join(" ")
            );
        }
        Ok(())
    }
}

fn which_python() -> Result<PathBuf> {
    for name in ["python3", "python"] {
        let ok = Command::new(name)
            .args(["-c", "import sys, venv; assert sys.version_info >= (3, 9)"])
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

fn check_lib_dir(lib: &Path, from: &str) -> Result<()> {
    if lib.join("libtorch_cpu.so").exists() || lib.join("libtorch_cpu.dylib").exists() {
        Ok(())
    } else {
        bail!(
            "{from}: no libtorch_cpu in {} (expected a libtorch {TORCH_VERSION} directory)",
            lib.display()
        )
    }
}

/// Makes `link` a symbolic link to `target`, replacing a stale one.
fn link_to(target: &Path, link: &Path) -> Result<()> {
    if std::fs::read_link(link).ok().as_deref() == Some(target) {
        return Ok(());
    }
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link).with_context(|| format!("could not replace {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("could not link {} to {}", link.display(), target.display()))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn non_empty_var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn shell_quote(value: &std::ffi::OsStr) -> String {
    format!("'{}'", value.to_string_lossy().replace('\'', r"'\''"))
}
