//! What the loop owns while a fit runs — the optimizers, the gradient scaler, clipping, the
//! rollback guard, the group, the hooks and what they see — and the calls a step makes of it:
//! zero the gradients, run a backward pass, step an optimizer. The trainer's own step and a step
//! that optimizes by hand make the same calls, so every setting (accumulation, the scaler,
//! rollbacks, data-parallel averaging, clipping) applies to both alike.

use crate::context::Scene;
use crate::control::StopCause;
use crate::error::{Error, Result};
use crate::optim::Optimizer;
use crate::precision::scaler::Scaler;
use crate::records::history::StopReason;
use crate::records::metrics::BatchLogs;
use crate::resource::Resources;
use crate::schedule::event::Event;
use crate::step::{Manual, Seen};
use crate::trainer::dispatch::Dispatch;
use crate::trainer::parallel::Parallel;
use crate::trainer::rollback::Guard;
use crate::trainer::{Clip, TrainSetup};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// The loop's side of a fit: everything a step's work is not.
pub(super) struct Engine<'a, 'h> {
    pub vs: &'a VarStore,
    pub optimizer: &'a mut dyn Optimizer,
    pub settings: &'a TrainSetup,
    pub resources: &'a Resources,
    pub dispatch: Dispatch<'h>,
    pub scene: Scene,
    /// Training batches per epoch: the last one ends an accumulation window.
    pub batches: usize,
    /// Rolling back over bad batches, when the fit does.
    pub guard: Option<Guard>,
    /// The type the forward pass and the loss are autocast to, in mixed precision.
    pub autocast: Option<Kind>,
    /// The gradient scaler, when the fit scales.
    pub scaler: Option<Scaler>,
    /// The group, when the fit is data-parallel.
    pub parallel: Option<Parallel<'a>>,
    /// The current batch's place in its accumulation window, and what of it is done.
    window: Window,
}

/// The counters of one occurrence of an event: its own (the epoch, the batch within the
/// epoch…), and the global step.
#[derive(Clone, Copy, Default)]
pub(super) struct Count {
    pub own: u64,
    pub global: u64,
}

impl Count {
    pub const ONCE: Count = Count { own: 1, global: 0 };

    pub fn epoch(epoch: usize) -> Self {
        Count {
            own: epoch as u64,
            global: epoch as u64,
        }
    }

    pub fn batch(batch: usize, step: u64) -> Self {
        Count {
            own: batch as u64,
            global: step,
        }
    }
}

/// Which optimizer a call is about: the trainer's one (or all of its named ones together), or
/// one by name ([`crate::Trainer::optimizer_for`]).
#[derive(Clone, Copy)]
pub(super) enum Part<'n> {
    All,
    Named(&'n str),
}

/// Where the current training batch is in its accumulation window of `k` batches: gradients
/// are zeroed at its start, optimizers step at its end (or at the epoch's last batch).
#[derive(Default)]
struct Window {
    count: Count,
    start: bool,
    end: bool,
    /// The whole model's gradients are unscaled already (the trainer's own step unscales them
    /// before its `on_after_backward` hooks).
    unscaled: bool,
    /// Some optimizer's gradients were unscaled and checked: the scale is updated after the
    /// step.
    checked: bool,
    /// What a loss of the batch was found to be, bad by the guard's rule: the rest of the
    /// batch's backward passes and optimizer steps do nothing, and the batch is rolled back.
    bad: Option<String>,
}

