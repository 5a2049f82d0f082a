//! An exponential moving average of the weights (timm's `ModelEmaV2`/`ModelEmaV3`, Lightning's
//! EMA callbacks).

use super::checkpoint::{beside, WeightsHandle};
use crate::context::{variables_by_name, HookContext};
use crate::control::Control;
use crate::error::{BoxError, Error};
use crate::hook::{Hook, Plugin};
use crate::output::weights;
use crate::records::saved::HookState;
use crate::schedule::event::Event;
use crate::schedule::priority;
use crate::schedule::spec::HookSpec;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tch::nn::VarStore;
use tch::Tensor;

/// Keeps an exponential moving average (EMA) of the model's weights, as timm's `ModelEmaV2`
/// and `ModelEmaV3` and Lightning's EMA callbacks do: after each optimizer step `t`,
/// `ema = d·ema + (1 − d)·w` for every floating-point variable of the `VarStore` (trainable
/// ones and buffers alike, as timm averages the whole `state_dict`); variables of other kinds
/// (integer counters) are copied. The average starts from the weights at `on_train_begin`.
///
/// - **When it updates**: at `on_batch_end` of a batch at which the optimizer stepped — the
///   global step ([`crate::TrainState::global_step`]) went up since `on_batch_begin`. With
///   [`crate::Trainer::accumulate_gradients`]`(k)` that is once per `k` batches; with
///   [`Ema::every`]`(n)`, at the global steps that are multiples of `n`.
/// - **Decay**: `d` is the decay given; with [`Ema::warmup`], `min(decay, (1 + t) / (10 + t))`
///   at global step `t` (1-based), so that the average follows the weights closely early on.
/// - **Cost per update**: one in-place `lerp_` per floating-point variable on its device
///   under no-grad (a read of the weights and of the average, a write of the average), with no
///   new tensor memory. The average takes as much memory as the weights; validating with it
///   ([`Ema::validate_with_ema`]) as much again, for the raw weights kept aside; both are
///   allocated at `on_train_begin`. Validating with it copies the weights twice per epoch.
/// - **Validation**: by default the validation pass runs with the averaged weights: they are
///   copied into the model at `on_validation_begin` and the raw weights put back at
///   `on_validation_end` (or at `on_exception`, if validation fails), so that `val_loss` and
///   the other `val_` metrics are those of the average, and training goes on from the raw
///   weights.
/// - **Reading the average**: [`Ema::averaged`] gives a handle, [`Averaged`], to read it during
///   and after `fit`, copy it into a model ([`Averaged::copy_to`]) or save it
///   ([`Averaged::save`]); [`Ema::swap_at_end`] leaves it in the model when training ends.
/// - **Checkpoints**: give the handle to [`crate::hooks::ModelCheckpoint::weights`] to save the
///   average beside each checkpoint, or instead of the raw weights
///   ([`crate::hooks::Placement`]).
/// - **Resume points** ([`crate::Trainer::resumable`]) keep the average bit for bit, and the
///   number of updates: a resumed fit ends with the average of the uninterrupted one. A resume
///   point whose average does not fit the model (a variable missing, extra, of another shape or
///   kind) is an error naming the variables.
///
/// A decay outside `(0, 1)` or `every(0)` make `fit` fail at `on_train_begin`, before any
/// batch, with an error that names the value.
///
/// With [`crate::Trainer::rollback`], a bad batch rolled back never reaches the average (it is
/// rolled back before its optimizer step); with `snapshot_every(n > 1)`, a rollback past
/// updates the average made leaves them in it, with a warning.
///
/// Runs at `on_train_begin`, `on_batch_begin`, `on_batch_end`, `on_validation_begin`,
/// `on_validation_end`, `on_exception` (the last three when validating with the average) and
/// `on_train_end` (with `swap_at_end`), at priority [`priority::METRICS`]: the other hooks of
/// `on_batch_end` see the average of this step. The error for a bad setting is an
/// [`Error::Hook`] naming `Ema`.
///
/// ```
/// use trainmon::hooks::{Ema, ModelCheckpoint, Placement};
/// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// # let model = tch::nn::linear(vs.root(), 2, 2, Default::default());
///
/// let ema = Ema::new(0.999).warmup(true);
/// let averaged = ema.averaged();
/// let trainer = trainmon::Trainer::new(&vs, &model)
///     .with(ema)
///     .with(ModelCheckpoint::new("runs/demo/checkpoints").weights(averaged.clone(), Placement::Also));
/// // After `fit`: `averaged.copy_to(&vs)?` puts the average into the model.
/// # let _ = trainer;
/// ```
pub struct Ema {
    decay: f64,
    warmup: bool,
    every: u64,
    validate_with_ema: bool,
    swap_at_end: bool,
    averaged: Averaged,
    // State of a fit.
    /// The model's variables (handles on them), in the average's order.
    variables: Vec<Tensor>,
    /// Whether each variable is averaged (floating point) or copied.
    averages: Vec<bool>,
    /// The raw weights, kept aside while validation runs with the average.
    raw: Vec<Tensor>,
    /// Whether the model holds the average for validation now.
    swapped: bool,
    /// The global step when the current batch began: the optimizer stepped at the batch if it
    /// is higher at the batch's end.
    step_before: u64,
    /// The global step of the last update.
    last_update: u64,
    /// Rollbacks ([`crate::Trainer::rollback`]) seen, in the history.
    rollbacks: usize,
    /// A resume point's state, put in place at `on_train_begin`.
    restored: Option<(u64, Vec<(String, Tensor)>)>,
}

