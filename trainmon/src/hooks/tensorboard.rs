//! TensorBoard scalars.

use crate::context::HookContext;
use crate::control::Control;
use crate::error::BoxError;
use crate::hook::{Hook, Plugin};
use crate::output::tensorboard::EventWriter;
use crate::records::history::LoggedValue;
use crate::records::saved::HookState;
use crate::schedule::event::Event;
use crate::schedule::filter::{Counter, Filter};
use crate::schedule::priority;
use crate::schedule::spec::HookSpec;
use std::path::PathBuf;

/// Writes TensorBoard event files (`events.out.tfevents.*`) into a directory: every epoch's
/// metrics, learning rate and time as `epoch/<name>` at step = the epoch, and with
/// [`TensorBoard::steps`] the running values as `step/<name>` at step = the global step; what
/// hooks logged ([`crate::HookContext::log`], [`crate::HookContext::log_histogram`]) under its
/// name at its step, as scalars and histograms. Point
/// `tensorboard --logdir` at the directory (or a parent of several runs). A resumed fit
/// ([`crate::Trainer::resumable`]) goes on in the same event file, from its resume point.
///
/// ```
/// use trainmon::hooks::TensorBoard;
///
/// let tensorboard = TensorBoard::new("runs/demo/tensorboard").steps(50);
/// # let _ = tensorboard;
/// ```
#[derive(Debug)]
pub struct TensorBoard {
    dir: PathBuf,
    every: u64,
    writer: Option<EventWriter>,
    /// Values logged by hooks ([`crate::HookContext::log`]) written so far.
    logged: usize,
    /// The event file and its length in the resume point a fit resumes from.
    resumed: Option<Written>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Written {
    file: PathBuf,
    length: u64,
    /// Values logged by hooks written so far.
    #[serde(default)]
    logged: usize,
}

impl TensorBoard {
    /// Epoch scalars into `dir` (created if need be).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TensorBoard {
            dir: dir.into(),
            every: 0,
            writer: None,
            logged: 0,
            resumed: None,
        }
    }

    /// Also the running values every `n` optimizer steps (`0`: none, the default).
    pub fn steps(mut self, n: u64) -> Self {
        self.every = n;
        self
    }
}

impl Hook for TensorBoard {
    fn state(&self) -> Result<Option<HookState>, BoxError> {
        let Some(writer) = &self.writer else { return Ok(None) };
        Ok(Some(HookState::new(Written {
            file: writer.path().to_owned(),
            length: writer.length()?,
            logged: self.logged,
        })?))
    }

    fn restore(&mut self, state: HookState) -> Result<(), BoxError> {
        self.resumed = Some(state.value()?);
        Ok(())
    }

    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        match ctx.event() {
            Event::TrainBegin => {
                self.writer = Some(match self.resumed.take() {
                    Some(Written { file, length, logged }) => {
                        self.logged = logged;
                        EventWriter::resume(&self.dir, &file, length)?
                    }
                    None => {
                        // A fit after another of the same trainer starts a new history.
                        self.logged = 0;
                        EventWriter::create(&self.dir)?
                    }
                })
            }
            Event::TrainEnd => self.write_logged(ctx)?,
            Event::BatchEnd => {
                if let (Some(writer), Some(batch)) = (&mut self.writer, ctx.batch()) {
                    let tags: Vec<(String, f64)> = batch
                        .names()
                        .map(|n| (format!("step/{n}"), batch.get(n).unwrap_or(f64::NAN)))
                        .collect();
                    writer.scalars(ctx.state().global_step(), tags.iter().map(|(t, v)| (t.as_str(), *v)))?;
                }
                self.write_logged(ctx)?;
            }
            Event::EpochEnd => {
                if let (Some(writer), Some(epoch)) = (&mut self.writer, ctx.epoch()) {
                    let mut tags: Vec<(String, f64)> =
                        epoch.metrics().map(|(n, v)| (format!("epoch/{n}"), v)).collect();
                    tags.push(("epoch/lr".into(), epoch.learning_rate()));
                    tags.push(("epoch/time".into(), epoch.time().as_secs_f64()));
                    writer.scalars(epoch.epoch() as u64, tags.iter().map(|(t, v)| (t.as_str(), *v)))?;
                }
                self.write_logged(ctx)?;
            }
            _ => {}
        }
        Ok(Control::Continue)
    }
}

impl TensorBoard {
    /// Writes what hooks logged since the last time, by name at its step: numbers as scalars,
    /// histograms as histograms.
    fn write_logged(&mut self, ctx: &HookContext<'_>) -> Result<(), BoxError> {
        let Some(writer) = &mut self.writer else { return Ok(()) };
        let logged = ctx.history().logged_all();
        let new = logged.get(self.logged..).unwrap_or_default();
        for same_step in new.chunk_by(|a, b| a.step() == b.step()) {
            let step = same_step[0].step();
            let scalars: Vec<_> = (same_step.iter())
                .filter_map(|l| match l.value() {
                    LoggedValue::Scalar(v) => Some((l.name(), *v)),
                    LoggedValue::Histogram(_) => None,
                })
                .collect();
            if !scalars.is_empty() {
                writer.scalars(step, scalars)?;
            }
            let histograms: Vec<_> = (same_step.iter())
                .filter_map(|l| match l.value() {
                    LoggedValue::Histogram(h) => Some((l.name(), h)),
                    LoggedValue::Scalar(_) => None,
                })
                .collect();
            if !histograms.is_empty() {
                writer.histograms(step, histograms)?;
            }
        }
        self.logged = logged.len();
        Ok(())
    }
}

impl Plugin for TensorBoard {
    fn specs(&self) -> Vec<HookSpec> {
        let at = |event| {
            HookSpec::new(event, "TensorBoard")
                .priority(priority::LOGGING)
                .rank_zero()
        };
        let mut specs = vec![at(Event::TrainBegin), at(Event::EpochEnd), at(Event::TrainEnd)];
        if self.every > 0 {
            specs.push(at(Event::BatchEnd).filter(Filter::ALWAYS.every(self.every).counter(Counter::GlobalStep)));
        }
        specs
    }
}
