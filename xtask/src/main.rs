//! `cargo xtask`: the project's task runner.
//!
//! ```text
//! cargo xtask run  [cargo run args]    bootstrap libtorch, then `cargo run …`
//! cargo xtask test [cargo test args]   bootstrap libtorch and MLflow, then `cargo test --workspace …`
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
//!
//! The tests of the `Mlflow` hook run a real MLflow server: `test` and `env` install it once per
//! machine, in a venv of its own in the same cache directory (`trainmon_setup::tools`), and pass
//! its `bin/` directory on as `TRAINMON_MLFLOW`.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use trainmon_setup::libtorch::{Libtorch, Search, TORCH_VERSION};
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
            let torch = locate()?;
            println!(
                "xtask: libtorch {TORCH_VERSION}: {} ({})",
                torch.lib.display(),
                torch.source
            );
            Ok(ExitCode::SUCCESS)
        }
        Some("env") => {
            let torch = locate()?;
            println!("export LD_LIBRARY_PATH={}", shell_quote(&torch.library_path()?));
            if let Some(python) = &torch.python {
                println!("export TRAINMON_PYTHON={}", shell_quote(python.as_os_str()));
                // The venv's programs — `torchrun`, `tensorboard` — as the README runs them.
                if let Some(bin) = python.parent().filter(|bin| bin.join("torchrun").exists()) {
                    println!("export PATH={}:\"$PATH\"", shell_quote(bin.as_os_str()));
                }
            }
            let mlflow = trainmon_setup::tools::mlflow()?;
            println!("export TRAINMON_MLFLOW={}", shell_quote(mlflow.as_os_str()));
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
  test [args]   bootstrap libtorch and MLflow (the tests' tracking server), then
                `cargo test --workspace [args]`
  bench [--rounds N] [--workloads seed,tiny,mlp]
                the training-loop benchmark: trainmon against a hand-written tch loop
                (and PyTorch's plain loop, with the bootstrap's Python)
  bootstrap     only make sure libtorch is installed and linked
  env           print shell exports (LD_LIBRARY_PATH, TRAINMON_PYTHON, TRAINMON_MLFLOW, and PATH
                with the bootstrap venv's torchrun and tensorboard) to run built binaries, tests
                and those tools by hand: eval \"$(cargo xtask env)\"
";

/// Runs cargo with the library path set, passing its exit code through.
fn cargo(sub: &[&str], rest: Vec<OsString>) -> Result<ExitCode> {
    let torch = locate()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args(sub).args(rest);
    for key in set_by_cargo_run() {
        cmd.env_remove(key);
    }
    cmd.env("LD_LIBRARY_PATH", torch.library_path()?);
    if let Some(python) = &torch.python {
        cmd.env("TRAINMON_PYTHON", python);
    }
    if sub.first() == Some(&"test") {
        // The `Mlflow` hook's tests start MLflow's server and read back with its client.
        cmd.env("TRAINMON_MLFLOW", trainmon_setup::tools::mlflow()?);
    }
    let status = cmd.status().context("could not start cargo")?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// The variables of this process that `cargo run` (which `cargo xtask` is) set for xtask itself:
/// xtask's `CARGO_MANIFEST_DIR`, `CARGO_MANIFEST_PATH` and `CARGO_PKG_*`. The cargo that xtask
/// starts must not inherit them: it would take them for the user's environment, and build scripts
/// that watch them (ring's watches `CARGO_MANIFEST_DIR` and `CARGO_PKG_*`) would run again, and
/// all that depends on them (rustls, ureq, trainmon…) be rebuilt, at every switch between
/// `cargo xtask …` and plain `cargo …`. (`LD_LIBRARY_PATH`, which `cargo run` sets too, is set
/// anew for the cargo that xtask starts.)
fn set_by_cargo_run() -> Vec<OsString> {
    std::env::vars_os()
        .map(|(key, _)| key)
        .filter(|key| {
            let key = key.to_string_lossy();
            key.starts_with("CARGO_PKG_") || key == "CARGO_MANIFEST_DIR" || key == "CARGO_MANIFEST_PATH"
        })
        .collect()
}

/// libtorch as this workspace finds it: the shared search ([`trainmon_setup::libtorch`]), with
/// the workspace's `.libtorch` as the hand-placed directory, and a bootstrapped one linked there
/// (`.cargo/config.toml` points `LIBTORCH` at the link).
fn locate() -> Result<Libtorch> {
    let link = workspace_root().join(LINK_NAME);
    let torch = Libtorch::locate(&Search {
        // `.cargo/config.toml` sets LIBTORCH to the link for every process cargo starts, this
        // one included: only another value is the user's own.
        own_var: Some(&link),
        hand_placed: Some(&link),
    })?;
    if torch.source == "the trainmon cache" {
        link_to(&torch.dir, &link)?;
    }
    // Distributed training's shim compiles against gloo's headers (`.cargo/config.toml` points
    // TRAINMON_GLOO_INCLUDE at `.gloo`); without them, trainmon builds without it.
    match trainmon_setup::tools::gloo_headers() {
        Ok(include) => link_to(&include, &workspace_root().join(".gloo"))?,
        Err(err) => eprintln!("xtask: warning: no gloo headers, so no distributed training: {err:#}"),
    }
    Ok(torch)
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

fn shell_quote(value: &std::ffi::OsStr) -> String {
    format!("'{}'", value.to_string_lossy().replace('\'', r"'\''"))
}