impl Ema {
    /// An average with this decay (`0 < decay < 1`; 0.999 or 0.9999 are usual), updated at
    /// every optimizer step, without warm-up, validating with the average, not left in the
    /// model at the end.
    pub fn new(decay: f64) -> Self {
        Ema {
            decay,
            warmup: false,
            every: 1,
            validate_with_ema: true,
            swap_at_end: false,
            averaged: Averaged::default(),
            variables: Vec::new(),
            averages: Vec::new(),
            raw: Vec::new(),
            swapped: false,
            step_before: 0,
            last_update: 0,
            rollbacks: 0,
            restored: None,
        }
    }

    /// Whether the decay at global step `t` is `min(decay, (1 + t) / (10 + t))` (timm's and
    /// TensorFlow's warm-up; default `false`: the decay throughout).
    pub fn warmup(mut self, warmup: bool) -> Self {
        self.warmup = warmup;
        self
    }

    /// Updates at the global steps that are multiples of `n` only (default 1: every step),
    /// with the decay unchanged: `n` times cheaper, and an average over `n` times more steps.
    pub fn every(mut self, n: u64) -> Self {
        self.every = n;
        self
    }

    /// Whether the validation pass runs with the averaged weights (default `true`); the raw
    /// ones are put back after it.
    pub fn validate_with_ema(mut self, validate: bool) -> Self {
        self.validate_with_ema = validate;
        self
    }

    /// Whether to copy the average into the model at `on_train_end` (default `false`: the
    /// model ends with the raw weights; [`Averaged::copy_to`] does it later). The copy runs at
    /// priority [`priority::METRICS`], so your `on_train_end` hooks see the average — and
    /// [`crate::hooks::EarlyStopping::restore_best_weights`], which runs after it, replaces it.
    pub fn swap_at_end(mut self, swap: bool) -> Self {
        self.swap_at_end = swap;
        self
    }

    /// A handle on the average, to read during and after `fit` or to give to
    /// [`crate::hooks::ModelCheckpoint::weights`]. Clones share it.
    pub fn averaged(&self) -> Averaged {
        self.averaged.clone()
    }

    /// The decay at global step `step`.
    fn decay_at(&self, step: u64) -> f64 {
        if self.warmup {
            let t = step as f64;
            self.decay.min((1.0 + t) / (10.0 + t))
        } else {
            self.decay
        }
    }

