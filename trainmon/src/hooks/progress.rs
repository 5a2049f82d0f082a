//! Progress: bars on a terminal, plain log lines elsewhere.

use crate::context::HookContext;
use crate::control::Control;
use crate::error::BoxError;
use crate::event::Event;
use crate::hook::{Hook, Plugin};
use crate::priority;
use crate::spec::HookSpec;
use indicatif::ProgressStyle;
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use tracing::Span;
use tracing_indicatif::span_ext::IndicatifSpanExt;

/// Progress of training: an epoch bar and a batch bar with the running loss and accuracy when
/// stderr is a terminal and the tracing subscriber has `tracing_indicatif`'s `IndicatifLayer`
/// (whose writer keeps log lines from tearing the bars); otherwise — piped, redirected, in CI
/// — a plain log line at most every `interval` (10 s by default). The running values are read
/// at most every 100 ms, and bars redraw at most at the layer's rate.
///
/// ```no_run
/// use tracing_subscriber::layer::SubscriberExt;
/// use tracing_subscriber::util::SubscriberInitExt;
/// use tracing_indicatif::IndicatifLayer;
/// use trainmon::hooks::Progress;
///
/// let indicatif = IndicatifLayer::new();
/// tracing_subscriber::registry()
///     .with(tracing_subscriber::fmt::layer().with_writer(indicatif.get_stderr_writer()))
///     .with(indicatif)
///     .init();
/// // … Trainer::new(&vs, &model).with(Progress::new()) …
/// ```
#[derive(Debug)]
pub struct Progress {
    interval: Duration,
    bars: Option<Bars>,
    last_line: Option<Instant>,
}

#[derive(Debug)]
struct Bars {
    training: Span,
    epoch: Option<Span>,
    last_message: Option<Instant>,
}

/// How often the batch bar's message (the running values, a host read on CUDA) is refreshed.
const MESSAGE_EVERY: Duration = Duration::from_millis(100);

impl Progress {
    /// Bars on a terminal, else a line every 10 s.
    pub fn new() -> Self {
        Progress {
            interval: Duration::from_secs(10),
            bars: None,
            last_line: None,
        }
    }

    /// The time between plain progress lines.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    fn bar_style(template: &str) -> ProgressStyle {
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// `loss 0.6931, accuracy 0.5012` from a batch's running values.
fn values(batch: &crate::metrics::BatchLogs) -> String {
    batch
        .names()
        .map(|n| format!("{n} {:.4}", batch.get(n).unwrap_or(f64::NAN)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Hook for Progress {
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        let state = ctx.state();
        match ctx.event() {
            Event::TrainBegin => {
                let bars = std::io::stderr().is_terminal()
                    && tracing_indicatif::writer::get_indicatif_stderr_writer().is_some();
                self.bars = bars.then(|| {
                    let training = tracing::info_span!("training");
                    training.pb_set_style(&Self::bar_style("{bar:30} epoch {pos}/{len} {elapsed_precise} {msg}"));
                    training.pb_set_length(state.epochs() as u64);
                    training.pb_start();
                    Bars {
                        training,
                        epoch: None,
                        last_message: None,
                    }
                });
                self.last_line = Some(Instant::now());
            }
            Event::EpochBegin => {
                if let Some(bars) = &mut self.bars {
                    let epoch = tracing::info_span!(parent: &bars.training, "epoch", n = state.epoch());
                    epoch.pb_set_style(&Self::bar_style("{bar:30} batch {pos}/{len} {per_sec} {msg}"));
                    epoch.pb_set_length(state.batches_per_epoch() as u64);
                    epoch.pb_start();
                    bars.epoch = Some(epoch);
                }
            }
            Event::BatchEnd => {
                let Some(batch) = ctx.batch() else {
                    return Ok(Control::Continue);
                };
                match &mut self.bars {
                    Some(bars) => {
                        if let Some(epoch) = &bars.epoch {
                            epoch.pb_inc(1);
                            if bars.last_message.is_none_or(|t| t.elapsed() >= MESSAGE_EVERY) {
                                epoch.pb_set_message(&values(batch));
                                bars.last_message = Some(Instant::now());
                            }
                        }
                    }
                    None => {
                        if self.last_line.is_none_or(|t| t.elapsed() >= self.interval) {
                            let done = 100.0 * batch.number() as f64 / state.batches_per_epoch().max(1) as f64;
                            tracing::info!(
                                "progress: epoch {}/{}, batch {}/{} ({done:.0}%), {:.1?}: {}",
                                state.epoch(),
                                state.epochs(),
                                batch.number(),
                                state.batches_per_epoch(),
                                state.elapsed(),
                                values(batch)
                            );
                            self.last_line = Some(Instant::now());
                        }
                    }
                }
            }
            Event::EpochEnd => {
                if let (Some(bars), Some(epoch)) = (&mut self.bars, ctx.epoch()) {
                    bars.epoch = None;
                    bars.training.pb_inc(1);
                    let summary: Vec<String> = epoch.metrics().map(|(n, v)| format!("{n} {v:.4}")).collect();
                    bars.training.pb_set_message(&summary.join(", "));
                }
            }
            Event::TrainEnd => self.bars = None,
            _ => {}
        }
        Ok(Control::Continue)
    }
}

impl Plugin for Progress {
    fn specs(&self) -> Vec<HookSpec> {
        [
            Event::TrainBegin,
            Event::EpochBegin,
            Event::BatchEnd,
            Event::EpochEnd,
            Event::TrainEnd,
        ]
        .into_iter()
        .map(|event| HookSpec::new(event, "Progress").priority(priority::LOGGING))
        .collect()
    }
}
