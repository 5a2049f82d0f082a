//! The training loop.

use super::dispatch::Dispatch;
use super::{guard, resume, Clip, NanPolicy, Optimizer, TrainState, Trainer, Validation};
use crate::data::{Dataset, Subset};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::history::{EpochLogs, History};
use crate::hook::{Hook, HookContext};
use crate::loss::Loss;
use crate::metrics::{Accuracy, BatchLogs, LogsState, Metric};
use crate::registry::{registrations, HookInfo};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::time::{Duration, Instant};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Tensor};

/// Where a fit's samples come from.
enum Source<'d> {
    /// The whole dataset as tensors on the training device: batches are cut out of them, after
    /// one gather per epoch when shuffling.
    Tensors { x: Tensor, y: Tensor, len: usize },
    /// A dataset asked for each batch, which the loop moves to the device.
    Batches { data: Box<dyn Dataset + 'd>, len: usize },
}

/// One epoch's order of the samples.
struct EpochOrder {
    /// For `Source::Tensors`: the tensors in this epoch's order.
    tensors: Option<(Tensor, Tensor)>,
    /// For `Source::Batches`: the sample indices in this epoch's order (`None`: in order).
    order: Option<Vec<i64>>,
}

impl<'d> Source<'d> {
    fn new(data: Box<dyn Dataset + 'd>, device: Device, loss: &Loss, nan: NanPolicy, what: &str) -> Result<Self> {
        let len = data.len();
        if len == 0 {
            return Err(Error::Data(format!("the {what} set is empty: 0 samples")));
        }
        Ok(match data.tensors() {
            Some((x, y)) => {
                check_nan(&x, nan, what)?;
                let to_device = |t: Tensor| {
                    t.f_to_device(device)
                        .map_err(|e| Error::torch(format!("moving the {what} set to {device:?}"), e))
                };
                let y = loss
                    .targets(to_device(y)?)
                    .map_err(|why| Error::Data(format!("{what} set: {why}")))?;
                Source::Tensors {
                    x: to_device(x)?,
                    y,
                    len,
                }
            }
            None => Source::Batches { data, len },
        })
    }

    fn len(&self) -> usize {
        match self {
            Source::Tensors { len, .. } | Source::Batches { len, .. } => *len,
        }
    }

    fn begin_epoch(&self, order: Option<Vec<i64>>) -> Result<EpochOrder> {
        match self {
            Source::Tensors { x, y, .. } => {
                let tensors = match order {
                    Some(order) => {
                        let index = Tensor::from_slice(&order).to_device(x.device());
                        let pick = |t: &Tensor| {
                            t.f_index_select(0, &index)
                                .map_err(|e| Error::torch("shuffling the dataset", e))
                        };
                        (pick(x)?, pick(y)?)
                    }
                    None => (x.shallow_clone(), y.shallow_clone()),
                };
                Ok(EpochOrder {
                    tensors: Some(tensors),
                    order: None,
                })
            }
            Source::Batches { .. } => Ok(EpochOrder { tensors: None, order }),
        }
    }

    /// The samples `start..start + len` of this epoch's order, on `device`.
    fn batch(
        &self,
        epoch: &EpochOrder,
        start: usize,
        len: usize,
        device: Device,
        loss: &Loss,
    ) -> Result<(Tensor, Tensor)> {
        if let Some((x, y)) = &epoch.tensors {
            let cut = |t: &Tensor| {
                t.f_narrow(0, start as i64, len as i64)
                    .map_err(|e| Error::torch("batching", e))
            };
            return Ok((cut(x)?, cut(y)?));
        }
        let Source::Batches { data, .. } = self else {
            unreachable!("tensor sources have epoch tensors")
        };
        let indices: Vec<i64> = match &epoch.order {
            Some(order) => order[start..start + len].to_vec(),
            None => (start as i64..(start + len) as i64).collect(),
        };
        let (x, y) = data.batch(&indices)?;
        for (what, t) in [("features", &x), ("targets", &y)] {
            if t.size().first().copied() != Some(len as i64) {
                return Err(Error::Data(format!(
                    "the dataset returned {what} of shape {:?} for a batch of {len} indices",
                    t.size()
                )));
            }
        }
        let to_device = |t: &Tensor| {
            t.f_to_device(device)
                .map_err(|e| Error::torch(format!("moving a batch to {device:?}"), e))
        };
        let y = loss.targets(to_device(&y)?).map_err(Error::Data)?;
        Ok((to_device(&x)?, y))
    }
}

