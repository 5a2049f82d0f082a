//! Built-in hooks: structs with builders, added with one call, [`crate::Trainer::with`]. They
//! are [`crate::Plugin`]s — the same trait as hooks added at run time — and sit at the places of
//! [`crate::priority`].
//!
//! ```
//! use trainmon::hooks::{EarlyStopping, Logger, TerminateOnNaN};
//! # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! # let model = tch::nn::linear(vs.root(), 2, 2, Default::default());
//!
//! let trainer = trainmon::Trainer::new(&vs, &model)
//!     .with(Logger::tutorial())
//!     .with(TerminateOnNaN::new())
//!     .with(EarlyStopping::new("val_loss").patience(3).restore_best_weights(true));
//! # let _ = trainer;
//! ```

pub(crate) mod checkpoint;
mod early_stopping;
mod interrupt;
mod logger;
mod metric_files;
mod plots;
mod progress;
mod schedulers;
mod summary;
mod tensorboard;
mod terminate_on_nan;
mod timer;

pub use checkpoint::{load_checkpoint, ModelCheckpoint, Saved};
pub use early_stopping::{Delta, EarlyStopping, Mode};
pub use interrupt::Interrupt;
pub use logger::Logger;
pub use metric_files::MetricFiles;
pub use plots::Plots;
pub use progress::Progress;
pub use schedulers::{LrMonitor, LrScheduler, ReduceLrOnPlateau};
pub use summary::Summary;
pub use tensorboard::TensorBoard;
pub use terminate_on_nan::TerminateOnNaN;
pub use timer::{Throughput, TimeLimit};

use crate::error::BoxError;
use crate::history::EpochLogs;

/// The value of `name` in an epoch's logs, or an error that lists the names there are.
pub(crate) fn monitored(epoch: &EpochLogs, name: &str, by: &str) -> Result<f64, BoxError> {
    epoch.get(name).ok_or_else(|| {
        let names: Vec<&str> = epoch.metrics().map(|(n, _)| n).collect();
        format!(
            "{by} monitors `{name}`, which the epoch logs do not have; they have {}",
            names.join(", ")
        )
        .into()
    })
}

/// Drives built-in hooks without a model: epoch logs with chosen values.
#[cfg(test)]
pub(crate) mod testing {
    use crate::control::Control;
    use crate::error::BoxError;
    use crate::event::Event;
    use crate::history::{EpochLogs, History};
    use crate::hook::HookContext;
    use crate::trainer::TrainState;
    use std::cell::Cell;
    use std::time::{Duration, Instant};
    use tch::nn::VarStore;
    use tch::Device;

    pub(crate) struct Epochs {
        state: TrainState,
        history: History,
        vs: VarStore,
        learning_rate: Cell<f64>,
    }

    impl Epochs {
        pub(crate) fn new() -> Self {
            Epochs {
                state: TrainState {
                    epoch: 0,
                    epochs: 100,
                    batch: 0,
                    batches: 1,
                    global_step: 0,
                    started: Instant::now(),
                    device: Device::Cpu,
                    learning_rate: 0.1,
                },
                history: History::default(),
                vs: VarStore::new(Device::Cpu),
                learning_rate: Cell::new(0.1),
            }
        }

        pub(crate) fn epoch(&self) -> usize {
            self.state.epoch
        }

        /// The learning rate in force, as hooks set it.
        pub(crate) fn learning_rate(&self) -> f64 {
            self.learning_rate.get()
        }

        pub(crate) fn set_learning_rate(&self, lr: f64) {
            self.learning_rate.set(lr)
        }

        /// Ends the next epoch with these values, and runs `hook` at its `on_epoch_end`.
        pub(crate) fn next(
            &mut self,
            values: &[(&str, f64)],
            hook: impl FnOnce(&HookContext<'_>) -> Result<Control, BoxError>,
        ) -> Result<Control, BoxError> {
            self.state.epoch += 1;
            self.history.epochs.push(EpochLogs {
                epoch: self.state.epoch,
                time: Duration::from_millis(10),
                batches: 1,
                samples: 1,
                values: values.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
                learning_rate: self.learning_rate.get(),
            });
            let ctx = HookContext {
                event: Event::EpochEnd,
                state: &self.state,
                batch: None,
                epoch: self.history.epochs.last(),
                history: &self.history,
                vs: &self.vs,
                learning_rate: &self.learning_rate,
                error: None,
                resources: &crate::resource::NONE,
            };
            hook(&ctx)
        }
    }
}
