//! Every hook of this file (its group) is called, as often as its event and filter say, with the
//! values the loop computed — checked against a hand-written tch loop doing the same work.

use std::sync::Mutex;
use tch::nn::{self, Module};
use tch::{Kind, Reduction, Tensor};
use trainmon::optim::OptimizerConfig;
use trainmon::prelude::*;
use trainmon_tests::{tutorial_data, tutorial_model};

#[derive(Debug, Clone, PartialEq)]
enum Call {
    TrainBegin {
        epoch: usize,
    },
    EpochBegin {
        epoch: usize,
    },
    BatchBegin {
        epoch: usize,
        batch: usize,
    },
    BatchEnd {
        epoch: usize,
        batch: usize,
        step: u64,
    },
    Logged {
        epoch: usize,
        batch: usize,
        size: usize,
        loss: f64,
        accuracy: f64,
    },
    EpochEnd {
        epoch: usize,
        loss: f64,
        accuracy: f64,
        batches: usize,
        history_len: usize,
    },
    TrainEnd {
        epochs: usize,
    },
}

static CALLS: Mutex<Vec<Call>> = Mutex::new(Vec::new());

fn record(call: Call) {
    CALLS.lock().unwrap().push(call);
}

#[on_train_begin(group = "hooks_called")]
fn train_begin(state: &TrainState) {
    record(Call::TrainBegin { epoch: state.epoch() });
}

#[on_epoch_begin(group = "hooks_called")]
fn epoch_begin(state: &TrainState) {
    record(Call::EpochBegin { epoch: state.epoch() });
}

#[on_batch_begin(group = "hooks_called")]
fn batch_begin(state: &TrainState) {
    record(Call::BatchBegin {
        epoch: state.epoch(),
        batch: state.batch(),
    });
}

#[on_batch_end(group = "hooks_called")]
fn batch_end(state: &TrainState) {
    record(Call::BatchEnd {
        epoch: state.epoch(),
        batch: state.batch(),
        step: state.global_step(),
    });
}

// Parameters in the other order than the logger's usual one: order is free.
#[on_batch_end(every = 10, group = "hooks_called")]
fn logger(batch: &BatchLogs, state: &TrainState) {
    record(Call::Logged {
        epoch: state.epoch(),
        batch: batch.number(),
        size: batch.size(),
        loss: batch.loss(),
        accuracy: batch.accuracy(),
    });
}

#[on_epoch_end(group = "hooks_called")]
fn epoch_end(history: &History, epoch: &EpochLogs) {
    record(Call::EpochEnd {
        epoch: epoch.epoch(),
        loss: epoch.loss(),
        accuracy: epoch.accuracy(),
        batches: epoch.batches(),
        history_len: history.len(),
    });
}

#[on_train_end(group = "hooks_called")]
fn train_end(history: &History) {
    record(Call::TrainEnd { epochs: history.len() });
}

/// What the tutorial's loop computes, written by hand: running loss and accuracy after each
/// batch of each epoch, over unshuffled batches of 32. With the optimizer the trainer runs
/// (`trainmon::optim`'s Adam, which agrees with tch's to rounding: tested there).
fn hand_written(epochs: usize) -> Vec<Vec<(f64, f64)>> {
    let data = tutorial_data(3);
    let (vs, model) = tutorial_model(4);
    let mut opt = nn::Adam::default().build_optimizer(&vs, 1e-3).unwrap();
    let mut out = Vec::new();
    for _ in 0..epochs {
        let (mut loss_sum, mut correct, mut seen, mut per_batch) = (0.0, 0i64, 0i64, Vec::new());
        for (i, start) in (0..1000).step_by(32).enumerate() {
            let len = 32.min(1000 - start);
            let x = data.features().narrow(0, start, len);
            let y = data.labels().narrow(0, start, len);
            let logits = model.forward(&x);
            let loss = logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, -100, 0.0);
            opt.zero_grad().unwrap();
            loss.backward();
            opt.step().unwrap();
            loss_sum += loss.double_value(&[]);
            correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
            seen += len;
            per_batch.push((loss_sum / (i + 1) as f64, correct as f64 / seen as f64));
        }
        out.push(per_batch);
    }
    out
}