/// Looks for NaN in a set's features, once, and acts as `policy` says.
fn check_nan(features: &Tensor, policy: NanPolicy, what: &str) -> Result<()> {
    if policy == NanPolicy::Ignore || !features.is_floating_point() {
        return Ok(());
    }
    let read = |e| Error::torch(format!("looking for NaN in the {what} features"), e);
    let rows = features
        .f_isnan()
        .and_then(|nan| nan.f_reshape([features.size()[0], -1]))
        .map_err(read)?;
    let bad = rows.f_any_dim(1, false).and_then(|any| any.f_nonzero()).map_err(read)?;
    let count = bad.size()[0];
    if count == 0 {
        return Ok(());
    }
    let first = bad.f_int64_value(&[0, 0]).map_err(read)?;
    let message = format!("the {what} features have NaN in {count} samples (the first: sample {first})");
    match policy {
        NanPolicy::Error => Err(Error::Data(message)),
        _ => {
            tracing::warn!("{message}; training goes on (`Trainer::nan_policy` makes this an error)");
            Ok(())
        }
    }
}

/// What hooks see, beside the hooks themselves.
struct Shared<'t> {
    state: TrainState,
    history: History,
    vs: &'t VarStore,
    learning_rate: Cell<f64>,
    resources: &'t crate::resource::Resources,
}

