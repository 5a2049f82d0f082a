//! The bootstrap's failures say what is missing and what to do, instead of failing later in a
//! build script.

use std::process::Command;

fn xtask(envs: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("bootstrap")
        .env_remove("LIBTORCH")
        .env_remove("LIBTORCH_USE_PYTORCH")
        .env_remove("LIBTORCH_LIB");
    for (key, value) in envs {
        cmd.env(key, value);
    }
    let out = cmd.output().expect("run xtask");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_libtorch_without_libraries_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = xtask(&[("LIBTORCH", dir.path().to_str().unwrap())]);
    assert!(!ok);
    assert!(stderr.contains("LIBTORCH: no libtorch_cpu in"), "{stderr}");
}

#[test]
fn a_missing_python_is_named() {
    let cache = tempfile::tempdir().unwrap();
    let empty_path = tempfile::tempdir().unwrap();
    let (ok, stderr) = xtask(&[
        ("TRAINMON_CACHE_DIR", cache.path().to_str().unwrap()),
        ("PATH", empty_path.path().to_str().unwrap()),
    ]);
    if std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.libtorch/lib")
        .is_dir()
        && !std::fs::symlink_metadata(concat!(env!("CARGO_MANIFEST_DIR"), "/../.libtorch"))
            .unwrap()
            .is_symlink()
    {
        // A hand-placed `.libtorch` directory is used as it is: no Python is needed.
        assert!(ok, "{stderr}");
        return;
    }
    assert!(!ok, "bootstrap without python must fail");
    assert!(stderr.contains("no python3"), "{stderr}");
    assert!(
        stderr.contains("LIBTORCH"),
        "the message offers the alternative: {stderr}"
    );
}

/// Where torch-sys's build script runs without libtorch after all (here: torch-sys alone, with a
/// `LIBTORCH` without headers), the stub `torch/torch.h` of `.cargo/config.toml` stops its C++
/// at its first include, with the line that says what to run, instead of minutes of errors about
/// `torch/torch.h`.
#[test]
fn plain_cargo_without_libtorch_says_what_to_run() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--quiet", "--package", "torch-sys"])
        .current_dir(root)
        .env("LIBTORCH", empty.path())
        .env("CARGO_TARGET_DIR", root.join("target/no-libtorch"))
        .env_remove("CPLUS_INCLUDE_PATH")
        .env_remove("LIBTORCH_USE_PYTORCH")
        .env_remove("LIBTORCH_LIB")
        .output()
        .expect("run cargo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("libtorch is not set up in this clone yet: run `cargo xtask run --example early_stop` once"),
        "{stderr}"
    );
    assert!(stderr.contains("compilation terminated"), "stops at once: {stderr}");
}

/// Variables that cargo (`cargo test`, `cargo run`) or `cargo xtask` sets for the programs it
/// runs, this test included, and this workspace's `.cargo/config.toml` `[env]`, which cargo gave
/// this test: a newcomer's shell has none of them.
fn not_in_a_newcomers_shell(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_BIN_")
        || key.starts_with("LIBTORCH")
        || key.starts_with("TRAINMON_")
        || [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_CRATE_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "OUT_DIR",
            "LD_LIBRARY_PATH",
            "CPLUS_INCLUDE_PATH",
        ]
        .contains(&key)
}

/// A line of cargo's own progress (`   Compiling trainmon v0.1.0 (…)`).
fn is_progress(line: &str) -> bool {
    let verb = line.trim_start().split(' ').next().unwrap_or_default();
    [
        "Compiling",
        "Blocking",
        "Locking",
        "Adding",
        "Updating",
        "Downloading",
        "Downloaded",
    ]
    .contains(&verb)
}

/// A fresh clone (the committed files, no `.libtorch`), and a newcomer's first command, plain
/// `cargo run --example early_stop`: cargo stops before torch-sys's C++ is compiled, and among its
/// progress lines prints one line, which says what to run, and its own line that a build script
/// failed.
#[test]
fn a_fresh_clone_says_what_to_run_in_one_line() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // At the same place at every run (one per checkout), outside any workspace: build scripts that
    // compile C watch `CPLUS_INCLUDE_PATH`, which the clone's `.cargo/config.toml` sets to a
    // directory inside it, so that a new place would build them again.
    let place = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        root.hash(&mut hasher);
        std::env::temp_dir().join(format!("trainmon-fresh-clone-{:016x}", hasher.finish()))
    };
    if place.exists() {
        std::fs::remove_dir_all(&place).unwrap();
    }
    let cloned = Command::new("git")
        .args(["clone", "--quiet"])
        .arg(root)
        .arg(&place)
        .status()
        .expect("run git");
    assert!(cloned.success(), "git clone {}", root.display());
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(["run", "--example", "early_stop"]).current_dir(&place);
    for (key, _) in std::env::vars_os() {
        if not_in_a_newcomers_shell(&key.to_string_lossy()) {
            cmd.env_remove(key);
        }
    }
    // The dependencies are built once, for every run of this test. One job at a time: cargo then
    // starts the units in its order alone (first those that most others wait for), whatever
    // earlier runs left built here; with more, torch-sys's build script, ready at once where an
    // earlier run built its dependencies, could start beside the check.
    cmd.env("CARGO_TARGET_DIR", root.join("target/fresh-clone"))
        .env("CARGO_BUILD_JOBS", "1");
    let out = cmd.output().expect("run cargo");
    std::fs::remove_dir_all(&place).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let said: Vec<&str> = stderr.lines().filter(|line| !is_progress(line)).collect();
    let told = "libtorch is not set up in this clone yet: run `cargo xtask run --example early_stop` once \
                (it installs libtorch; then plain cargo works too)";
    assert!(
        said.len() == 2
            && said[0].starts_with("error: trainmon-libtorch-check@")
            && said[0].ends_with(told)
            && said[1] == "error: build script logged errors",
        "one line says what to run, then cargo says that a build script failed; nothing else but \
         cargo's progress:\n{stderr}"
    );
}

/// `eval "$(cargo xtask env)"`, as the README has it, puts the bootstrap venv's `torchrun` and
/// `tensorboard` on `PATH`: the README's bare `torchrun …` and `tensorboard --logdir …` run.
#[test]
fn the_env_puts_the_venvs_tools_on_path() {
    let script = format!(
        "eval \"$('{}' env)\" && command -v torchrun && command -v tensorboard && torchrun --help >/dev/null",
        env!("CARGO_BIN_EXE_xtask")
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .env_remove("LIBTORCH_USE_PYTORCH")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Vec<&str> = stdout.lines().collect();
    assert!(
        found.len() == 2 && found[0].ends_with("/bin/torchrun") && found[1].ends_with("/bin/tensorboard"),
        "{stdout}"
    );
}
