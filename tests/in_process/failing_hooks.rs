//! A failing hook: by default training stops with `Error::Hook` after the `on_exception` hooks
//! and the outputs ran (plots, summary); with `tolerate_failures`, a non-critical hook is
//! disabled with a warning and training goes on.

use std::sync::atomic::{AtomicUsize, Ordering};
use tch::nn;
use trainmon::hooks::{MetricFiles, Plots, Summary};
use trainmon::prelude::*;
use trainmon::{Error, Hooks};
use trainmon_tests::{capture_logs, tutorial_data, tutorial_model};

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// A logger that breaks at the third call.
#[on_epoch_end(group = "flaky")]
fn flaky_logger(epoch: &EpochLogs) -> Result<(), String> {
    if CALLS.fetch_add(1, Ordering::SeqCst) == 2 {
        return Err(format!("log server unreachable at epoch {}", epoch.epoch()));
    }
    Ok(())
}

#[test]
fn failing_hooks_stop_training_or_are_disabled() {
    let _serial = trainmon_tests::serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let fit = |tolerate: bool, out: &str| {
        CALLS.store(0, Ordering::SeqCst);
        let mut trainer = Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-3)
            .epochs(5)
            .hooks(Hooks::groups(["flaky"]))
            .with(MetricFiles::new(tmp.path().join(out).join("metrics")))
            .with(Plots::new(tmp.path().join(out).join("plots")))
            .with(Summary::new());
        if tolerate {
            trainer = trainer.tolerate_failures(["flaky"]);
        }
        capture_logs(|| trainer.fit(&data))
    };

    // By default the failure ends training, and the outputs of what was trained are written.
    let (result, logs) = fit(false, "strict");
    let err = result.unwrap_err();
    assert!(
        matches!(&err, Error::Hook { hook, .. } if hook == "flaky_logger"),
        "{err}"
    );
    assert!(
        format!("{err:#}").contains("log server unreachable at epoch 3"),
        "{err:#}"
    );
    let epochs = std::fs::read_to_string(tmp.path().join("strict/metrics/epochs.csv")).unwrap();
    assert_eq!(
        epochs.lines().count(),
        1 + 3,
        "header and the 3 epochs trained, flushed: {epochs}"
    );
    assert!(
        tmp.path().join("strict/plots/loss.png").exists(),
        "plots of the 3 epochs"
    );
    let summary = logs
        .iter()
        .find(|(_, m)| m.starts_with("summary: "))
        .expect("a summary");
    assert!(
        summary.1.starts_with("summary: 3 of 5 epochs in ") && summary.1.contains("failed: hook `flaky_logger`"),
        "{summary:?}"
    );

    // Tolerated: a warning, the hook disabled, all 5 epochs trained.
    let (result, logs) = fit(true, "tolerant");
    let history = result.unwrap();
    assert_eq!(history.len(), 5);
    assert_eq!(CALLS.load(Ordering::SeqCst), 3, "not called again after its failure");
    let warnings: Vec<&String> = logs
        .iter()
        .filter(|(level, _)| level == "WARN")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(warnings.len(), 1, "{logs:?}");
    assert!(
        warnings[0].contains("hook `flaky_logger`") && warnings[0].contains("disabled for the rest of this fit"),
        "{}",
        warnings[0]
    );
}
