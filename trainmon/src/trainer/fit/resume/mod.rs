//! Resuming: a fit going on from its resume point, and writing one; the file itself (one
//! safetensors file, its document and its checks) is `point`.

pub(crate) mod point;

use super::epoch::{Fit, Partway};
use super::source::Shuffling;
use crate::error::{Error, Result};
use crate::output::weights;
use crate::records::metrics::{BatchLogs, LogsState};
use crate::records::saved::HookState;
use crate::schedule::event::Event;
use crate::trainer::rollback::Mark;
use point::{InEpoch, Point, Position};
use std::path::Path;
use std::time::Instant;

impl<B: 'static> Fit<'_, '_, '_, B> {
    /// Goes on from the resume point in `dir`, if there is one: weights, optimizer, hooks'
    /// states, counters, generator, learning rate, history and (within an epoch) the running
    /// `logs` as they were at the point. Without a point, the fit starts afresh.
    pub fn resume_from(&mut self, dir: &Path, logs: &mut BatchLogs) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(Error::io("create the resume directory", dir))?;
        crate::output::remove_leftovers(dir);
        let path = point::path(dir);
        if path.exists() {
            let (position, word_pos) = self.restore(point::read(&path)?, logs, &path)?;
            self.go_on_from(position, word_pos, &path);
        } else {
            tracing::debug!("no resume point in {}: training starts", dir.display());
        }
        if let Some(parallel) = &self.engine.parallel {
            // Every rank must have read the same point (a directory not shared between the
            // machines would give each its own).
            let state = &self.engine.scene.state;
            let at = match &self.partway {
                Some(partway) => format!(
                    "epoch {} batch {}, step {}",
                    state.epoch + 1,
                    partway.batch,
                    state.global_step
                ),
                None => format!("{} epochs done, step {}", state.epoch, state.global_step),
            };
            parallel.group.agree("where to go on from (the resume point)", &at)?;
        }
        Ok(())
    }

    /// Puts back what the point keeps beside the counters — weights, optimizer, hooks' states,
    /// the epoch's running logs — or refuses it before the weights change. Returns the counters
    /// and where the shuffling generator goes on from.
    fn restore(&mut self, saved: Point, logs: &mut BatchLogs, path: &Path) -> Result<(Position<'static>, u128)> {
        let Point {
            position,
            model,
            optimizer,
            hooks,
            metrics,
        } = saved;
        let refused = |message: String| Error::Checkpoint {
            path: path.to_owned(),
            message,
        };
        // Everything that can refuse the point comes before the weights change.
        weights::check(self.engine.vs, &model, path)?;
        let world = self.engine.parallel.as_ref().map_or(1, |parallel| parallel.world());
        if position.within.is_some() && position.world_size != world {
            return Err(refused(format!(
                "it was taken within an epoch by {} rank{}, and this fit has {world}: each rank's share of the epoch \
                 differs, so the epoch cannot go on from where it was. Resume with {0} rank{1}, or from a point \
                 taken at an epoch's end (`resumable`)",
                position.world_size,
                if position.world_size == 1 { "" } else { "s" },
            )));
        }
        // Within an epoch, the generator goes back to the epoch's start: the resumed fit
        // shuffles the epoch again as the interrupted one did.
        let word_pos = match &position.within {
            Some(within) => &within.epoch_rng_word_pos,
            None => &position.rng_word_pos,
        };
        let word_pos: u128 = word_pos
            .parse()
            .map_err(|_| refused(format!("the generator's position `{word_pos}` is not a number")))?;
        let (tensors, value) = optimizer;
        let state = HookState {
            value,
            tensors: tensors.into_iter().collect(),
        };
        self.engine
            .optimizer
            .restore(state)
            .map_err(|e| refused(e.to_string()))?;
        let rank = self.engine.parallel.as_ref().map_or(0, |parallel| parallel.rank());
        self.engine.dispatch.restore(hooks, rank == 0)?;
        match (&mut self.engine.scaler, &position.grad_scaler) {
            (Some(scaler), Some(state)) => scaler.restore((state.scale, state.growth_tracker))?,
            (Some(_), None) => tracing::warn!(
                "the resume point was made without a gradient scaler: the scaler starts at its initial scale"
            ),
            (None, Some(_)) => tracing::warn!(
                "the resume point was made with a gradient scaler, this fit has none: its scale is left out"
            ),
            (None, None) => {}
        }
        if let Some(within) = &position.within {
            // The epoch's running loss and metrics so far.
            logs.reset();
            logs.restore(LogsState {
                counters: within.logs.clone(),
                metrics: metrics.into_iter().map(|(key, state)| (key, Some(state))).collect(),
            })?;
        }
        weights::copy(self.engine.vs, &model, path)?;
        Ok((position, word_pos))
    }

    /// Takes the counters, the generator, the learning rate, the history and the hooks' stop
    /// and disabled hooks from the point.
    fn go_on_from(&mut self, position: Position<'static>, word_pos: u128, path: &Path) {
        self.engine.optimizer.set_learning_rate(position.learning_rate);
        self.engine.dispatch.disable(&position.disabled);
        if let (Some(guard), Some(state)) = (self.engine.guard.as_mut(), position.rollback) {
            guard.restore(state);
        }
        if let Some(stop) = position.stop {
            self.engine.dispatch.stop_with(stop);
        }
        let mut shuffling = Shuffling::new(position.seed, self.shuffling.seeded);
        shuffling.rng.set_stream(position.rng_stream);
        shuffling.rng.set_word_pos(word_pos);
        self.shuffling = shuffling;
        if (position.samples, position.batches) != (self.samples, self.engine.batches) {
            tracing::warn!(
                "the resume point was made training on {} samples in {} batches per epoch, this fit has {} in {}: it \
                 goes on, but not as the interrupted run would have",
                position.samples,
                position.batches,
                self.samples,
                self.engine.batches
            );
        }
        let state = &mut self.engine.scene.state;
        state.epoch = position.epoch;
        state.global_step = position.global_step;
        state.learning_rate = position.learning_rate;
        state.started = Instant::now()
            .checked_sub(position.elapsed)
            .unwrap_or_else(Instant::now);
        self.engine.scene.learning_rate.set(position.learning_rate);
        self.engine.scene.history = position.history.into_owned();
        self.engine.scene.history.elapsed = position.elapsed;
        self.partway = position.within.map(|within| Partway {
            batch: within.batch,
            epoch_elapsed: within.epoch_elapsed,
        });
        let batch = self
            .partway
            .as_ref()
            .map_or(String::new(), |p| format!(" and {} batches", p.batch));
        tracing::info!(
            "resuming from {}: {} epochs{batch} done, step {}",
            path.display(),
            position.epoch,
            position.global_step
        );
    }
    /// At an epoch's end, after all its hooks: a resume point, if the fit is resumable and
    /// the epoch ran whole (every batch trained or skipped by a rollback, no stop within it).
    pub(super) fn save_at_epoch_end(&mut self, epoch: usize, logs: &BatchLogs) -> Result<()> {
        let Some(dir) = &self.engine.settings.resume else {
            return Ok(());
        };
        let history = &self.engine.scene.history;
        let skipped: usize = (history.skipped.iter())
            .filter(|s| s.epoch == epoch)
            .map(|s| s.batches.clone().count())
            .sum();
        let whole = logs.number() + skipped == self.engine.batches
            && (self.engine.dispatch.stop())
                .is_none_or(|stop| matches!(stop.event, Event::ValidationEnd | Event::EpochEnd));
        // Data-parallel, a rank stopped within the epoch (in a validation hook, say) can be
        // alone in knowing it was cut short: the ranks save only if all say whole.
        let whole = match &self.engine.parallel {
            Some(parallel) => parallel.all(whole)?,
            None => whole,
        };
        if whole {
            self.save_point(dir, None)?;
        }
        Ok(())
    }

    /// After a training batch `batch`'s hooks: a resume point within the epoch where one is
    /// due (every `resumable_steps` optimizer steps, not at the epoch's last batch), and a
    /// rollback snapshot where one is due — at a resume point too, as the fit resumed from it
    /// takes one where it goes on. `epoch_rng`: the shuffling generator's position at the
    /// epoch's start; `started`: the epoch's.
    pub(super) fn save_within_epoch(
        &mut self,
        batch: usize,
        logs: &BatchLogs,
        epoch_rng: u128,
        started: Instant,
    ) -> Result<()> {
        let settings = self.engine.settings;
        let (steps, global_step) = (settings.resume_steps, self.engine.scene.state.global_step);
        let window_end = self.engine.window_end();
        let point = (settings.resume.as_deref())
            .filter(|_| steps > 0 && window_end && batch < self.engine.batches && global_step % steps == 0);
        if let Some(dir) = point {
            let within = InEpoch {
                batch,
                epoch_rng_word_pos: epoch_rng.to_string(),
                epoch_elapsed: started.elapsed(),
                logs: Default::default(),
            };
            self.save_point(dir, Some((within, logs.state())))?;
        }
        let engine = &mut self.engine;
        if let Some(guard) = &mut engine.guard {
            if window_end && (guard.due(global_step) || point.is_some()) {
                guard.snapshot(&*engine.optimizer, logs, Mark { batch, global_step })?;
            }
        }
        Ok(())
    }

    /// Writes a resume point: at the end of an epoch (after all its hooks ran), or — `within`
    /// — after a batch, with where in the epoch and its running logs.
    ///
    /// Data-parallel, rank 0 writes it once every rank is there (a barrier), for all: the
    /// replicas' weights and optimizers are the same, and so are the running logs
    /// ([`crate::trainer::parallel::Parallel::gather_batch`]) and the shuffling generator;
    /// every rank reads it when the group starts again. The hooks' states in it are rank 0's
    /// (a hook keeping state per rank, a `Local`, gets rank 0's back on every rank).
    pub(super) fn save_point(&mut self, dir: &Path, within: Option<(InEpoch, LogsState)>) -> Result<()> {
        if let Some(parallel) = &self.engine.parallel {
            parallel.group.barrier()?;
            if parallel.rank() != 0 {
                return Ok(());
            }
        }
        let state = &self.engine.scene.state;
        let (within, metrics) = match within {
            Some((within, logs)) => {
                let metrics = logs.metrics.into_iter().filter_map(|(n, s)| Some((n, s?))).collect();
                (
                    Some(InEpoch {
                        logs: logs.counters,
                        ..within
                    }),
                    metrics,
                )
            }
            None => (None, Vec::new()),
        };
        let position = Position {
            epoch: state.epoch - usize::from(within.is_some()),
            within,
            global_step: state.global_step,
            learning_rate: state.learning_rate,
            seed: self.shuffling.seed,
            rng_stream: self.shuffling.rng.get_stream(),
            rng_word_pos: self.shuffling.rng.get_word_pos().to_string(),
            elapsed: state.started.elapsed(),
            samples: self.samples,
            batches: self.engine.batches,
            history: std::borrow::Cow::Borrowed(&self.engine.scene.history),
            stop: self.engine.dispatch.stop().cloned(),
            disabled: self.engine.dispatch.disabled(),
            rollback: self.engine.guard.as_ref().map(|guard| guard.state()),
            grad_scaler: match &self.engine.scaler {
                Some(scaler) => {
                    let (scale, growth_tracker) = scaler.state()?;
                    Some(point::ScalerState { scale, growth_tracker })
                }
                None => None,
            },
            world_size: self.engine.parallel.as_ref().map_or(1, |parallel| parallel.world()),
        };
        let optimizer = self.engine.optimizer.state()?;
        let optimizer = (optimizer.tensors, optimizer.value);
        let hooks = self.engine.dispatch.states()?;
        point::write(&point::path(dir), position, self.engine.vs, optimizer, hooks, metrics)
    }
}
