//! Ctrl-C and SIGTERM sent to a real training process (the `full_monitoring` example): the
//! first signal ends training cleanly — the stop reason says so, the last checkpoint loads, the
//! outputs are written —, a second one exits at once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tch::nn;

fn example() -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_owned();
    let path = deps.parent().unwrap().join("examples").join("full_monitoring");
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --example full_monitoring`",
        path.display()
    );
    path
}

/// Waits for `done` to hold, up to a minute.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child) -> ExitStatus {
    let mut status = None;
    wait_for("the process to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

/// Starts a training that would run for a long time, waits until it has finished two epochs,
/// and sends `signals` (one `kill -SIG` each, 10 ms apart: well before the end-of-training
/// outputs of a first one are written).
fn interrupt(out: &Path, signals: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(example())
        .args([
            "--epochs",
            "100000",
            "--patience",
            "100000",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let epochs = out.join("full_monitoring/version_0/metrics/epochs.csv");
    wait_for("two epochs", || {
        std::fs::read_to_string(&epochs).is_ok_and(|t| t.lines().count() >= 3)
    });
    for signal in signals {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = wait_exit(&mut child);
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    (status, stdout)
}

#[test]
fn one_signal_stops_cleanly_two_exit_at_once() {
    for signal in ["INT", "TERM"] {
        let out = tempfile::tempdir().unwrap();
        let (status, stdout) = interrupt(out.path(), &[signal]);
        assert!(
            status.success(),
            "SIGTERM/SIGINT once: a normal exit ({status}): {stdout}"
        );
        assert!(
            stdout.contains("; stopped: interrupted (hook `Interrupt` at on_"),
            "{signal}: {stdout}"
        );
        let run = out.path().join("full_monitoring/version_0");
        // The last checkpoint is whole: it loads into the example's model.
        let mut vs = nn::VarStore::new(tch::Device::Cpu);
        let _fc1 = nn::linear(vs.root() / "fc1", 20, 64, Default::default());
        let _fc2 = nn::linear(vs.root() / "fc2", 64, 2, Default::default());
        vs.load(run.join("checkpoints/last.safetensors")).unwrap();
        assert!(
            run.join("plots/loss.png").exists(),
            "{signal}: the end-of-training outputs are written"
        );
        assert!(
            stdout
                .trim_end()
                .ends_with(&format!("Run directory: {}", run.display())),
            "{signal}"
        );
    }

    let out = tempfile::tempdir().unwrap();
    let (status, _) = interrupt(out.path(), &["INT", "INT"]);
    assert_eq!(status.code(), Some(130), "a second Ctrl-C exits at once");
}
