//! The epoch loop, as an outline: each training batch is fetched, stepped (forward, backward,
//! optimizer step: the work and the engine), recorded in the running logs, its hooks fired and
//! a resume point saved where one is due; then validation and the epoch's end.

use super::engine::{ByHand, Count, Engine, Part};
use super::setup::Logs;
use super::source::{Shuffling, Source, PAIRS};
use super::timing::Profile;
use super::typed::is_pairs;
use super::work::{Computed, Work};
use crate::control::StopCause;
use crate::error::Result;
use crate::records::history::{EpochLogs, History, Skipped, StopReason};
use crate::records::key::MetricKey;
use crate::records::metrics::BatchLogs;
use crate::schedule::event::Event;
use crate::step::{Manual, Seen, StepContext};
use crate::trainer::rollback::Mark;
use std::any::Any;
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// One fit under way: the engine, the work it runs over batches of `B`, and where the fit is.
pub(super) struct Fit<'f, 'a, 'h, B> {
    pub engine: Engine<'a, 'h>,
    pub work: &'f mut dyn Work<B>,
    /// Training samples (recorded in resume points).
    pub samples: usize,
    pub shuffling: Shuffling,
    /// Where in its first epoch a fit resumed within an epoch goes on.
    pub partway: Option<Partway>,
    pub profile: Profile,
}

/// Where a fit resumed within an epoch goes on from (its running logs are restored already).
pub(super) struct Partway {
    /// Batches of the epoch done.
    pub batch: usize,
    /// Its wall time so far.
    pub epoch_elapsed: Duration,
}

/// A training batch's step: done, or found bad by the rollback guard (why).
type Stepped<'b> = std::result::Result<Computed<'b>, String>;

/// The batch as hooks see it, and its type's name.
fn seen<B: 'static>(batch: &B) -> Seen<'_> {
    let name = match is_pairs::<B>() {
        true => PAIRS,
        false => std::any::type_name::<B>(),
    };
    (batch as &dyn Any, name)
}

impl<B: 'static> Fit<'_, '_, '_, B> {
    /// Runs the fit; if it failed, leaves the process group (data-parallel), then runs the
    /// `on_exception` hooks.
    pub fn train(mut self, train: &dyn Source<B>, valid: Option<&dyn Source<B>>, logs: &mut Logs) -> Result<History> {
        self.engine.dispatch.profile(true);
        match self.run(train, valid, logs) {
            Ok(()) => Ok(self.engine.scene.history),
            Err(err) => {
                // The other ranks learn why first: they need not wait for this rank's hooks.
                if let Some(parallel) = &self.engine.parallel {
                    parallel.group.leave_after(&err);
                }
                let engine = &mut self.engine;
                let ctx = (engine.scene)
                    .context(Event::Exception, engine.vs, engine.resources)
                    .with_error(&err);
                engine.dispatch.fire_exception(&ctx);
                Err(err)
            }
        }
    }

