//! Building again rebuilds nothing: a second build of the workspace compiles nothing (the
//! examples' and tests' build script, trainmon's, watches files that exist in those packages),
//! `cargo xtask` and plain `cargo` take turns without rebuilding each other's artifacts, and a
//! build of one part of the workspace reuses what a build of the whole built.
//!
//! Cargo runs here as from a user's shell, in this workspace and its target directory, and builds
//! what the test run built, so that it is reused: none of the variables that cargo (or `cargo
//! xtask`) sets for the programs it runs, this test included, reaches it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Set by cargo (`cargo run`, `cargo test`) or `cargo xtask` for the programs they run; never in
/// a user's shell.
fn set_for_programs(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_BIN_")
        || [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_CRATE_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "OUT_DIR",
            "LD_LIBRARY_PATH",
            "TRAINMON_PYTHON",
            "TRAINMON_MLFLOW",
        ]
        .contains(&key)
}

/// `cargo ARGS` in the workspace root, from a user's shell; it must succeed. Returns its stdout.
fn cargo(args: &[&str]) -> String {
    let mut cmd = Command::new(std::env::var_os("CARGO").expect("cargo runs the tests"));
    cmd.args(args).current_dir(root());
    for (key, _) in std::env::vars_os() {
        if set_for_programs(&key.to_string_lossy()) {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cargo {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "cargo {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The targets that a build's JSON messages (`--message-format=json`, among other output) say
/// were compiled rather than found fresh.
fn compiled(messages: &str) -> Vec<String> {
    messages
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|m| m["reason"] == "compiler-artifact" && m["fresh"] == false)
        .map(|m| format!("{} ({})", m["package_id"], m["target"]["name"]))
        .collect()
}

/// `cargo test --workspace --no-run --lib` in this test's profile, or `cargo xtask test` (which
/// runs `cargo test --workspace`) with `xtask`: libraries and their unit tests with the features
/// of `cargo xtask test`, which the test run that runs this test built already (and with the
/// examples' and tests' build script). Returns what it compiled.
fn build_tests(xtask: bool) -> Vec<String> {
    let mut args = vec![];
    if xtask {
        args.extend(["xtask", "test"]);
    } else {
        args.extend(["test", "--workspace"]);
    }
    args.extend(["--no-run", "--lib", "--message-format=json"]);
    let profile = profile();
    args.extend(profile.iter().map(String::as_str));
    compiled(&cargo(&args))
}

/// The arguments that select this test's profile.
fn profile() -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).and_then(Path::file_name).unwrap();
    match profile_dir.to_str().unwrap() {
        "debug" => vec![],
        "release" => vec!["--release".to_owned()],
        other => vec!["--profile".to_owned(), other.to_owned()],
    }
}

#[test]
fn a_second_build_compiles_nothing() {
    // One test at a time: each checks what the other's builds leave.
    let _serial = crate::common::serial();
    build_tests(false);
    let again = build_tests(false);
    assert!(again.is_empty(), "built again: {again:#?}");
}

#[test]
fn cargo_xtask_and_cargo_share_what_they_build() {
    // One test at a time: each checks what the other's builds leave.
    let _serial = crate::common::serial();
    build_tests(true);
    let plain = build_tests(false);
    assert!(
        plain.is_empty(),
        "plain cargo after `cargo xtask` built again: {plain:#?}"
    );
    let xtask = build_tests(true);
    assert!(
        xtask.is_empty(),
        "`cargo xtask` after plain cargo built again: {xtask:#?}"
    );
}

#[test]
fn a_build_of_one_part_reuses_the_whole_builds() {
    // One test at a time: each checks what the other's builds leave.
    let _serial = crate::common::serial();
    build_tests(false);
    // One test binary of the workspace, as `cargo xtask test --test NAME` builds it. Its graph
    // holds anyhow, indexmap… as build dependencies only (of torch-sys's build script, of the
    // proc-macros), the whole's as the dependencies of other code too: cargo built them twice,
    // with and without debug info, and torch-sys, tch and trainmon above them, where the
    // workspace's profile did not give both kinds the same. Only the binary's own package and
    // what only it uses (tests/, tests/hook-crate) may be new.
    let mut args = vec![
        "test",
        "--workspace",
        "--test",
        "in_process",
        "--no-run",
        "--message-format=json",
    ];
    let profile = profile();
    args.extend(profile.iter().map(String::as_str));
    let again: Vec<String> = compiled(&cargo(&args))
        .into_iter()
        .filter(|unit| !(unit.contains("/tests#") || unit.contains("/tests/hook-crate#")))
        .collect();
    assert!(
        again.is_empty(),
        "one test binary after the workspace's libraries built again: {again:#?}"
    );
}