#[test]
fn every_hook_runs_at_its_event_with_the_loops_values() {
    let _serial = trainmon_tests::serial();
    let epochs = 3;
    let data = tutorial_data(3);
    let (vs, model) = tutorial_model(4);
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(trainmon::Hooks::groups(["hooks_called"]))
        .epochs(epochs)
        .batch_size(32)
        .shuffle(false)
        .fit(&data)
        .unwrap();
    let calls = CALLS.lock().unwrap().clone();
    let count = |f: fn(&Call) -> bool| calls.iter().filter(|c| f(c)).count();

    // 1000 samples in batches of 32: 32 batches, the last of 8.
    assert_eq!(count(|c| matches!(c, Call::TrainBegin { .. })), 1, "train begin once");
    assert_eq!(
        count(|c| matches!(c, Call::EpochBegin { .. })),
        epochs,
        "epoch begin per epoch"
    );
    assert_eq!(
        count(|c| matches!(c, Call::BatchBegin { .. })),
        32 * epochs,
        "batch begin per batch"
    );
    assert_eq!(
        count(|c| matches!(c, Call::BatchEnd { .. })),
        32 * epochs,
        "batch end per batch"
    );
    assert_eq!(
        count(|c| matches!(c, Call::Logged { .. })),
        3 * epochs,
        "every = 10: batches 10, 20, 30"
    );
    assert_eq!(
        count(|c| matches!(c, Call::EpochEnd { .. })),
        epochs,
        "epoch end per epoch"
    );
    assert_eq!(count(|c| matches!(c, Call::TrainEnd { .. })), 1, "train end once");
    assert_eq!(
        calls.first(),
        Some(&Call::TrainBegin { epoch: 0 }),
        "train begin comes first"
    );
    assert_eq!(
        calls.last(),
        Some(&Call::TrainEnd { epochs }),
        "train end comes last, with the full history"
    );

    // Counters: batches count within the epoch; the global step over the fit.
    let ends: Vec<(usize, usize, u64)> = calls
        .iter()
        .filter_map(|c| match c {
            Call::BatchEnd { epoch, batch, step } => Some((*epoch, *batch, *step)),
            _ => None,
        })
        .collect();
    for (i, &(epoch, batch, step)) in ends.iter().enumerate() {
        assert_eq!(
            (epoch, batch, step),
            (i / 32 + 1, i % 32 + 1, i as u64 + 1),
            "batch end #{i}"
        );
    }

    // The logger's values are the hand-written loop's running values, to the bit.
    let reference = hand_written(epochs);
    let logged: Vec<_> = calls.iter().filter(|c| matches!(c, Call::Logged { .. })).collect();
    for (i, call) in logged.iter().enumerate() {
        let (epoch, batch) = (i / 3 + 1, (i % 3 + 1) * 10);
        let (loss, accuracy) = reference[epoch - 1][batch - 1];
        assert_eq!(
            **call,
            Call::Logged {
                epoch,
                batch,
                size: 32,
                loss,
                accuracy
            },
            "logger call #{i}"
        );
    }

    // Epoch logs: the hand-written epoch values, the same in the hook and in the history.
    assert_eq!(history.len(), epochs);
    assert_eq!(history.stop_reason(), None, "no hook asked to stop");
    for (i, logs) in history.epochs().iter().enumerate() {
        let (loss, accuracy) = *reference[i].last().unwrap();
        assert_eq!(
            (logs.epoch(), logs.loss(), logs.accuracy()),
            (i + 1, loss, accuracy),
            "history epoch {}",
            i + 1
        );
        assert_eq!((logs.batches(), logs.samples()), (32, 1000), "epoch {} size", i + 1);
        assert!(logs.time() > std::time::Duration::ZERO, "epoch {} timed", i + 1);
        let hook_saw = calls
            .iter()
            .find(|c| matches!(c, Call::EpochEnd { epoch, .. } if *epoch == i + 1))
            .unwrap();
        assert_eq!(
            *hook_saw,
            Call::EpochEnd {
                epoch: i + 1,
                loss,
                accuracy,
                batches: 32,
                history_len: i + 1
            },
            "epoch end hook of epoch {}",
            i + 1
        );
    }
}
