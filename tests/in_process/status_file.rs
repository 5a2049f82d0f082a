//! `status.json` (kept by `MetricFiles`): where a fit is, for a reader in another process —
//! running with its batch and running values, finished with its stop reason, failed with its
//! error — always whole, never half written.

use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tch::nn;
use trainmon::hooks::{EarlyStopping, MetricFiles};
use trainmon::prelude::*;
use trainmon::{Event, HookSpec, Hooks};
use trainmon_tests::{tutorial_data, tutorial_model};

fn read(dir: &Path) -> Value {
    let path = dir.join("status.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
}

fn trainer<'a>(vs: &'a nn::VarStore, model: &'a nn::Linear, epochs: usize) -> Trainer<'a> {
    Trainer::new(vs, model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(epochs)
        .batch_size(32)
        .hooks(Hooks::none())
}

#[test]
fn a_finished_fit_says_so_with_its_stop_reason_and_counters() {
    let _serial = trainmon_tests::serial();
    let out = tempfile::tempdir().unwrap();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let history = trainer(&vs, &model, 50)
        .validation_split(0.2)
        .with(MetricFiles::new(out.path()).monitor("val_accuracy"))
        .with(
            EarlyStopping::new("val_loss")
                .patience(1)
                .min_delta(trainmon::hooks::Delta::Absolute(1.0)),
        )
        .fit(&data)
        .unwrap();
    let status = read(out.path());
    assert_eq!(status["format"], 1);
    assert_eq!(status["state"], "finished");
    assert_eq!(status["pid"], std::process::id());
    let stop = history.stop_reason().expect("early stopping stopped the fit");
    assert_eq!(status["stop_reason"], stop.reason.as_str());
    assert_eq!(status["stop_cause"], "early_stopping");
    assert_eq!(status["error"], Value::Null);
    assert_eq!(status["epoch"], history.len());
    assert_eq!(status["epochs"], 50);
    // 800 training samples in batches of 32.
    assert_eq!(status["batches_per_epoch"], 25);
    assert_eq!(status["global_step"], 25 * history.len());
    assert_eq!(status["lr"], 1e-3);
    assert_eq!(status["monitor"]["metric"], "val_accuracy");
    assert_eq!(status["monitor"]["mode"], "max");
    assert_eq!(status["world_size"], 1);
    let (started, updated) = (
        status["started_unix_s"].as_f64().unwrap(),
        status["updated_unix_s"].as_f64().unwrap(),
    );
    assert!(started > 1.7e9 && updated >= started, "{status}");
    assert!(status["samples_per_s"].as_f64().unwrap() > 0.0, "{status}");
}

/// Sleeps in the first two batches of each epoch: by the third, 0.5 s has passed since the
/// epoch began, so `MetricFiles` (which runs before this hook) has written that batch.
#[test]
fn while_training_it_follows_the_batches_at_most_twice_a_second() {
    let _serial = trainmon_tests::serial();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_owned();
    let data = tutorial_data(3);
    let (vs, model) = tutorial_model(4);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    trainer(&vs, &model, 1)
        .with(MetricFiles::new(out.path()))
        .add_hook(
            HookSpec::new(Event::BatchEnd, "slow_start"),
            move |batch: &BatchLogs| {
                if batch.number() <= 2 {
                    std::thread::sleep(Duration::from_millis(300));
                }
                if batch.number() <= 4 {
                    let mut status = read(&dir);
                    status["raw"] = std::fs::read_to_string(dir.join("status.json")).unwrap().into();
                    keep.lock().unwrap().push((batch.number(), batch.loss(), status));
                }
            },
        )
        .fit(&data)
        .unwrap();
    let seen = seen.lock().unwrap();
    // Batches 1 and 2: not 0.5 s into the epoch yet; the file is the epoch's beginning.
    for (number, _, status) in &seen[..2] {
        assert_eq!(status["state"], "running", "batch {number}: {status}");
        assert_eq!(status["epoch"], 1);
        assert_eq!(status["batch"], 0, "batch {number}: {status}");
        assert_eq!(status["running"], serde_json::json!({}));
    }
    // Batch 3: written, with the running values this hook sees.
    let (_, loss, status) = &seen[2];
    assert_eq!(status["batch"], 3, "{status}");
    assert_eq!(status["running"]["loss"].as_f64(), Some(*loss));
    assert!(status["running"]["accuracy"].is_f64(), "{status}");
    // In the logs' order, `loss` first (serde_json's map would sort them).
    let text = status.get("raw").and_then(Value::as_str).unwrap();
    assert!(text.contains(r#""running":{"loss":"#), "{text}");
    assert!(status["epoch_elapsed_s"].as_f64().unwrap() >= 0.6, "{status}");
    // 32 samples a batch over at least 0.6 s.
    assert!(status["samples_per_s"].as_f64().unwrap() <= 96.0 / 0.6, "{status}");
    // Batch 4, right after: too soon to write again.
    assert_eq!(seen[3].2["batch"], 3, "{}", seen[3].2);
}

#[test]
fn a_failed_fit_leaves_its_error() {
    let _serial = trainmon_tests::serial();
    let out = tempfile::tempdir().unwrap();
    let data = tutorial_data(5);
    let (vs, model) = tutorial_model(6);
    let err = trainer(&vs, &model, 5)
        .with(MetricFiles::new(out.path()))
        .add_hook(HookSpec::new(Event::EpochEnd, "fails"), |state: &TrainState| {
            if state.epoch() == 2 {
                Err("the disk is full".into())
            } else {
                Ok::<_, trainmon::BoxError>(())
            }
        })
        .fit(&data)
        .unwrap_err();
    let status = read(out.path());
    assert_eq!(status["state"], "failed");
    assert_eq!(status["epoch"], 2);
    // The error with its causes, as `{:#}` writes it.
    assert_eq!(status["error"], format!("{err:#}"));
    assert!(
        status["error"].as_str().unwrap().ends_with(": the disk is full"),
        "{status}"
    );
}

#[test]
fn without_status_there_is_no_file() {
    let _serial = trainmon_tests::serial();
    let out = tempfile::tempdir().unwrap();
    let data = tutorial_data(7);
    let (vs, model) = tutorial_model(8);
    trainer(&vs, &model, 1)
        .with(MetricFiles::new(out.path()).status(false))
        .fit(&data)
        .unwrap();
    assert!(out.path().join("epochs.csv").exists());
    assert!(!out.path().join("status.json").exists());
}

/// A reader in another thread reads the file over and over while 150 epochs rewrite it (twice
/// each): every read is a whole file.
#[test]
fn a_reader_never_sees_half_a_file() {
    let _serial = trainmon_tests::serial();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_owned();
    let data = tutorial_data(9);
    let (vs, model) = tutorial_model(10);
    let done = Arc::new(AtomicBool::new(false));
    let finished = done.clone();
    let reader = std::thread::spawn(move || {
        let mut reads = 0;
        while !finished.load(Ordering::Relaxed) {
            if let Ok(text) = std::fs::read_to_string(dir.join("status.json")) {
                let status: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
                assert!(status["epoch"].is_u64());
                reads += 1;
            }
        }
        reads
    });
    trainer(&vs, &model, 150)
        .batch_size(500)
        .with(MetricFiles::new(out.path()))
        .fit(&data)
        .unwrap();
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 10, "the reader read {reads} times");
    assert_eq!(read(out.path())["epoch"], 150);
}
