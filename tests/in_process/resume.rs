//! `Trainer::resumable`: a fit that fails part way and is run again goes on from its last
//! resume point and ends exactly as the uninterrupted fit — weights, history, hooks' `Local`
//! state and the built-ins' state. (Killing real processes: the `resume` test of the examples.)

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tch::nn::{self, VarStore};
use tch::Device;
use trainmon::hooks::{EarlyStopping, MetricFiles, ModelCheckpoint, ReduceLrOnPlateau, TensorBoard};
use trainmon::prelude::*;
use trainmon::{Error, Hooks, Trainer};
use trainmon_tests::{tutorial_data, weights};

/// One test at a time: the hooks below are registered for all of them, and the seed of
/// libtorch's generator is one per process.
use trainmon_tests::SERIAL;

/// The epoch at whose start `crash` fails (0: never).
static CRASH_AT: AtomicUsize = AtomicUsize::new(0);
/// The epoch at whose end, after every other hook (the files of the epoch written, its
/// checkpoint saved), `crash_at_end` fails (0: never).
static CRASH_AT_END: AtomicUsize = AtomicUsize::new(0);

#[on_epoch_begin(group = "resume")]
fn crash(state: &TrainState) -> Result<(), String> {
    if state.epoch() == CRASH_AT.load(Ordering::SeqCst) {
        return Err(format!("the process dies in epoch {}", state.epoch()));
    }
    Ok(())
}

/// The (epoch, batch) after whose hooks `crash_in_batch` fails ((0, 0): never).
static CRASH_IN: Mutex<(usize, usize)> = Mutex::new((0, 0));

#[on_batch_end(group = "resume", priority = -100_000)]
fn crash_in_batch(state: &TrainState) -> Result<(), String> {
    if (state.epoch(), state.batch()) == *CRASH_IN.lock().unwrap() {
        return Err(format!(
            "the process dies in batch {} of epoch {}",
            state.batch(),
            state.epoch()
        ));
    }
    Ok(())
}

#[on_epoch_end(group = "resume", priority = -100_000)]
fn crash_at_end(state: &TrainState) -> Result<(), String> {
    if state.epoch() == CRASH_AT_END.load(Ordering::SeqCst) {
        return Err(format!("the process dies at the end of epoch {}", state.epoch()));
    }
    Ok(())
}

/// What the `Local` of `losses` held at the end of the last fit.
static LOSSES_SEEN: Mutex<Vec<f64>> = Mutex::new(Vec::new());

/// Keeps every epoch's loss in its `Local` (and values JSON cannot hold), and copies it out:
/// a resumed fit must give the `Local` back as it was.
#[on_epoch_end(group = "resume", priority = -1000)]
fn copy_out(mut seen: Local<Vec<f64>>, epoch: &EpochLogs) {
    seen.extend([epoch.loss(), f64::NAN, f64::NEG_INFINITY]);
    *LOSSES_SEEN.lock().unwrap() = seen.clone();
}

/// A model with dropout (libtorch's generator matters) and the fit's settings.
fn model(vs: &VarStore) -> nn::SequentialT {
    nn::seq_t()
        .add(nn::linear(vs.root() / "fc1", 20, 16, Default::default()))
        .add_fn(|x| x.relu())
        .add_fn_t(|x, train| x.dropout(0.2, train))
        .add(nn::linear(vs.root() / "fc2", 16, 2, Default::default()))
}

/// An epoch without its wall time: number, batches, samples, metrics (bits) and learning rate.
type Epoch = (usize, usize, usize, Vec<(String, u64)>, u64);

/// Everything a run ends with that must not depend on the crash: the history without wall
/// times, the stop, and the weights.
#[derive(Debug, PartialEq)]
struct Outcome {
    epochs: Vec<Epoch>,
    stop: Option<String>,
    weights: Vec<u32>,
    locals: Vec<u64>,
}

