//! `status.json`: where a fit is, for readers in other processes (`cargo trainmon watch`).
//!
//! [`super::MetricFiles`] keeps it beside its files. The file is replaced atomically, so a reader
//! never sees half of it; it is written when the fit starts, at each epoch's begin and end, at
//! most every [`INTERVAL`] at a batch's end, and when the fit ends or fails. Nothing is read
//! back: a process that watches costs the training process nothing.

use super::monitor::Mode;
use crate::context::HookContext;
use crate::error::{BoxError, Error};
use crate::output;
use crate::records::key::MetricKey;
use crate::schedule::event::Event;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The least time between two writes at batch ends.
pub(crate) const INTERVAL: Duration = Duration::from_millis(500);

/// The format `status.json` is in; readers ignore keys they do not know.
const FORMAT: u32 = 1;

/// The writer of one fit's `status.json`.
#[derive(Debug)]
pub(crate) struct StatusFile {
    path: PathBuf,
    monitor: Option<(MetricKey, Mode)>,
    started_unix_s: f64,
    /// When the epoch being trained began (in this process).
    epoch_began: Option<quanta::Instant>,
    /// When the file was last written.
    written: Option<quanta::Instant>,
}

/// `status.json`, as written.
#[derive(Serialize)]
struct Status<'a> {
    format: u32,
    state: &'a str,
    pid: u32,
    host: String,
    started_unix_s: f64,
    updated_unix_s: f64,
    elapsed_s: f64,
    epoch: usize,
    epochs: usize,
    batch: usize,
    batches_per_epoch: usize,
    global_step: u64,
    epoch_elapsed_s: f64,
    samples_per_s: Option<f64>,
    #[serde(serialize_with = "finite")]
    lr: f64,
    /// In the logs' order (a JSON map would sort them).
    #[serde(serialize_with = "in_order")]
    running: Vec<(String, serde_json::Value)>,
    monitor: Option<Monitor<'a>>,
    stop_cause: Option<crate::control::StopCause>,
    stop_reason: Option<&'a str>,
    error: Option<String>,
    world_size: usize,
}

#[derive(Serialize)]
struct Monitor<'a> {
    metric: &'a str,
    mode: &'a str,
}

/// A number, or `null` when it is not finite (JSON has no NaN).
fn finite<S: serde::Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    number(*value).serialize(serializer)
}

/// Pairs as a JSON object, in their order.
fn in_order<S: serde::Serializer>(pairs: &[(String, serde_json::Value)], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

/// A number as JSON: `null` when it is not finite (the metric files' lines too).
pub(super) fn number(value: f64) -> serde_json::Value {
    serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, Into::into)
}

impl StatusFile {
    pub(crate) fn new(dir: &Path, monitor: Option<(MetricKey, Mode)>) -> Self {
        StatusFile {
            path: dir.join("status.json"),
            monitor,
            started_unix_s: output::unix_now(),
            epoch_began: None,
            written: None,
        }
    }

    /// Writes the file at `ctx`'s event: a batch's end only when [`INTERVAL`] has passed since
    /// the last write.
    pub(crate) fn update(&mut self, ctx: &HookContext<'_>) -> Result<(), BoxError> {
        let now = quanta::Instant::now();
        match ctx.event() {
            Event::EpochBegin => self.epoch_began = Some(now),
            // A fit resumed within an epoch has no `on_epoch_begin`: its rate counts from here.
            Event::BatchEnd => {
                let began = *self.epoch_began.get_or_insert(now);
                let recent = self.written.is_some_and(|w| now.duration_since(w) < INTERVAL);
                if recent || now.duration_since(began) < INTERVAL {
                    return Ok(());
                }
            }
            _ => {}
        }
        self.written = Some(now);
        self.write(ctx, now)
    }

    fn write(&self, ctx: &HookContext<'_>, now: quanta::Instant) -> Result<(), BoxError> {
        let state = ctx.state();
        let history = ctx.history();
        let event = ctx.event();
        let in_epoch = matches!(event, Event::EpochBegin | Event::BatchEnd);
        let epoch_elapsed = match (in_epoch, self.epoch_began) {
            (true, Some(began)) => now.duration_since(began).as_secs_f64(),
            _ => ctx.epoch().map_or(0.0, |e| e.time().as_secs_f64()),
        };
        let (batch, samples, running) = match (ctx.batch(), ctx.epoch()) {
            (Some(batch), _) => {
                let running = batch
                    .names()
                    .map(|n| (n.to_owned(), number(batch.get(n).unwrap_or(f64::NAN))));
                (batch.number(), Some(batch.samples()), running.collect())
            }
            (None, Some(epoch)) => (epoch.batches(), Some(epoch.samples()), Default::default()),
            (None, None) => (state.batch(), None, Default::default()),
        };
        let samples_per_s = samples
            .filter(|_| epoch_elapsed > 0.0)
            .map(|s| s as f64 / epoch_elapsed)
            .or_else(|| history.last().map(|e| e.throughput()).filter(|t| t.is_finite()));
        let status = Status {
            format: FORMAT,
            state: match event {
                Event::Exception => "failed",
                Event::TrainEnd => "finished",
                _ => "running",
            },
            pid: std::process::id(),
            host: output::host_name(),
            started_unix_s: self.started_unix_s,
            updated_unix_s: output::unix_now(),
            elapsed_s: state.elapsed().as_secs_f64(),
            epoch: state.epoch(),
            epochs: state.epochs(),
            batch,
            batches_per_epoch: state.batches_per_epoch(),
            global_step: state.global_step(),
            epoch_elapsed_s: epoch_elapsed,
            samples_per_s,
            lr: state.learning_rate(),
            running,
            monitor: self.monitor.as_ref().map(|(metric, mode)| Monitor {
                metric: metric.as_str(),
                mode: if mode.maximises(metric) { "max" } else { "min" },
            }),
            stop_cause: history.stop_reason().map(|s| s.cause),
            stop_reason: history.stop_reason().map(|s| s.reason.as_str()),
            error: ctx.error().map(|e| format!("{e:#}")),
            world_size: 1,
        };
        output::atomically(&self.path, |temp| {
            let text = serde_json::to_vec(&status).map_err(|e| Error::io("write", temp)(e.into()))?;
            std::fs::write(temp, text).map_err(Error::io("write", temp))
        })?;
        Ok(())
    }
}
