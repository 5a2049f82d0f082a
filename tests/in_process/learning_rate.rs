//! Hooks read and set the optimizer's learning rate; the optimizer uses the new value from the
//! next step on.

use std::sync::Mutex;
use tch::nn::{self, VarStore};
use tch::Kind;
use trainmon::prelude::*;
use trainmon_tests::{tutorial_data, tutorial_model};

static SEEN: Mutex<Vec<(usize, f64, f64)>> = Mutex::new(Vec::new());
static WEIGHTS: Mutex<Vec<Vec<f64>>> = Mutex::new(Vec::new());
static SCHEDULE: Mutex<Vec<f64>> = Mutex::new(Vec::new());

#[on_epoch_begin(group = "learning_rate")]
fn record(state: &TrainState, lr: LearningRate) {
    SEEN.lock()
        .unwrap()
        .push((state.epoch(), state.learning_rate(), lr.get()));
}

// Sets the learning rate planned for the next epoch.
#[on_epoch_end(group = "learning_rate")]
fn schedule(epoch: &EpochLogs, lr: LearningRate) {
    if let Some(next) = SCHEDULE.lock().unwrap().get(epoch.epoch()) {
        lr.set(*next);
    }
}

#[on_epoch_end(priority = -1, group = "learning_rate")]
fn snapshot(vs: &VarStore) {
    let weights = vs
        .trainable_variables()
        .iter()
        .flat_map(|t| Vec::<f64>::try_from(t.flatten(0, -1).to_kind(Kind::Double)).unwrap())
        .collect();
    WEIGHTS.lock().unwrap().push(weights);
}

fn fit(schedule: &[f64]) -> trainmon::Result<History> {
    *SCHEDULE.lock().unwrap() = schedule.to_vec();
    SEEN.lock().unwrap().clear();
    WEIGHTS.lock().unwrap().clear();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    Trainer::new(&vs, &model)
        .optimizer(nn::Sgd::default(), schedule[0])
        .hooks(trainmon::Hooks::groups(["learning_rate"]))
        .epochs(3)
        .batch_size(100)
        .fit(&data)
}

#[test]
fn learning_rate_changes_take_effect() {
    let _serial = trainmon_tests::serial();
    fit(&[0.1, 0.05, 0.0]).unwrap();
    assert_eq!(
        *SEEN.lock().unwrap(),
        [(1, 0.1, 0.1), (2, 0.05, 0.05), (3, 0.0, 0.0)],
        "state and parameter agree"
    );
    let weights = WEIGHTS.lock().unwrap().clone();
    assert_ne!(weights[0], weights[1], "epoch 2 trains at 0.05");
    assert_eq!(
        weights[1], weights[2],
        "epoch 3 trains at learning rate 0: nothing moves"
    );

    let err = fit(&[0.1, f64::NAN]).unwrap_err().to_string();
    assert!(
        err.contains("`on_epoch_end` hook set the learning rate to NaN"),
        "{err}"
    );
}
