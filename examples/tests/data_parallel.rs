//! The `data_parallel` example, launched the way its docs say: `--nproc 2` starts the real
//! `torchrun` on itself; two ranks train, rank 0 alone writes its run directory and prints it
//! last.

mod common;

use common::example;
use std::process::Command;

#[test]
fn two_processes_train_and_rank_0_prints_its_run_directory_last() {
    let out = tempfile::tempdir().unwrap();
    let result = Command::new(example("data_parallel"))
        .args(["--nproc", "2", "--epochs", "2", "--samples", "2048", "--out"])
        .arg(out.path())
        .env("RUST_LOG", "info")
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stdout}\n{stderr}");
    let run = out.path().join("data_parallel/version_0");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with(&format!("Run directory: {}", run.display())), "{stdout}");
    assert!(stdout.contains("2 processes, 128 samples a step"), "{stdout}");
    // One run directory: rank 1 made none and wrote nothing.
    let versions = std::fs::read_dir(out.path().join("data_parallel")).unwrap().count();
    assert_eq!(versions, 1);
    let epochs = std::fs::read_to_string(run.join("metrics/epochs.csv")).unwrap();
    assert_eq!(
        epochs.lines().count(),
        3,
        "a header and 2 epochs, written once: {epochs}"
    );
    // The logger's epoch lines come from rank 0 alone.
    assert_eq!(stdout.matches("epoch 1/2 done").count(), 1, "{stdout}");
    assert!(run.join("final.safetensors").exists() && run.join("history.json").exists());
}