    fn train_begin(&mut self, ctx: &HookContext<'_>) -> Result<(), BoxError> {
        if !(self.decay > 0.0 && self.decay < 1.0) {
            return Err(format!(
                "the decay of an Ema must be between 0 and 1 (exclusive), got {}",
                self.decay
            )
            .into());
        }
        if self.every == 0 {
            return Err("an Ema must update every 1 or more optimizer steps (`every`), got 0".into());
        }
        let named = variables_by_name(ctx.var_store());
        let _no_grad = tch::no_grad_guard();
        let mut average = Vec::with_capacity(named.len());
        for (_, variable) in &named {
            average.push(variable.f_detach_copy()?);
        }
        let updates = match self.restored.take() {
            Some((updates, saved)) => {
                let problems = mismatches(&named, &saved);
                if !problems.is_empty() {
                    return Err(format!(
                        "the resume point's averaged weights do not fit the model: {}",
                        problems.join("; ")
                    )
                    .into());
                }
                let saved: HashMap<&str, &Tensor> = saved.iter().map(|(n, t)| (n.as_str(), t)).collect();
                for ((name, _), tensor) in named.iter().zip(&mut average) {
                    // Bit for bit: same kind, onto the variable's device.
                    tensor.f_copy_(saved[name.as_str()])?;
                }
                updates
            }
            None => 0,
        };
        self.averages = named
            .iter()
            .map(|(_, v)| v.f_is_floating_point())
            .collect::<Result<_, _>>()?;
        self.raw = if self.validate_with_ema {
            named.iter().map(|(_, v)| v.f_detach_copy()).collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let mut shadow = self.averaged.lock();
        shadow.names = named.iter().map(|(n, _)| n.clone()).collect();
        shadow.tensors = average;
        shadow.updates = updates;
        shadow.ready = true;
        drop(shadow);
        self.variables = named.into_iter().map(|(_, v)| v).collect();
        self.swapped = false;
        self.step_before = ctx.state().global_step();
        self.last_update = self.step_before;
        self.rollbacks = ctx.history().skipped().len();
        Ok(())
    }

    fn batch_begin(&mut self, ctx: &HookContext<'_>) {
        let step = ctx.state().global_step();
        let rollbacks = ctx.history().skipped().len();
        if rollbacks > self.rollbacks {
            self.rollbacks = rollbacks;
            if step < self.last_update {
                tracing::warn!(
                    "training rolled back to step {step}, past the average's last update (step {}): the average \
                     keeps the updates of the steps rolled back",
                    self.last_update
                );
            }
        }
        self.step_before = step;
    }

    fn batch_end(&mut self, ctx: &HookContext<'_>) -> Result<(), BoxError> {
        let step = ctx.state().global_step();
        if step == self.step_before || step % self.every != 0 {
            // No optimizer step at this batch (within an accumulation window), or not one to
            // update at.
            return Ok(());
        }
        self.last_update = step;
        let weight = 1.0 - self.decay_at(step);
        let _no_grad = tch::no_grad_guard();
        let mut shadow = self.averaged.lock();
        let shadow = &mut *shadow;
        for ((average, variable), &averaged) in shadow.tensors.iter_mut().zip(&self.variables).zip(&self.averages) {
            if averaged {
                let _ = average.f_lerp_(variable, weight)?;
            } else {
                average.f_copy_(variable)?;
            }
        }
        shadow.updates += 1;
        Ok(())
    }

    /// Puts the average into the model, the raw weights aside.
    fn swap_in(&mut self) -> Result<(), BoxError> {
        if self.swapped {
            return Ok(());
        }
        let _no_grad = tch::no_grad_guard();
        for (raw, variable) in self.raw.iter_mut().zip(&self.variables) {
            raw.f_copy_(variable)?;
        }
        self.swapped = true;
        let shadow = self.averaged.lock();
        for (variable, average) in self.variables.iter_mut().zip(&shadow.tensors) {
            variable.f_copy_(average)?;
        }
        Ok(())
    }

    /// Puts the raw weights back.
    fn swap_out(&mut self) -> Result<(), BoxError> {
        if !self.swapped {
            return Ok(());
        }
        let _no_grad = tch::no_grad_guard();
        for (variable, raw) in self.variables.iter_mut().zip(&self.raw) {
            variable.f_copy_(raw)?;
        }
        self.swapped = false;
        Ok(())
    }

    fn train_end(&mut self) -> Result<(), BoxError> {
        self.swap_out()?;
        if self.swap_at_end {
            let _no_grad = tch::no_grad_guard();
            let shadow = self.averaged.lock();
            for (variable, average) in self.variables.iter_mut().zip(&shadow.tensors) {
                variable.f_copy_(average)?;
            }
            tracing::info!(
                "Ema put the averaged weights ({} updates) into the model",
                shadow.updates
            );
        }
        Ok(())
    }
}

/// Why named tensors do not fit the model's variables (`named`, sorted by name): each variable
/// missing, extra, or of another shape or kind, by name; empty when they fit.
fn mismatches(named: &[(String, Tensor)], saved: &[(String, Tensor)]) -> Vec<String> {
    let saved_by_name: HashMap<&str, &Tensor> = saved.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut problems = Vec::new();
    for (name, variable) in named {
        match saved_by_name.get(name.as_str()) {
            None => problems.push(format!("`{name}` is missing")),
            Some(t) if t.size() != variable.size() => problems.push(format!(
                "`{name}` has shape {:?}, the model's {:?}",
                t.size(),
                variable.size()
            )),
            Some(t) if t.kind() != variable.kind() => problems.push(format!(
                "`{name}` is of kind {:?}, the model's {:?}",
                t.kind(),
                variable.kind()
            )),
            Some(_) => {}
        }
    }
    let names: std::collections::HashSet<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
    problems.extend(
        saved
            .iter()
            .filter(|(name, _)| !names.contains(name.as_str()))
            .map(|(name, _)| format!("`{name}` is not a variable of the model")),
    );
    problems.sort();
    problems
}

/// What a resume point keeps of an [`Ema`] beside the average (as tensors, by variable name).
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    updates: u64,
}

