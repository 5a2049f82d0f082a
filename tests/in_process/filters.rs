//! Filters fire exactly where Ignite's would: every, once, a list, after, before, ranges, a
//! predicate, and the global step as the counter.

use std::sync::Mutex;
use tch::nn;
use trainmon::prelude::*;
use trainmon_tests::{tutorial_data, tutorial_model};

static FIRED: Mutex<Vec<(&str, usize, usize, u64)>> = Mutex::new(Vec::new());

fn fired(name: &'static str, state: &TrainState) {
    FIRED
        .lock()
        .unwrap()
        .push((name, state.epoch(), state.batch(), state.global_step()));
}

#[on_batch_end(every = 4, group = "filters")]
fn every_4(s: &TrainState) {
    fired("every_4", s)
}
#[on_batch_end(once = 3, group = "filters")]
fn once_3(s: &TrainState) {
    fired("once_3", s)
}
#[on_batch_end(once = [1, 10], group = "filters")]
fn once_list(s: &TrainState) {
    fired("once_list", s)
}
#[on_batch_end(after = 8, group = "filters")]
fn after_8(s: &TrainState) {
    fired("after_8", s)
}
#[on_batch_end(before = 3, group = "filters")]
fn before_3(s: &TrainState) {
    fired("before_3", s)
}
#[on_batch_end(every = 2, after = 2, before = 9, group = "filters")]
fn range(s: &TrainState) {
    fired("range", s)
}
#[on_batch_end(every = 7, counter = global_step, group = "filters")]
fn global_7(s: &TrainState) {
    fired("global_7", s)
}
#[on_batch_begin(once = [12, 25], counter = global_step, group = "filters")]
fn global_once(s: &TrainState) {
    fired("global_once", s)
}

fn second_epoch(state: &TrainState) -> bool {
    state.epoch() == 2
}

#[on_batch_end(every = 5, when = second_epoch, group = "filters")]
fn when_second(s: &TrainState) {
    fired("when_second", s)
}
#[on_epoch_end(every = 2, group = "filters")]
fn even_epochs(s: &TrainState) {
    fired("even_epochs", s)
}
#[on_epoch_begin(once = 3, group = "filters")]
fn third_epoch(s: &TrainState) {
    fired("third_epoch", s)
}

/// (epoch, batch) pairs where hook `name` fired.
fn at(name: &str) -> Vec<(usize, usize)> {
    FIRED
        .lock()
        .unwrap()
        .iter()
        .filter(|f| f.0 == name)
        .map(|f| (f.1, f.2))
        .collect()
}

/// Each of the 3 epochs, the given batches.
fn each_epoch(batches: &[usize]) -> Vec<(usize, usize)> {
    (1..=3).flat_map(|e| batches.iter().map(move |&b| (e, b))).collect()
}

#[test]
fn filters_fire_where_they_should() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    // 1000 samples in batches of 100: 10 batches an epoch, 30 steps in 3 epochs.
    Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(trainmon::Hooks::groups(["filters"]))
        .epochs(3)
        .batch_size(100)
        .fit(&data)
        .unwrap();

    let cases: [(&str, Vec<(usize, usize)>); 11] = [
        ("every_4", each_epoch(&[4, 8])),
        ("once_3", each_epoch(&[3])),
        ("once_list", each_epoch(&[1, 10])),
        ("after_8", each_epoch(&[9, 10])),
        ("before_3", each_epoch(&[1, 2])),
        ("range", each_epoch(&[4, 6, 8])),
        // Global steps 7, 14, 21, 28 are batches 7 of epoch 1, 4 of epoch 2, 1 and 8 of epoch 3.
        ("global_7", vec![(1, 7), (2, 4), (3, 1), (3, 8)]),
        // Before the step: steps 12 and 25 are batches 2 of epoch 2 and 5 of epoch 3.
        ("global_once", vec![(2, 2), (3, 5)]),
        ("when_second", vec![(2, 5), (2, 10)]),
        ("even_epochs", vec![(2, 0)]),
        ("third_epoch", vec![(3, 0)]),
    ];
    for (name, want) in cases {
        assert_eq!(at(name), want, "{name}");
    }
    // The global step a batch-begin hook sees is the steps done so far (one less than its own).
    let steps: Vec<u64> = FIRED
        .lock()
        .unwrap()
        .iter()
        .filter(|f| f.0 == "global_once")
        .map(|f| f.3)
        .collect();
    assert_eq!(steps, [11, 24]);
}