/// Where a fit fails.
#[derive(Clone, Copy, Debug)]
enum Crash {
    Never,
    /// At the start of this epoch.
    Begin(usize),
    /// At the end of this epoch, after its outputs.
    End(usize),
    /// After this batch of this epoch, and its hooks.
    Batch(usize, usize),
}

/// Fits 8 epochs into `dir`, resumably (at epoch ends, and every `steps` steps), failing as
/// `crash` says; the model starts from weights drawn with `init`.
fn fit(dir: &Path, crash: Crash, init: i64) -> trainmon::Result<Outcome> {
    fit_with(dir, crash, init, 0)
}

fn fit_with(dir: &Path, crash: Crash, init: i64, steps: u64) -> trainmon::Result<Outcome> {
    let data = tutorial_data(5);
    tch::manual_seed(init);
    let vs = VarStore::new(Device::Cpu);
    let model = model(&vs);
    let (begin, end, within) = match crash {
        Crash::Never => (0, 0, (0, 0)),
        Crash::Begin(epoch) => (epoch, 0, (0, 0)),
        Crash::End(epoch) => (0, epoch, (0, 0)),
        Crash::Batch(epoch, batch) => (0, 0, (epoch, batch)),
    };
    CRASH_AT.store(begin, Ordering::SeqCst);
    CRASH_AT_END.store(end, Ordering::SeqCst);
    *CRASH_IN.lock().unwrap() = within;
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::AdamW::default(), 1e-2)
        .epochs(8)
        .batch_size(64)
        .validation_split(0.2)
        .seed(11)
        .hooks(Hooks::groups(["resume"]))
        .with(EarlyStopping::new("val_loss").patience(2).restore_best_weights(true))
        .with(ReduceLrOnPlateau::new("val_loss").patience(0).factor(0.5))
        .with(
            ModelCheckpoint::new(dir.join("checkpoints"))
                .monitor("val_loss")
                .save_top_k(2),
        )
        .with(MetricFiles::new(dir.join("metrics")).steps(2))
        .with(TensorBoard::new(dir.join("tensorboard")).steps(2))
        .resumable(dir.join("resume"))
        .resumable_steps(steps)
        .fit(&data)?;
    let bits = |v: f64| v.to_bits();
    Ok(Outcome {
        epochs: history
            .epochs()
            .iter()
            .map(|e| {
                let values = e.metrics().map(|(n, v)| (n.to_owned(), bits(v))).collect();
                (e.epoch(), e.batches(), e.samples(), values, bits(e.learning_rate()))
            })
            .collect(),
        stop: history.stop_reason().map(ToString::to_string),
        weights: weights(&vs).iter().map(|w| w.to_bits()).collect(),
        locals: LOSSES_SEEN.lock().unwrap().iter().map(|v| v.to_bits()).collect(),
    })
}

/// Records in the run's one TensorBoard event file (length, its checksum, data, its checksum).
fn records(dir: &Path) -> usize {
    let mut files = std::fs::read_dir(dir.join("tensorboard")).unwrap();
    let bytes = std::fs::read(files.next().unwrap().unwrap().path()).unwrap();
    assert!(files.next().is_none(), "one event file");
    let (mut at, mut count) = (0, 0);
    while at < bytes.len() {
        let length = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        at += 8 + 4 + length + 4;
        count += 1;
    }
    assert_eq!(at, bytes.len(), "whole records");
    count
}

/// The lines of a metric file; of `epochs.csv`, without the columns of wall time (`time_s`,
/// second, and `throughput`, last), which differ between runs.
fn lines(path: &Path) -> Vec<String> {
    let epochs = path.ends_with("epochs.csv");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut fields: Vec<&str> = l.split(',').collect();
            if epochs {
                fields.remove(1);
                fields.pop();
            }
            fields.join(",")
        })
        .collect()
}

/// The checkpoints kept in a run's directory (the one a failure saves aside).
fn kept(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != "exception.safetensors")
        .collect();
    names.sort();
    names
}