impl Trainer<'_> {
    /// Trains for the configured epochs and returns the history.
    ///
    /// The selected registered hooks (all, by default) and the hooks added at run time run at
    /// their events, in the documented order. Training stops early when a hook returns
    /// [`crate::Control::Stop`] (see its docs for where). It fails with an [`Error`] naming the
    /// cause when the setup, the data, the model or a hook cannot go on; the `on_exception`
    /// hooks run first.
    pub fn fit(&mut self, data: &impl Dataset) -> Result<History> {
        let Trainer {
            vs,
            model,
            optimizer,
            epochs,
            batch_size,
            shuffle,
            seed,
            validation,
            selection,
            added,
            loss,
            metrics,
            drop_last,
            accumulate,
            clip,
            lazy_reads,
            tolerated,
            nan_policy,
            resume,
            resume_steps,
            resources,
        } = self;
        let (optimizer, learning_rate) = match optimizer {
            Optimizer::Ready(optimizer, lr) => (optimizer, *lr),
            Optimizer::Missing => {
                return Err(Error::Config(
                    "no optimizer: call `.optimizer(nn::Adam::default(), 1e-3)` (or another) before `fit`".into(),
                ))
            }
            Optimizer::Failed(err) => return Err(Error::Config(format!("the optimizer could not be built: {err}"))),
        };
        check_settings(*batch_size, *accumulate, *clip)?;
        let device = vs.device();
        let (train, valid) = sources(data, validation, device, loss, *nan_policy)?;
        let batches = if *drop_last {
            train.len() / *batch_size
        } else {
            train.len().div_ceil(*batch_size)
        };
        if batches == 0 {
            return Err(Error::Config(format!(
                "`drop_last` with batches of {batch_size} leaves no batch of the {} training samples",
                train.len()
            )));
        }
        if let Some(seed) = *seed {
            tch::manual_seed(seed as i64);
        }
        let reseed = seed.is_some();
        let seed = seed.unwrap_or_else(|| RandomState::new().hash_one(Instant::now()));
        let lazy = lazy_reads.unwrap_or(device.is_cuda());
        let new_logs = || {
            let mut list: Vec<Box<dyn Metric>> = Vec::new();
            if loss.classifies() {
                list.push(Box::new(Accuracy::with_reads(lazy)));
            }
            list.extend(metrics.iter().map(|make| make()));
            BatchLogs::new(lazy, list, !metrics.is_empty())
        };

        let registered = registrations();
        for warning in selection.unmatched(&registered) {
            tracing::warn!(
                "{warning}: is the crate that defines them linked? Refer to it from the binary (`use my_hooks as _;`)"
            );
        }
        // Registered hooks get fresh instances (fresh `Local` state) every fit.
        let mut instances: Vec<(&HookInfo, Box<dyn Hook>)> = registered
            .iter()
            .filter(|r| selection.selects(r.info()))
            .map(|r| (r.info(), r.instantiate()))
            .collect();
        let hooks = instances
            .iter_mut()
            .map(|(info, hook)| (vec![(*info).clone()], &mut **hook as &mut dyn Hook));
        let added = added.iter_mut().map(|(specs, hook)| {
            (
                specs.iter().map(|spec| spec.0.clone()).collect(),
                &mut **hook as &mut dyn Hook,
            )
        });
        let mut dispatch = Dispatch::new(hooks.chain(added), tolerated)?;
        dispatch.check_requirements(resources)?;
        tracing::debug!(epochs = *epochs, batches, ?device, lazy, "fit starts");

        let mut shared = Shared {
            state: TrainState {
                epoch: 0,
                epochs: *epochs,
                batch: 0,
                batches,
                global_step: 0,
                started: Instant::now(),
                device,
                learning_rate,
            },
            history: History::default(),
            vs,
            learning_rate: Cell::new(learning_rate),
            resources,
        };
        let mut logs = (new_logs(), valid.as_ref().map(|_| new_logs()));
        let mut resumed = Resumed::fresh(seed);
        if let Some(dir) = resume.as_deref() {
            resumed = resume_from(
                dir,
                &mut shared,
                &mut **optimizer,
                &mut dispatch,
                &mut logs.0,
                seed,
                train.len(),
            )?;
        } else if *resume_steps > 0 {
            return Err(Error::Config(
                "`resumable_steps` keeps resume points in the directory of `resumable(dir)`, which is not set".into(),
            ));
        }
        let mut loop_ = Loop {
            model: *model,
            optimizer: &mut **optimizer,
            loss,
            dispatch: &mut dispatch,
            shared: &mut shared,
            batch_size: *batch_size,
            batches,
            shuffle: *shuffle,
            accumulate: *accumulate,
            clip: *clip,
            rng: resumed.rng,
            profiled: (Duration::ZERO, 0),
            resume: resume.as_deref(),
            resume_steps: *resume_steps,
            within: resumed.within,
            seed: resumed.seed,
            reseed: reseed.then_some(resumed.seed),
            samples: train.len(),
        };
        loop_.dispatch.profile(true);
        match loop_.run(&train, valid.as_ref(), &mut logs.0, logs.1.as_mut()) {
            Ok(()) => Ok(shared.history),
            Err(err) => {
                let ctx = shared.context(Event::Exception, None, None, Some(&err));
                dispatch.fire_exception(&ctx);
                Err(err)
            }
        }
    }
}