impl Hook for Ema {
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        match ctx.event() {
            Event::TrainBegin => self.train_begin(ctx)?,
            Event::BatchBegin => self.batch_begin(ctx),
            Event::BatchEnd => self.batch_end(ctx)?,
            Event::ValidationBegin => self.swap_in()?,
            Event::ValidationEnd | Event::Exception => self.swap_out()?,
            Event::TrainEnd => self.train_end()?,
            _ => {}
        }
        Ok(Control::Continue)
    }

    fn state(&self) -> Result<Option<HookState>, BoxError> {
        let shadow = self.averaged.lock();
        if !shadow.ready {
            return Ok(None);
        }
        let mut state = HookState::new(Saved {
            updates: shadow.updates,
        })?;
        for (name, tensor) in shadow.names.iter().zip(&shadow.tensors) {
            state = state.with_tensor(name.clone(), tensor.shallow_clone());
        }
        Ok(Some(state))
    }

    fn restore(&mut self, mut state: HookState) -> Result<(), BoxError> {
        let saved: Saved = state.value()?;
        self.restored = Some((saved.updates, state.take_tensors()));
        Ok(())
    }
}

impl Plugin for Ema {
    fn specs(&self) -> Vec<HookSpec> {
        let at = |event| HookSpec::new(event, "Ema").priority(priority::METRICS);
        let mut specs = vec![at(Event::TrainBegin), at(Event::BatchBegin), at(Event::BatchEnd)];
        if self.validate_with_ema {
            specs.extend([
                at(Event::ValidationBegin),
                at(Event::ValidationEnd),
                at(Event::Exception),
            ]);
        }
        if self.swap_at_end {
            specs.push(at(Event::TrainEnd));
        }
        specs
    }
}

/// A handle on an [`Ema`]'s average ([`Ema::averaged`]): cheap to clone, shared with the hook,
/// readable during and after `fit`. It is empty until the hook's first `on_train_begin`.
#[derive(Clone, Default)]
pub struct Averaged(Arc<Mutex<Shadow>>);

/// The average, shared between an [`Ema`] and its [`Averaged`] handles.
#[derive(Default)]
struct Shadow {
    /// Variable names, sorted.
    names: Vec<String>,
    /// The average of each, on the variable's device.
    tensors: Vec<Tensor>,
    /// Updates since the run began (a resumed fit goes on counting).
    updates: u64,
    /// Whether an `on_train_begin` made the average.
    ready: bool,
}

