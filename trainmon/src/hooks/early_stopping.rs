//! Early stopping: stop when a monitored metric stops improving.

use super::monitor::{Delta, Mode};
use crate::context::HookContext;
use crate::control::{Control, StopCause};
use crate::error::BoxError;
use crate::hook::{Hook, Plugin};
use crate::records::key::MetricKey;
use crate::records::saved::HookState;
use crate::schedule::event::Event;
use crate::schedule::priority;
use crate::schedule::spec::HookSpec;
use tch::Tensor;

/// Stops training when the monitored metric has not improved for `patience` epochs, with the
/// knobs of Keras, Lightning and Ignite: mode, absolute or relative minimum delta, warm-up
/// epochs, a baseline to beat, a stopping threshold, a divergence threshold, a stop on NaN or
/// infinity, and restoring the best weights when training ends — whatever ended it. The reason
/// is in [`crate::History::stop_reason`]. A monitored metric the epoch logs do not have is an
/// error naming the ones they have.
///
/// Runs at `on_epoch_end` (priority [`priority::EARLY_STOPPING`]) and, to restore the best
/// weights, at `on_train_end`.
///
/// ```
/// use trainmon::hooks::{Delta, EarlyStopping};
///
/// let stopper = EarlyStopping::new("val_loss") // or MetricKey::validation("loss")
///     .patience(5)
///     .min_delta(Delta::Relative(0.001))
///     .warmup(2)
///     .divergence_threshold(10.0)
///     .restore_best_weights(true);
/// # let _ = stopper;
/// ```
pub struct EarlyStopping {
    monitor: MetricKey,
    mode: Mode,
    min_delta: Delta,
    patience: usize,
    warmup: usize,
    baseline: Option<f64>,
    stopping_threshold: Option<f64>,
    divergence_threshold: Option<f64>,
    check_finite: bool,
    restore_best_weights: bool,
    // State.
    best: Option<f64>,
    best_epoch: usize,
    wait: usize,
    best_weights: Option<Vec<(String, Tensor)>>,
}

impl EarlyStopping {
    /// Early stopping on the metric named `monitor` (`"val_loss"`, `"loss"`, `"val_accuracy"`,
    /// a metric of your own). Defaults: mode auto, any improvement counts, patience 3, no
    /// warm-up, no baseline or thresholds, stops on NaN/infinity, weights not restored.
    pub fn new(monitor: impl Into<MetricKey>) -> Self {
        EarlyStopping {
            monitor: monitor.into(),
            mode: Mode::Auto,
            min_delta: Delta::Absolute(0.0),
            patience: 3,
            warmup: 0,
            baseline: None,
            stopping_threshold: None,
            divergence_threshold: None,
            check_finite: true,
            restore_best_weights: false,
            best: None,
            best_epoch: 0,
            wait: 0,
            best_weights: None,
        }
    }

    /// Whether lower or higher is better.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// How much an improvement must be (default: any).
    pub fn min_delta(mut self, delta: Delta) -> Self {
        self.min_delta = delta;
        self
    }

    /// Epochs without improvement that stop training: with patience 2, the second epoch in a
    /// row that does not improve stops it, as in the tutorial (0 and 1 both stop at the first).
    pub fn patience(mut self, epochs: usize) -> Self {
        self.patience = epochs;
        self
    }

    /// Epochs at the start that are not monitored at all (Keras's `start_from_epoch`).
    pub fn warmup(mut self, epochs: usize) -> Self {
        self.warmup = epochs;
        self
    }

    /// A value the metric must beat: until it does, epochs count as not improving.
    pub fn baseline(mut self, value: f64) -> Self {
        self.baseline = Some(value);
        self
    }

    /// Stops as soon as the metric is at least this good.
    pub fn stopping_threshold(mut self, value: f64) -> Self {
        self.stopping_threshold = Some(value);
        self
    }

    /// Stops as soon as the metric is worse than this.
    pub fn divergence_threshold(mut self, value: f64) -> Self {
        self.divergence_threshold = Some(value);
        self
    }

    /// Whether a NaN or infinite value stops training (default `true`).
    pub fn check_finite(mut self, check: bool) -> Self {
        self.check_finite = check;
        self
    }

    /// Whether to put back the weights of the best epoch when training ends, however it ended.
    pub fn restore_best_weights(mut self, restore: bool) -> Self {
        self.restore_best_weights = restore;
        self
    }

    /// The best value seen so far and its epoch.
    pub fn best(&self) -> Option<(f64, usize)> {
        self.best.map(|b| (b, self.best_epoch))
    }

    fn maximises(&self) -> bool {
        self.mode.maximises(&self.monitor)
    }

    /// Whether `value` beats `reference` by the minimum delta.
    fn improves(&self, value: f64, reference: f64) -> bool {
        let margin = match self.min_delta {
            Delta::Absolute(d) => d.abs(),
            Delta::Relative(r) => r.abs() * reference.abs(),
        };
        if self.maximises() {
            value > reference + margin
        } else {
            value < reference - margin
        }
    }

