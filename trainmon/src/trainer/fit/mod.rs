//! `Trainer::fit`: the outline of a training run. Its parts, by concern: [`setup`] (settings
//! checked, data sources, the numbers of the fit), [`source`] (samples and each epoch's order),
//! [`run`] (the epoch loop and its events), [`step`] (forward, loss, clipping), [`resume`]
//! (going on from a resume point, writing one).

mod resume;
mod run;
mod setup;
mod source;
mod step;

use super::dispatch::Dispatch;
use super::parallel::Parallel;
use super::rollback::Guard;
use super::scaler::Scaler;
use super::{Clip, DataSetup, HookSetup, Settings, Trainer, Validation};
use crate::context::Scene;
use crate::data::{BatchDataset, Dataset};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::history::History;
use crate::hook::Hook;
use crate::loss::Loss;
use crate::registry::registrations;
use crate::resource::Resources;
use crate::spec::HookInfo;
use crate::state::TrainState;
use crate::step::{Erased, TrainStep};
use run::{Loop, Profile, Shuffling, Work};
use setup::{Logs, Plan};
use std::time::Instant;

impl<'a> Trainer<'a> {
    /// Trains for the configured epochs and returns the history.
    ///
    /// The selected registered hooks (all, by default) and the hooks added at run time run at
    /// their events, in the documented order. Training stops early when a hook returns
    /// [`crate::Control::Stop`] (see its docs for where). It fails with an [`Error`] naming the
    /// cause when the setup, the data, the model or a hook cannot go on; the `on_exception`
    /// hooks run first.
    ///
    /// Data-parallel ([`Trainer::data_parallel`]), a rank that fails leaves the group with its
    /// error ([`crate::dist::ProcessGroup::leave_after`]): the other ranks end with an error
    /// naming it.
    pub fn fit(&mut self, data: &impl Dataset) -> Result<History> {
        let fitted = match self.model {
            Some(model) => self.fit_here(
                |settings, setup, device| Plan::new(settings, setup, data, device),
                Work::Model(model),
                None,
            ),
            None => Err(Error::Config(
                "this trainer has no model of its own (`Trainer::for_steps`): train it with your step, \
                 `fit_steps(&mut step, &data, validation)`"
                    .into(),
            )),
        };
        self.left_after(fitted)
    }

    /// Trains for the configured epochs with a training step of yours ([`crate::TrainStep`]) on
    /// `train`'s batches — of any [`crate::Batch`] type —, validating on `valid` (or on a
    /// [`Trainer::validation_split`] of `train`) at the end of every epoch with its
    /// validation step; returns the history.
    ///
    /// Everything else is as [`Trainer::fit`]: the step's loss goes through the backward pass,
    /// accumulation, clipping, the gradient scaler and the optimizer step of the trainer's
    /// `VarStore`, every hook event fires at its place, running loss and metrics
    /// ([`Trainer::metric`], on the outputs and targets the step returns), resume points,
    /// data-parallel training. A [`crate::Dataset`] of `(features, targets)` is a
    /// [`BatchDataset`] of `(Tensor, Tensor)`, taken as `fit` takes it (a [`crate::Loader`]'s
    /// workers build its batches ahead).
    pub fn fit_steps<D, S>(&mut self, step: &mut S, train: &D, valid: Option<&D>) -> Result<History>
    where
        D: BatchDataset,
        S: TrainStep<D::Batch>,
    {
        let erased = Box::new(Erased::new(step));
        // The targets of a `(features, targets)` dataset go to the step as they are: a loss
        // that takes them so (the loop converts them for cross-entropy alone).
        let as_they_are = Loss::Mse;
        let fitted = self.fit_here(
            |settings, setup, device| Plan::typed(settings, setup, train, valid, &as_they_are, device),
            Work::Step(erased),
            Some((&as_they_are, std::any::type_name::<S>())),
        );
        self.left_after(fitted)
    }

    /// A fit's outcome, after leaving the process group if it failed (data-parallel): the other
    /// ranks end with an error naming this one's.
    fn left_after(&self, fitted: Result<History>) -> Result<History> {
        if let (Err(err), Some(group)) = (&fitted, &self.group) {
            group.leave_after(err);
        }
        fitted
    }

