//! What each hook costs: every call timed over the whole fit, the costliest first in
//! `History::hook_costs` (and in `history.json`), with the device values each read through the
//! logs; the summary names the top ones.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tch::nn;
use trainmon::hooks::Summary;
use trainmon::prelude::*;
use trainmon::{Event, Filter, HookSpec, Hooks};
use trainmon_tests::{capture_logs, tutorial_data, tutorial_model};

/// A fit with a deliberately slow hook (3 ms a batch, timed by itself), a light one reading the
/// running loss every batch, and one every 10 batches; the slow hook's own measure of its time.
fn fit(lazy: bool) -> (History, Duration, Vec<(String, String)>) {
    let data = tutorial_data(3);
    let (vs, model) = tutorial_model(4);
    let own = Arc::new(Mutex::new(Duration::ZERO));
    let measured = own.clone();
    let (history, logged) = capture_logs(|| {
        Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-3)
            .epochs(2)
            .batch_size(32)
            .lazy_reads(lazy)
            .hooks(Hooks::none())
            .add_hook(HookSpec::new(Event::BatchEnd, "slow"), move || {
                let started = Instant::now();
                std::thread::sleep(Duration::from_millis(3));
                *measured.lock().unwrap() += started.elapsed();
            })
            .add_hook(HookSpec::new(Event::BatchEnd, "reads_loss"), |batch: &BatchLogs| {
                std::hint::black_box(batch.loss());
            })
            .add_hook(
                HookSpec::new(Event::BatchEnd, "tenth").filter(Filter::ALWAYS.every(10)),
                |batch: &BatchLogs| {
                    std::hint::black_box(batch.number());
                },
            )
            .with(Summary::new())
            .fit(&data)
            .unwrap()
    });
    let own = *own.lock().unwrap();
    (history, own, logged)
}

#[test]
fn the_slow_hook_comes_first_with_its_share() {
    let _serial = trainmon_tests::serial();
    let (history, own, logged) = fit(false);
    let costs = history.hook_costs();
    let names: Vec<&str> = costs.iter().map(|c| c.name()).collect();
    assert_eq!(names[0], "slow", "{costs:?}");
    let slow = &costs[0];
    // 1000 samples in batches of 32: 32 batches an epoch, 2 epochs.
    assert_eq!(slow.calls(), 64);
    // The trainer's clock (the TSC) wraps the hook's own (the OS clock): at least as long, to
    // the two clocks' agreement.
    assert!(
        slow.total().as_secs_f64() >= own.as_secs_f64() * 0.999,
        "{:?} timed around {:?} inside",
        slow.total(),
        own
    );
    let expected = own.as_secs_f64() / history.elapsed().as_secs_f64();
    // Within 3 points of the fit's time: the trainer's clock wraps the hook's own, and a
    // machine busy with other work can pause the thread between the two.
    assert!(
        (slow.share() - expected).abs() < 0.03,
        "share {} against {expected} measured by the hook itself",
        slow.share()
    );
    assert!(slow.share() > 0.1 && slow.share() < 1.0, "{}", slow.share());
    assert_eq!(slow.mean(), slow.total() / 64);

    let calls = |name: &str| costs.iter().find(|c| c.name() == name).map(|c| c.calls());
    assert_eq!(calls("reads_loss"), Some(64));
    assert_eq!(calls("tenth"), Some(6), "batches 10, 20, 30 of each epoch");
    assert_eq!(
        calls("Summary"),
        Some(1),
        "the costs are taken again after on_train_end"
    );
    assert!(
        costs.iter().all(|c| c.device_reads() == 0),
        "eager reads: nothing on the device"
    );
    assert!(
        costs.windows(2).all(|w| w[0].total() >= w[1].total()),
        "the costliest first"
    );

    let summary = logged
        .iter()
        .find(|(_, line)| line.starts_with("summary: hooks, the costliest first: `slow` "))
        .unwrap_or_else(|| panic!("{logged:?}"));
    assert!(summary.1.contains("(64 calls, "), "{}", summary.1);

    let json = serde_json::to_value(&history).unwrap();
    let first = &json["hook_costs"][0];
    assert_eq!(first["name"], "slow");
    assert_eq!(first["calls"], 64);
    assert!(first["total_s"].as_f64().unwrap() >= own.as_secs_f64() * 0.999);
    let mean = first["mean_s"].as_f64().unwrap();
    assert!(
        (mean * 64.0 - first["total_s"].as_f64().unwrap()).abs() < 1e-6,
        "{first}"
    );
    let back: History = serde_json::from_value(json).unwrap();
    assert_eq!(back.hook_costs()[0].calls(), 64, "history.json reads back");
}

#[test]
fn reads_of_device_values_are_counted_per_hook() {
    let _serial = trainmon_tests::serial();
    let (history, _, _) = fit(true);
    let reads = |name: &str| {
        history
            .hook_costs()
            .iter()
            .find(|c| c.name() == name)
            .map(|c| c.device_reads())
    };
    assert_eq!(
        reads("reads_loss"),
        Some(64),
        "the running loss, kept on the device, read every batch"
    );
    assert_eq!(reads("slow"), Some(0));
    assert_eq!(reads("tenth"), Some(0));
}
