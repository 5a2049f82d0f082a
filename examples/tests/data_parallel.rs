//! The `data_parallel` example, launched the way its docs say: `--nproc 2` starts the real
//! `torchrun` on itself; two ranks train, rank 0 alone writes its run directory and prints it
//! last.

use crate::common::run_in;

#[test]
fn two_processes_train_and_rank_0_prints_its_run_directory_last() {
    let _serial = crate::common::serial();
    let out = tempfile::tempdir().unwrap();
    let args = ["--nproc", "2", "--epochs", "2", "--samples", "2048"];
    let (run, stdout) = run_in("data_parallel", &args, out.path(), &[("RUST_LOG", "info")]);
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
