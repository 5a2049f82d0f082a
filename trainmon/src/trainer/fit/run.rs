//! The epoch loop: epochs, their training batches and validation pass, and the hooks fired
//! between them.

use super::setup::{Logs, Plan};
use super::source::Source;
use super::source::{Epoch, PAIRS};
use super::step::{clip_gradients, clip_grads, forward_loss, step_loss};
use crate::context::Scene;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::history::{EpochLogs, History};
use crate::history::{Skipped, StopReason};
use crate::loss::Loss;
use crate::metrics::BatchLogs;
use crate::optim::Optimizer;
use crate::resource::Resources;
use crate::step::{ErasedStep, Manual, StepContext};
use crate::trainer::dispatch::Dispatch;
use crate::trainer::parallel::Parallel;
use crate::trainer::rollback::{Guard, Mark};
use crate::trainer::scaler::Scaler;
use crate::trainer::Settings;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tch::nn::{ModuleT, VarStore};
use tch::{Kind, Tensor};

/// One fit under way: the model and its optimizer, the hooks, what they see, and where the
/// loop is.
pub(super) struct Loop<'a, 'h> {
    /// What a batch's loss comes from: the model and the loss, or the user's step.
    pub work: Work<'a>,
    pub vs: &'a VarStore,
    pub optimizer: &'a mut dyn Optimizer,
    pub loss: &'a Loss,
    pub settings: &'a Settings,
    pub resources: &'a Resources,
    pub dispatch: Dispatch<'h>,
    pub scene: Scene,
    /// Training batches per epoch.
    pub batches: usize,
    /// Training samples (recorded in resume points).
    pub samples: usize,
    pub shuffling: Shuffling,
    /// Where in its first epoch a fit resumed within an epoch goes on.
    pub partway: Option<Partway>,
    pub profile: Profile,
    /// Rolling back over bad batches, when the fit does.
    pub guard: Option<Guard>,
    /// The type the forward pass and the loss are autocast to, in mixed precision.
    pub autocast: Option<Kind>,
    /// The gradient scaler, when the fit scales.
    pub scaler: Option<Scaler>,
    /// The group, when the fit is data-parallel.
    pub parallel: Option<Parallel<'a>>,
    /// The batch being trained or validated, from its forward pass to its end: what
    /// `StepBatch` parameters get.
    pub current: Option<Current>,
}