    fn run(&mut self, train: &dyn Source<B>, valid: Option<&dyn Source<B>>, logs: &mut Logs) -> Result<()> {
        self.engine.fire(Event::TrainBegin, Count::ONCE, None, None)?;
        for epoch in self.engine.scene.state.epoch + 1..=self.engine.scene.state.epochs {
            if self.engine.stopped(Event::EpochEnd)? {
                break;
            }
            self.engine.scene.state.epoch = epoch;
            self.engine.scene.state.batch = 0;
            // An epoch a fit resumes within has begun already: its time goes on, its
            // `on_epoch_begin` hooks ran in the interrupted process.
            let started = match &self.partway {
                Some(partway) => (Instant::now().checked_sub(partway.epoch_elapsed)).unwrap_or_else(Instant::now),
                None => {
                    self.shuffling.reseed(epoch, 0);
                    let started = Instant::now();
                    self.engine.fire(Event::EpochBegin, Count::epoch(epoch), None, None)?;
                    if self.engine.stopped(Event::EpochBegin)? {
                        break;
                    }
                    started
                }
            };
            self.train_epoch(train, &mut logs.train, started)?;
            if logs.train.number() == 0 {
                break;
            }
            // Data-parallel, the running logs are the global ones already (`record`).
            let mut values: Vec<_> = (logs.train.values().into_iter())
                .map(|(name, value)| (MetricKey::training(name), value))
                .collect();
            if let (Some(valid), Some(val_logs)) = (valid, logs.valid.as_mut()) {
                self.validate(valid, epoch, val_logs)?;
                values.extend(
                    val_logs
                        .values()
                        .into_iter()
                        .map(|(name, value)| (MetricKey::validation(name), value)),
                );
            }
            self.end_epoch(epoch, started, &logs.train, values);
            if valid.is_some() {
                self.engine
                    .fire(Event::ValidationEnd, Count::epoch(epoch), None, None)?;
            }
            self.engine.fire(Event::EpochEnd, Count::epoch(epoch), None, None)?;
            self.save_at_epoch_end(epoch, &logs.train)?;
        }
        let engine = &mut self.engine;
        engine.scene.history.stop = engine.dispatch.take_stop();
        if let Some(stop) = &engine.scene.history.stop {
            tracing::debug!("training stopped: {stop}");
        }
        engine.scene.state.batch = 0;
        self.account();
        self.engine.fire(Event::TrainEnd, Count::ONCE, None, None)?;
        self.account();
        Ok(())
    }

    /// The fit's time and its hooks' costs in the history.
    fn account(&mut self) {
        let engine = &mut self.engine;
        engine.scene.history.elapsed = engine.scene.state.started.elapsed();
        engine.scene.history.hook_costs = engine.dispatch.costs(engine.scene.history.elapsed);
    }

    /// Records the epoch in the history, its logs final.
    fn end_epoch(&mut self, epoch: usize, started: Instant, logs: &BatchLogs, values: Vec<(MetricKey, f64)>) {
        let scene = &mut self.engine.scene;
        scene.history.epochs.push(EpochLogs {
            epoch,
            time: started.elapsed(),
            batches: logs.number(),
            samples: logs.samples(),
            values,
            learning_rate: scene.state.learning_rate,
        });
        scene.history.elapsed = scene.state.started.elapsed();
        scene.state.batch = 0;
    }

    /// The training batches of one epoch, until its end or a stop.
    /// `started`: when the epoch started (in the interrupted process, for a resumed epoch).
    fn train_epoch(&mut self, train: &dyn Source<B>, logs: &mut BatchLogs, started: Instant) -> Result<()> {
        let epoch_rng = self.shuffling.rng.get_word_pos();
        let (settings, device) = (self.engine.settings, self.engine.scene.state.device);
        let batch_size = settings.batch_size;
        let mut order = self.shuffling.order(settings.shuffle, train.len());
        // Data-parallel: this rank's share of the epoch's order.
        if let Some(parallel) = &self.engine.parallel {
            order = Some(parallel.shard(order, train.len()));
        }
        let len = order.as_ref().map_or(train.len(), Vec::len);
        // A rollback names the samples it skips.
        let indices = self.engine.guard.as_ref().and(order.clone());
        let mut batches = train.epoch(order, batch_size)?;
        // A resumed epoch goes on after its batches done, with their running logs.
        let first = match self.partway.take() {
            Some(partway) => partway.batch + 1,
            None => {
                logs.reset();
                1
            }
        };
        // A dataset that builds batches ahead (a `Loader`) starts on this epoch's, from `first`.
        batches.prefetch(first - 1, self.engine.batches, batch_size, device)?;
        self.engine.snapshot(logs, first - 1)?;
        for batch in first..=self.engine.batches {
            let count = Count::batch(batch, self.engine.scene.state.global_step + 1);
            self.engine.scene.state.batch = batch;
            if settings.resume.is_some() {
                // Dropout after a resume point within the epoch draws alike.
                self.shuffling.reseed(self.engine.scene.state.epoch, batch);
            }
            // Timed only over the first batches of the fit, to find slow hooks.
            let batch_started = self.profile.timing().then(Instant::now);
            self.engine.fire(Event::BatchBegin, count, None, None)?;
            if self.engine.stopped(Event::BatchBegin)? {
                break;
            }
            let (start, rows) = ((batch - 1) * batch_size, batch_size.min(len - (batch - 1) * batch_size));
            let fetched = batches.batch(start, rows, device)?;
            let seen = Some(seen(&fetched));
            match self.train_step(&fetched, count, seen)? {
                Ok(computed) => self.record(logs, &computed, rows)?,
                Err(reason) => {
                    let indices = indices.as_deref();
                    let samples = |b: usize| {
                        let positions = (b - 1) * batch_size..(b * batch_size).min(len);
                        positions.map(move |p| indices.map_or(p as i64, |order| order[p]))
                    };
                    if self.engine.roll_back(logs, count, reason, samples)? {
                        break;
                    }
                    continue;
                }
            }
            self.engine.fire(Event::BatchEnd, count, Some(logs), seen)?;
            if let Some(batch_started) = batch_started {
                self.profile.add(&mut self.engine.dispatch, batch_started.elapsed());
            }
            if self.engine.stopped(Event::BatchEnd)? {
                break;
            }
            self.save_within_epoch(batch, logs, epoch_rng, started)?;
        }
        Ok(())
    }

