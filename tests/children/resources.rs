//! Values the application gives the trainer reach the hooks that take them (`Res<T>`); a hook
//! that takes one the trainer was not given stops `fit` before any batch, naming the hook and
//! the type. And `Logger` without a subscriber says so, once.

use std::process::Command;
use std::sync::Mutex;
use tch::nn;
use trainmon::hooks::Logger;
use trainmon::prelude::*;
use trainmon::{Error, Event, HookContext, HookSpec, Hooks};
use trainmon_tests::{tutorial_data, tutorial_model};

struct Patience(u32);

#[derive(Debug, PartialEq)]
struct Label(&'static str);

/// What the hooks saw: (event, patience, label).
static SEEN: Mutex<Vec<(&str, u32, &str)>> = Mutex::new(Vec::new());

#[on_train_begin(group = "resources")]
fn at_start(patience: Res<Patience>, label: Res<Label>) {
    SEEN.lock().unwrap().push(("train_begin", patience.0, label.0));
}

#[on_epoch_end(group = "resources")]
fn at_epoch_end(label: Res<Label>, epoch: &EpochLogs, patience: Res<Patience>) {
    assert!(epoch.epoch() >= 1);
    SEEN.lock().unwrap().push(("epoch_end", patience.0, label.0));
}

/// Only in the group `missing`: needs a resource no test gives.
struct NeverGiven;

#[on_batch_end(group = "missing")]
fn needs_what_is_missing(_: Res<NeverGiven>) {
    panic!("never called: fit refuses to start");
}

#[test]
fn resources_reach_the_hooks_that_take_them() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(1);
    let from_closure = std::sync::Arc::new(Mutex::new(Vec::new()));
    let seen = from_closure.clone();
    Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(2)
        .batch_size(500)
        .hooks(Hooks::groups(["resources"]))
        .resource(Patience(1))
        .resource(Patience(7)) // replaces the first
        .resource(Label("run a"))
        .add_hook(HookSpec::new(Event::EpochEnd, "closure"), move |ctx: &HookContext| {
            seen.lock().unwrap().push(ctx.resource::<Label>().map(|l| l.0))
        })
        .fit(&data)
        .unwrap();
    assert_eq!(
        *SEEN.lock().unwrap(),
        [
            ("train_begin", 7, "run a"),
            ("epoch_end", 7, "run a"),
            ("epoch_end", 7, "run a")
        ]
    );
    assert_eq!(*from_closure.lock().unwrap(), [Some("run a"), Some("run a")]);
}

#[test]
fn a_missing_resource_stops_fit_before_any_batch_naming_the_hook_and_the_type() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(1);
    let before = trainmon_tests::weights(&vs);
    let err = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(2)
        .hooks(Hooks::groups(["missing"]))
        .fit(&data)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config {
                setting: "resource",
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    for part in [
        "hook `needs_what_is_missing` (",
        "tests/children/resources.rs:",
        "`Res<children::resources::NeverGiven>`",
        ".resource(",
    ] {
        assert!(message.contains(part), "{part:?} in {message}");
    }
    assert_eq!(trainmon_tests::weights(&vs), before, "nothing trained");
}

/// Set in the child of the test below.
const CHILD: &str = "TRAINMON_RESOURCES_LOGGER_CHILD";

#[test]
fn a_logger_without_a_subscriber_says_so_once() {
    if std::env::var_os(CHILD).is_some() {
        let data = tutorial_data(1);
        let (vs, model) = tutorial_model(1);
        Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-3)
            .epochs(3)
            .hooks(Hooks::none())
            .with(Logger::new().every(5))
            .fit(&data)
            .unwrap();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            trainmon_tests::test_name(module_path!(), "a_logger_without_a_subscriber_says_so_once").as_str(),
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let notes = stderr.matches("no subscriber is installed").count();
    assert_eq!(notes, 1, "one note, however many lines were lost: {stderr}");
    assert!(stderr.contains("trainmon::logging::init()"), "{stderr}");
}
