//! Built-in hooks: structs with builders, added with one call, [`crate::Trainer::with`]. They
//! are [`crate::Plugin`]s — the same trait as hooks added at run time — and sit at the places of
//! [`crate::schedule::priority`].
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
mod ema;
mod grad_stats;
mod interrupt;
mod logger;
mod metric_files;
mod mlflow;
mod monitor;
mod plots;
mod progress;
mod run_status;
mod schedulers;
mod summary;
mod tensorboard;
mod terminate_on_nan;
mod timer;

pub use crate::output::weights::{checkpoint_metadata, load_checkpoint};
pub use checkpoint::{beside, ModelCheckpoint, Placement, Saved, WeightsHandle};
pub use early_stopping::EarlyStopping;
pub use ema::{ema_path, Averaged, Ema};
pub use grad_stats::GradStats;
pub use interrupt::Interrupt;
pub use logger::Logger;
pub use metric_files::MetricFiles;
pub use mlflow::{Mlflow, MlflowReport};
pub use monitor::{Delta, Mode};
pub use plots::Plots;
pub use progress::Progress;
pub use schedulers::{LrMonitor, LrScheduler, ReduceLrOnPlateau};
pub use summary::Summary;
pub use tensorboard::TensorBoard;
pub use terminate_on_nan::TerminateOnNaN;
pub use timer::{Throughput, TimeLimit};

use crate::error::BoxError;
use crate::records::history::EpochLogs;
use crate::records::key::MetricKey;

/// The value of the metric `name` in an epoch's logs, or an error that lists the metrics there
/// are.
pub(crate) fn monitored(epoch: &EpochLogs, name: &MetricKey, by: &str) -> Result<f64, BoxError> {
    epoch.metric(name).ok_or_else(|| {
        let names: Vec<&str> = epoch.metrics().map(|(n, _)| n).collect();
        format!(
            "{by} monitors `{name}`, which the epoch logs do not have; they have {}",
            names.join(", ")
        )
        .into()
    })
}