    /// One training step on `batch`: the work computes the loss; the engine runs the backward
    /// pass and the optimizer step — or the work ran them itself, by hand, through the engine.
    /// The rollback guard judges the loss before its backward pass (by hand, after the step:
    /// a rollback undoes what it stepped).
    fn train_step<'b>(&mut self, batch: &'b B, count: Count, seen: Option<Seen<'_>>) -> Result<Stepped<'b>> {
        self.engine.begin_batch(count);
        let (by_hand, state, autocast) = (
            self.work.by_hand(),
            self.engine.scene.state.clone(),
            self.engine.autocast,
        );
        let at = || format!("batch {} of epoch {}", state.batch, state.epoch);
        let computed = {
            let mut manual = ByHand {
                engine: &mut self.engine,
                seen,
            };
            let ctx = StepContext {
                training: true,
                state: state.clone(),
                by_hand,
                manual: RefCell::new(by_hand.then_some(&mut manual as &mut dyn Manual)),
            };
            self.work.compute(batch, &ctx, autocast, &at)?
        };
        let engine = &mut self.engine;
        let bad = match engine.take_bad() {
            Some(reason) => Some(reason),
            None => engine.judge(&computed.loss, true)?,
        };
        if let Some(reason) = bad {
            engine.discard_step()?;
            return Ok(Err(reason));
        }
        if !by_hand {
            engine.zero_grad(Part::All)?;
            engine.backward(&computed.loss, true, seen)?;
            engine.optimizer_step(Part::All, seen)?;
        }
        engine.end_step()?;
        Ok(Ok(computed))
    }

    /// The batch's loss and outputs in the running logs. Data-parallel, every rank's hooks see
    /// the running values of all ranks' batches.
    fn record(&mut self, logs: &mut BatchLogs, computed: &Computed<'_>, rows: usize) -> Result<()> {
        let outputs = computed.outputs();
        let Some(parallel) = &self.engine.parallel else {
            return logs.update_sized(&computed.loss, outputs, rows);
        };
        let size = rows * parallel.world();
        match outputs {
            Some((outputs, targets)) if logs.has_metrics() => {
                // A step's outputs may differ in size from rank to rank (unpadded sequences):
                // refused, naming the ranks, before the gather.
                if !self.work.outputs_of_one_size() {
                    parallel.same_sizes(outputs, targets)?;
                }
                let (loss, outputs, targets) = parallel.gather_batch(&computed.loss, outputs, targets)?;
                logs.update_sized(&loss, Some((&outputs, &targets)), size)
            }
            _ => logs.update_sized(&parallel.mean_loss(&computed.loss)?, outputs, size),
        }
    }

