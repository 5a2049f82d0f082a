//! Over the first batches, a hook slower than the training step itself is warned about by
//! name and place; a fast one is not.

use tch::nn;
use trainmon::prelude::*;
use trainmon::Hooks;
use trainmon_tests::{capture_logs, tutorial_data, tutorial_model};

#[on_batch_end(group = "slow_hooks")]
fn sluggish(state: &TrainState) {
    // Far longer than a training step of this model (about 0.1 ms; tens of ms on a machine
    // busy with other work, where libtorch's threads wait for each other), over the 20 batches
    // that are timed.
    if state.global_step() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[on_batch_end(group = "slow_hooks")]
fn brisk(batch: &BatchLogs) {
    std::hint::black_box(batch.number());
}

#[test]
fn slow_hooks_are_named() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let (_, logged) = capture_logs(|| {
        Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-3)
            .batch_size(32)
            .hooks(Hooks::groups(["slow_hooks"]))
            .fit(&data)
            .unwrap()
    });
    let warnings: Vec<&str> = logged
        .iter()
        .filter(|(level, _)| level == "WARN")
        .map(|(_, m)| m.as_str())
        .collect();
    assert_eq!(warnings.len(), 1, "{logged:?}");
    let line = "tests/in_process/slow_hooks.rs:".to_owned()
        + &(include_str!("slow_hooks.rs")
            .lines()
            .position(|l| l == "fn sluggish(state: &TrainState) {")
            .unwrap()
            + 1)
        .to_string();
    assert!(
        warnings[0].contains(&format!("hook `sluggish` ({line}) at `on_batch_end` takes ")),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("more than the training step itself") && warnings[0].contains("over the first 20 batches")
    );
}
