//! Ctrl-C and SIGTERM sent to a real training process (the `full_monitoring` example): the
//! first signal ends training cleanly — the stop reason says so, the last checkpoint loads, the
//! outputs are written —, a second one exits at once.

use crate::common::example;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tch::nn;

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
/// and sends `signals`, each once the process has said it received the one before (two
/// signals sent before the first is delivered would merge into one).
fn interrupt(out: &Path, signals: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(example("full_monitoring"))
        .args([
            "--epochs",
            "100000",
            "--patience",
            "100000",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes as the process writes them, so that it never blocks on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        text
    });
    let (told, heard) = std::sync::mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.starts_with("interrupted:") && told.send(()).is_err() {
                break;
            }
        }
    });
    let epochs = out.join("full_monitoring/version_0/metrics/epochs.csv");
    wait_for("two epochs", || {
        std::fs::read_to_string(&epochs).is_ok_and(|t| t.lines().count() >= 3)
    });
    for (i, signal) in signals.iter().enumerate() {
        if i > 0 {
            heard
                .recv_timeout(Duration::from_secs(60))
                .expect("the first signal handled");
        }
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal}");
    }
    let status = wait_exit(&mut child);
    (status, stdout.join().unwrap())
}

#[test]
fn one_signal_stops_cleanly_two_exit_at_once() {
    let _serial = crate::common::serial();
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