    /// The validation pass of one epoch: eval mode, no gradients, batches in order.
    fn validate(&mut self, valid: &dyn Source<B>, epoch: usize, logs: &mut BatchLogs) -> Result<()> {
        self.engine
            .fire(Event::ValidationBegin, Count::epoch(epoch), None, None)?;
        let _no_grad = tch::no_grad_guard();
        let (batch_size, device) = (self.engine.settings.batch_size, self.engine.scene.state.device);
        let batches = valid.len().div_ceil(batch_size);
        let mut order = valid.epoch(None, batch_size)?;
        order.prefetch(0, batches, batch_size, device)?;
        logs.reset();
        for batch in 1..=batches {
            let (start, rows) = (
                (batch - 1) * batch_size,
                batch_size.min(valid.len() - (batch - 1) * batch_size),
            );
            let at = || format!("validation batch {batch} of epoch {epoch}");
            let fetched = order.batch(start, rows, device)?;
            // A step by hand's optimizing calls do nothing in validation.
            let ctx = StepContext {
                training: false,
                state: self.engine.scene.state.clone(),
                by_hand: self.work.by_hand(),
                manual: RefCell::new(None),
            };
            let computed = self.work.compute(&fetched, &ctx, self.engine.autocast, &at)?;
            logs.update_sized(&computed.loss, computed.outputs(), rows)?;
            let count = Count::batch(batch, batch as u64);
            self.engine
                .fire(Event::ValidationBatchEnd, count, Some(logs), Some(seen(&fetched)))?;
        }
        Ok(())
    }
}

impl Engine<'_, '_> {
    /// A rollback snapshot where the epoch's batches start (after `done` of them, for a fit
    /// resumed within it), if the fit rolls back.
    fn snapshot(&mut self, logs: &BatchLogs, done: usize) -> Result<()> {
        if let Some(guard) = &mut self.guard {
            let mark = Mark {
                batch: done,
                global_step: self.scene.state.global_step,
            };
            guard.snapshot(&*self.optimizer, logs, mark)?;
        }
        Ok(())
    }

    /// Goes back to the guard's snapshot over the bad batch at `count`, skipping the batches
    /// since (their samples by `samples(batch)`); `true` when that was one rollback too many
    /// and training stops. Data-parallel, every rank found the batch bad (the guard judged the
    /// ranks' mean loss): every rank goes back to the same snapshot.
    fn roll_back<I: Iterator<Item = i64>>(
        &mut self,
        logs: &mut BatchLogs,
        count: Count,
        reason: String,
        samples: impl Fn(usize) -> I,
    ) -> Result<bool> {
        let (epoch, batch) = (self.scene.state.epoch, count.own as usize);
        let guard = self.guard.as_mut().expect("only a guard finds a batch bad");
        let mark = guard.roll_back(&mut *self.optimizer, logs, batch)?;
        // Gradients of a skipped part of an accumulation window go too; the learning rate is
        // the one hooks set last (the snapshot's may be older).
        self.optimizer.zero_grad()?;
        self.optimizer.set_learning_rate(self.scene.state.learning_rate);
        self.scene.state.global_step = mark.global_step;
        let batches = mark.batch + 1..=batch;
        let skipped = Skipped {
            epoch,
            batches: batches.clone(),
            step: count.global,
            reason,
            samples: batches.flat_map(samples).collect(),
        };
        tracing::warn!("rolled back to step {}: skipping {skipped}", mark.global_step);
        let gave_up = guard.give_up(count.global, skipped.to_string());
        self.scene.history.skipped.push(skipped);
        if let Some(reason) = gave_up {
            self.dispatch.stop_with(StopReason {
                cause: StopCause::Rollbacks,
                reason,
                hook: "Rollback".into(),
                event: Event::BatchEnd,
                epoch,
            });
            return Ok(true);
        }
        Ok(false)
    }
}