/// Goes on from the resume point in `dir`, if there is one: weights, optimizer, hooks' states,
/// counters, generator, learning rate, history and (within an epoch) running logs as they were
/// at the point. Without a point, a fresh start from `seed`.
fn resume_from(
    dir: &Path,
    shared: &mut Shared<'_>,
    optimizer: &mut dyn crate::optim::Optimizer,
    dispatch: &mut Dispatch<'_>,
    logs: &mut BatchLogs,
    seed: u64,
    samples: usize,
) -> Result<Resumed> {
    let batches = shared.state.batches;
    std::fs::create_dir_all(dir).map_err(Error::io("create the resume directory", dir))?;
    crate::output::remove_leftovers(dir);
    let path = resume::path(dir);
    if !path.exists() {
        tracing::debug!("no resume point in {}: training starts", dir.display());
        return Ok(Resumed::fresh(seed));
    }
    let point = resume::read(&path)?;
    let progress = point.progress;
    // Everything that can refuse the point comes before the weights change.
    crate::hooks::checkpoint::check_weights(shared.vs, &point.model, &path)?;
    // Within an epoch, the generator goes back to the epoch's start: the resumed fit shuffles
    // the epoch again as the interrupted one did.
    let position = match &progress.within {
        Some(within) => &within.epoch_rng_word_pos,
        None => &progress.rng_word_pos,
    };
    let word_pos: u128 = position.parse().map_err(|_| Error::Checkpoint {
        path: path.clone(),
        message: format!("the generator's position `{position}` is not a number"),
    })?;
    let (tensors, value) = point.optimizer;
    optimizer.restore(&tensors, value).map_err(|e| Error::Checkpoint {
        path: path.clone(),
        message: e.to_string(),
    })?;
    optimizer.set_learning_rate(progress.learning_rate);
    dispatch.restore(point.hooks)?;
    dispatch.disable(&progress.disabled);
    if let Some(within) = &progress.within {
        // The epoch's running loss and metrics so far.
        logs.reset();
        let metrics = point
            .metrics
            .into_iter()
            .map(|(key, state)| (key, Some(state)))
            .collect();
        logs.restore(LogsState {
            counters: within.logs.clone(),
            metrics,
        })?;
    }
    crate::hooks::checkpoint::copy_weights(shared.vs, &point.model, &path)?;
    if let Some(stop) = progress.stop {
        dispatch.stop_with(stop);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(progress.seed);
    rng.set_stream(progress.rng_stream);
    rng.set_word_pos(word_pos);
    if (progress.samples, progress.batches) != (samples, batches) {
        tracing::warn!(
            "the resume point was made training on {} samples in {} batches per epoch, this fit has {samples} in \
             {batches}: it goes on, but not as the interrupted run would have",
            progress.samples,
            progress.batches
        );
    }
    let state = &mut shared.state;
    state.epoch = progress.epoch;
    state.global_step = progress.global_step;
    state.learning_rate = progress.learning_rate;
    state.started = Instant::now()
        .checked_sub(progress.elapsed)
        .unwrap_or_else(Instant::now);
    shared.learning_rate.set(progress.learning_rate);
    shared.history = progress.history.into_owned();
    shared.history.elapsed = progress.elapsed;
    let within = progress.within.map(|within| Within {
        batch: within.batch,
        epoch_elapsed: within.epoch_elapsed,
    });
    let batch = within
        .as_ref()
        .map_or(String::new(), |w| format!(" and {} batches", w.batch));
    tracing::info!(
        "resuming from {}: {} epochs{batch} done, step {}",
        path.display(),
        progress.epoch,
        progress.global_step
    );
    Ok(Resumed {
        seed: progress.seed,
        rng,
        within,
    })
}

/// Where a fit starts: its shuffling generator and seed, and for a fit resumed within an
/// epoch, where in it.
struct Resumed {
    seed: u64,
    rng: ChaCha8Rng,
    within: Option<Within>,
}

impl Resumed {
    fn fresh(seed: u64) -> Self {
        Resumed {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            within: None,
        }
    }
}

/// Where a fit resumed within an epoch goes on from (its running logs are restored already).
struct Within {
    /// Batches of the epoch done.
    batch: usize,
    /// Its wall time so far.
    epoch_elapsed: Duration,
}

/// Settings that cannot train, found before any work is done.
fn check_settings(batch_size: usize, accumulate: usize, clip: Option<Clip>) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::Config("batch size must be at least 1, got 0".into()));
    }
    if accumulate == 0 {
        return Err(Error::Config(
            "gradients must accumulate over at least 1 batch, got 0".into(),
        ));
    }
    if let Some(Clip::Norm(max) | Clip::Value(max)) = clip {
        if !(max.is_finite() && max > 0.0) {
            return Err(Error::Config(format!(
                "a gradient clip must be positive and finite, got {max}"
            )));
        }
    }
    Ok(())
}

