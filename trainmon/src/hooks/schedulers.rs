//! Learning-rate schedulers and the learning-rate monitor.

use super::monitor::Mode;
use crate::context::HookContext;
use crate::control::Control;
use crate::error::BoxError;
use crate::hook::{Hook, Plugin};
use crate::records::key::MetricKey;
use crate::records::saved::HookState;
use crate::schedule::event::Event;
use crate::schedule::priority;
use crate::schedule::spec::HookSpec;

/// A learning-rate schedule by epoch, as PyTorch's `StepLR`, `ExponentialLR` and
/// `CosineAnnealingLR`: after epoch `e` ends, the learning rate for the next one is set from
/// the rate the fit started with. Runs at `on_epoch_end`, priority [`priority::SCHEDULER`]
/// (after early stopping has seen the epoch).
///
/// ```
/// use trainmon::hooks::LrScheduler;
///
/// let halve_every_10 = LrScheduler::step(10, 0.5);
/// let cosine = LrScheduler::cosine(50, 1e-5);
/// # let _ = (halve_every_10, cosine);
/// ```
#[derive(Debug, Clone)]
pub struct LrScheduler {
    schedule: Schedule,
    base: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
enum Schedule {
    Step { every: usize, gamma: f64 },
    Exponential { gamma: f64 },
    Cosine { epochs: usize, min: f64 },
}

impl LrScheduler {
    /// Multiplies the rate by `gamma` every `every` epochs.
    pub fn step(every: usize, gamma: f64) -> Self {
        LrScheduler {
            schedule: Schedule::Step {
                every: every.max(1),
                gamma,
            },
            base: None,
        }
    }

    /// Multiplies the rate by `gamma` every epoch.
    pub fn exponential(gamma: f64) -> Self {
        LrScheduler {
            schedule: Schedule::Exponential { gamma },
            base: None,
        }
    }

    /// Anneals the rate from its start to `min` along half a cosine over `epochs` epochs.
    pub fn cosine(epochs: usize, min: f64) -> Self {
        LrScheduler {
            schedule: Schedule::Cosine {
                epochs: epochs.max(1),
                min,
            },
            base: None,
        }
    }

    /// The rate after `done` epochs, from `base`.
    fn rate(&self, base: f64, done: usize) -> f64 {
        match self.schedule {
            Schedule::Step { every, gamma } => base * gamma.powi((done / every) as i32),
            Schedule::Exponential { gamma } => base * gamma.powi(done as i32),
            Schedule::Cosine { epochs, min } => {
                let t = done.min(epochs) as f64 / epochs as f64;
                min + (base - min) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
            }
        }
    }
}

impl Hook for LrScheduler {
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        let lr = ctx.learning_rate();
        let base = *self.base.get_or_insert(lr.get());
        lr.set(self.rate(base, ctx.state().epoch()));
        Ok(Control::Continue)
    }

    fn state(&self) -> Result<Option<HookState>, BoxError> {
        Ok(Some(HookState::new(Base(self.base))?))
    }

    fn restore(&mut self, state: HookState) -> Result<(), BoxError> {
        self.base = state.value::<Base>()?.0;
        Ok(())
    }
}

/// What a resume point keeps of an [`LrScheduler`]: the rate it started from.
#[derive(serde::Serialize, serde::Deserialize)]
struct Base(#[serde(with = "crate::records::history::float::option")] Option<f64>);

/// What a resume point keeps of a [`ReduceLrOnPlateau`].
#[derive(serde::Serialize, serde::Deserialize)]
struct Plateau {
    #[serde(with = "crate::records::history::float::option")]
    best: Option<f64>,
    bad_epochs: usize,
    cooling: usize,
}

impl Plugin for LrScheduler {
    fn specs(&self) -> Vec<HookSpec> {
        vec![HookSpec::new(Event::EpochEnd, "LrScheduler").priority(priority::SCHEDULER)]
    }
}

/// Lowers the learning rate when a metric has stopped improving, as PyTorch's
/// `ReduceLROnPlateau`: after `patience` epochs without a relative improvement of `threshold`,
/// the rate is multiplied by `factor` (not below `min_lr`), then `cooldown` epochs pass before
/// counting again.
///
/// ```
/// use trainmon::hooks::ReduceLrOnPlateau;
///
/// let plateau = ReduceLrOnPlateau::new("val_loss").factor(0.5).patience(2).min_lr(1e-6);
/// # let _ = plateau;
/// ```
#[derive(Debug, Clone)]
pub struct ReduceLrOnPlateau {
    monitor: MetricKey,
    mode: Mode,
    factor: f64,
    patience: usize,
    threshold: f64,
    cooldown: usize,
    min_lr: f64,
    best: Option<f64>,
    bad_epochs: usize,
    cooling: usize,
}

impl ReduceLrOnPlateau {
    /// Watches the metric named `monitor`. Defaults as PyTorch's: factor 0.1, patience 10,
    /// threshold 1e-4 (relative), no cooldown, no minimum; mode auto (max for an accuracy).
    pub fn new(monitor: impl Into<MetricKey>) -> Self {
        ReduceLrOnPlateau {
            monitor: monitor.into(),
            mode: Mode::Auto,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
            best: None,
            bad_epochs: 0,
            cooling: 0,
        }
    }

    /// Whether lower or higher is better.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// What the rate is multiplied by on a plateau.
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Epochs without improvement tolerated: the next one lowers the rate.
    pub fn patience(mut self, epochs: usize) -> Self {
        self.patience = epochs;
        self
    }

    /// The relative improvement that counts (`1e-4`: 0.01 %).
    pub fn threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    /// Epochs after a reduction before bad epochs count again.
    pub fn cooldown(mut self, epochs: usize) -> Self {
        self.cooldown = epochs;
        self
    }

    /// The lowest rate it sets.
    pub fn min_lr(mut self, min_lr: f64) -> Self {
        self.min_lr = min_lr;
        self
    }

    fn improves(&self, value: f64, best: f64) -> bool {
        if self.mode.maximises(&self.monitor) {
            value > best * (1.0 + self.threshold.copysign(best))
        } else {
            value < best * (1.0 - self.threshold.copysign(best))
        }
    }
}

impl Hook for ReduceLrOnPlateau {
    fn state(&self) -> Result<Option<HookState>, BoxError> {
        Ok(Some(HookState::new(Plateau {
            best: self.best,
            bad_epochs: self.bad_epochs,
            cooling: self.cooling,
        })?))
    }

    fn restore(&mut self, state: HookState) -> Result<(), BoxError> {
        let saved: Plateau = state.value()?;
        (self.best, self.bad_epochs, self.cooling) = (saved.best, saved.bad_epochs, saved.cooling);
        Ok(())
    }

    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        let Some(epoch) = ctx.epoch() else {
            return Ok(Control::Continue);
        };
        let value = super::monitored(epoch, &self.monitor, "ReduceLrOnPlateau")?;
        match self.best {
            Some(best) if !self.improves(value, best) => self.bad_epochs += 1,
            _ => {
                self.best = Some(value);
                self.bad_epochs = 0;
            }
        }
        if self.cooling > 0 {
            self.cooling -= 1;
            self.bad_epochs = 0;
        }
        if self.bad_epochs > self.patience {
            let lr = ctx.learning_rate();
            let lowered = (lr.get() * self.factor).max(self.min_lr);
            if lowered < lr.get() {
                tracing::info!(
                    "ReduceLrOnPlateau: `{}` stalled at {value:.6}; learning rate {} → {lowered}",
                    self.monitor,
                    lr.get()
                );
                lr.set(lowered);
            }
            self.cooling = self.cooldown;
            self.bad_epochs = 0;
        }
        Ok(Control::Continue)
    }
}

