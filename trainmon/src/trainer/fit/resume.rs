//! Resuming: a fit going on from its resume point, and writing one.

use super::run::{Loop, Partway, Shuffling};
use crate::error::{Error, Result};
use crate::metrics::{BatchLogs, LogsState};
use crate::output::weights;
use crate::saved::HookState;
use crate::trainer::point::{self, InEpoch, Point, Position};
use std::path::Path;
use std::time::Instant;

impl Loop<'_, '_> {
    /// Goes on from the resume point in `dir`, if there is one: weights, optimizer, hooks'
    /// states, counters, generator, learning rate, history and (within an epoch) the running
    /// `logs` as they were at the point. Without a point, the fit starts afresh.
    pub fn resume_from(&mut self, dir: &Path, logs: &mut BatchLogs) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(Error::io("create the resume directory", dir))?;
        crate::output::remove_leftovers(dir);
        let path = point::path(dir);
        if !path.exists() {
            tracing::debug!("no resume point in {}: training starts", dir.display());
            return Ok(());
        }
        let (position, word_pos) = self.restore(point::read(&path)?, logs, &path)?;
        self.go_on_from(position, word_pos, &path);
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
        weights::check(self.vs, &model, path)?;
        let world = self.parallel.as_ref().map_or(1, |parallel| parallel.world());
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
        self.optimizer.restore(state).map_err(|e| refused(e.to_string()))?;
        let rank = self.parallel.as_ref().map_or(0, |parallel| parallel.rank());
        self.dispatch.restore(hooks, rank == 0)?;
        match (&mut self.scaler, &position.grad_scaler) {
            (Some(scaler), Some(state)) => scaler.restore(state)?,
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
        weights::copy(self.vs, &model, path)?;
        Ok((position, word_pos))
    }

    /// Takes the counters, the generator, the learning rate, the history and the hooks' stop
    /// and disabled hooks from the point.
    fn go_on_from(&mut self, position: Position<'static>, word_pos: u128, path: &Path) {
        self.optimizer.set_learning_rate(position.learning_rate);
        self.dispatch.disable(&position.disabled);
        if let (Some(guard), Some(state)) = (self.guard.as_mut(), position.rollback) {
            guard.restore(state);
        }
        if let Some(stop) = position.stop {
            self.dispatch.stop_with(stop);
        }
        let mut shuffling = Shuffling::new(position.seed, self.shuffling.seeded);
        shuffling.rng.set_stream(position.rng_stream);
        shuffling.rng.set_word_pos(word_pos);
        self.shuffling = shuffling;
        if (position.samples, position.batches) != (self.samples, self.batches) {
            tracing::warn!(
                "the resume point was made training on {} samples in {} batches per epoch, this fit has {} in {}: it \
                 goes on, but not as the interrupted run would have",
                position.samples,
                position.batches,
                self.samples,
                self.batches
            );
        }
        let state = &mut self.scene.state;
        state.epoch = position.epoch;
        state.global_step = position.global_step;
        state.learning_rate = position.learning_rate;
        state.started = Instant::now()
            .checked_sub(position.elapsed)
            .unwrap_or_else(Instant::now);
        self.scene.learning_rate.set(position.learning_rate);
        self.scene.history = position.history.into_owned();
        self.scene.history.elapsed = position.elapsed;
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
    /// Writes a resume point: at the end of an epoch (after all its hooks ran), or — `within`
    /// — after a batch, with where in the epoch and its running logs.
    ///
    /// Data-parallel, rank 0 writes it once every rank is there (a barrier), for all: the
    /// replicas' weights and optimizers are the same, and so are the running logs
    /// ([`crate::trainer::parallel::Parallel::gather_batch`]) and the shuffling generator;
    /// every rank reads it when the group starts again. The hooks' states in it are rank 0's
    /// (a hook keeping state per rank, a `Local`, gets rank 0's back on every rank).
    pub(super) fn save_point(&mut self, dir: &Path, within: Option<(InEpoch, LogsState)>) -> Result<()> {
        if let Some(parallel) = &self.parallel {
            parallel.group.barrier()?;
            if parallel.rank() != 0 {
                return Ok(());
            }
        }
        let state = &self.scene.state;
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
            batches: self.batches,
            history: std::borrow::Cow::Borrowed(&self.scene.history),
            stop: self.dispatch.stop().cloned(),
            disabled: self.dispatch.disabled(),
            rollback: self.guard.as_ref().map(|guard| guard.state()),
            grad_scaler: self.scaler.as_ref().map(|scaler| scaler.state()).transpose()?,
            world_size: self.parallel.as_ref().map_or(1, |parallel| parallel.world()),
        };
        let optimizer = self.optimizer.state()?;
        let optimizer = (optimizer.tensors, optimizer.value);
        let hooks = self.dispatch.states()?;
        point::write(&point::path(dir), position, self.vs, optimizer, hooks, metrics)
    }
}
