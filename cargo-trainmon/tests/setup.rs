//! `cargo trainmon setup` on bad ground: each case a clear message, and nothing written.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cargo-trainmon")
}

/// `cargo trainmon …` as cargo runs it, in `dir`, with `envs`; none of this workspace's
/// libtorch variables.
fn trainmon(dir: &Path, args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("trainmon")
        .args(args)
        .current_dir(dir)
        .env_remove("LIBTORCH")
        .env_remove("LIBTORCH_USE_PYTORCH")
        .env_remove("LIBTORCH_LIB");
    for (key, value) in envs {
        cmd.env(key, value);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A crate of one manifest in a new temporary directory.
fn a_crate() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"c\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n").unwrap();
    dir
}

/// Everything under `dir`, as relative paths.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            all.push(path.strip_prefix(dir).unwrap().to_owned());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    all.sort();
    all
}

#[test]
fn outside_a_crate() {
    let dir = tempfile::tempdir().unwrap();
    let out = trainmon(dir.path(), &["setup"], &[]);
    assert!(!out.status.success());
    let why = stderr(&out);
    assert!(why.contains("no Cargo.toml in"), "{why}");
    assert!(why.contains("cargo trainmon new NAME"), "{why}");
    assert!(listing(dir.path()).is_empty(), "nothing written");
}

#[test]
fn without_python_when_libtorch_must_be_installed() {
    let krate = a_crate();
    let cache = tempfile::tempdir().unwrap();
    let empty_path = tempfile::tempdir().unwrap();
    let before = listing(krate.path());
    let cargo = PathBuf::from(std::env::var_os("CARGO").expect("cargo runs the tests"));
    let out = trainmon(
        krate.path(),
        &["setup"],
        &[
            ("PATH", empty_path.path()),
            ("CARGO", &cargo),
            ("TRAINMON_CACHE_DIR", cache.path()),
        ],
    );
    assert!(!out.status.success());
    let why = stderr(&out);
    assert!(why.contains("no python3"), "{why}");
    assert!(why.contains("LIBTORCH"), "the alternative is offered: {why}");
    assert_eq!(listing(krate.path()), before, "nothing written");
}

#[test]
fn a_libtorch_of_another_version() {
    let krate = a_crate();
    let torch = tempfile::tempdir().unwrap();
    std::fs::create_dir(torch.path().join("lib")).unwrap();
    std::fs::write(torch.path().join("lib/libtorch_cpu.so"), "").unwrap();
    std::fs::write(torch.path().join("build-version"), "2.10.0+cpu\n").unwrap();
    let before = listing(krate.path());
    let out = trainmon(krate.path(), &["setup"], &[("LIBTORCH", torch.path())]);
    assert!(!out.status.success());
    let why = stderr(&out);
    assert!(
        why.contains("is libtorch 2.10.0+cpu, but trainmon's tch 0.24.0 needs libtorch 2.11.0"),
        "{why}"
    );
    assert_eq!(listing(krate.path()), before, "nothing written");

    // Not libtorch at all.
    let out = trainmon(krate.path(), &["setup"], &[("LIBTORCH", krate.path())]);
    assert!(
        stderr(&out).contains("LIBTORCH: no libtorch_cpu in"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_cargo_directory_that_cannot_be_written() {
    // A file where the directory should be.
    let krate = a_crate();
    std::fs::write(krate.path().join(".cargo"), "").unwrap();
    let out = trainmon(krate.path(), &["setup"], &[]);
    assert!(!out.status.success());
    let why = stderr(&out);
    assert!(
        why.contains("cannot write") && why.contains("nothing was changed"),
        "{why}"
    );
    assert_eq!(std::fs::read(krate.path().join(".cargo")).unwrap(), b"");
}

#[test]
fn a_read_only_cargo_directory() {
    // A read-only directory stops root from nothing: the setup then runs as `nobody`, with a copy
    // of cargo it can run.
    let root = unsafe { libc::geteuid() } == 0;
    let krate = a_crate();
    let config = krate.path().join(".cargo/config.toml");
    std::fs::create_dir(krate.path().join(".cargo")).unwrap();
    std::fs::write(&config, "[alias]\nb = \"build\"\n").unwrap();
    let tools = tempfile::tempdir().unwrap();
    let cargo = tools.path().join("cargo");
    std::fs::copy(std::env::var_os("CARGO").unwrap(), &cargo).unwrap();
    for dir in [tools.path(), krate.path(), &krate.path().join("src")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(krate.path().join(".cargo"), std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o444)).unwrap();
    let program = tools.path().join("cargo-trainmon");
    std::fs::copy(bin(), &program).unwrap();
    let mut cmd = if root {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(&program);
        cmd
    } else {
        Command::new(&program)
    };
    let out = cmd
        .args(["trainmon", "setup"])
        .current_dir(krate.path())
        .env("CARGO", &cargo)
        .env("CARGO_HOME", tools.path())
        .env("HOME", tools.path())
        .env_remove("LIBTORCH")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let why = stderr(&out);
    assert!(
        why.contains("cannot write") && why.contains("nothing was changed"),
        "{why}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "[alias]\nb = \"build\"\n");
    std::fs::set_permissions(krate.path().join(".cargo"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn an_unknown_command_lists_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = trainmon(dir.path(), &["sertup"], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("usage: cargo trainmon <command>"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn new_refuses_a_bad_name_or_an_existing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = trainmon(dir.path(), &["new", "9lives"], &[]);
    assert!(stderr(&out).contains("cannot name a crate"), "{}", stderr(&out));
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    let out = trainmon(dir.path(), &["new", "taken"], &[]);
    assert!(stderr(&out).contains("exists already"), "{}", stderr(&out));
    assert!(listing(&dir.path().join("taken")).is_empty());
}