impl<'a, 'h> Engine<'a, 'h> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vs: &'a VarStore,
        optimizer: &'a mut dyn Optimizer,
        settings: &'a TrainSetup,
        resources: &'a Resources,
        dispatch: Dispatch<'h>,
        scene: Scene,
        batches: usize,
        parallel: Option<Parallel<'a>>,
    ) -> Result<Self> {
        let scaler = settings.scaler().map(|scaler| Scaler::new(scaler, vs.device()));
        let mut scene = scene;
        scene.grad_scale = scaler.as_ref().map(Scaler::scale_tensor);
        Ok(Engine {
            vs,
            optimizer,
            settings,
            resources,
            dispatch,
            scene,
            batches,
            guard: (settings.rollback.clone())
                .map(|rollback| Guard::new(rollback, vs))
                .transpose()?,
            autocast: settings.precision.autocast_kind(),
            scaler,
            parallel,
            window: Window::default(),
        })
    }

    /// Runs the hooks of `event` at `count` (with the batch's running `logs` and the batch
    /// itself, where there are), then applies a learning rate a hook set.
    pub fn fire(&mut self, event: Event, count: Count, logs: Option<&BatchLogs>, seen: Option<Seen<'_>>) -> Result<()> {
        let ctx = self.scene.context(event, self.vs, self.resources).with_step_batch(seen);
        let ctx = match logs {
            Some(logs) => ctx.with_batch(logs),
            None => ctx,
        };
        let fired = self.dispatch.fire(count.own, count.global, &ctx);
        self.scene.keep_logged();
        fired?;
        let wanted = self.scene.learning_rate.get();
        if wanted != self.scene.state.learning_rate {
            if !(wanted.is_finite() && wanted >= 0.0) {
                return Err(Error::config(
                    "LearningRate",
                    format!("a `{event}` hook set the learning rate to {wanted}"),
                ));
            }
            self.optimizer.set_learning_rate(wanted);
            self.scene.state.learning_rate = wanted;
        }
        Ok(())
    }

    /// Whether training stops after the hooks of `event`: a hook asked to — or, data-parallel,
    /// one on any rank did (every rank asks the others, so all stop at the same boundary).
    ///
    /// The ranks ask each other only where a rank can have stopped: after the events since the
    /// last check at which some rank runs hooks (at the top of an epoch, always).
    pub fn stopped(&mut self, event: Event) -> Result<bool> {
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
                    cause: StopCause::OtherRank,
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

    /// A training batch begins, at `count`: where it is in its accumulation window.
    pub fn begin_batch(&mut self, count: Count) {
        let (batch, k) = (count.own as usize, self.settings.accumulate);
        self.window = Window {
            count,
            start: (batch - 1) % k == 0,
            end: batch % k == 0 || batch == self.batches,
            ..Window::default()
        };
    }

    fn count(&self) -> Count {
        self.window.count
    }

    /// Whether the batch's optimizers step (its window ends).
    pub fn window_end(&self) -> bool {
        self.window.end
    }

    /// Where the current batch is, for messages.
    fn at(&self) -> String {
        let state = &self.scene.state;
        format!("batch {} of epoch {}", state.batch, state.epoch)
    }

    /// What the guard's rule finds wrong with `loss`, if the fit rolls back over bad batches:
    /// `full` the whole rule (non-finite or a spike: a batch's loss, kept for the spike rule
    /// when good), else only whether it is finite. Data-parallel, the rule judges the ranks'
    /// mean loss (one scalar's all-reduce), so that every rank decides alike and keeps the same
    /// losses.
    pub fn judge(&mut self, loss: &Tensor, full: bool) -> Result<Option<String>> {
        let Some(guard) = &self.guard else {
            return Ok(None);
        };
        let read = |e| Error::torch(format!("reading the loss of {}", self.at()), e);
        let value = match &self.parallel {
            Some(parallel) => parallel.mean_value(loss)?,
            None => loss.f_double_value(&[]).map_err(read)?,
        };
        let anomaly = match full {
            true => guard.anomaly(value),
            false => (!value.is_finite()).then(|| format!("the loss is {value}")),
        };
        if anomaly.is_some() {
            self.window.bad.clone_from(&anomaly);
        } else if full {
            self.guard.as_mut().expect("looked at above").keep(value);
        }
        Ok(anomaly)
    }

    /// Unsets the gradients of `part`, at the start of an accumulation window (within one, the
    /// gradients of its batches add up).
    pub fn zero_grad(&mut self, part: Part<'_>) -> Result<()> {
        if !self.window.start {
            return Ok(());
        }
        match part {
            Part::All => self.optimizer.zero_grad(),
            Part::Named(name) => self.optimizer.by_name(name)?.zero_grad(),
        }
    }

    /// The backward pass of `loss` between the `on_before_backward` and `on_after_backward`
    /// hooks: divided by the window's length when gradients accumulate, scaled by the gradient
    /// scaler. `unscale`: at a window's end, the whole model's gradients are unscaled before the
    /// hooks see them (the trainer's own step; a step by hand has each optimizer's unscaled at
    /// its step).
    pub fn backward(&mut self, loss: &Tensor, unscale: bool, seen: Option<Seen<'_>>) -> Result<()> {
        if self.window.bad.is_some() {
            return Ok(());
        }
        let count = self.count();
        self.fire(Event::BeforeBackward, count, None, seen)?;
        let k = self.settings.accumulate;
        let backward = || -> std::result::Result<(), tch::TchError> {
            // As `scaler.scale(loss / k).backward()`.
            match (&self.scaler, k) {
                (None, 1) => loss.f_backward(),
                (None, _) => loss.f_div_scalar(k as f64)?.f_backward(),
                (Some(scaler), 1) => scaler.scale(loss)?.f_backward(),
                (Some(scaler), _) => scaler.scale(&loss.f_div_scalar(k as f64)?)?.f_backward(),
            }
        };
        backward().map_err(|e| Error::torch(format!("the backward pass failed on {}", self.at()), e))?;
        if unscale && self.window.end && self.scaler.is_some() {
            self.unscale(&crate::context::defined_grads(self.vs))?;
            self.window.unscaled = true;
        }
        self.fire(Event::AfterBackward, count, None, seen)
    }

    /// One step of `part`'s optimizer at a window's end: its gradients unscaled (if the scaler
    /// has not yet) and checked, averaged over the ranks (data-parallel), clipped, the
    /// `on_before_optimizer_step` hooks, then the step — skipped when the scaler found them not
    /// finite (on any rank: the ranks agree).
    pub fn optimizer_step(&mut self, part: Part<'_>, seen: Option<Seen<'_>>) -> Result<()> {
        if !self.window.end || self.window.bad.is_some() {
            return Ok(());
        }
        let count = self.count();
        let unscale = self.scaler.is_some() && !self.window.unscaled;
        // The gradients are collected only where something works on them (a step is otherwise
        // the optimizer's alone): this optimizer's alone — the other parts', left by this
        // batch's other backward passes, are not its to unscale, average or clip.
        if unscale || self.parallel.is_some() || self.settings.clip.is_some() {
            let grads = match part {
                Part::All => crate::context::defined_grads(self.vs),
                Part::Named(name) => (self.optimizer.by_name(name)?.gradients())
                    .unwrap_or_else(|| crate::context::defined_grads(self.vs)),
            };
            if unscale {
                self.unscale(&grads)?;
            }
            if let Some(parallel) = &self.parallel {
                parallel.average(&grads)?;
            }
            if let Some(clip) = self.settings.clip {
                clip_grads(grads, clip).map_err(|e| Error::torch("clipping the gradients", e))?;
            }
        }
        self.fire(Event::BeforeOptimizerStep, count, None, seen)?;
        let skip = match &mut self.scaler {
            Some(scaler) => {
                if let Some(parallel) = &self.parallel {
                    parallel.group.all_reduce_sum(&[scaler.check()])?;
                }
                scaler.found_inf()?
            }
            None => false,
        };
        if skip {
            self.scene.history.scaler_skipped_steps += 1;
            tracing::debug!(
                "step {}: gradients not finite, the gradient scaler skips it",
                count.global
            );
            return Ok(());
        }
        match part {
            Part::All => self.optimizer.step(),
            Part::Named(name) => self.optimizer.by_name(name)?.step(),
        }
    }

    /// Divides `grads` by the scaler's scale and checks them, if the fit scales.
    fn unscale(&mut self, grads: &[Tensor]) -> Result<()> {
        if let Some(scaler) = &mut self.scaler {
            scaler.unscale(grads)?;
            self.window.checked = true;
        }
        Ok(())
    }

    /// Why a loss of the batch was bad by the guard's rule, if one was (a step by hand's
    /// backward passes are judged as they come).
    pub fn take_bad(&mut self) -> Option<String> {
        self.window.bad.take()
    }

    /// After a good batch's step: the scale updated (once per window, after all its optimizer
    /// steps, as `scaler.update()` after `scaler.step(…)` of each), and, at a window's end,
    /// the global step.
    pub fn end_step(&mut self) -> Result<()> {
        if !self.window.end {
            return Ok(());
        }
        if let (Some(scaler), true) = (&mut self.scaler, self.window.checked) {
            scaler.update()?;
        }
        self.scene.state.global_step = self.count().global;
        Ok(())
    }

    /// After a bad batch: what its checks found is forgotten (the scale stays as it was: the
    /// batch is rolled back).
    pub fn discard_step(&mut self) -> Result<()> {
        if let Some(scaler) = &mut self.scaler {
            scaler.forget()?;
        }
        Ok(())
    }
}

