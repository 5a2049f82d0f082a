//! TensorBoard scalars.

use crate::context::HookContext;
use crate::control::Control;
use crate::error::BoxError;
use crate::event::Event;
use crate::filter::{Counter, Filter};
use crate::hook::{Hook, Plugin};
use crate::output::tensorboard::EventWriter;
use crate::priority;
use crate::saved::HookState;
use crate::spec::HookSpec;
use std::path::PathBuf;

/// Writes TensorBoard event files (`events.out.tfevents.*`) into a directory: every epoch's
/// metrics, learning rate and time as `epoch/<name>` at step = the epoch, and with
/// [`TensorBoard::steps`] the running values as `step/<name>` at step = the global step. Point
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
    /// The event file and its length in the resume point a fit resumes from.
    resumed: Option<Written>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Written {
    file: PathBuf,
    length: u64,
}

impl TensorBoard {
    /// Epoch scalars into `dir` (created if need be).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TensorBoard {
            dir: dir.into(),
            every: 0,
            writer: None,
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
                    Some(Written { file, length }) => EventWriter::resume(&self.dir, &file, length)?,
                    None => EventWriter::create(&self.dir)?,
                })
            }
            Event::BatchEnd => {
                if let (Some(writer), Some(batch)) = (&mut self.writer, ctx.batch()) {
                    let tags: Vec<(String, f64)> = batch
                        .names()
                        .map(|n| (format!("step/{n}"), batch.get(n).unwrap_or(f64::NAN)))
                        .collect();
                    writer.scalars(ctx.state().global_step(), tags.iter().map(|(t, v)| (t.as_str(), *v)))?;
                }
            }
            Event::EpochEnd => {
                if let (Some(writer), Some(epoch)) = (&mut self.writer, ctx.epoch()) {
                    let mut tags: Vec<(String, f64)> =
                        epoch.metrics().map(|(n, v)| (format!("epoch/{n}"), v)).collect();
                    tags.push(("epoch/lr".into(), epoch.learning_rate()));
                    tags.push(("epoch/time".into(), epoch.time().as_secs_f64()));
                    writer.scalars(epoch.epoch() as u64, tags.iter().map(|(t, v)| (t.as_str(), *v)))?;
                }
            }
            _ => {}
        }
        Ok(Control::Continue)
    }
}

impl Plugin for TensorBoard {
    fn specs(&self) -> Vec<HookSpec> {
        let at = |event| HookSpec::new(event, "TensorBoard").priority(priority::LOGGING);
        let mut specs = vec![at(Event::TrainBegin), at(Event::EpochEnd)];
        if self.every > 0 {
            specs.push(at(Event::BatchEnd).filter(Filter::ALWAYS.every(self.every).counter(Counter::GlobalStep)));
        }
        specs
    }
}
