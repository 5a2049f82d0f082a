//! A stop asked for by a batch hook ends training after that batch: the epoch ends early, its
//! end hooks run on what was trained, and it is recorded as it is.

use std::sync::Mutex;
use tch::nn;
use trainmon::prelude::*;
use trainmon_tests::{tutorial_data, tutorial_model};

static EPOCH_ENDS: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());
static BATCH_ENDS: Mutex<usize> = Mutex::new(0);

#[on_batch_end(group = "batch_stop")]
fn stop_mid_epoch(state: &TrainState) -> Control {
    *BATCH_ENDS.lock().unwrap() += 1;
    if state.epoch() == 2 && state.batch() == 5 {
        Control::stop("enough batches")
    } else {
        Control::Continue
    }
}

#[on_epoch_end(group = "batch_stop")]
fn epoch_end(epoch: &EpochLogs) {
    EPOCH_ENDS.lock().unwrap().push((epoch.epoch(), epoch.batches()));
}

#[test]
fn batch_stop_ends_the_epoch_after_that_batch() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(trainmon::Hooks::groups(["batch_stop"]))
        .epochs(4)
        .batch_size(32)
        .fit(&data)
        .unwrap();

    assert_eq!(*BATCH_ENDS.lock().unwrap(), 32 + 5, "no batch after the stop");
    assert_eq!(
        *EPOCH_ENDS.lock().unwrap(),
        [(1, 32), (2, 5)],
        "epoch 2 ended after its 5th batch"
    );
    assert_eq!(history.len(), 2);
    assert_eq!(
        history.last().unwrap().samples(),
        5 * 32,
        "the short epoch counts what it trained"
    );
    let stop = history.stop_reason().expect("a stop reason");
    assert_eq!(
        (stop.hook.as_str(), stop.epoch, stop.reason.as_str()),
        ("stop_mid_epoch", 2, "enough batches")
    );
}