/// The batch being trained or validated.
pub(super) enum Current {
    /// A dataset's features and targets, which the trainer's own step ran on (kept as they
    /// are: no allocation per batch).
    Pairs((Tensor, Tensor)),
    /// The batch a step of the user's got, and its type's name.
    Typed(Rc<dyn Any>, &'static str),
}

impl Current {
    /// The batch as hooks get it, and its type's name.
    fn seen(&self) -> (&dyn Any, &'static str) {
        match self {
            Current::Pairs(pair) => (pair, PAIRS),
            Current::Typed(batch, name) => (&**batch, name),
        }
    }
}

/// A batch's outputs for the metrics, and its targets when they are not the batch's own (the
/// trainer's step: those of [`Current::Pairs`]).
type Outputs = Option<(Tensor, Option<Tensor>)>;

/// What a batch's loss comes from.
pub(super) enum Work<'a> {
    /// The trainer's own step: the model's forward pass, then the loss.
    Model(&'a dyn ModuleT),
    /// The user's step ([`crate::TrainStep`]).
    Step(Box<dyn ErasedStep + 'a>),
    /// The user's step, while it runs with the loop lent to it (optimizing by hand).
    Lent,
}

/// A training step done, or found bad before its backward pass.
enum Step {
    Done {
        /// Whether the optimizer stepped.
        window_end: bool,
        /// The loss read to the host, when a guard looked at it.
        value: Option<f64>,
    },
    /// What is wrong with the loss.
    Anomaly(String),
}

/// The generator that shuffles the epochs, and libtorch's generator's seeding.
pub(super) struct Shuffling {
    pub rng: ChaCha8Rng,
    /// The generator's seed.
    pub seed: u64,
    /// Whether a seed was given: libtorch's generator is then seeded per epoch (and, in a
    /// resumable fit, per batch) from it.
    pub seeded: bool,
}

impl Shuffling {
    pub fn new(seed: u64, seeded: bool) -> Self {
        Shuffling {
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            seeded,
        }
    }

    /// Seeds libtorch's generator from the seed, the epoch and the batch (0: the epoch's
    /// start), when a seed was given: so that a fit resumed within an epoch draws what the
    /// uninterrupted one did (dropout masks).
    fn reseed(&self, epoch: usize, batch: usize) {
        if self.seeded {
            let mix =
                (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (batch as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
            tch::manual_seed((self.seed ^ mix) as i64);
        }
    }

    /// This epoch's order of `samples` samples (`None`: in order, unshuffled).
    fn order(&mut self, shuffle: bool, samples: usize) -> Option<Vec<i64>> {
        shuffle.then(|| {
            let mut order: Vec<i64> = (0..samples as i64).collect();
            order.shuffle(&mut self.rng);
            order
        })
    }
}

/// Where a fit resumed within an epoch goes on from (its running logs are restored already).
pub(super) struct Partway {
    /// Batches of the epoch done.
    pub batch: usize,
    /// Its wall time so far.
    pub epoch_elapsed: Duration,
}

/// The first batches of a fit, timed (step and hooks) while the dispatch times the hooks, to
/// warn about hooks slower than the step.
#[derive(Default)]
pub(super) struct Profile {
    spent: Duration,
    batches: u32,
}

/// Batches at the start of a fit over which hooks are timed against the training step.
const PROFILED_BATCHES: u32 = 20;

/// The counters of one occurrence of an event: its own (the epoch, the batch within the
/// epoch…), and the global step.
#[derive(Clone, Copy)]
struct Count {
    own: u64,
    global: u64,
}

impl Count {
    const ONCE: Count = Count { own: 1, global: 0 };

    fn epoch(epoch: usize) -> Self {
        Count {
            own: epoch as u64,
            global: epoch as u64,
        }
    }

    fn batch(batch: usize, step: u64) -> Self {
        Count {
            own: batch as u64,
            global: step,
        }
    }
}

impl Loop<'_, '_> {
    /// Runs the fit; if it failed, leaves the process group (data-parallel), then runs the
    /// `on_exception` hooks.
    pub fn train(mut self, plan: &Plan<'_>, logs: &mut Logs) -> Result<History> {
        self.dispatch.profile(true);
        match self.run(&plan.train, plan.valid.as_ref(), logs) {
            Ok(()) => Ok(self.scene.history),
            Err(err) => {
                // The other ranks learn why first: they need not wait for this rank's hooks.
                if let Some(parallel) = &self.parallel {
                    parallel.group.leave_after(&err);
                }
                let ctx = self
                    .scene
                    .context(Event::Exception, self.vs, self.resources)
                    .with_error(&err);
                self.dispatch.fire_exception(&ctx);
                Err(err)
            }
        }
    }

    /// Whether training stops after the hooks of `event`: a hook asked to — or, data-parallel,
    /// one on any rank did (every rank asks the others, so all stop at the same boundary).
    ///
    /// The ranks ask each other only where a rank can have stopped: after the events since the
    /// last check at which some rank runs hooks (at the top of an epoch, always).
    fn stopped(&mut self, event: Event) -> Result<bool> {
        let here = self.dispatch.stopped();
        let Some(parallel) = &self.parallel else {
            return Ok(here);
        };
        let since: &[Event] = match event {
            Event::BatchBegin => &[Event::BatchBegin],
            Event::BatchEnd => &[
                Event::BeforeBackward,
                Event::AfterBackward,
                Event::BeforeOptimizerStep,
                Event::BatchEnd,
            ],
            Event::EpochBegin => &[Event::EpochBegin],
            _ => &Event::ALL,
        };
        if !parallel.hooked(since) {
            return Ok(here);
        }
        match parallel.who_stopped(here)? {
            Some(rank) if !here => {
                self.dispatch.stop_with(StopReason {
                    reason: format!("rank {rank} of {} stopped", parallel.world()),
                    hook: "data_parallel".into(),
                    event,
                    epoch: self.scene.state.epoch,
                });
                Ok(true)
            }
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    /// Runs the hooks of `event` at `count`, then applies a learning rate a hook set.
    fn fire(&mut self, event: Event, count: Count, batch: Option<&BatchLogs>) -> Result<()> {
        let current = self.current.as_ref().map(Current::seen);
        let ctx = self
            .scene
            .context(event, self.vs, self.resources)
            .with_step_batch(current);
        let ctx = match batch {
            Some(batch) => ctx.with_batch(batch),
            None => ctx,
        };
        let fired = self.dispatch.fire(count.own, count.global, &ctx);
        self.scene.keep_logged();
        fired?;
        let wanted = self.scene.learning_rate.get();
        if wanted != self.scene.state.learning_rate {
            if !(wanted.is_finite() && wanted >= 0.0) {
                return Err(Error::Config(format!(
                    "a `{event}` hook set the learning rate to {wanted}"
                )));
            }
            self.optimizer.set_learning_rate(wanted);
            self.scene.state.learning_rate = wanted;
        }
        Ok(())
    }

    fn run(&mut self, train: &Source<'_>, valid: Option<&Source<'_>>, logs: &mut Logs) -> Result<()> {
        self.fire(Event::TrainBegin, Count::ONCE, None)?;
        for epoch in self.scene.state.epoch + 1..=self.scene.state.epochs {
            if self.stopped(Event::EpochEnd)? {
                break;
            }
            self.scene.state.epoch = epoch;
            self.scene.state.batch = 0;
            // An epoch a fit resumes within has begun already: its time goes on, its
            // `on_epoch_begin` hooks ran in the interrupted process.
            let started = match &self.partway {
                Some(partway) => Instant::now()
                    .checked_sub(partway.epoch_elapsed)
                    .unwrap_or_else(Instant::now),
                None => {
                    self.shuffling.reseed(epoch, 0);
                    let started = Instant::now();
                    self.fire(Event::EpochBegin, Count::epoch(epoch), None)?;
                    if self.stopped(Event::EpochBegin)? {
                        break;
                    }
                    started
                }
            };
            self.train_epoch(train, &mut logs.train, started)?;
            self.current = None;
            if logs.train.number() == 0 {
                break;
            }
            // Data-parallel, the running logs are the global ones already (`gather_batch`).
            let mut values = logs.train.values();
            if let (Some(valid), Some(val_logs)) = (valid, logs.valid.as_mut()) {
                self.validate(valid, epoch, val_logs)?;
                values.extend(
                    val_logs
                        .values()
                        .into_iter()
                        .map(|(name, value)| (format!("val_{name}"), value)),
                );
            }
            self.end_epoch(epoch, started, &logs.train, values);
            if valid.is_some() {
                self.fire(Event::ValidationEnd, Count::epoch(epoch), None)?;
            }
            self.fire(Event::EpochEnd, Count::epoch(epoch), None)?;
            let skipped: usize = (self.scene.history.skipped.iter())
                .filter(|s| s.epoch == epoch)
                .map(|s| s.batches.clone().count())
                .sum();
            let whole = logs.train.number() + skipped == self.batches
                && self
                    .dispatch
                    .stop()
                    .is_none_or(|stop| matches!(stop.event, Event::ValidationEnd | Event::EpochEnd));
            if let Some(dir) = &self.settings.resume {
                // Data-parallel, a rank stopped within the epoch (in a validation hook, say)
                // can be alone in knowing it was cut short: the ranks save only if all say whole.
                let whole = match &self.parallel {
                    Some(parallel) => parallel.all(whole)?,
                    None => whole,
                };
                if whole {
                    self.save_point(dir, None)?;
                }
            }
        }
        self.scene.history.stop = self.dispatch.take_stop();
        if let Some(stop) = &self.scene.history.stop {
            tracing::debug!("training stopped: {stop}");
        }
        self.scene.history.elapsed = self.scene.state.started.elapsed();
        self.scene.history.hook_costs = self.dispatch.costs(self.scene.history.elapsed);
        self.scene.state.batch = 0;
        self.fire(Event::TrainEnd, Count::ONCE, None)?;
        self.scene.history.elapsed = self.scene.state.started.elapsed();
        self.scene.history.hook_costs = self.dispatch.costs(self.scene.history.elapsed);
        Ok(())
    }

    /// Records the epoch in the history, its logs final.
    fn end_epoch(&mut self, epoch: usize, started: Instant, logs: &BatchLogs, values: Vec<(String, f64)>) {
        self.scene.history.epochs.push(EpochLogs {
            epoch,
            time: started.elapsed(),
            batches: logs.number(),
            samples: logs.samples(),
            values,
            learning_rate: self.scene.state.learning_rate,
        });
        self.scene.history.elapsed = self.scene.state.started.elapsed();
        self.scene.state.batch = 0;
    }

    /// The training batches of one epoch, until its end or a stop.
    /// `started`: when the epoch started (in the interrupted process, for a resumed epoch).
    fn train_epoch(&mut self, train: &Source<'_>, logs: &mut BatchLogs, started: Instant) -> Result<()> {
        let epoch_rng = self.shuffling.rng.get_word_pos();
        let mut order = self.shuffling.order(self.settings.shuffle, train.len());
        // Data-parallel: this rank's share of the epoch's order.
        let len = match &self.parallel {
            Some(parallel) => {
                let share = parallel.shard(order.take(), train.len());
                let len = share.len();
                order = Some(share);
                len
            }
            None => train.len(),
        };
        // A rollback names the samples it skips.
        let indices = self.guard.as_ref().and(order.clone());
        let mut order = train.epoch(order, self.settings.batch_size)?;
        let epoch = self.scene.state.epoch;
        let device = self.scene.state.device;
        let batch_size = self.settings.batch_size;
        // A resumed epoch goes on after its batches done, with their running logs.
        let first = match self.partway.take() {
            Some(partway) => partway.batch + 1,
            None => {
                logs.reset();
                1
            }
        };
        // A dataset that builds batches ahead (a `Loader`) starts on this epoch's, from `first`.
        order.prefetch(first - 1, self.batches, batch_size, device)?;
        if let Some(guard) = &mut self.guard {
            let mark = Mark {
                batch: first - 1,
                global_step: self.scene.state.global_step,
            };
            guard.snapshot(&*self.optimizer, logs, mark)?;
        }
        let by_hand = self.by_hand();
        for batch in first..=self.batches {
            self.current = None;
            self.scene.state.batch = batch;
            let step = self.scene.state.global_step + 1;
            let count = Count::batch(batch, step);
            if self.settings.resume.is_some() {
                // Dropout after a resume point within the epoch draws alike.
                self.shuffling.reseed(epoch, batch);
            }
            // Timed only over the first batches of the fit, to find slow hooks.
            let batch_started = (self.profile.batches < PROFILED_BATCHES).then(Instant::now);
            self.fire(Event::BatchBegin, count, None)?;
            if self.stopped(Event::BatchBegin)? {
                break;
            }
            let start = (batch - 1) * batch_size;
            let rows = batch_size.min(len - start);
            let at = || format!("batch {batch} of epoch {epoch}");
            let (loss, outputs) = self.forward(&mut order, start, rows, true, &at)?;
            let done = match by_hand {
                // The step ran its backward passes and optimizer steps: one global step a batch.
                true => {
                    self.scene.state.global_step = count.global;
                    Step::Done {
                        window_end: true,
                        value: None,
                    }
                }
                false => self.step(&loss, count)?,
            };
            let (window_end, value) = match done {
                Step::Done { window_end, value } => (window_end, value),
                Step::Anomaly(reason) => {
                    let indices = indices.as_deref();
                    let samples = |b: usize| {
                        let positions = (b - 1) * batch_size..(b * batch_size).min(len);
                        positions.map(move |p| indices.map_or(p as i64, |order| order[p]))
                    };
                    if self.rolled_back(logs, batch, count, reason, samples)? {
                        break;
                    }
                    continue;
                }
            };
            let outputs = self.with_targets(&outputs);
            match &self.parallel {
                None => logs.update_sized(&loss, outputs, rows)?,
                // Every rank's hooks see the running values of all ranks' batches.
                Some(parallel) => {
                    let size = rows * parallel.world();
                    match outputs {
                        Some((outputs, y)) if logs.has_metrics() => {
                            // A step's outputs may differ in size from rank to rank (unpadded
                            // sequences): refused, naming the ranks, before the gather.
                            if matches!(self.work, Work::Step(_)) {
                                parallel.same_sizes(outputs, y)?;
                            }
                            let (loss, outputs, y) = parallel.gather_batch(&loss, outputs, y)?;
                            logs.update_sized(&loss, Some((&outputs, &y)), size)?;
                        }
                        _ => logs.update_sized(&parallel.mean_loss(&loss)?, outputs, size)?,
                    }
                }
            }
            if let (Some(guard), Some(value)) = (&mut self.guard, value) {
                guard.keep(value);
            }
            self.fire(Event::BatchEnd, count, Some(logs))?;
            if let Some(batch_started) = batch_started {
                self.profiled(batch_started.elapsed());
            }
            if self.stopped(Event::BatchEnd)? {
                break;
            }
            let steps = self.settings.resume_steps;
            let global_step = self.scene.state.global_step;
            let point = (self.settings.resume.as_deref())
                .filter(|_| steps > 0 && window_end && batch < self.batches && global_step % steps == 0);
            if let Some(dir) = point {
                let within = crate::trainer::point::InEpoch {
                    batch,
                    epoch_rng_word_pos: epoch_rng.to_string(),
                    epoch_elapsed: started.elapsed(),
                    logs: Default::default(),
                };
                self.save_point(dir, Some((within, logs.state())))?;
            }
            // A snapshot after the batch's hooks (a learning rate they set is in it); at a
            // resume point too, as the fit resumed from it takes one where it goes on.
            if let Some(guard) = &mut self.guard {
                if window_end && (guard.due(global_step) || point.is_some()) {
                    guard.snapshot(&*self.optimizer, logs, Mark { batch, global_step })?;
                }
            }
        }
        Ok(())
    }

    /// Goes back to the guard's snapshot over a bad batch, skipping the batches since (their
    /// samples by `samples(batch)`); `true` when that was one rollback too many and training
    /// stops.
    fn rolled_back<I: Iterator<Item = i64>>(
        &mut self,
        logs: &mut BatchLogs,
        batch: usize,
        count: Count,
        reason: String,
        samples: impl Fn(usize) -> I,
    ) -> Result<bool> {
        let epoch = self.scene.state.epoch;
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
                reason,
                hook: "Rollback".into(),
                event: Event::BatchEnd,
                epoch,
            });
            return Ok(true);
        }
        Ok(false)
    }

    /// One training step on a batch, with its events: forward, loss (under autocast in mixed
    /// precision), backward (gradients zeroed at the start of an accumulation window), clipping
    /// and the optimizer step (at a window's end). A guard reads the loss first: a bad one ends
    /// the step there. With a gradient scaler, the backward pass is on the scaled loss, and at a
    /// window's end the gradients are unscaled and checked before the `on_after_backward` hooks;
    /// the step is skipped when they are not finite, and the scale updated.
    fn step(&mut self, loss: &Tensor, count: Count) -> Result<Step> {
        let (batch, epoch) = (count.own as usize, self.scene.state.epoch);
        let accumulate = self.settings.accumulate;
        let at = || format!("batch {batch} of epoch {epoch}");
        let value = match &self.guard {
            Some(guard) => {
                let value = loss
                    .f_double_value(&[])
                    .map_err(|e| Error::torch(format!("reading the loss of {}", at()), e))?;
                if let Some(reason) = guard.anomaly(value) {
                    return Ok(Step::Anomaly(reason));
                }
                Some(value)
            }
            None => None,
        };
        // Accumulation windows of `k` batches: zero the gradients at a window's start, step
        // at its end (or at the epoch's last batch).
        let window_start = (batch - 1) % accumulate == 0;
        let window_end = batch % accumulate == 0 || batch == self.batches;
        if window_start {
            self.optimizer.zero_grad()?;
        }
        self.fire(Event::BeforeBackward, count, None)?;
        let backward = match (&self.scaler, accumulate > 1) {
            (None, false) => loss.f_backward(),
            (None, true) => loss
                .f_div_scalar(accumulate as f64)
                .and_then(|scaled| scaled.f_backward()),
            // As `scaler.scale(loss / k).backward()`.
            (Some(scaler), _) => {
                let loss = if accumulate > 1 {
                    loss.f_div_scalar(accumulate as f64)
                } else {
                    Ok(loss.shallow_clone())
                };
                loss.and_then(|loss| scaler.scale(&loss))
                    .and_then(|scaled| scaled.f_backward())
            }
        };
        backward.map_err(|e| Error::torch(format!("the backward pass failed on {}", at()), e))?;
        // Unscaled once per window, before its last batch's hooks see the gradients.
        if let (Some(scaler), true) = (&mut self.scaler, window_end) {
            scaler.unscale(self.vs)?;
        }
        self.fire(Event::AfterBackward, count, None)?;
        if let (Some(parallel), true) = (&self.parallel, window_end) {
            parallel.average_gradients(self.vs)?;
        }
        if window_end {
            if let Some(clip) = self.settings.clip {
                clip_gradients(self.vs, clip).map_err(|e| Error::torch("clipping the gradients", e))?;
            }
            self.fire(Event::BeforeOptimizerStep, count, None)?;
            match &mut self.scaler {
                None => self.optimizer.step()?,
                Some(scaler) => {
                    if scaler.found_inf()? {
                        self.scene.history.scaler_skipped_steps += 1;
                        tracing::debug!(
                            "step {}: gradients not finite, the gradient scaler skips it",
                            count.global
                        );
                    } else {
                        self.optimizer.step()?;
                    }
                    scaler.update()?;
                }
            }
            self.scene.state.global_step = count.global;
        }
        Ok(Step::Done { window_end, value })
    }

    /// The loss of the samples `start..start + rows` of `order` (and the outputs and targets
    /// for the metrics, if any): the model's forward pass and the loss, or the user's step.
    fn forward(
        &mut self,
        order: &mut Epoch<'_, '_>,
        start: usize,
        rows: usize,
        train: bool,
        at: &dyn Fn() -> String,
    ) -> Result<(Tensor, Outputs)> {
        let device = self.scene.state.device;
        match &mut self.work {
            Work::Model(model) => {
                let (x, y) = order.batch(start, rows, device, self.loss)?;
                let (outputs, loss) = forward_loss(*model, self.loss, (&x, &y), train, self.autocast, at)?;
                // The batch stays for the hooks; its targets are the metrics' (`with_targets`).
                self.current = Some(Current::Pairs((x, y)));
                Ok((loss, Some((outputs, None))))
            }
            Work::Step(_) => {
                let (batch, name) = order.fetch(start, rows, device, self.loss)?;
                self.current = Some(Current::Typed(Rc::clone(&batch), name));
                // The step runs with the loop lent to it, if it optimizes by hand.
                let Work::Step(mut step) = std::mem::replace(&mut self.work, Work::Lent) else {
                    unreachable!("matched above")
                };
                let (state, autocast, by_hand) = (self.scene.state.clone(), self.autocast, step.manual());
                let ctx = StepContext {
                    training: train,
                    state,
                    by_hand,
                    manual: RefCell::new((train && by_hand).then_some(self as &mut dyn Manual)),
                };
                let computed = step_loss(&mut *step, &*batch, ctx, autocast, at);
                self.work = Work::Step(step);
                let (loss, outputs) = computed?;
                Ok((loss, outputs.map(|(outputs, targets)| (outputs, Some(targets)))))
            }
            Work::Lent => unreachable!("a step does not run within itself"),
        }
    }

    /// The outputs and targets of the batch for the metrics: the step's, or the model's outputs
    /// and the targets of the batch it ran on.
    fn with_targets<'o>(&'o self, outputs: &'o Outputs) -> Option<(&'o Tensor, &'o Tensor)> {
        let (outputs, given) = outputs.as_ref()?;
        match (given, &self.current) {
            (Some(targets), _) => Some((outputs, targets)),
            (None, Some(Current::Pairs((_, targets)))) => Some((outputs, targets)),
            (None, _) => None,
        }
    }

    /// Whether the user's step runs the backward passes and optimizer steps itself.
    pub fn by_hand(&self) -> bool {
        matches!(&self.work, Work::Step(step) if step.manual())
    }

    /// The current batch's counters, as the events of a step optimized by hand fire them.
    fn current(&self) -> Count {
        Count::batch(self.scene.state.batch, self.scene.state.global_step + 1)
    }
}

/// A step that optimizes by hand runs the backward passes and optimizer steps through the
/// loop: with the hooks of their events around them, clipping, and the named optimizers.
impl Manual for Loop<'_, '_> {
    fn backward(&mut self, loss: &Tensor) -> Result<()> {
        let count = self.current();
        self.fire(Event::BeforeBackward, count, None)?;
        let (batch, epoch) = (self.scene.state.batch, self.scene.state.epoch);
        loss.f_backward()
            .map_err(|e| Error::torch(format!("the backward pass failed on batch {batch} of epoch {epoch}"), e))?;
        self.fire(Event::AfterBackward, count, None)
    }

    fn zero_grad(&mut self, optimizer: &str) -> Result<()> {
        self.optimizer.by_name(optimizer)?.zero_grad()
    }

    fn optimizer_step(&mut self, optimizer: &str) -> Result<()> {
        let count = self.current();
        // This optimizer's gradients alone: the other part's, left by this batch's other
        // backward pass, are not its to average or clip.
        let grads =
            (self.optimizer.by_name(optimizer)?.gradients()).unwrap_or_else(|| crate::context::defined_grads(self.vs));
        // Data-parallel: averaged over the ranks, in place, then clipped.
        if let Some(parallel) = &self.parallel {
            parallel.average(&grads)?;
        }
        if let Some(clip) = self.settings.clip {
            clip_grads(grads, clip).map_err(|e| Error::torch("clipping the gradients", e))?;
        }
        self.fire(Event::BeforeOptimizerStep, count, None)?;
        self.optimizer.by_name(optimizer)?.step()
    }
}

impl Loop<'_, '_> {
    /// Counts a profiled batch; after the last, warns about training-batch hooks slower than
    /// the step itself.
    fn profiled(&mut self, spent: Duration) {
        self.profile.spent += spent;
        self.profile.batches += 1;
        if self.profile.batches < PROFILED_BATCHES {
            return;
        }
        self.dispatch.profile(false);
        let Profile { spent, batches } = self.profile;
        let (step, slow) = self.dispatch.slow_hooks(spent, batches);
        for (hook, location, event, per_batch) in slow {
            tracing::warn!(
                "hook `{hook}` ({location}) at `{event}` takes {per_batch:.2?} per batch, more than the training \
                 step itself ({step:.2?}), over the first {batches} batches: it slows training down; consider a \
                 filter (`every = N`)"
            );
        }
    }

    /// The validation pass of one epoch: eval mode, no gradients, batches in order.
    fn validate(&mut self, valid: &Source<'_>, epoch: usize, logs: &mut BatchLogs) -> Result<()> {
        self.fire(Event::ValidationBegin, Count::epoch(epoch), None)?;
        let _no_grad = tch::no_grad_guard();
        let mut order = valid.epoch(None, self.settings.batch_size)?;
        let device = self.scene.state.device;
        let batch_size = self.settings.batch_size;
        order.prefetch(0, valid.len().div_ceil(batch_size), batch_size, device)?;
        logs.reset();
        for batch in 1..=valid.len().div_ceil(batch_size) {
            let start = (batch - 1) * batch_size;
            let rows = batch_size.min(valid.len() - start);
            let at = || format!("validation batch {batch} of epoch {epoch}");
            let (loss, outputs) = self.forward(&mut order, start, rows, false, &at)?;
            logs.update_sized(&loss, self.with_targets(&outputs), rows)?;
            self.fire(Event::ValidationBatchEnd, Count::batch(batch, batch as u64), Some(logs))?;
        }
        self.current = None;
        Ok(())
    }
}