    /// Whether `value` is at least as good as `reference`.
    fn at_least(&self, value: f64, reference: f64) -> bool {
        if self.maximises() {
            value >= reference
        } else {
            value <= reference
        }
    }

    fn epoch_end(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        let Some(epoch) = ctx.epoch() else {
            return Ok(Control::Continue);
        };
        if epoch.epoch() <= self.warmup {
            return Ok(Control::Continue);
        }
        let name = &self.monitor;
        let value = super::monitored(epoch, name, "EarlyStopping")?;
        if self.check_finite && !value.is_finite() {
            return Ok(Control::stop_for(
                StopCause::NotFinite,
                format!("`{name}` is {value} at epoch {}", epoch.epoch()),
            ));
        }
        if let Some(threshold) = self.stopping_threshold {
            if self.at_least(value, threshold) {
                return Ok(Control::stop_for(
                    StopCause::EarlyStopping,
                    format!("`{name}` = {value:.6} reached the stopping threshold {threshold}"),
                ));
            }
        }
        if let Some(threshold) = self.divergence_threshold {
            if !self.at_least(value, threshold) {
                return Ok(Control::stop_for(
                    StopCause::EarlyStopping,
                    format!("`{name}` = {value:.6} diverged past {threshold}"),
                ));
            }
        }
        match self.best.or(self.baseline) {
            Some(reference) if !self.improves(value, reference) => {
                self.wait += 1;
                if self.wait >= self.patience.max(1) {
                    let best = match self.best {
                        Some(best) => format!("the best, {best:.6} at epoch {}", self.best_epoch),
                        None => format!("the baseline {reference}"),
                    };
                    return Ok(Control::stop_for(
                        StopCause::EarlyStopping,
                        format!("`{name}` did not improve on {best} for {} epochs", self.wait),
                    ));
                }
            }
            _ => {
                self.best = Some(value);
                self.best_epoch = epoch.epoch();
                self.wait = 0;
                if self.restore_best_weights {
                    self.best_weights = Some(snapshot(ctx.var_store())?);
                }
            }
        }
        Ok(Control::Continue)
    }

    fn train_end(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        if let Some(weights) = &self.best_weights {
            let _no_grad = tch::no_grad_guard();
            let variables = ctx.var_store().variables();
            for (name, best) in weights {
                if let Some(variable) = variables.get(name) {
                    variable.shallow_clone().f_copy_(best)?;
                }
            }
            tracing::info!("EarlyStopping restored the weights of epoch {}", self.best_epoch);
        }
        Ok(Control::Continue)
    }
}

/// A copy of every variable, by name.
fn snapshot(vs: &tch::nn::VarStore) -> Result<Vec<(String, Tensor)>, BoxError> {
    let _no_grad = tch::no_grad_guard();
    let mut copies = Vec::new();
    for (name, variable) in vs.variables() {
        copies.push((name, variable.f_detach_copy()?));
    }
    Ok(copies)
}

/// What a resume point keeps of an [`EarlyStopping`] (the best weights as tensors beside it).
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    #[serde(with = "crate::records::history::float::option")]
    best: Option<f64>,
    best_epoch: usize,
    wait: usize,
}

impl Hook for EarlyStopping {
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        match ctx.event() {
            Event::EpochEnd => self.epoch_end(ctx),
            Event::TrainEnd => self.train_end(ctx),
            _ => Ok(Control::Continue),
        }
    }

    fn state(&self) -> Result<Option<HookState>, BoxError> {
        let mut state = HookState::new(Saved {
            best: self.best,
            best_epoch: self.best_epoch,
            wait: self.wait,
        })?;
        for (name, tensor) in self.best_weights.iter().flatten() {
            state.tensors.push((name.clone(), tensor.shallow_clone()));
        }
        Ok(Some(state))
    }

    fn restore(&mut self, mut state: HookState) -> Result<(), BoxError> {
        let saved: Saved = state.value()?;
        self.best = saved.best;
        self.best_epoch = saved.best_epoch;
        self.wait = saved.wait;
        self.best_weights = if state.tensors.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut state.tensors))
        };
        Ok(())
    }
}