/// The training samples and the validation samples, if any.
fn sources<'d>(
    data: &'d dyn Dataset,
    validation: &Validation<'d>,
    device: Device,
    loss: &Loss,
    nan: NanPolicy,
) -> Result<(Source<'d>, Option<Source<'d>>)> {
    let (train, valid): (Box<dyn Dataset + 'd>, Option<Box<dyn Dataset + 'd>>) = match *validation {
        Validation::None => (Box::new(data), None),
        Validation::Data(valid) => (Box::new(data), Some(Box::new(valid))),
        Validation::Split(fraction) => {
            let (train, valid) = split(data, fraction)?;
            (Box::new(train), Some(Box::new(valid)))
        }
    };
    let train = Source::new(train, device, loss, nan, "training")?;
    let valid = valid
        .map(|valid| Source::new(valid, device, loss, nan, "validation"))
        .transpose()?;
    Ok((train, valid))
}

/// The last `fraction` of the samples for validation, the rest for training.
fn split(data: &dyn Dataset, fraction: f64) -> Result<(Subset<'_>, Subset<'_>)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::Config(format!(
            "a validation split must be between 0 and 1 (exclusive), got {fraction}"
        )));
    }
    let len = data.len();
    let valid = (len as f64 * fraction).round() as usize;
    if valid == 0 || valid == len {
        return Err(Error::Data(format!(
            "a validation split of {fraction} of {len} samples leaves {} for validation and {} for training",
            valid,
            len - valid
        )));
    }
    Ok((
        Subset {
            data,
            start: 0,
            len: len - valid,
        },
        Subset {
            data,
            start: len - valid,
            len: valid,
        },
    ))
}

impl Shared<'_> {
    fn context<'c>(
        &'c self,
        event: Event,
        batch: Option<&'c BatchLogs>,
        epoch: Option<&'c EpochLogs>,
        error: Option<&'c Error>,
    ) -> HookContext<'c> {
        HookContext {
            event,
            state: &self.state,
            batch,
            epoch,
            history: &self.history,
            vs: self.vs,
            learning_rate: &self.learning_rate,
            error,
            resources: self.resources,
        }
    }
}

struct Loop<'a, 'h, 't> {
    model: &'a dyn ModuleT,
    optimizer: &'a mut dyn crate::optim::Optimizer,
    loss: &'a Loss,
    dispatch: &'a mut Dispatch<'h>,
    shared: &'a mut Shared<'t>,
    batch_size: usize,
    batches: usize,
    shuffle: bool,
    accumulate: usize,
    clip: Option<Clip>,
    rng: ChaCha8Rng,
    /// Time of the first batches of the fit (step and hooks), and how many, while the dispatch
    /// times the hooks, to warn about slow ones.
    profiled: (Duration, u32),
    /// Where to keep the resume point, if the fit is resumable.
    resume: Option<&'a Path>,
    /// Also a resume point every this many optimizer steps, within epochs (0: none).
    resume_steps: u64,
    /// Where in its first epoch a fit resumed within an epoch goes on.
    within: Option<Within>,
    /// The shuffling generator's seed.
    seed: u64,
    /// The seed to derive each epoch's seed of libtorch's generator from, if one was given.
    reseed: Option<u64>,
    /// Training samples (recorded in resume points).
    samples: usize,
}

/// Batches at the start of a fit over which hooks are timed against the training step.
const PROFILED_BATCHES: u32 = 20;

