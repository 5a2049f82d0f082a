//! Progress: bars on a terminal, plain log lines elsewhere.

use crate::context::HookContext;
use crate::control::Control;
use crate::error::BoxError;
use crate::hook::{Hook, Plugin};
use crate::schedule::event::Event;
use crate::schedule::priority;
use crate::schedule::spec::HookSpec;
use indicatif::{ProgressState, ProgressStyle};
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

    /// A bar's style: `template` with the keys `{epoch}` (the epoch being trained: the position
    /// plus one, at most the length) and `{rate}` (per second, with sensible precision).
    fn bar_style(template: &str) -> ProgressStyle {
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("epoch", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", current(state.pos(), state.len()));
            })
            .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", rate(state.per_sec()));
            })
    }
}

/// The epoch being trained, from the epochs done (`pos`) and planned (`len`).
fn current(pos: u64, len: Option<u64>) -> u64 {
    (pos + 1).min(len.unwrap_or(u64::MAX).max(1))
}

/// A rate per second: whole numbers from 100 on, one decimal from 10, two below.
fn rate(per_sec: f64) -> String {
    match per_sec {
        r if !r.is_finite() => "–/s".to_owned(),
        r if r >= 100.0 => format!("{r:.0}/s"),
        r if r >= 10.0 => format!("{r:.1}/s"),
        r => format!("{r:.2}/s"),
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// A plain progress line: where training is, how fast, when it ends, and the running values.
fn line(state: &crate::state::TrainState, batch: usize, values: &str) -> String {
    let batches = state.batches_per_epoch().max(1);
    let done = (state.epoch().saturating_sub(1) * batches + batch) as f64;
    let total = (state.epochs() * batches) as f64;
    let elapsed = state.elapsed().as_secs_f64();
    let per_sec = done / elapsed;
    let eta = Duration::from_secs_f64(((total - done) / per_sec).clamp(0.0, 1e9));
    format!(
        "progress: epoch {}/{}, batch {batch}/{batches} ({:.0}%), {} batches, elapsed {}, ETA {}: {values}",
        state.epoch(),
        state.epochs(),
        100.0 * batch as f64 / batches as f64,
        rate(per_sec),
        indicatif::HumanDuration(state.elapsed()),
        indicatif::HumanDuration(eta),
    )
}

/// `loss 0.6931, accuracy 0.5012` from a batch's running values.
fn values(batch: &crate::records::metrics::BatchLogs) -> String {
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
                    training.pb_set_style(&Self::bar_style(
                        "epoch {epoch}/{len} {bar:20} {elapsed_precise} ETA {eta} {wide_msg}",
                    ));
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
                    epoch.pb_set_style(&Self::bar_style(
                        "batch {pos}/{len} {bar:20} {rate} ETA {eta} {wide_msg}",
                    ));
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
                                // Labelled with their batch: the bar may be ahead of them.
                                epoch.pb_set_message(&format!("{} (batch {})", values(batch), batch.number()));
                                bars.last_message = Some(Instant::now());
                            }
                        }
                    }
                    None => {
                        if self.last_line.is_none_or(|t| t.elapsed() >= self.interval) {
                            tracing::info!("{}", line(state, batch.number(), &values(batch)));
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
        .map(|event| HookSpec::new(event, "Progress").priority(priority::LOGGING).rank_zero())
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_bar_shows_the_epoch_being_trained() {
        assert_eq!(current(0, Some(30)), 1, "epoch 1 while none is done");
        assert_eq!(current(9, Some(30)), 10);
        assert_eq!(current(30, Some(30)), 30, "never past the last");
        assert_eq!(current(0, Some(0)), 1);
    }

    #[test]
    fn rates_have_sensible_precision() {
        assert_eq!(rate(1234.5678), "1235/s");
        assert_eq!(rate(42.345), "42.3/s");
        assert_eq!(rate(4.56789), "4.57/s");
        assert_eq!(rate(f64::INFINITY), "–/s");
    }

    #[test]
    fn a_plain_line_says_where_how_fast_and_when_it_ends() {
        let state = crate::state::TrainState {
            epoch: 1,
            epochs: 10,
            batch: 40,
            batches: 100,
            global_step: 40,
            started: Instant::now() - Duration::from_secs(5),
            device: tch::Device::Cpu,
            learning_rate: 0.1,
        };
        let line = line(&state, 40, "loss 0.6931, accuracy 0.5012");
        assert!(line.starts_with("progress: epoch 1/10, batch 40/100 (40%), "), "{line}");
        // 40 batches in 5 s: 8/s; 960 to go: 2 minutes.
        assert!(
            line.contains(", 8.00/s batches, elapsed 5 seconds, ETA 2 minutes: "),
            "{line}"
        );
        assert!(line.ends_with(": loss 0.6931, accuracy 0.5012"), "{line}");
    }
}
