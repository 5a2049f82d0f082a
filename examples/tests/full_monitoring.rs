//! The `full_monitoring` example writes every output of the built-in hooks into its run
//! directory, and says where it is last.

use crate::common::run_in;

#[test]
fn the_run_directory_holds_every_output() {
    let _serial = crate::common::serial();
    let out = tempfile::tempdir().unwrap();
    let (run, stdout) = run_in("full_monitoring", &["--epochs", "12"], out.path(), &[]);
    for line in [
        "epoch 1/12 done in",
        "val_loss",
        "learning rate",
        "samples/s",
        "summary: best val_loss ",
        "summary: outputs so far in ",
    ] {
        assert!(stdout.contains(line), "{line:?} logged");
    }
    // The last lines list everything the run wrote, what came after `fit` included.
    let outputs = stdout.lines().rev().nth(1).unwrap_or_default();
    for part in [
        "Outputs: checkpoints/ (",
        "final.safetensors",
        "history.json",
        "metrics/ (",
        "plots/ (",
        "tensorboard/ (",
    ] {
        assert!(outputs.contains(part), "{part:?} in {outputs}");
    }

    let files = |sub: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(run.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        files("metrics"),
        ["epochs.csv", "epochs.jsonl", "status.json", "steps.csv", "steps.jsonl"]
    );
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics/status.json")).unwrap()).unwrap();
    assert_eq!(status["state"], "finished", "{status}");
    assert_eq!(status["monitor"]["metric"], "val_loss", "{status}");
    let events = files("tensorboard");
    assert!(
        events.len() == 1 && events[0].starts_with("events.out.tfevents."),
        "{events:?}"
    );
    let plots = files("plots");
    for name in ["accuracy", "epoch_time", "learning_rate", "loss"] {
        for ext in ["png", "svg"] {
            assert!(plots.contains(&format!("{name}.{ext}")), "{name}.{ext} in {plots:?}");
        }
    }
    let checkpoints = files("checkpoints");
    assert!(checkpoints.contains(&"last.safetensors".to_owned()), "{checkpoints:?}");
    let ranked = checkpoints.iter().filter(|n| *n != "last.safetensors").count();
    assert!((1..=3).contains(&ranked), "at most the 3 best kept: {checkpoints:?}");
    let epochs = std::fs::read_to_string(run.join("metrics/epochs.csv")).unwrap();
    assert!(
        epochs.starts_with("epoch,time_s,loss,accuracy,val_loss,val_accuracy,lr,throughput\n"),
        "{epochs}"
    );
}

#[test]
fn a_refused_fit_leaves_no_run_directory_and_sends_no_one_to_watch_it() {
    let _serial = crate::common::serial();
    let out = tempfile::tempdir().unwrap();
    let result = std::process::Command::new(crate::common::example("full_monitoring"))
        .args(["--epochs", "0", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr),
    );
    assert!(!result.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("Error: invalid trainer setup (`epochs`): epochs must be at least 1, got 0"),
        "{stderr}"
    );
    assert!(!stdout.contains("Watch it live"), "{stdout}");
    let left: Vec<_> = std::fs::read_dir(out.path().join("full_monitoring")).unwrap().collect();
    assert!(left.is_empty(), "no version_N left: {left:?}");
}
