//! Hooks added at run time take the same typed parameters as annotated functions — `Local<T>`
//! included — and are checked against their event when `fit` starts; the testing harness runs
//! them without training.

use std::sync::{Arc, Mutex};
use tch::{nn, Tensor};
use trainmon::prelude::*;
use trainmon::testing::Harness;
use trainmon::{Error, Event, Filter, HookSpec, Hooks};
use trainmon_tests::{capture_logs, tutorial_data, tutorial_model};

struct Label(&'static str);

/// Halves the learning rate at every epoch end: a plain function, not annotated.
fn halve(epoch: &EpochLogs, lr: LearningRate) {
    assert!(epoch.loss().is_finite());
    lr.set(lr.get() * 0.5);
}

#[test]
fn closures_and_functions_take_typed_parameters() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let labels = Arc::new(Mutex::new(Vec::new()));
    let history = {
        let (seen, labels) = (seen.clone(), labels.clone());
        Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-2)
            .epochs(3)
            .batch_size(32)
            .hooks(Hooks::none())
            .resource(Label("run a"))
            .add_hook(
                HookSpec::new(Event::BatchEnd, "every_tenth").filter(Filter::ALWAYS.every(10)),
                move |batch: &BatchLogs, state: &TrainState, mut calls: Local<u32>| {
                    *calls += 1;
                    seen.lock().unwrap().push((state.epoch(), batch.number(), *calls));
                },
            )
            .add_hook(HookSpec::new(Event::EpochEnd, "halve"), halve)
            .add_hook(
                HookSpec::new(Event::TrainEnd, "label"),
                move |label: Res<Label>, history: &History| labels.lock().unwrap().push((label.0, history.len())),
            )
            .fit(&data)
            .unwrap()
    };
    // 32 batches per epoch: batches 10, 20, 30 of each; the Local counts over the fit.
    let want: Vec<(usize, usize, u32)> = (1..=3)
        .flat_map(|epoch| [10, 20, 30].map(|b| (epoch, b)))
        .zip(1..)
        .map(|((epoch, batch), calls)| (epoch, batch, calls))
        .collect();
    assert_eq!(*seen.lock().unwrap(), want);
    let rates: Vec<f64> = history.epochs().iter().map(|e| e.learning_rate()).collect();
    assert_eq!(rates, [1e-2, 5e-3, 2.5e-3], "the function halved it after each epoch");
    assert_eq!(*labels.lock().unwrap(), [("run a", 3)]);
}

#[test]
fn a_parameter_missing_at_the_event_is_refused_before_any_batch() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let ran = Arc::new(Mutex::new(0));
    let counter = ran.clone();
    let err = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(Hooks::none())
        .add_hook(HookSpec::new(Event::BatchBegin, "counter"), move || {
            *counter.lock().unwrap() += 1
        })
        .add_hook(HookSpec::new(Event::EpochEnd, "wrong"), |batch: &BatchLogs| {
            println!("{}", batch.loss())
        })
        .fit(&data)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::Config {
                setting: "add_hook",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains("hook `wrong` (tests/in_process/run_time_hooks.rs:")
            && text.contains("its parameter `&BatchLogs` does not exist at `on_epoch_end`"),
        "{text}"
    );
    assert_eq!(*ran.lock().unwrap(), 0, "no batch ran");

    // A resource the trainer was not given: refused too, naming the type.
    let err = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(Hooks::none())
        .add_hook(HookSpec::new(Event::EpochEnd, "needs_label"), |label: Res<Label>| {
            println!("{}", label.0)
        })
        .fit(&data)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("takes `Res<in_process::run_time_hooks::Label>`"),
        "{err}"
    );
}

#[test]
fn a_closures_locals_are_kept_on_resume_as_an_annotated_functions() {
    let _serial = trainmon_tests::serial();
    let dir = tempfile::tempdir().unwrap();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let counts = Arc::new(Mutex::new(Vec::new()));
    let fit = |epochs: usize| {
        let counts = counts.clone();
        Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-3)
            .epochs(epochs)
            .batch_size(500)
            .seed(3)
            .hooks(Hooks::none())
            .resumable(dir.path())
            .add_hook(
                HookSpec::new(Event::EpochEnd, "count"),
                move |epoch: &EpochLogs, mut n: Local<u32>, mut losses: Local<Vec<f64>>, mut calls: Scratch<u32>| {
                    *n += 1;
                    *calls += 1;
                    losses.push(epoch.loss());
                    counts.lock().unwrap().push((*n, losses.len(), *calls));
                },
            )
            .fit(&data)
            .unwrap()
    };
    fit(2);
    let (history, logs) = capture_logs(|| fit(4));
    assert_eq!(history.len(), 4);
    assert_eq!(
        *counts.lock().unwrap(),
        [(1, 1, 1), (2, 2, 2), (3, 3, 1), (4, 4, 2)],
        "the `Local`s went on from the resume point, the `Scratch` from its default"
    );
    assert!(!logs.iter().any(|(level, _)| level == "WARN"), "{logs:?}");
    // What the point keeps (its document is UTF-8 in the file), by place among the closure's
    // parameters.
    let text = String::from_utf8_lossy(&std::fs::read(dir.path().join("resume.safetensors")).unwrap()).into_owned();
    assert!(
        text.contains("#1: Local<u32>") && text.contains("#2: Local<alloc::vec::Vec<f64>>"),
        "{text}"
    );
    assert!(!text.contains("#3"), "a `Scratch` is not kept: {text}");
}

#[test]
fn the_harness_runs_a_batch_hook_on_the_logs_it_was_given() {
    let _serial = trainmon_tests::serial();
    let mut harness = Harness::new();
    let mut hook = harness
        .hook(Event::BatchEnd, |batch: &BatchLogs, state: &TrainState| {
            if batch.accuracy() < 0.5 {
                Control::stop(format!("accuracy {} at batch {}", batch.accuracy(), state.batch()))
            } else {
                Control::Continue
            }
        })
        .unwrap();
    let outputs = Tensor::from_slice2(&[[2.0f32, 0.0], [0.0, 2.0]]);
    let right = Tensor::from_slice(&[0i64, 1]);
    let wrong = Tensor::from_slice(&[1i64, 0]);
    harness.next_batch(0.5, &outputs, &right).unwrap();
    assert_eq!(harness.run(Event::BatchEnd, &mut *hook).unwrap(), Control::Continue);
    harness
        .next_batch(0.7, &outputs, &wrong)
        .unwrap()
        .next_batch(0.7, &outputs, &wrong)
        .unwrap();
    assert_eq!(
        harness.run(Event::BatchEnd, &mut *hook).unwrap(),
        Control::stop("accuracy 0.3333333333333333 at batch 3")
    );
    assert_eq!(harness.batch_logs().number(), 3);
    assert!((harness.batch_logs().loss() - 0.6333).abs() < 1e-3);
    // A hook whose parameter does not exist at the event is refused, as `fit` would.
    let refused = harness
        .hook(Event::TrainBegin, |_: &EpochLogs| ())
        .map(|_| ())
        .unwrap_err();
    assert!(
        refused.to_string().contains("does not exist at `on_train_begin`"),
        "{refused}"
    );
}