/// A step that optimizes by hand calls into the engine through its context: the hooks of the
/// batch's events see the batch (`seen`).
pub(super) struct ByHand<'e, 'a, 'h, 's> {
    pub engine: &'e mut Engine<'a, 'h>,
    pub seen: Option<Seen<'s>>,
}

impl Manual for ByHand<'_, '_, '_, '_> {
    fn backward(&mut self, loss: &Tensor) -> Result<()> {
        // A loss that is not finite would spoil the gradients: the guard looks first.
        if self.engine.judge(loss, false)?.is_some() {
            return Ok(());
        }
        self.engine.backward(loss, false, self.seen)
    }

    fn zero_grad(&mut self, optimizer: &str) -> Result<()> {
        self.engine.zero_grad(Part::Named(optimizer))
    }

    fn optimizer_step(&mut self, optimizer: &str) -> Result<()> {
        self.engine.optimizer_step(Part::Named(optimizer), self.seen)
    }
}

/// Clips `grads` (the defined gradients of some variables) on the device.
pub(super) fn clip_grads(grads: Vec<Tensor>, clip: Clip) -> std::result::Result<(), tch::TchError> {
    let _no_grad = tch::no_grad_guard();
    if grads.is_empty() {
        return Ok(());
    }
    match clip {
        Clip::Value(max) => {
            for mut grad in grads {
                let _ = grad.f_clamp_(-max, max)?;
            }
        }
        Clip::Norm(max) => {
            let norms = grads
                .iter()
                .map(|g| g.f_norm())
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
            let coefficient = (total + 1e-6).f_reciprocal()?.f_mul_scalar(max)?.f_clamp_max(1.0)?;
            for mut grad in grads {
                let _ = grad.f_mul_(&coefficient)?;
            }
        }
    }
    Ok(())
}