    /// A fit on the plan `plan` makes, computing each batch's loss by `work`; `step`, for the
    /// user's step: how the loop takes targets (as they are), and the step's type name.
    fn fit_here<'d>(
        &mut self,
        plan: impl FnOnce(&Settings, &DataSetup<'a>, tch::Device) -> Result<Plan<'d>>,
        work: Work<'_>,
        step: Option<(&Loss, &str)>,
    ) -> Result<History> {
        let (optimizer, learning_rate) = self.optimizer.ready()?;
        let device = self.vs.device();
        let mut plan = plan(&self.settings, &self.data, device)?;
        let custom = step.is_some();
        let loss: &Loss = match step {
            Some((loss, _)) => loss,
            None => &self.data.loss,
        };
        if let Work::Step(step) = &work {
            if step.manual() {
                let not_yet = [
                    (
                        self.settings.accumulate > 1,
                        "gradient accumulation (`accumulate_gradients`): accumulate in the step",
                    ),
                    (
                        self.settings.scaler().is_some(),
                        "a gradient scaler (`grad_scaler`, `Precision::Fp16Mixed`)",
                    ),
                    (self.settings.rollback.is_some(), "rollbacks (`rollback`)"),
                ];
                if let Some((_, what)) = not_yet.iter().find(|(set, _)| *set) {
                    return Err(Error::Config(format!(
                        "a step that optimizes by hand does not take {what} yet"
                    )));
                }
            }
        }
        let mut parallel = self.group.as_ref().map(Parallel::new);
        if let Some(parallel) = &parallel {
            let not_yet = [
                (self.settings.rollback.is_some(), "rollbacks (`rollback`)"),
                (
                    self.settings.scaler().is_some(),
                    "a gradient scaler (`grad_scaler`, `Precision::Fp16Mixed`)",
                ),
            ];
            if let Some((_, what)) = not_yet.iter().find(|(set, _)| *set) {
                return Err(Error::Config(format!(
                    "data-parallel training does not take {what} yet: every rank would keep its own"
                )));
            }
            // Each rank trains on its share of every epoch.
            plan.batches = setup::batches(parallel.share(plan.train.len()), &self.settings)?;
        }
        let mut registered = self.hooks.registered();
        let rank = self.group.as_ref().map_or(0, |group| group.rank());
        let dispatch = self.hooks.dispatch(&mut registered, &self.resources, rank)?;
        if let Some(parallel) = &mut parallel {
            let mut hooked = [false; crate::event::EVENTS];
            for event in Event::ALL {
                hooked[event.index()] = dispatch.has_hooks(event);
            }
            parallel.prepare(self.vs, hooked)?;
        }
        let mut logs = Logs::new(
            &self.data,
            !custom && loss.classifies(),
            plan.lazy,
            plan.valid.is_some(),
        );
        let state = TrainState {
            epoch: 0,
            epochs: self.settings.epochs,
            batch: 0,
            batches: plan.batches,
            global_step: 0,
            started: Instant::now(),
            device,
            learning_rate,
        };
        let scaler = self.settings.scaler().map(|scaler| Scaler::new(scaler, device));
        let mut scene = Scene::new(state);
        scene.grad_scale = scaler.as_ref().map(Scaler::scale_tensor);
        scene.settings = seen_settings(
            &self.settings,
            &self.data,
            &plan,
            optimizer.kind(),
            learning_rate,
            device,
            self.group
                .as_ref()
                .map_or(crate::state::Dist::ALONE, |group| crate::state::Dist {
                    rank: group.rank(),
                    world_size: group.world_size(),
                    local_rank: group.local_rank(),
                }),
        );
        if let Some((_, name)) = step {
            // The loss is the step's: its type (`CharLm`) names it.
            let path = name.split('<').next().unwrap_or(name);
            let name = path.rsplit("::").next().unwrap_or(path);
            scene.settings.loss = format!("the step {name}");
        }
        let mut run = Loop {
            work,
            vs: self.vs,
            optimizer,
            loss,
            settings: &self.settings,
            resources: &self.resources,
            dispatch,
            scene,
            batches: plan.batches,
            samples: plan.train.len(),
            shuffling: Shuffling::new(plan.seed, plan.seeded),
            partway: None,
            profile: Profile::default(),
            guard: self
                .settings
                .rollback
                .clone()
                .map(|rollback| Guard::new(rollback, self.vs))
                .transpose()?,
            autocast: self.settings.precision.autocast_kind(),
            scaler,
            parallel,
            current: None,
        };
        if let Some(dir) = &self.settings.resume {
            run.resume_from(dir, &mut logs.train)?;
            if let Some(parallel) = &run.parallel {
                // Every rank must have read the same point (a directory not shared between the
                // machines would give each its own).
                let state = &run.scene.state;
                let at = match &run.partway {
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
        }
        tracing::debug!(
            epochs = self.settings.epochs,
            batches = plan.batches,
            ?device,
            lazy = plan.lazy,
            "fit starts"
        );
        run.train(&plan, &mut logs)
    }
}

/// The settings as hooks see them ([`crate::HookContext::settings`]).
fn seen_settings(
    settings: &Settings,
    data: &DataSetup<'_>,
    plan: &Plan<'_>,
    optimizer: String,
    learning_rate: f64,
    device: tch::Device,
    dist: crate::state::Dist,
) -> crate::state::Settings {
    let clip = |norm: bool| match settings.clip {
        Some(Clip::Norm(max)) if norm => Some(max),
        Some(Clip::Value(max)) if !norm => Some(max),
        _ => None,
    };
    crate::state::Settings {
        epochs: settings.epochs,
        batch_size: settings.batch_size,
        batches: plan.batches,
        optimizer,
        learning_rate,
        seed: settings.seed,
        loss: format!("{:?}", data.loss),
        device,
        shuffle: settings.shuffle,
        drop_last: settings.drop_last,
        accumulate: settings.accumulate,
        clip_norm: clip(true),
        clip_value: clip(false),
        validation_split: match data.validation {
            Validation::Split(fraction) => Some(fraction),
            _ => None,
        },
        samples: plan.train.len(),
        validation_samples: plan.valid.as_ref().map_or(0, |valid| valid.len()),
        precision: settings.precision,
        grad_scaler: settings.scaler(),
        dist,
    }
}

impl HookSetup {
    /// Fresh instances (fresh `Local` state) of the registered hooks selected, every fit.
    fn registered(&self) -> Vec<(HookInfo, Box<dyn Hook>)> {
        let registered = registrations();
        for warning in self.selection.unmatched(&registered) {
            tracing::warn!(
                "{warning}: is the crate that defines them linked? Refer to it from the binary (`use my_hooks as _;`)"
            );
        }
        registered
            .iter()
            .map(|r| (r.info(), r))
            .filter(|(info, _)| self.selection.selects(info))
            .map(|(info, r)| (info, r.instantiate()))
            .collect()
    }

    /// The hooks of a fit — the registered ones, then those added at run time — at their
    /// events, once everything they need is there.
    fn dispatch<'h>(
        &'h mut self,
        registered: &'h mut [(HookInfo, Box<dyn Hook>)],
        resources: &Resources,
        rank: usize,
    ) -> Result<Dispatch<'h>> {
        if let Some(refused) = self.refused.first() {
            return Err(Error::Config(refused.clone()));
        }
        // Data-parallel, the other ranks leave out the hooks that write outputs.
        let runs_here = |info: &HookInfo| rank == 0 || !info.rank_zero;
        let registered = registered
            .iter_mut()
            .filter(|(info, _)| runs_here(info))
            .map(|(info, hook)| (vec![info.clone()], &mut **hook as &mut dyn Hook));
        let added = self.added.iter_mut().filter_map(|added| {
            let specs: Vec<HookInfo> = added
                .specs
                .iter()
                .map(|spec| spec.0.clone())
                .filter(runs_here)
                .collect();
            (!specs.is_empty()).then_some((specs, &mut *added.hook as &mut dyn Hook))
        });
        let dispatch = Dispatch::new(registered.chain(added), &self.tolerated)?;
        dispatch.check_requirements(resources)?;
        Ok(dispatch)
    }
}
