//! Every event fires, in the documented order, with a validation set; one function may carry
//! several event attributes; the step events see gradients through `&VarStore`.

use std::sync::Mutex;
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};
use trainmon::prelude::*;
use trainmon::Event;

static SEEN: Mutex<Vec<(Event, usize)>> = Mutex::new(Vec::new());
static VAL_BATCHES: Mutex<Vec<(usize, f64, f64)>> = Mutex::new(Vec::new());
static GRADS: Mutex<Vec<(Event, bool)>> = Mutex::new(Vec::new());
/// An event and the `val_loss`, `val_accuracy` its epoch logs held.
type ValMetrics = (Event, Option<f64>, Option<f64>);
static EPOCHS: Mutex<Vec<ValMetrics>> = Mutex::new(Vec::new());

fn saw(event: Event, state: &TrainState) {
    let count = match event {
        Event::EpochBegin | Event::ValidationBegin | Event::ValidationEnd | Event::EpochEnd => state.epoch(),
        _ => state.batch(),
    };
    SEEN.lock().unwrap().push((event, count));
}

fn grads_defined(vs: &VarStore) -> bool {
    vs.trainable_variables()
        .iter()
        .all(|v| v.grad().defined() && v.grad().abs().sum(Kind::Double).double_value(&[]) > 0.0)
}

#[on_train_begin(group = "all_events")]
fn train_begin(s: &TrainState) {
    saw(Event::TrainBegin, s)
}
#[on_epoch_begin(group = "all_events")]
fn epoch_begin(s: &TrainState) {
    saw(Event::EpochBegin, s)
}
#[on_batch_begin(group = "all_events")]
fn batch_begin(s: &TrainState) {
    saw(Event::BatchBegin, s)
}
#[on_before_backward(group = "all_events")]
fn before_backward(s: &TrainState, vs: &VarStore) {
    saw(Event::BeforeBackward, s);
    // Gradients were zeroed before the backward pass (or never computed, at the first step).
    let zero = vs
        .trainable_variables()
        .iter()
        .all(|v| !v.grad().defined() || v.grad().abs().sum(Kind::Double).double_value(&[]) == 0.0);
    GRADS.lock().unwrap().push((Event::BeforeBackward, !zero));
}
#[on_after_backward(group = "all_events")]
fn after_backward(s: &TrainState, vs: &VarStore) {
    saw(Event::AfterBackward, s);
    GRADS.lock().unwrap().push((Event::AfterBackward, grads_defined(vs)));
}
#[on_before_optimizer_step(group = "all_events")]
fn before_step(s: &TrainState) {
    saw(Event::BeforeOptimizerStep, s)
}
#[on_batch_end(group = "all_events")]
fn batch_end(s: &TrainState) {
    saw(Event::BatchEnd, s)
}
#[on_validation_begin(group = "all_events")]
fn validation_begin(s: &TrainState) {
    saw(Event::ValidationBegin, s)
}
#[on_validation_batch_end(group = "all_events")]
fn validation_batch_end(batch: &BatchLogs) {
    SEEN.lock().unwrap().push((Event::ValidationBatchEnd, batch.number()));
    VAL_BATCHES
        .lock()
        .unwrap()
        .push((batch.number(), batch.loss(), batch.accuracy()));
}
#[on_validation_end(group = "all_events")]
fn validation_end(s: &TrainState, epoch: &EpochLogs) {
    saw(Event::ValidationEnd, s);
    EPOCHS
        .lock()
        .unwrap()
        .push((Event::ValidationEnd, epoch.val_loss(), epoch.get("val_accuracy")));
}
#[on_epoch_end(group = "all_events")]
fn epoch_end(s: &TrainState, epoch: &EpochLogs) {
    saw(Event::EpochEnd, s);
    EPOCHS
        .lock()
        .unwrap()
        .push((Event::EpochEnd, epoch.val_loss(), epoch.get("val_accuracy")));
}
#[on_train_end(group = "all_events")]
fn train_end(s: &TrainState) {
    saw(Event::TrainEnd, s)
}

static BOTH: Mutex<Vec<(usize, bool)>> = Mutex::new(Vec::new());

// One function, two events: it runs at both, with the parameters both have.
#[on_epoch_begin(group = "all_events")]
#[on_epoch_end(group = "all_events")]
fn epoch_edges(state: &TrainState, history: &History) {
    BOTH.lock()
        .unwrap()
        .push((state.epoch(), history.len() == state.epoch()));
}

#[test]
fn events_fire_in_order_with_validation() {
    let _serial = trainmon_tests::serial();
    tch::manual_seed(0);
    let data = |n| {
        TensorDataset::new(
            Tensor::randn([n, 4], (Kind::Float, Device::Cpu)),
            Tensor::randint(3, [n], (Kind::Int64, Device::Cpu)),
        )
        .unwrap()
    };
    let (train, valid) = (data(100), data(60));
    let vs = VarStore::new(Device::Cpu);
    let model = nn::linear(vs.root(), 4, 3, Default::default());
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Sgd::default(), 0.1)
        .hooks(trainmon::Hooks::groups(["all_events"]))
        .epochs(2)
        .batch_size(50)
        .validation(&valid)
        .fit(&train)
        .unwrap();

    use Event::*;
    let mut want = vec![(TrainBegin, 0)];
    for epoch in 1..=2 {
        want.push((EpochBegin, epoch));
        for batch in 1..=2 {
            want.extend([BatchBegin, BeforeBackward, AfterBackward, BeforeOptimizerStep, BatchEnd].map(|e| (e, batch)));
        }
        want.extend([
            (ValidationBegin, epoch),
            (ValidationBatchEnd, 1),
            (ValidationBatchEnd, 2),
            (ValidationEnd, epoch),
            (EpochEnd, epoch),
        ]);
    }
    want.push((TrainEnd, 0));
    assert_eq!(*SEEN.lock().unwrap(), want);

    // Gradients: zero (or absent) before each backward pass, there after it.
    for (event, nonzero) in GRADS.lock().unwrap().iter() {
        assert_eq!(*nonzero, *event == AfterBackward, "gradients at {event}");
    }

    // Validation: the running values of its last batch are the epoch's val_ metrics.
    let val = VAL_BATCHES.lock().unwrap().clone();
    assert_eq!(val.len(), 4, "two validation batches per epoch");
    for (epoch, logs) in history.epochs().iter().enumerate() {
        let (number, loss, accuracy) = val[epoch * 2 + 1];
        assert_eq!(number, 2);
        assert_eq!(
            (logs.val_loss(), logs.val_accuracy()),
            (Some(loss), Some(accuracy)),
            "epoch {}",
            epoch + 1
        );
        let seen = &EPOCHS.lock().unwrap()[epoch * 2..epoch * 2 + 2];
        assert_eq!(
            seen,
            [
                (ValidationEnd, Some(loss), Some(accuracy)),
                (EpochEnd, Some(loss), Some(accuracy))
            ]
        );
    }
    assert_eq!(history.metric("val_loss").len(), 2, "val_loss by name in the history");

    // The two-event function ran at both ends of each epoch; the history holds the epoch at its end.
    assert_eq!(*BOTH.lock().unwrap(), [(1, false), (1, true), (2, false), (2, true)]);
}
