//! `Trainer::fit` and `Trainer::fit_steps`: the outline of a training run, one typed path for
//! both — `fit` is a fit with the trainer's own step (the model and its loss) over a dataset's
//! `(features, targets)`. Its parts, by concern: [`setup`] (settings checked, data sources, the
//! numbers of the fit), [`source`] and [`typed`] (batches and each epoch's order), [`work`] (the
//! step's loss: the model's or the user's), [`engine`] (what the loop owns: backward passes,
//! optimizer steps, the scaler, rollbacks, hooks), [`epoch`] (the epoch loop), [`resume`] (going
//! on from a resume point, writing one), [`timing`] (slow hooks).

mod engine;
mod epoch;
mod resume;
mod setup;
mod source;
mod timing;
mod typed;
mod work;

use super::dispatch::Dispatch;
use super::parallel::Parallel;
use super::{Clip, DataSetup, HookSetup, OptimizerSetting, TrainSetup, Trainer, Validation};
use crate::context::Scene;
use crate::data::{BatchDataset, Dataset};
use crate::error::{Error, Result};
use crate::hook::Hook;
use crate::records::history::History;
use crate::registry::registrations;
use crate::resource::Resources;
use crate::schedule::event::Event;
use crate::schedule::spec::HookInfo;
use crate::state::TrainState;
use crate::step::TrainStep;
use engine::Engine;
use epoch::Fit;
use setup::{Logs, Plan};
use source::Shuffling;
use std::time::Instant;
use tch::nn::VarStore;
use work::{Model, Stepped, Work};

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
            Some(model) => {
                let parts = self.parts();
                let device = parts.vs.device();
                Plan::new(parts.settings, parts.data, data, device).and_then(|plan| {
                    let loss = &parts.data.loss;
                    parts.fit(plan, &mut Model { model, loss }, None)
                })
            }
            None => Err(Error::config(
                "for_steps",
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
    /// rollbacks, data-parallel training — for a step that optimizes by hand too. A
    /// [`crate::Dataset`] of `(features, targets)` is a [`BatchDataset`] of `(Tensor, Tensor)`,
    /// taken as `fit` takes it (a [`crate::Loader`]'s workers build its batches ahead).
    pub fn fit_steps<D, S>(&mut self, step: &mut S, train: &D, valid: Option<&D>) -> Result<History>
    where
        D: BatchDataset,
        S: TrainStep<D::Batch>,
    {
        let parts = self.parts();
        let device = parts.vs.device();
        let fitted = Plan::typed(parts.settings, parts.data, train, valid, device)
            .and_then(|plan| parts.fit(plan, &mut Stepped { step }, Some(std::any::type_name::<S>())));
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

    /// The trainer as a fit uses it: what it reads, and what it changes, borrowed apart.
    fn parts(&mut self) -> Parts<'_, 'a> {
        Parts {
            vs: self.vs,
            optimizer: &mut self.optimizer,
            settings: &self.settings,
            data: &self.data,
            hooks: &mut self.hooks,
            resources: &self.resources,
            group: self.group,
        }
    }
}

/// A [`Trainer`]'s parts during a fit.
struct Parts<'t, 'a> {
    vs: &'a VarStore,
    optimizer: &'t mut OptimizerSetting,
    settings: &'t TrainSetup,
    data: &'t DataSetup<'a>,
    hooks: &'t mut HookSetup,
    resources: &'t Resources,
    group: Option<&'a crate::dist::ProcessGroup>,
}

impl Parts<'_, '_> {
    /// A fit on `plan`'s batches of `B`, each batch's loss computed by `work`; `step`: the
    /// type name of the user's step, if it is one.
    fn fit<B: 'static>(self, mut plan: Plan<'_, B>, work: &mut dyn Work<B>, step: Option<&str>) -> Result<History> {
        let (optimizer, learning_rate) = self.optimizer.ready()?;
        let device = self.vs.device();
        let mut parallel = self.group.map(Parallel::new);
        if let Some(parallel) = &parallel {
            // Each rank trains on its share of every epoch.
            plan.batches = setup::batches(parallel.share(plan.train.len()), self.settings)?;
        }
        let mut registered = self.hooks.registered();
        let rank = self.group.map_or(0, |group| group.rank());
        let dispatch = self.hooks.dispatch(&mut registered, self.resources, rank)?;
        if let Some(parallel) = &mut parallel {
            let mut hooked = [false; crate::schedule::event::EVENTS];
            for event in Event::ALL {
                hooked[event.index()] = dispatch.has_hooks(event);
            }
            parallel.prepare(self.vs, hooked)?;
        }
        let classifies = step.is_none() && self.data.loss.classifies();
        let mut logs = Logs::new(self.data, classifies, plan.lazy, plan.valid.is_some());
        let mut scene = Scene::new(TrainState {
            epoch: 0,
            epochs: self.settings.epochs,
            batch: 0,
            batches: plan.batches,
            global_step: 0,
            started: Instant::now(),
            device,
            learning_rate,
        });
        scene.settings = seen_settings(
            self.settings,
            self.data,
            &plan,
            optimizer.kind().to_string(),
            learning_rate,
            device,
            self.group,
        );
        if let Some(name) = step {
            // The loss is the step's: its type (`CharLm`) names it.
            let path = name.split('<').next().unwrap_or(name);
            let name = path.rsplit("::").next().unwrap_or(path);
            scene.settings.loss = format!("the step {name}");
        }
        let engine = Engine::new(
            self.vs,
            optimizer,
            self.settings,
            self.resources,
            dispatch,
            scene,
            plan.batches,
            parallel,
        )?;
        let mut fit = Fit {
            engine,
            work,
            samples: plan.train.len(),
            shuffling: Shuffling::new(plan.seed, plan.seeded),
            partway: None,
            profile: Default::default(),
        };
        if let Some(dir) = &self.settings.resume {
            fit.resume_from(dir, &mut logs.train)?;
        }
        tracing::debug!(
            epochs = self.settings.epochs,
            batches = plan.batches,
            ?device,
            lazy = plan.lazy,
            "fit starts"
        );
        fit.train(&*plan.train, plan.valid.as_deref(), &mut logs)
    }
}

/// The settings as hooks see them ([`crate::HookContext::settings`]).
fn seen_settings<B>(
    settings: &TrainSetup,
    data: &DataSetup<'_>,
    plan: &Plan<'_, B>,
    optimizer: String,
    learning_rate: f64,
    device: tch::Device,
    group: Option<&crate::dist::ProcessGroup>,
) -> crate::state::Settings {
    let dist = group.map_or(crate::state::Dist::ALONE, |group| crate::state::Dist {
        rank: group.rank(),
        world_size: group.world_size(),
        local_rank: group.local_rank(),
    });
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
            return Err(Error::config("add_hook", refused.clone()));
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