#[test]
fn a_fit_run_again_after_a_failure_ends_as_the_uninterrupted_one() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let whole = tempfile::tempdir().unwrap();
    let reference = fit(whole.path(), Crash::Never, 1).unwrap();
    assert!(
        reference.epochs.len() >= 4,
        "the reference must train a few epochs: {reference:?}"
    );

    let last = reference.epochs.len();
    for crash in [Crash::Begin(2), Crash::Begin(last), Crash::End(3)] {
        let dir = tempfile::tempdir().unwrap();
        let err = fit(dir.path(), crash, 1).unwrap_err();
        assert!(matches!(err, Error::Hook { .. }), "{err}");
        assert!(dir.path().join("resume/resume.safetensors").exists());
        // Run again, from other initial weights: they come from the resume point.
        let resumed = fit(dir.path(), Crash::Never, 99).unwrap();
        assert_eq!(resumed, reference, "crashed: {crash:?}");
        // One TensorBoard event per epoch, as the uninterrupted run's (the crashed run's
        // events after the resume point are cut off).
        assert_eq!(records(dir.path()), records(whole.path()), "crashed: {crash:?}");
        // The metric files have one line per epoch, as the uninterrupted run's.
        assert_eq!(
            lines(&dir.path().join("metrics/epochs.csv")),
            lines(&whole.path().join("metrics/epochs.csv")),
        );
        assert_eq!(kept(dir.path()), kept(whole.path()), "the same checkpoints are kept");
    }
}

#[test]
fn a_fit_that_ended_ends_again_at_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let first = fit(dir.path(), Crash::Never, 1).unwrap();
    let again = fit(dir.path(), Crash::Never, 2).unwrap();
    assert_eq!(again.epochs, first.epochs);
    assert_eq!(again.stop, first.stop);
    assert_eq!(again.weights, first.weights, "the final weights are the resume point's");
}

#[test]
fn another_models_resume_point_is_refused_and_the_weights_stay() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    fit(dir.path(), Crash::Begin(3), 1).unwrap_err();
    let data = tutorial_data(5);
    let vs = VarStore::new(Device::Cpu);
    let other = nn::linear(vs.root() / "other", 20, 2, Default::default());
    let before = weights(&vs);
    let err = Trainer::new(&vs, &other)
        .optimizer(nn::AdamW::default(), 1e-2)
        .hooks(Hooks::none())
        .resumable(dir.path().join("resume"))
        .fit(&data)
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Checkpoint { .. }), "{message}");
    assert!(
        message.contains("another model") && message.contains("`other.weight` is missing"),
        "{message}"
    );
    assert_eq!(weights(&vs), before);
}

#[test]
fn an_epoch_cut_short_is_trained_again() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tutorial_data(5);
    let run = |dir: &Path, stop_in: Option<usize>| {
        tch::manual_seed(3);
        let vs = VarStore::new(Device::Cpu);
        let model = model(&vs);
        let stop = move |ctx: &trainmon::HookContext<'_>| -> Control {
            let state = ctx.state();
            if Some(state.epoch()) == stop_in && state.batch() == 5 {
                Control::stop("interrupted")
            } else {
                Control::Continue
            }
        };
        let history = Trainer::new(&vs, &model)
            .optimizer(nn::Sgd::default(), 1e-1)
            .epochs(4)
            .seed(5)
            .hooks(Hooks::none())
            .add_hook(trainmon::HookSpec::new(trainmon::Event::BatchEnd, "stopper"), stop)
            .resumable(dir)
            .fit(&data)
            .unwrap();
        (history, weights(&vs))
    };
    let whole = tempfile::tempdir().unwrap();
    let (reference, reference_weights) = run(whole.path(), None);
    let dir = tempfile::tempdir().unwrap();
    let (cut, _) = run(dir.path(), Some(3));
    assert_eq!(cut.len(), 3, "the cut epoch is in that run's history");
    assert_eq!(cut.epochs()[2].batches(), 5);
    let (resumed, resumed_weights) = run(dir.path(), None);
    assert_eq!(resumed.len(), 4);
    assert_eq!(resumed.epochs()[2].batches(), reference.epochs()[2].batches());
    assert_eq!(resumed.metric("loss"), reference.metric("loss"));
    assert_eq!(resumed_weights, reference_weights);
}