impl Averaged {
    fn lock(&self) -> MutexGuard<'_, Shadow> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether there is an average: the [`Ema`] has begun a fit.
    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    /// The updates made so far: optimizer steps (every `n`th, with [`Ema::every`]) since the run
    /// began, those before a resume included.
    pub fn updates(&self) -> u64 {
        self.lock().updates
    }

    /// A copy of the average, by variable name (sorted), on the variables' device; empty
    /// before the first `on_train_begin`.
    pub fn weights(&self) -> crate::Result<Vec<(String, Tensor)>> {
        let shadow = self.lock();
        let _no_grad = tch::no_grad_guard();
        shadow
            .names
            .iter()
            .zip(&shadow.tensors)
            .map(|(name, tensor)| {
                let copy = tensor
                    .f_detach_copy()
                    .map_err(|e| Error::torch(format!("copying the average of `{name}`"), e))?;
                Ok((name.clone(), copy))
            })
            .collect()
    }

    /// Copies the average into the model's variables, all or nothing: an average of another
    /// model (a variable missing, extra, of another shape or kind), or none yet, is an
    /// [`Error::Config`] that says which and leaves the weights as they were.
    pub fn copy_to(&self, vs: &VarStore) -> crate::Result<()> {
        let shadow = self.ready_shadow("copied into a model")?;
        let mut named = variables_by_name(vs);
        let saved: Vec<(String, Tensor)> = shadow
            .names
            .iter()
            .zip(&shadow.tensors)
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        let problems = mismatches(&named, &saved);
        if !problems.is_empty() {
            return Err(Error::config(
                "Ema",
                format!("the averaged weights do not fit this model: {}", problems.join("; ")),
            ));
        }
        let saved: HashMap<&str, &Tensor> = saved.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let _no_grad = tch::no_grad_guard();
        for (name, variable) in &mut named {
            variable
                .f_copy_(saved[name.as_str()])
                .map_err(|e| Error::torch(format!("copying the average of `{name}` into the model"), e))?;
        }
        Ok(())
    }

    /// Writes the average to `path` as a safetensors file named as the model's variables
    /// (what `VarStore::save` writes; [`crate::hooks::load_checkpoint`] loads it into a model),
    /// atomically and durably. No average yet is an [`Error::Config`].
    pub fn save(&self, path: impl AsRef<Path>) -> crate::Result<()> {
        self.save_with(path.as_ref(), &weights::Metadata::new())
    }

    /// Writes the average with `metadata` in the file's header (beside `weights` = `ema` and
    /// its `updates`).
    pub(crate) fn save_with(&self, path: &Path, metadata: &weights::Metadata) -> crate::Result<()> {
        let shadow = self.ready_shadow("saved")?;
        let named: Vec<(&str, &Tensor)> = shadow.names.iter().map(String::as_str).zip(&shadow.tensors).collect();
        let mut metadata = metadata.clone();
        metadata.insert("weights".into(), "ema".into());
        metadata.insert("updates".into(), shadow.updates.to_string());
        weights::save_tensors(&named, path, &metadata)
    }

    /// The average, or an error saying there is none yet (`what`: what was asked of it).
    fn ready_shadow(&self, what: &str) -> crate::Result<MutexGuard<'_, Shadow>> {
        let shadow = self.lock();
        if !shadow.ready {
            return Err(Error::config(
                "Ema",
                format!(
                    "the averaged weights cannot be {what}: there are none yet (add the `Ema` to the trainer with \
                 `.with(ema)`; the average is made when `fit` starts)"
                ),
            ));
        }
        Ok(shadow)
    }
}

impl std::fmt::Debug for Averaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shadow = self.lock();
        f.debug_struct("Averaged")
            .field("ready", &shadow.ready)
            .field("variables", &shadow.names.len())
            .field("updates", &shadow.updates)
            .finish()
    }
}

impl WeightsHandle for Averaged {
    fn suffix(&self) -> &str {
        "ema"
    }

    fn missing(&self) -> Option<String> {
        (!self.is_ready()).then(|| {
            "the averaged weights of an `Ema` that does not run in this fit: add it to the trainer with `.with(ema)`"
                .to_owned()
        })
    }

    fn save_with(&self, path: &Path, metadata: &std::collections::BTreeMap<String, String>) -> crate::Result<()> {
        Averaged::save_with(self, path, metadata)
    }
}

