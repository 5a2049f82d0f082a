//! A real training process (the `full_monitoring` example: every built-in hook on, resumable
//! with `--resume DIR`, at epoch ends and every 20 steps) killed with SIGKILL at random points
//! after its first resume point, then run again with the same command: it ends with the weights
//! and the history of a run that was never killed, to the bit; and whatever the kill
//! interrupted, every checkpoint left loads.

use crate::common::example;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tch::nn;

/// Resume points at every epoch's end, and every 20 steps (epochs have 50): most kills land
/// in an epoch, after a step point. The tests hold `common::serial()`: the kills are timed
/// against a run's measured length, which a second training process on the machine would
/// change.
fn command(dir: &Path) -> Command {
    let mut command = Command::new(example("full_monitoring"));
    command
        .args([
            "--epochs",
            "150",
            "--patience",
            "1000",
            "--seed",
            "3",
            "--resume-steps",
            "20",
            "--resume",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// The end of a run: its final weights (bits, by name) and its history without wall times
/// (nor hook costs).
#[derive(Debug, PartialEq)]
struct Outcome {
    weights: BTreeMap<String, Vec<u32>>,
    history: serde_json::Value,
}

fn outcome(dir: &Path) -> Outcome {
    let weights = tch::Tensor::read_safetensors(dir.join("final.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(name, t)| {
            let values = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
            (name, values.into_iter().map(f32::to_bits).collect())
        })
        .collect();
    let mut history: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("history.json")).unwrap()).unwrap();
    history.as_object_mut().unwrap().remove("elapsed_s");
    // What each hook cost is timed and counted per process: a resumed run counts from its start.
    history.as_object_mut().unwrap().remove("hook_costs");
    for epoch in history["epochs"].as_array_mut().unwrap() {
        let epoch = epoch.as_object_mut().unwrap();
        epoch.remove("time_s");
        epoch.remove("throughput");
    }
    Outcome { weights, history }
}

/// Runs to the end; returns the time from the first resume point to the exit.
fn run_to_end(dir: &Path) -> Duration {
    let mut child = command(dir).spawn().unwrap();
    let point = dir.join("resume/resume.safetensors");
    let mut first = None;
    loop {
        if first.is_none() && point.exists() {
            first = Some(Instant::now());
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            assert!(status.success(), "{status}: {stderr}");
            return first.map_or(Duration::ZERO, |t| t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Starts a run and waits for its first resume point.
fn start(dir: &Path) -> std::process::Child {
    let mut child = command(dir).spawn().unwrap();
    let point = dir.join("resume/resume.safetensors");
    while !point.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first resume point"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child
}

/// Every checkpoint in the run's directory loads into the example's model.
fn checkpoints_load(dir: &Path) {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let _fc1 = nn::linear(vs.root() / "fc1", 20, 64, Default::default());
    let _fc2 = nn::linear(vs.root() / "fc2", 64, 2, Default::default());
    for entry in std::fs::read_dir(dir.join("checkpoints")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // a temporary file the kill interrupted: never a checkpoint's name
        }
        trainmon::hooks::load_checkpoint(&vs, &path).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn a_run_killed_at_random_points_and_resumed_ends_as_if_never_killed() {
    let _serial = crate::common::serial();
    let reference_dir = tempfile::tempdir().unwrap();
    let training = run_to_end(reference_dir.path());
    let reference = outcome(reference_dir.path());
    assert_eq!(reference.history["epochs"].as_array().unwrap().len(), 150);

    // One kill in each quarter of the training after the first resume point, at a random time.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let mut killed = 0;
    for quarter in 0..4u64 {
        let jitter = (nanos.wrapping_mul(quarter + 1).wrapping_mul(2654435761) % 1000) as f64 / 1000.0;
        let delay = training.mul_f64((quarter as f64 + jitter) / 4.0);
        let dir = tempfile::tempdir().unwrap();
        let mut child = start(dir.path());
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            // Killed while training, not after `fit` returned (the final weights are written then).
            if !dir.path().join("final.safetensors").exists() {
                killed += 1;
            }
            eprintln!("killed {delay:?} after the first resume point");
            checkpoints_load(dir.path());
        }
        run_to_end(dir.path());
        checkpoints_load(dir.path());
        assert!(
            outcome(dir.path()) == reference,
            "killed {delay:?} after the first resume point, resumed: not the uninterrupted run's weights and history"
        );
    }
    assert!(killed >= 2, "only {killed} of 4 runs were still training when killed");
}

#[test]
fn a_run_interrupted_with_ctrl_c_and_run_again_ends_as_if_never_interrupted() {
    let _serial = crate::common::serial();
    let reference_dir = tempfile::tempdir().unwrap();
    run_to_end(reference_dir.path());
    let reference = outcome(reference_dir.path());

    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path());
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: a plain system call on the child's process id.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "a first Ctrl-C ends training normally: {status}");
    let interrupted = outcome(dir.path());
    assert_eq!(
        interrupted.history["stop_reason"], "interrupted",
        "{:?}",
        interrupted.history
    );
    assert_ne!(interrupted, reference);

    run_to_end(dir.path());
    assert!(
        outcome(dir.path()) == reference,
        "interrupted, then run again: not the uninterrupted run's weights and history"
    );
}
