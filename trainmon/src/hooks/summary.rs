//! The end-of-training summary.

use super::monitor::Mode;
use crate::context::HookContext;
use crate::control::Control;
use crate::error::BoxError;
use crate::hook::{Hook, Plugin};
use crate::records::key::MetricKey;
use crate::schedule::event::Event;
use crate::schedule::priority;
use crate::schedule::spec::HookSpec;
use std::path::PathBuf;

/// Logs a summary when training ends — or fails —, after every other output is written: epochs
/// run, why it stopped (or the error), the best value of a monitored metric and its epoch, total
/// time and throughput, the batches rollbacks skipped ([`crate::History::skipped`]), the
/// optimizer steps the gradient scaler skipped ([`crate::History::scaler_skipped_steps`]), the
/// three costliest hooks ([`crate::History::hook_costs`]), and what the run directory holds.
///
/// ```text
/// summary: 10 of 30 epochs in 0.35 s, 91429 samples/s; stopped: `val_loss` did not improve …
/// summary: best val_loss 0.341665 at epoch 5
/// summary: hooks, the costliest first: `ModelCheckpoint` 6.9 % of the fit (11 calls, 0.012 s, 1117.9 µs per call, 0 device reads); `MetricFiles` 2.2 % of the fit (61 calls, 0.004 s, 64.8 µs per call, 0 device reads); …
/// summary: outputs in runs/demo/version_0: checkpoints/ (4 files), metrics/ (4 files), plots/ (8 files)
/// ```
#[derive(Debug, Clone, Default)]
pub struct Summary {
    monitor: Option<(MetricKey, Mode)>,
    outputs: Option<PathBuf>,
}

impl Summary {
    /// Epochs, stop reason, time and throughput.
    pub fn new() -> Self {
        Summary::default()
    }

    /// Also the best value of this metric and its epoch (mode auto: higher is better for an
    /// accuracy).
    pub fn monitor(mut self, metric: impl Into<MetricKey>) -> Self {
        self.monitor = Some((metric.into(), Mode::Auto));
        self
    }

    /// Also what this directory holds (the run directory), folder by folder.
    pub fn outputs(mut self, dir: impl Into<PathBuf>) -> Self {
        self.outputs = Some(dir.into());
        self
    }
}

/// How many hooks the summary names, the costliest first.
const SHOWN_COSTS: usize = 3;

impl Hook for Summary {
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        let history = ctx.history();
        let state = ctx.state();
        let seconds = history.elapsed().as_secs_f64();
        let samples: usize = history.epochs().iter().map(|e| e.samples()).sum();
        let stopped = match (ctx.error(), history.stop_reason()) {
            (Some(error), _) => format!("failed: {error:#}"),
            (None, Some(stop)) => format!("stopped: {stop}"),
            (None, None) => "all epochs run".to_owned(),
        };
        tracing::info!(
            "summary: {} of {} epochs in {seconds:.2} s, {:.0} samples/s; {stopped}",
            history.len(),
            state.epochs(),
            samples as f64 / seconds
        );
        if let Some((name, mode)) = &self.monitor {
            let maximise = mode.maximises(name);
            let best = history
                .epochs()
                .iter()
                .filter_map(|e| e.metric(name).filter(|v| v.is_finite()).map(|v| (v, e.epoch())))
                .reduce(|a, b| if (b.0 > a.0) == maximise && b.0 != a.0 { b } else { a });
            match best {
                Some((value, epoch)) => tracing::info!("summary: best {name} {value:.6} at epoch {epoch}"),
                None => tracing::info!("summary: no epoch has a finite {name}"),
            }
        }
        let skipped = history.skipped();
        if !skipped.is_empty() {
            let batches: usize = skipped.iter().map(|s| s.batches().count()).sum();
            let listed: Vec<String> = skipped.iter().map(|s| s.to_string()).collect();
            tracing::info!(
                "summary: {} rollbacks skipped {batches} batches: {}",
                skipped.len(),
                listed.join("; ")
            );
        }
        let scaler_skipped = history.scaler_skipped_steps();
        if scaler_skipped > 0 {
            let steps = ctx.state().global_step();
            tracing::info!(
                "summary: the gradient scaler skipped {scaler_skipped} of {steps} optimizer steps (gradients not finite)"
            );
        }
        let costs = history.hook_costs();
        if !costs.is_empty() {
            let top: Vec<String> = costs.iter().take(SHOWN_COSTS).map(|cost| cost.to_string()).collect();
            tracing::info!("summary: hooks, the costliest first: {}", top.join("; "));
        }
        if let Some(dir) = &self.outputs {
            let held = crate::output::describe(dir).unwrap_or_else(|e| format!("unreadable: {e}"));
            tracing::info!("summary: outputs so far in {}: {held}", dir.display());
        }
        Ok(Control::Continue)
    }
}

impl Plugin for Summary {
    fn specs(&self) -> Vec<HookSpec> {
        // Also when training fails: what it got to, and why it failed.
        [Event::TrainEnd, Event::Exception]
            .into_iter()
            .map(|event| {
                HookSpec::new(event, "Summary")
                    .priority(priority::OUTPUTS - 100)
                    .rank_zero()
            })
            .collect()
    }
}