/// Where a checkpoint's average goes with [`Placement::Also`](crate::hooks::Placement::Also):
/// `<name>.ema.safetensors` beside `<name>.safetensors` ([`crate::hooks::beside`] with `"ema"`).
///
/// ```
/// use std::path::Path;
/// use trainmon::hooks::ema_path;
///
/// assert_eq!(ema_path("ckpt/epoch=3-step=96.safetensors"), Path::new("ckpt/epoch=3-step=96.ema.safetensors"));
/// ```
pub fn ema_path(checkpoint: impl AsRef<Path>) -> PathBuf {
    beside(checkpoint, "ema")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Harness;
    use tch::{Device, Kind};

    /// A harness whose model has `w` of `shape`, at 1.0.
    fn harness(shape: &[i64]) -> Harness {
        let harness = Harness::new();
        let _ = harness.var_store().root().var("w", shape, tch::nn::Init::Const(1.0));
        harness
    }

    #[test]
    fn updates_after_each_optimizer_step_with_the_warmed_up_decay() {
        let mut harness = harness(&[3]);
        let mut ema = Ema::new(0.5).warmup(true);
        let averaged = ema.averaged();
        assert_eq!(harness.run(Event::TrainBegin, &mut ema).unwrap(), Control::Continue);
        let w = harness.var_store().variables()["w"].shallow_clone();
        let targets = Tensor::from_slice(&[0i64]);
        let outputs = Tensor::zeros([1, 2], (Kind::Float, Device::Cpu));
        let mut want = 1.0f64;
        for step in 1..=4u64 {
            let _no_grad = tch::no_grad_guard();
            let _ = w.shallow_clone().fill_(step as f64 * 10.0);
            assert_eq!(harness.run(Event::BatchBegin, &mut ema).unwrap(), Control::Continue);
            harness.next_batch(0.5, &outputs, &targets).unwrap();
            assert_eq!(harness.run(Event::BatchEnd, &mut ema).unwrap(), Control::Continue);
            let t = step as f64;
            let d = 0.5f64.min((1.0 + t) / (10.0 + t));
            want = d * want + (1.0 - d) * t * 10.0;
        }
        // A batch without an optimizer step does not update.
        assert_eq!(harness.run(Event::BatchBegin, &mut ema).unwrap(), Control::Continue);
        assert_eq!(harness.run(Event::BatchEnd, &mut ema).unwrap(), Control::Continue);
        assert_eq!(averaged.updates(), 4);
        let got = Vec::<f32>::try_from(&averaged.weights().unwrap()[0].1).unwrap();
        for g in got {
            assert!((g as f64 - want).abs() < 1e-4 * want, "{g} vs {want}");
        }
    }

    #[test]
    fn a_resume_point_of_another_model_is_an_error_naming_the_variable() {
        let mut harness = harness(&[2]);
        let mut ema = Ema::new(0.9);
        let state = HookState::new(Saved { updates: 3 })
            .unwrap()
            .with_tensor("w", Tensor::zeros([3], (Kind::Float, Device::Cpu)))
            .with_tensor("v", Tensor::zeros([1], (Kind::Float, Device::Cpu)));
        ema.restore(state).unwrap();
        let err = harness.run(Event::TrainBegin, &mut ema).unwrap_err().to_string();
        assert!(
            err.contains("`w` has shape [3], the model's [2]") && err.contains("`v` is not a variable"),
            "{err}"
        );
    }

    #[test]
    fn a_decay_outside_zero_one_is_refused() {
        for decay in [0.0, 1.0, 1.5, -0.1, f64::NAN] {
            let mut harness = harness(&[2]);
            let err = harness
                .run(Event::TrainBegin, &mut Ema::new(decay))
                .unwrap_err()
                .to_string();
            assert!(err.contains("decay") && err.contains(&decay.to_string()), "{err}");
        }
    }

    #[test]
    fn ema_files_sit_beside_the_checkpoint() {
        assert_eq!(ema_path("a/last.safetensors"), Path::new("a/last.ema.safetensors"));
        assert_eq!(ema_path("b"), Path::new("b.ema.safetensors"));
    }
}