impl Loop<'_, '_, '_> {
    /// Runs the hooks of `event` at counter `own` (and the global step `global`), then applies a
    /// learning rate a hook set.
    fn fire(&mut self, event: Event, own: usize, global: u64, batch: Option<&BatchLogs>) -> Result<()> {
        let shared = &*self.shared;
        let epoch = match event {
            Event::ValidationEnd | Event::EpochEnd => shared.history.epochs.last(),
            _ => None,
        };
        self.dispatch
            .fire(own as u64, global, &shared.context(event, batch, epoch, None))?;
        let wanted = self.shared.learning_rate.get();
        if wanted != self.shared.state.learning_rate {
            if !(wanted.is_finite() && wanted >= 0.0) {
                return Err(Error::Config(format!(
                    "a `{event}` hook set the learning rate to {wanted}"
                )));
            }
            self.optimizer.set_learning_rate(wanted);
            self.shared.state.learning_rate = wanted;
        }
        Ok(())
    }

    fn run(
        &mut self,
        train: &Source<'_>,
        valid: Option<&Source<'_>>,
        logs: &mut BatchLogs,
        mut val_logs: Option<&mut BatchLogs>,
    ) -> Result<()> {
        self.fire(Event::TrainBegin, 1, 0, None)?;
        for epoch in self.shared.state.epoch + 1..=self.shared.state.epochs {
            if self.dispatch.stopped() {
                break;
            }
            self.shared.state.epoch = epoch;
            self.shared.state.batch = 0;
            // An epoch a fit resumes within has begun already: its time goes on, its
            // `on_epoch_begin` hooks ran in the interrupted process.
            let started = match &self.within {
                Some(within) => Instant::now()
                    .checked_sub(within.epoch_elapsed)
                    .unwrap_or_else(Instant::now),
                None => {
                    self.reseed(epoch, 0);
                    let started = Instant::now();
                    self.fire(Event::EpochBegin, epoch, epoch as u64, None)?;
                    if self.dispatch.stopped() {
                        break;
                    }
                    started
                }
            };
            self.train_epoch(train, logs, started)?;
            if logs.number() == 0 {
                break;
            }
            let mut values = logs.values();
            if let (Some(valid), Some(val_logs)) = (valid, val_logs.as_deref_mut()) {
                self.validate(valid, epoch, val_logs)?;
                values.extend(
                    val_logs
                        .values()
                        .into_iter()
                        .map(|(name, value)| (format!("val_{name}"), value)),
                );
            }
            self.shared.history.epochs.push(EpochLogs {
                epoch,
                time: started.elapsed(),
                batches: logs.number(),
                samples: logs.samples(),
                values,
                learning_rate: self.shared.state.learning_rate,
            });
            self.shared.history.elapsed = self.shared.state.started.elapsed();
            self.shared.state.batch = 0;
            if valid.is_some() {
                self.fire(Event::ValidationEnd, epoch, epoch as u64, None)?;
            }
            self.fire(Event::EpochEnd, epoch, epoch as u64, None)?;
            let whole = logs.number() == self.batches
                && self
                    .dispatch
                    .stop()
                    .is_none_or(|stop| matches!(stop.event, Event::ValidationEnd | Event::EpochEnd));
            if let (Some(dir), true) = (self.resume, whole) {
                self.save_resume_point(dir, None)?;
            }
        }
        self.shared.history.stop = self.dispatch.take_stop();
        if let Some(stop) = &self.shared.history.stop {
            tracing::debug!("training stopped: {stop}");
        }
        self.shared.history.elapsed = self.shared.state.started.elapsed();
        self.shared.state.batch = 0;
        self.fire(Event::TrainEnd, 1, 0, None)?;
        self.shared.history.elapsed = self.shared.state.started.elapsed();
        Ok(())
    }

    /// Seeds libtorch's generator from the seed, the epoch and the batch (0: the epoch's start),
    /// when a seed was given: so that a fit resumed within an epoch draws what the
    /// uninterrupted one did (dropout masks).
    fn reseed(&self, epoch: usize, batch: usize) {
        if let Some(seed) = self.reseed {
            let mix =
                (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (batch as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
            tch::manual_seed((seed ^ mix) as i64);
        }
    }

    /// Writes a resume point: at the end of an epoch (after all its hooks ran), or — `within`
    /// — after a batch, with where in the epoch and its running logs.
    fn save_resume_point(&mut self, dir: &Path, within: Option<(resume::Within, LogsState)>) -> Result<()> {
        let state = &self.shared.state;
        let (within, metrics) = match within {
            Some((within, logs)) => {
                let metrics = logs.metrics.into_iter().filter_map(|(n, s)| Some((n, s?))).collect();
                (
                    Some(resume::Within {
                        logs: logs.counters,
                        ..within
                    }),
                    metrics,
                )
            }
            None => (None, Vec::new()),
        };
        let progress = resume::Progress {
            epoch: state.epoch - usize::from(within.is_some()),
            within,
            global_step: state.global_step,
            learning_rate: state.learning_rate,
            seed: self.seed,
            rng_stream: self.rng.get_stream(),
            rng_word_pos: self.rng.get_word_pos().to_string(),
            elapsed: state.started.elapsed(),
            samples: self.samples,
            batches: self.batches,
            history: std::borrow::Cow::Borrowed(&self.shared.history),
            stop: self.dispatch.stop().cloned(),
            disabled: self.dispatch.disabled(),
        };
        let optimizer = self.optimizer.state()?;
        let hooks = self.dispatch.states()?;
        resume::write(&resume::path(dir), progress, self.shared.vs, optimizer, hooks, metrics)
    }

    /// After the profiled batches: warns about training-batch hooks slower than the step itself.
    fn report_slow_hooks(&mut self) {
        self.dispatch.profile(false);
        let (total, batches) = self.profiled;
        let (step, slow) = self.dispatch.slow_hooks(total, batches);
        for (hook, location, event, per_batch) in slow {
            tracing::warn!(
                "hook `{hook}` ({location}) at `{event}` takes {per_batch:.2?} per batch, more than the training \
                 step itself ({step:.2?}), over the first {batches} batches: it slows training down; consider a \
                 filter (`every = N`)"
            );
        }
    }

    /// The training batches of one epoch, until its end or a stop.
    /// `started`: when the epoch started (in the interrupted process, for a resumed epoch).
    fn train_epoch(&mut self, train: &Source<'_>, logs: &mut BatchLogs, started: Instant) -> Result<()> {
        let epoch_rng = self.rng.get_word_pos();
        let order = self.shuffle.then(|| {
            let mut order: Vec<i64> = (0..train.len() as i64).collect();
            order.shuffle(&mut self.rng);
            order
        });
        let order = train.begin_epoch(order)?;
        let epoch = self.shared.state.epoch;
        let device = self.shared.state.device;
        // A resumed epoch goes on after its batches done, with their running logs.
        let first = match self.within.take() {
            Some(within) => within.batch + 1,
            None => {
                logs.reset();
                1
            }
        };
        for batch in first..=self.batches {
            self.shared.state.batch = batch;
            let step = self.shared.state.global_step + 1;
            if self.resume.is_some() {
                // Dropout after a resume point within the epoch draws alike.
                self.reseed(epoch, batch);
            }
            // Timed only over the first batches of the fit, to find slow hooks.
            let batch_started = (self.profiled.1 < PROFILED_BATCHES).then(Instant::now);
            self.fire(Event::BatchBegin, batch, step, None)?;
            if self.dispatch.stopped() {
                break;
            }
            let start = (batch - 1) * self.batch_size;
            let (x, y) = train.batch(
                &order,
                start,
                self.batch_size.min(train.len() - start),
                device,
                self.loss,
            )?;
            let at = || format!("batch {batch} of epoch {epoch}");
            let outputs = forward(self.model, &x, true, &at)?;
            let loss = compute_loss(self.loss, &outputs, &y, &at)?;
            // Accumulation windows of `k` batches: zero the gradients at a window's start, step
            // at its end (or at the epoch's last batch).
            let window_start = (batch - 1) % self.accumulate == 0;
            let window_end = batch % self.accumulate == 0 || batch == self.batches;
            if window_start {
                self.optimizer.zero_grad()?;
            }
            self.fire(Event::BeforeBackward, batch, step, None)?;
            let backward = if self.accumulate > 1 {
                loss.f_div_scalar(self.accumulate as f64)
                    .and_then(|scaled| scaled.f_backward())
            } else {
                loss.f_backward()
            };
            backward.map_err(|e| Error::torch(format!("the backward pass failed on {}", at()), e))?;
            self.fire(Event::AfterBackward, batch, step, None)?;
            if window_end {
                if let Some(clip) = self.clip {
                    clip_gradients(self.shared.vs, clip).map_err(|e| Error::torch("clipping the gradients", e))?;
                }
                self.fire(Event::BeforeOptimizerStep, batch, step, None)?;
                self.optimizer.step()?;
                self.shared.state.global_step = step;
            }
            logs.update(&loss, &outputs, &y)?;
            self.fire(Event::BatchEnd, batch, step, Some(logs))?;
            if let Some(batch_started) = batch_started {
                self.profiled = (self.profiled.0 + batch_started.elapsed(), self.profiled.1 + 1);
                if self.profiled.1 == PROFILED_BATCHES {
                    self.report_slow_hooks();
                }
            }
            if self.dispatch.stopped() {
                break;
            }
            let steps = self.resume_steps;
            if let Some(dir) = self.resume {
                if steps > 0 && window_end && batch < self.batches && self.shared.state.global_step % steps == 0 {
                    let within = resume::Within {
                        batch,
                        epoch_rng_word_pos: epoch_rng.to_string(),
                        epoch_elapsed: started.elapsed(),
                        logs: Default::default(),
                    };
                    self.save_resume_point(dir, Some((within, logs.state())))?;
                }
            }
        }
        Ok(())
    }

    /// The validation pass of one epoch: eval mode, no gradients, batches in order.
    fn validate(&mut self, valid: &Source<'_>, epoch: usize, logs: &mut BatchLogs) -> Result<()> {
        self.fire(Event::ValidationBegin, epoch, epoch as u64, None)?;
        let _no_grad = tch::no_grad_guard();
        let order = valid.begin_epoch(None)?;
        let device = self.shared.state.device;
        logs.reset();
        for batch in 1..=valid.len().div_ceil(self.batch_size) {
            let start = (batch - 1) * self.batch_size;
            let (x, y) = valid.batch(
                &order,
                start,
                self.batch_size.min(valid.len() - start),
                device,
                self.loss,
            )?;
            let at = || format!("validation batch {batch} of epoch {epoch}");
            let outputs = forward(self.model, &x, false, &at)?;
            let loss = compute_loss(self.loss, &outputs, &y, &at)?;
            logs.update(&loss, &outputs, &y)?;
            self.fire(Event::ValidationBatchEnd, batch, batch as u64, Some(logs))?;
        }
        Ok(())
    }
}

/// The model's forward pass; a libtorch failure (tch panics) becomes an error with the shapes.
fn forward(model: &dyn ModuleT, x: &Tensor, train: bool, at: &dyn Fn() -> String) -> Result<Tensor> {
    guard::quietly(|| model.forward_t(x, train)).map_err(|panic| {
        Error::torch_panic(
            format!(
                "the model's forward pass failed on {} (features of shape {:?}, {:?})",
                at(),
                x.size(),
                x.kind()
            ),
            &panic,
        )
    })
}

fn compute_loss(loss: &Loss, outputs: &Tensor, y: &Tensor, at: &dyn Fn() -> String) -> Result<Tensor> {
    loss.compute(outputs, y).map_err(|e| {
        Error::torch(
            format!(
                "the {loss} failed on {} (model output of shape {:?}, targets of shape {:?}; {})",
                at(),
                outputs.size(),
                y.size(),
                loss.expects()
            ),
            e,
        )
    })
}

/// Clips the gradients on the device: no value is read to the host.
fn clip_gradients(vs: &VarStore, clip: Clip) -> std::result::Result<(), tch::TchError> {
    let _no_grad = tch::no_grad_guard();
    let grads: Vec<Tensor> = vs
        .trainable_variables()
        .iter()
        .map(|v| v.grad())
        .filter(|g| g.defined())
        .collect();
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