impl Plugin for EarlyStopping {
    fn specs(&self) -> Vec<HookSpec> {
        let mut specs = vec![HookSpec::new(Event::EpochEnd, "EarlyStopping").priority(priority::EARLY_STOPPING)];
        if self.restore_best_weights {
            specs.push(HookSpec::new(Event::TrainEnd, "EarlyStopping").priority(priority::EARLY_STOPPING));
        }
        specs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Harness;

    /// Feeds `values` of the monitored metric epoch after epoch; returns the epoch it stopped
    /// at, with the reason.
    fn run(mut stopper: EarlyStopping, name: &str, values: &[f64]) -> Result<Option<(usize, String)>, String> {
        let mut harness = Harness::new();
        for &value in values {
            let control = harness
                .next_epoch(&[(name, value)])
                .run(Event::EpochEnd, &mut stopper)
                .map_err(|e| e.to_string())?;
            if let Control::Stop { reason, .. } = control {
                return Ok(Some((harness.state().epoch(), reason)));
            }
        }
        Ok(None)
    }

    #[test]
    fn stops_where_keras_and_lightning_would() {
        let nan = f64::NAN;
        // (why, the stopper, the metric's name, its values by epoch, where it stops and why)
        type Case = (
            &'static str,
            EarlyStopping,
            &'static str,
            Vec<f64>,
            Option<(usize, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "patience 2: the second epoch in a row without improvement stops, as in the tutorial",
                EarlyStopping::new("loss").patience(2),
                "loss",
                vec![1.0, 0.9, 0.95, 0.97, 0.5],
                Some((4, "did not improve on the best, 0.900000 at epoch 2 for 2 epochs")),
            ),
            (
                "patience 0 stops at the first",
                EarlyStopping::new("loss").patience(0),
                "loss",
                vec![1.0, 1.1],
                Some((2, "for 1 epochs")),
            ),
            (
                "improving never stops",
                EarlyStopping::new("loss").patience(1),
                "loss",
                vec![3.0, 2.0, 1.0, 0.5],
                None,
            ),
            (
                "an absolute min_delta: 0.95 and 0.92 do not beat 1.0 by 0.1",
                EarlyStopping::new("loss").patience(2).min_delta(Delta::Absolute(0.1)),
                "loss",
                vec![1.0, 0.95, 0.92, 0.85],
                Some((3, "did not improve")),
            ),
            (
                "a relative min_delta of 10 %: 0.95 does not beat 1.0, 0.89 does",
                EarlyStopping::new("loss").patience(2).min_delta(Delta::Relative(0.1)),
                "loss",
                vec![1.0, 0.95, 0.89, 0.85, 0.84],
                Some((5, "the best, 0.890000 at epoch 3")),
            ),
            (
                "auto mode maximises an accuracy",
                EarlyStopping::new("val_accuracy").patience(2),
                "val_accuracy",
                vec![0.5, 0.6, 0.55, 0.58],
                Some((4, "0.600000 at epoch 2")),
            ),
            (
                "max mode, explicitly",
                EarlyStopping::new("score").mode(Mode::Max).patience(1),
                "score",
                vec![1.0, 2.0, 1.5],
                Some((3, "did not improve")),
            ),
            (
                "warm-up epochs are not monitored",
                EarlyStopping::new("loss").patience(2).warmup(2),
                "loss",
                vec![5.0, 9.0, 1.0, 1.1, 1.2],
                Some((5, "the best, 1.000000 at epoch 3")),
            ),
            (
                "a baseline never beaten stops after the patience",
                EarlyStopping::new("loss").patience(3).baseline(0.5),
                "loss",
                vec![0.9, 0.8, 0.7, 0.1],
                Some((3, "did not improve on the baseline 0.5 for 3 epochs")),
            ),
            (
                "a baseline beaten",
                EarlyStopping::new("loss").patience(1).baseline(0.5),
                "loss",
                vec![0.4, 0.3],
                None,
            ),
            (
                "the stopping threshold",
                EarlyStopping::new("loss").patience(10).stopping_threshold(0.2),
                "loss",
                vec![0.5, 0.3, 0.19, 0.1],
                Some((3, "reached the stopping threshold 0.2")),
            ),
            (
                "the divergence threshold",
                EarlyStopping::new("loss").patience(10).divergence_threshold(2.0),
                "loss",
                vec![1.0, 2.5],
                Some((2, "diverged past 2")),
            ),
            (
                "NaN stops",
                EarlyStopping::new("loss").patience(10),
                "loss",
                vec![1.0, nan],
                Some((2, "`loss` is NaN at epoch 2")),
            ),
            (
                "infinity stops",
                EarlyStopping::new("loss").patience(10),
                "loss",
                vec![f64::INFINITY],
                Some((1, "is inf")),
            ),
            (
                "without check_finite, NaN only counts as no improvement",
                EarlyStopping::new("loss").patience(5).check_finite(false),
                "loss",
                vec![1.0, nan, 0.9],
                None,
            ),
        ];
        for (why, stopper, name, values, want) in cases {
            let got = run(stopper, name, &values).unwrap();
            match (got, want) {
                (None, None) => {}
                (Some((epoch, reason)), Some((want_epoch, want_reason))) => {
                    assert_eq!(epoch, want_epoch, "{why}: {reason}");
                    assert!(reason.contains(want_reason), "{why}: {reason:?} lacks {want_reason:?}");
                }
                (got, want) => panic!("{why}: stopped {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn a_missing_metric_is_an_error_naming_the_ones_there_are() {
        let err = run(EarlyStopping::new("val_los"), "val_loss", &[1.0]).unwrap_err();
        assert!(
            err.contains("monitors `val_los`") && err.contains("they have val_loss"),
            "{err}"
        );
    }
}
