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

/// Plain cargo in a clone where libtorch is not set up yet (here: a `LIBTORCH` without headers)
/// stops torch-sys's C++ build at its first include, with one line that says what to run,
/// instead of minutes of errors about `torch/torch.h`.
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
