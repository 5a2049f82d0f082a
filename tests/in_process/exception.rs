//! A hook that fails — with an error or a panic — stops training with `Error::Hook`, which names
//! the hook and where it is defined; the `on_exception` hooks run with that error first.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use tch::nn;
use trainmon::prelude::*;
use trainmon::Error;
use trainmon_tests::{tutorial_data, tutorial_model};

/// 0: the failing hook succeeds; 1: it returns an error at epoch 2; 2: it panics there.
static MODE: AtomicU8 = AtomicU8::new(0);
static EXCEPTIONS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static ENDS: Mutex<usize> = Mutex::new(0);

#[derive(Debug)]
struct Diverged(f64);

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "loss diverged to {}", self.0)
    }
}

impl std::error::Error for Diverged {}

#[on_epoch_end(group = "exception")]
fn fragile(epoch: &EpochLogs) -> Result<Control, Diverged> {
    match (MODE.load(Ordering::SeqCst), epoch.epoch()) {
        (1, 2) => Err(Diverged(epoch.loss())),
        (2, 2) => panic!("fragile hook gave up"),
        _ => Ok(Control::Continue),
    }
}

// A `Result<(), String>` hook: any error type that converts to a boxed error will do.
#[on_epoch_begin(group = "exception")]
fn string_errors(state: &TrainState) -> Result<(), String> {
    if MODE.load(Ordering::SeqCst) == 3 && state.epoch() == 3 {
        return Err(format!("no epoch {} today", state.epoch()));
    }
    Ok(())
}

#[on_exception(group = "exception")]
fn report(error: &Error, history: &History) {
    EXCEPTIONS
        .lock()
        .unwrap()
        .push(format!("{} epochs: {error:#}", history.len()));
}

// Also an `on_exception` hook, failing itself: its failure must not hide the original error.
#[on_exception(priority = 1, group = "exception")]
fn broken_reporter() -> Result<(), String> {
    Err("the reporter failed too".into())
}

#[on_train_end(group = "exception")]
fn train_end() {
    *ENDS.lock().unwrap() += 1;
}

fn fit() -> Result<History, Error> {
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(trainmon::Hooks::groups(["exception"]))
        .epochs(4)
        .batch_size(250)
        .fit(&data)
}

#[test]
fn failing_hooks_are_reported_by_name_and_place() {
    let _serial = trainmon_tests::serial();
    assert_eq!(fit().unwrap().len(), 4, "mode 0: nothing fails");
    assert_eq!(*ENDS.lock().unwrap(), 1);
    let file_line = |needle: &str| {
        let source = include_str!("exception.rs");
        let line = source.lines().position(|l| l.contains(needle)).unwrap() + 1;
        format!("tests/in_process/exception.rs:{line}")
    };

    let cases = [
        (
            1,
            "fragile",
            file_line("fn fragile("),
            "failed: loss diverged to",
            "an error",
        ),
        (
            2,
            "fragile",
            file_line("fn fragile("),
            "failed: panicked: fragile hook gave up",
            "a panic",
        ),
        (
            3,
            "string_errors",
            file_line("fn string_errors("),
            "failed: no epoch 3 today",
            "a String error",
        ),
    ];
    for (mode, hook, location, message, why) in cases {
        MODE.store(mode, Ordering::SeqCst);
        EXCEPTIONS.lock().unwrap().clear();
        let err = fit().unwrap_err();
        let Error::Hook {
            hook: name,
            location: at,
            ..
        } = &err
        else {
            panic!("{why}: {err:?}")
        };
        assert_eq!(name, hook, "{why}");
        assert_eq!(at.to_string(), location, "{why}: where the hook is defined");
        let text = format!("{err:#}");
        // The cause is printed once: as the source, not in the error's own message.
        let cause = message.trim_start_matches("failed: ");
        let source = std::error::Error::source(&err).expect("the hook's error is the source");
        assert!(source.to_string().starts_with(cause), "{why}: {source}");
        assert!(!err.to_string().contains(cause), "{why}: {err}");
        assert!(
            text.starts_with(&format!("hook `{hook}` (")) && text.contains(&location) && text.contains(message),
            "{why}: {text}"
        );
        let reported = EXCEPTIONS.lock().unwrap().clone();
        assert_eq!(reported.len(), 1, "{why}: on_exception ran once");
        assert!(
            reported[0].ends_with(&text),
            "{why}: on_exception saw the error: {reported:?}"
        );
    }
    assert_eq!(*ENDS.lock().unwrap(), 1, "train end does not run after an error");
}

/// An `on_exception` hook that fails too is a warning, one line with its cause, after the error
/// that ended training (which `fit` returns): no second error.
#[test]
fn a_failing_exception_hook_is_a_warning_with_its_cause() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(1);
    let (result, logs) = trainmon_tests::capture_logs(|| {
        Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-3)
            .epochs(2)
            .hooks(trainmon::Hooks::none())
            .add_hook(trainmon::HookSpec::new(trainmon::Event::EpochEnd, "breaks"), || {
                Err::<(), _>("the disk is full")
            })
            .add_hook(trainmon::HookSpec::new(trainmon::Event::Exception, "cleanup"), || {
                Err::<(), _>("the disk is still full")
            })
            .fit(&data)
    });
    let err = format!("{:#}", result.unwrap_err());
    assert!(
        err.starts_with("hook `breaks` (tests/in_process/exception.rs:") && err.ends_with(": the disk is full"),
        "{err}"
    );
    let warned: Vec<&String> = logs
        .iter()
        .filter(|(level, _)| level == "WARN")
        .map(|(_, line)| line)
        .collect();
    assert!(
        warned
            .iter()
            .any(|line| line.contains("hook `cleanup` (tests/in_process/exception.rs:")
                && line.contains("failed: the disk is still full (while handling the error that ended training)")),
        "{logs:?}"
    );
    assert!(!logs.iter().any(|(level, _)| level == "ERROR"), "{logs:?}");
}
