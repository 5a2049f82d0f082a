//! A hook returning `Control::Stop` at an epoch's end ends training after that epoch; the stop
//! reason is in the history, and the train-end hooks still run and see it.

use std::sync::Mutex;
use tch::nn;
use trainmon::prelude::*;
use trainmon::{Event, StopReason};
use trainmon_tests::{tutorial_data, tutorial_model};

static EPOCHS_BEGUN: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static SEEN_AT_END: Mutex<Option<(usize, Option<StopReason>)>> = Mutex::new(None);

#[on_epoch_begin(group = "control_stop")]
fn begun(state: &TrainState) {
    EPOCHS_BEGUN.lock().unwrap().push(state.epoch());
}

#[on_epoch_end(group = "control_stop")]
fn stop_after_two(epoch: &EpochLogs) -> Control {
    if epoch.epoch() == 2 {
        Control::stop("two epochs are enough")
    } else {
        Control::Continue
    }
}

// Runs after the stop was asked for, in the same event: the other hooks still run.
#[on_epoch_end(priority = -1, group = "control_stop")]
fn after_stop(mut calls: Local<usize>) {
    *calls += 1;
}

#[on_train_end(group = "control_stop")]
fn train_end(history: &History) {
    *SEEN_AT_END.lock().unwrap() = Some((history.len(), history.stop_reason().cloned()));
}

#[test]
fn stop_ends_training_after_that_epoch() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(trainmon::Hooks::groups(["control_stop"]))
        .epochs(10)
        .batch_size(32)
        .fit(&data)
        .unwrap();

    assert_eq!(history.len(), 2, "epochs 1 and 2 ran, then training stopped");
    assert_eq!(*EPOCHS_BEGUN.lock().unwrap(), [1, 2], "epoch 3 never began");
    let want = StopReason {
        cause: trainmon::StopCause::Hook,
        reason: "two epochs are enough".into(),
        hook: "stop_after_two".into(),
        event: Event::EpochEnd,
        epoch: 2,
    };
    assert_eq!(history.stop_reason(), Some(&want), "the stop is recorded with its hook");
    assert_eq!(
        *SEEN_AT_END.lock().unwrap(),
        Some((2, Some(want))),
        "train end ran and saw the stop"
    );
    assert!(history.stop_reason().unwrap().to_string().contains("stop_after_two"));
}