#[test]
fn a_corrupt_resume_point_is_an_error_naming_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tutorial_data(5);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resume.safetensors");
    let vs = VarStore::new(Device::Cpu);
    let model = nn::linear(vs.root(), 20, 2, Default::default());
    let fit = || {
        Trainer::new(&vs, &model)
            .optimizer(nn::Sgd::default(), 1e-1)
            .hooks(Hooks::none())
            .resumable(dir.path())
            .fit(&data)
    };
    // A weights file, not a resume point.
    vs.save(&file).unwrap();
    let err = fit().unwrap_err().to_string();
    assert!(
        err.contains("not a resume point") && err.contains("resume.safetensors"),
        "{err}"
    );
    // Truncated.
    std::fs::write(&file, b"\x10\x00\x00").unwrap();
    let err = fit().unwrap_err().to_string();
    assert!(err.contains("cannot be read"), "{err}");
}

/// State that resume points do not keep, of a type serde does not handle: a `Scratch`.
#[derive(Default)]
struct Opaque(usize);

static OPAQUE_SEEN: Mutex<Vec<usize>> = Mutex::new(Vec::new());

#[on_epoch_end(group = "opaque")]
fn opaque(mut count: Scratch<Opaque>) {
    count.0 += 1;
    OPAQUE_SEEN.lock().unwrap().push(count.0);
}

#[test]
fn a_scratch_starts_again_from_its_default_on_resume() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tutorial_data(5);
    let dir = tempfile::tempdir().unwrap();
    let fit = |epochs| {
        let vs = VarStore::new(Device::Cpu);
        let model = nn::linear(vs.root(), 20, 2, Default::default());
        Trainer::new(&vs, &model)
            .optimizer(nn::Sgd::default(), 1e-1)
            .epochs(epochs)
            .hooks(Hooks::groups(["opaque"]))
            .resumable(dir.path())
            .fit(&data)
            .unwrap()
    };
    OPAQUE_SEEN.lock().unwrap().clear();
    fit(2);
    let (history, logs) = trainmon_tests::capture_logs(|| fit(4));
    assert_eq!(history.len(), 4);
    assert_eq!(
        *OPAQUE_SEEN.lock().unwrap(),
        [1, 2, 1, 2],
        "counted again from the default"
    );
    assert!(
        !logs.iter().any(|(level, _)| level == "WARN"),
        "nothing to warn of: {logs:?}"
    );
}

/// Whether `slow` moves the time limit's clock on by 2.5 s at the end of epoch 2.
static SLOW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How far the time limit's clock has moved on, in milliseconds.
static AHEAD_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[on_epoch_end(group = "time")]
fn slow(state: &TrainState) -> Result<(), String> {
    if SLOW.load(Ordering::SeqCst) && state.epoch() == 2 {
        AHEAD_MS.fetch_add(2500, Ordering::SeqCst);
    }
    Ok(())
}

#[test]
fn a_time_limit_is_per_process_so_a_resumed_job_goes_on() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tutorial_data(5);
    let dir = tempfile::tempdir().unwrap();
    // The time limit's clock: still but where `slow` moves it on, however busy the machine.
    let origin = std::time::Instant::now();
    let fit = || {
        let vs = VarStore::new(Device::Cpu);
        let model = nn::linear(vs.root(), 20, 2, Default::default());
        Trainer::new(&vs, &model)
            .optimizer(nn::Sgd::default(), 1e-1)
            .epochs(6)
            .hooks(Hooks::groups(["time"]))
            .with(
                trainmon::hooks::TimeLimit::new(std::time::Duration::from_secs(2))
                    .clock(move || origin + std::time::Duration::from_millis(AHEAD_MS.load(Ordering::SeqCst))),
            )
            .resumable(dir.path())
            .fit(&data)
            .unwrap()
    };
    // The first process's clock passes 2.5 s at the end of epoch 2 (past the limit of 2 s,
    // which batches check): the limit stops it in epoch 3's first batch; its resume point is
    // epoch 2's. The second has 2 s again for 4 epochs, on a clock that stays put.
    SLOW.store(true, Ordering::SeqCst);
    let first = fit();
    SLOW.store(false, Ordering::SeqCst);
    AHEAD_MS.store(0, Ordering::SeqCst);
    assert_eq!(first.stop_reason().unwrap().hook, "TimeLimit");
    assert_eq!(first.len(), 3);
    // Run again: a new budget, and the job finishes.
    let history = fit();
    assert_eq!(history.len(), 6);
    assert!(history.stop_reason().is_none(), "{:?}", history.stop_reason());
    assert!(
        history.elapsed() > first.elapsed(),
        "the history counts the time of both processes"
    );
}

