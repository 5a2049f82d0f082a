//! Log lines through `tracing`.

use crate::context::HookContext;
use crate::control::Control;
use crate::error::BoxError;
use crate::hook::{Hook, Plugin};
use crate::schedule::event::Event;
use crate::schedule::filter::Filter;
use crate::schedule::priority;
use crate::schedule::spec::HookSpec;
use std::fmt::Write;

/// Logs training through `tracing` (at `INFO`): a line every `every` batches with the running
/// values, and an epoch summary with every metric. [`Logger::tutorial`] is the classic
/// tutorial's format.
///
/// ```text
/// Logger::new().every(50):
///   epoch 1/5 batch 50/313: loss 0.6931, accuracy 0.5012
///   epoch 1/5 done in 0.84 s: loss 0.6890, accuracy 0.5110, val_loss 0.6850, val_accuracy 0.5300
/// Logger::tutorial():
///   Epoch 1 starting.
///   Batch 10: Loss = 0.7636, Accuracy = 0.4688
///   Epoch 1 finished in 0.08 seconds.
/// ```
#[derive(Debug, Clone)]
pub struct Logger {
    every: u64,
    tutorial: bool,
}

impl Logger {
    /// Batch lines every 10 batches, and epoch summaries.
    pub fn new() -> Self {
        Logger {
            every: 10,
            tutorial: false,
        }
    }

    /// The tutorial's lines: `Epoch N starting.`, `Batch 10: Loss = …, Accuracy = …` every 10
    /// batches, `Epoch N finished in S seconds.`
    pub fn tutorial() -> Self {
        Logger {
            every: 10,
            tutorial: true,
        }
    }

    /// A batch line every `n` batches of each epoch (`0`: none).
    pub fn every(mut self, n: u64) -> Self {
        self.every = n;
        self
    }
}

impl Default for Logger {
    fn default() -> Self {
        Logger::new()
    }
}

impl Hook for Logger {
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        if ctx.event() == Event::EpochEnd || ctx.state().epoch() == 1 {
            // Not at every batch line: once an epoch is enough to notice.
            crate::logging::warn_if_unseen("`Logger`");
        }
        let state = ctx.state();
        match (ctx.event(), self.tutorial) {
            (Event::EpochBegin, _) => tracing::info!("Epoch {} starting.", state.epoch()),
            (Event::BatchEnd, true) => {
                if let Some(b) = ctx.batch() {
                    tracing::info!(
                        "Batch {}: Loss = {:.4}, Accuracy = {:.4}",
                        b.number(),
                        b.loss(),
                        b.accuracy()
                    );
                }
            }
            (Event::BatchEnd, false) => {
                if let Some(b) = ctx.batch() {
                    let mut line = format!(
                        "epoch {}/{} batch {}/{}:",
                        state.epoch(),
                        state.epochs(),
                        b.number(),
                        state.batches_per_epoch()
                    );
                    for (i, name) in b.names().enumerate() {
                        let _ = write!(
                            line,
                            "{} {name} {:.4}",
                            if i == 0 { "" } else { "," },
                            b.get(name).unwrap_or(f64::NAN)
                        );
                    }
                    tracing::info!("{line}");
                }
            }
            (Event::EpochEnd, true) => {
                if let Some(e) = ctx.epoch() {
                    tracing::info!("Epoch {} finished in {:.2} seconds.", e.epoch(), e.time().as_secs_f64());
                }
            }
            (Event::EpochEnd, false) => {
                if let Some(e) = ctx.epoch() {
                    let mut line = format!(
                        "epoch {}/{} done in {:.2} s:",
                        e.epoch(),
                        state.epochs(),
                        e.time().as_secs_f64()
                    );
                    for (i, (name, value)) in e.metrics().enumerate() {
                        let _ = write!(line, "{} {name} {value:.4}", if i == 0 { "" } else { "," });
                    }
                    tracing::info!("{line}");
                }
            }
            _ => {}
        }
        Ok(Control::Continue)
    }
}

impl Plugin for Logger {
    fn specs(&self) -> Vec<HookSpec> {
        let at = |event| HookSpec::new(event, "Logger").priority(priority::LOGGING).rank_zero();
        let mut specs = vec![at(Event::EpochEnd)];
        if self.tutorial {
            specs.push(at(Event::EpochBegin));
        }
        if self.every > 0 {
            specs.push(at(Event::BatchEnd).filter(Filter::ALWAYS.every(self.every)));
        }
        specs
    }
}