impl Plugin for ReduceLrOnPlateau {
    fn specs(&self) -> Vec<HookSpec> {
        vec![HookSpec::new(Event::EpochEnd, "ReduceLrOnPlateau").priority(priority::SCHEDULER)]
    }
}

/// Logs the learning rate at the start of every epoch (the history keeps it too, as each epoch's
/// `lr`).
#[derive(Debug, Clone, Default)]
pub struct LrMonitor;

impl Hook for LrMonitor {
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        tracing::info!(
            "epoch {}: learning rate {}",
            ctx.state().epoch(),
            ctx.learning_rate().get()
        );
        Ok(Control::Continue)
    }
}

impl Plugin for LrMonitor {
    fn specs(&self) -> Vec<HookSpec> {
        vec![HookSpec::new(Event::EpochBegin, "LrMonitor")
            .priority(priority::METRICS)
            .rank_zero()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Harness;

    /// The learning rates of epochs 1..=n, starting at `base`, with the hook at every epoch end.
    fn rates(mut hook: impl Hook, base: f64, values: &[f64]) -> Vec<f64> {
        let mut harness = Harness::new().with_learning_rate(base);
        let mut seen = vec![base];
        for &value in values {
            let _ = harness
                .next_epoch(&[("val_loss", value)])
                .run(Event::EpochEnd, &mut hook)
                .unwrap();
            seen.push(harness.learning_rate());
        }
        seen.pop();
        seen
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    #[test]
    fn schedules_match_pytorch() {
        let flat = [1.0; 6];
        let cases: [(&str, Vec<f64>, Vec<f64>); 5] = [
            (
                "step(2, 0.5)",
                rates(LrScheduler::step(2, 0.5), 0.8, &flat),
                vec![0.8, 0.8, 0.4, 0.4, 0.2, 0.2],
            ),
            (
                "exponential(0.5)",
                rates(LrScheduler::exponential(0.5), 0.8, &flat),
                vec![0.8, 0.4, 0.2, 0.1, 0.05, 0.025],
            ),
            (
                "cosine(4, 0.0)",
                rates(LrScheduler::cosine(4, 0.0), 1.0, &flat),
                vec![
                    1.0,
                    0.5 + 0.5 * std::f64::consts::FRAC_1_SQRT_2,
                    0.5,
                    0.5 - 0.5 * std::f64::consts::FRAC_1_SQRT_2,
                    0.0,
                    0.0,
                ],
            ),
            (
                "plateau: patience 1, factor 0.5; a plateau from epoch 2 on",
                rates(
                    ReduceLrOnPlateau::new("val_loss").patience(1).factor(0.5),
                    1.0,
                    &[3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0],
                ),
                vec![1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25],
            ),
            (
                "plateau with a cooldown of 1 and a floor",
                rates(
                    ReduceLrOnPlateau::new("val_loss")
                        .patience(0)
                        .factor(0.1)
                        .cooldown(1)
                        .min_lr(0.05),
                    1.0,
                    &[1.0, 1.0, 1.0, 1.0, 1.0],
                ),
                vec![1.0, 1.0, 0.1, 0.1, 0.05],
            ),
        ];
        for (why, got, want) in cases {
            assert!(close(&got, &want), "{why}: {got:?} vs {want:?}");
        }
    }
}