#[test]
fn a_fit_failing_within_an_epoch_goes_on_from_its_last_step_point() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let whole = tempfile::tempdir().unwrap();
    // 800 training samples in batches of 64: 13 batches an epoch; a point every 3 steps.
    let reference = fit_with(whole.path(), Crash::Never, 1, 3).unwrap();
    assert!(reference.epochs.len() >= 4, "{reference:?}");
    for (epoch, batch) in [(1, 2), (3, 8), (3, 13), (4, 1)] {
        // Where it goes on from: the latest point before the crash — after a step divisible by
        // 3 that is not an epoch's last, or at the end of an epoch.
        let step = (epoch - 1) * 13 + batch;
        let within = (1..step).filter(|s| s % 3 == 0 && s % 13 != 0).max().unwrap_or(0);
        let point = within.max((epoch - 1) * 13);
        let dir = tempfile::tempdir().unwrap();
        fit_with(dir.path(), Crash::Batch(epoch, batch), 1, 3).unwrap_err();
        // Run again from other initial weights, which a resume point replaces (with none, it
        // starts over: from the same ones).
        let init = if point == 0 { 1 } else { 99 };
        let (resumed, logs) = trainmon_tests::capture_logs(|| fit_with(dir.path(), Crash::Never, init, 3).unwrap());
        assert_eq!(resumed, reference, "crashed after batch {batch} of epoch {epoch}");
        for file in ["epochs.csv", "steps.csv"] {
            assert_eq!(
                lines(&dir.path().join("metrics").join(file)),
                lines(&whole.path().join("metrics").join(file)),
                "{file}, crashed after batch {batch} of epoch {epoch}"
            );
        }
        assert_eq!(records(dir.path()), records(whole.path()));
        assert_eq!(kept(dir.path()), kept(whole.path()), "the same checkpoints are kept");
        let said = match (point / 13, point % 13) {
            (0, 0) => None,
            (epochs, 0) => Some(format!("{epochs} epochs done, step {point}")),
            (epochs, batches) => Some(format!("{epochs} epochs and {batches} batches done, step {point}")),
        };
        let resumed_from = logs
            .iter()
            .find(|(_, m)| m.starts_with("resuming from"))
            .map(|(_, m)| m.clone());
        match said {
            Some(said) => assert!(
                resumed_from.as_deref().is_some_and(|m| m.ends_with(&said)),
                "{said}: {logs:?}"
            ),
            None => assert!(resumed_from.is_none(), "{logs:?}"),
        }
    }
}

/// A metric of the test's own that keeps no state: the number of samples it saw.
#[derive(Default)]
struct Seen(f64);

impl trainmon::Metric for Seen {
    fn name(&self) -> &str {
        "seen"
    }
    fn update(&mut self, _: &tch::Tensor, targets: &tch::Tensor) -> Result<(), tch::TchError> {
        self.0 += targets.size()[0] as f64;
        Ok(())
    }
    fn compute(&self) -> Result<f64, tch::TchError> {
        Ok(self.0)
    }
    fn reset(&mut self) {
        self.0 = 0.0;
    }
}

#[test]
fn within_an_epoch_accumulation_windows_device_sums_and_a_stateless_metric() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tutorial_data(5);
    let run = |dir: &Path, crash: (usize, usize), init: i64| {
        *CRASH_IN.lock().unwrap() = crash;
        CRASH_AT.store(0, Ordering::SeqCst);
        CRASH_AT_END.store(0, Ordering::SeqCst);
        tch::manual_seed(init);
        let vs = VarStore::new(Device::Cpu);
        let model = model(&vs);
        let history = Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-2)
            .epochs(3)
            .batch_size(64)
            .shuffle(false)
            .accumulate_gradients(3)
            .lazy_reads(true)
            .metric(Seen::default)
            .seed(4)
            .hooks(Hooks::groups(["resume"]))
            .resumable(dir)
            .resumable_steps(2)
            .fit(&data)?;
        Ok::<_, Error>((history, weights(&vs)))
    };
    let whole = tempfile::tempdir().unwrap();
    let (reference, reference_weights) = run(whole.path(), (0, 0), 1).unwrap();
    // 1000 samples in batches of 64: 16 batches an epoch, steps at batches 3, 6, 9, 12, 15
    // and 16, so 6 steps an epoch. Batch 10 of epoch 2 is step 9; the last point before it is
    // step 8, after batch 6.
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), (2, 10), 1).unwrap_err();
    let ((resumed, resumed_weights), logs) = trainmon_tests::capture_logs(|| run(dir.path(), (0, 0), 99).unwrap());
    assert!(
        logs.iter()
            .any(|(_, m)| m.ends_with("1 epochs and 6 batches done, step 8")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|(level, m)| level == "WARN" && m.contains("metric `seen` starts this epoch over")),
        "{logs:?}"
    );
    assert_eq!(resumed_weights, reference_weights);
    let bits = |h: &trainmon::History, name: &str| -> Vec<u64> { h.metric(name).iter().map(|v| v.to_bits()).collect() };
    for name in ["loss", "accuracy"] {
        assert_eq!(bits(&resumed, name), bits(&reference, name), "{name}");
    }
    // The stateless metric covers only the 10 batches after the resume in epoch 2.
    assert_eq!(reference.metric("seen"), [1000.0, 1000.0, 1000.0]);
    assert_eq!(resumed.metric("seen"), [1000.0, 1000.0 - 6.0 * 64.0, 1000.0]);
}

/// Calls of `flaky_logger`, which fails at its first.
static FLAKY_CALLS: AtomicUsize = AtomicUsize::new(0);

#[on_epoch_end(group = "tolerated")]
fn flaky_logger() -> Result<(), String> {
    if FLAKY_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err("the log server is gone".into());
    }
    Ok(())
}

#[test]
fn a_hook_disabled_after_a_tolerated_failure_stays_disabled_when_resumed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tutorial_data(5);
    let dir = tempfile::tempdir().unwrap();
    let fit = |crash_at| {
        CRASH_AT.store(crash_at, Ordering::SeqCst);
        CRASH_AT_END.store(0, Ordering::SeqCst);
        *CRASH_IN.lock().unwrap() = (0, 0);
        let vs = VarStore::new(Device::Cpu);
        let model = nn::linear(vs.root(), 20, 2, Default::default());
        Trainer::new(&vs, &model)
            .optimizer(nn::Sgd::default(), 1e-1)
            .epochs(5)
            .hooks(Hooks::groups(["tolerated", "resume"]))
            .tolerate_failures(["flaky_logger"])
            .resumable(dir.path())
            .fit(&data)
    };
    FLAKY_CALLS.store(0, Ordering::SeqCst);
    fit(3).unwrap_err();
    assert_eq!(
        FLAKY_CALLS.load(Ordering::SeqCst),
        1,
        "failed at epoch 1, then disabled"
    );
    assert_eq!(fit(0).unwrap().len(), 5);
    assert_eq!(
        FLAKY_CALLS.load(Ordering::SeqCst),
        1,
        "still disabled in the resumed fit"
    );
}
