//! The training loop.

use super::dispatch::Dispatch;
use super::{guard, Optimizer, TrainState, Trainer};
use crate::data::TensorDataset;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::history::{EpochLogs, History};
use crate::hook::{Hook, HookContext};
use crate::metrics::{BatchLogs, Running};
use crate::registry::{registrations, HookInfo};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::time::Instant;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Reduction, Tensor};

/// The data of a fit, on the training device.
struct Data {
    features: Tensor,
    labels: Tensor,
    samples: usize,
}

impl Data {
    fn on(data: &TensorDataset, device: Device, what: &str) -> Result<Self> {
        let move_ = |t: &Tensor, part: &str| {
            t.f_to_device(device)
                .map_err(|e| Error::torch(format!("moving the {what} {part} to {device:?}"), e))
        };
        Ok(Data {
            features: move_(data.features(), "features")?,
            labels: move_(data.labels(), "labels")?,
            samples: data.len(),
        })
    }

    fn batches(&self, batch_size: usize) -> usize {
        self.samples.div_ceil(batch_size)
    }

    /// Batch `batch` (1-based) of `xs`, `ys`.
    fn batch(&self, xs: &Tensor, ys: &Tensor, batch: usize, batch_size: usize) -> Result<(Tensor, Tensor)> {
        let start = (batch - 1) * batch_size;
        let len = batch_size.min(self.samples - start);
        let slice = |t: &Tensor| {
            t.f_narrow(0, start as i64, len as i64)
                .map_err(|e| Error::torch("batching", e))
        };
        Ok((slice(xs)?, slice(ys)?))
    }
}

/// What hooks see, beside the hooks themselves.
struct Shared<'t> {
    state: TrainState,
    history: History,
    vs: &'t VarStore,
    learning_rate: Cell<f64>,
}

impl Trainer<'_> {
    /// Trains for the configured epochs and returns the history.
    ///
    /// The selected registered hooks (all, by default) and the hooks added at run time run at
    /// their events, in the documented order. Training stops early when a hook returns
    /// [`crate::Control::Stop`] (see its docs for where). It fails with an [`Error`] naming the
    /// cause when the setup, the data, the model or a hook cannot go on; the `on_exception`
    /// hooks run first.
    pub fn fit(&mut self, data: &TensorDataset) -> Result<History> {
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
        if *batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1, got 0".into()));
        }
        let device = vs.device();
        let train = Data::on(data, device, "training")?;
        let valid = validation.map(|v| Data::on(v, device, "validation")).transpose()?;
        if let Some(seed) = *seed {
            tch::manual_seed(seed as i64);
        }
        let seed = seed.unwrap_or_else(|| RandomState::new().hash_one(Instant::now()));

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
            .map(|(info, hook)| ((*info).clone(), &mut **hook as &mut dyn Hook));
        let added = added
            .iter_mut()
            .map(|(spec, hook)| (spec.0.clone(), &mut **hook as &mut dyn Hook));
        let mut dispatch = Dispatch::new(hooks.chain(added))?;
        tracing::debug!(
            epochs = *epochs,
            batches = train.batches(*batch_size),
            ?device,
            "fit starts"
        );

        let mut shared = Shared {
            state: TrainState {
                epoch: 0,
                epochs: *epochs,
                batch: 0,
                batches: train.batches(*batch_size),
                global_step: 0,
                started: Instant::now(),
                device,
                learning_rate,
            },
            history: History::default(),
            vs,
            learning_rate: Cell::new(learning_rate),
        };
        let mut loop_ = Loop {
            model: *model,
            optimizer,
            dispatch: &mut dispatch,
            shared: &mut shared,
            batch_size: *batch_size,
            shuffle: *shuffle,
            rng: ChaCha8Rng::seed_from_u64(seed),
        };
        match loop_.run(&train, valid.as_ref()) {
            Ok(()) => Ok(shared.history),
            Err(err) => {
                let ctx = shared.context(Event::Exception, None, None, Some(&err));
                dispatch.fire_exception(&ctx);
                Err(err)
            }
        }
    }
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
        }
    }
}

struct Loop<'a, 'h, 't> {
    model: &'a dyn ModuleT,
    optimizer: &'a mut tch::nn::Optimizer,
    dispatch: &'a mut Dispatch<'h>,
    shared: &'a mut Shared<'t>,
    batch_size: usize,
    shuffle: bool,
    rng: ChaCha8Rng,
}

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
            self.optimizer.set_lr(wanted);
            self.shared.state.learning_rate = wanted;
        }
        Ok(())
    }

    fn run(&mut self, train: &Data, valid: Option<&Data>) -> Result<()> {
        self.fire(Event::TrainBegin, 1, 0, None)?;
        for epoch in 1..=self.shared.state.epochs {
            if self.dispatch.stopped() {
                break;
            }
            self.shared.state.epoch = epoch;
            self.shared.state.batch = 0;
            let started = Instant::now();
            self.fire(Event::EpochBegin, epoch, epoch as u64, None)?;
            if self.dispatch.stopped() {
                break;
            }
            let running = self.train_epoch(train)?;
            if running.batches() == 0 {
                break;
            }
            let (val_loss, val_accuracy) = match valid {
                Some(valid) => {
                    let running = self.validate(valid, epoch)?;
                    (Some(running.loss()), Some(running.accuracy()))
                }
                None => (None, None),
            };
            self.shared.history.epochs.push(EpochLogs {
                epoch,
                loss: running.loss(),
                accuracy: running.accuracy(),
                time: started.elapsed(),
                batches: running.batches(),
                samples: running.samples(),
                val_loss,
                val_accuracy,
            });
            self.shared.history.elapsed = self.shared.state.started.elapsed();
            self.shared.state.batch = 0;
            if valid.is_some() {
                self.fire(Event::ValidationEnd, epoch, epoch as u64, None)?;
            }
            self.fire(Event::EpochEnd, epoch, epoch as u64, None)?;
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

    /// The training batches of one epoch, until its end or a stop.
    fn train_epoch(&mut self, train: &Data) -> Result<Running> {
        let (xs, ys) = if self.shuffle {
            let mut order: Vec<i64> = (0..train.samples as i64).collect();
            order.shuffle(&mut self.rng);
            let order = Tensor::from_slice(&order).to_device(train.features.device());
            let pick = |t: &Tensor| {
                t.f_index_select(0, &order)
                    .map_err(|e| Error::torch("shuffling the dataset", e))
            };
            (pick(&train.features)?, pick(&train.labels)?)
        } else {
            (train.features.shallow_clone(), train.labels.shallow_clone())
        };
        let epoch = self.shared.state.epoch;
        let mut running = Running::default();
        for batch in 1..=train.batches(self.batch_size) {
            self.shared.state.batch = batch;
            let step = self.shared.state.global_step + 1;
            self.fire(Event::BatchBegin, batch, step, None)?;
            if self.dispatch.stopped() {
                break;
            }
            let (x, y) = train.batch(&xs, &ys, batch, self.batch_size)?;
            let at = || format!("batch {batch} of epoch {epoch}");
            let outputs = forward(self.model, &x, true, &at)?;
            let loss = cross_entropy(&outputs, &y, &at)?;
            self.optimizer.zero_grad();
            self.fire(Event::BeforeBackward, batch, step, None)?;
            loss.f_backward()
                .map_err(|e| Error::torch(format!("the backward pass failed on {}", at()), e))?;
            self.fire(Event::AfterBackward, batch, step, None)?;
            self.fire(Event::BeforeOptimizerStep, batch, step, None)?;
            self.optimizer.step();
            self.shared.state.global_step = step;
            let logs = running.update(&loss, &outputs, &y)?;
            self.fire(Event::BatchEnd, batch, step, Some(&logs))?;
            if self.dispatch.stopped() {
                break;
            }
        }
        Ok(running)
    }

    /// The validation pass of one epoch: eval mode, no gradients, batches in order.
    fn validate(&mut self, valid: &Data, epoch: usize) -> Result<Running> {
        self.fire(Event::ValidationBegin, epoch, epoch as u64, None)?;
        let _no_grad = tch::no_grad_guard();
        let mut running = Running::default();
        for batch in 1..=valid.batches(self.batch_size) {
            let (x, y) = valid.batch(&valid.features, &valid.labels, batch, self.batch_size)?;
            let at = || format!("validation batch {batch} of epoch {epoch}");
            let outputs = forward(self.model, &x, false, &at)?;
            let loss = cross_entropy(&outputs, &y, &at)?;
            let logs = running.update(&loss, &outputs, &y)?;
            self.fire(Event::ValidationBatchEnd, batch, batch as u64, Some(&logs))?;
        }
        Ok(running)
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

fn cross_entropy(outputs: &Tensor, y: &Tensor, at: &dyn Fn() -> String) -> Result<Tensor> {
    outputs
        .f_cross_entropy_loss::<Tensor>(y, None, Reduction::Mean, -100, 0.0)
        .map_err(|e| {
            Error::torch(
                format!(
                    "the cross-entropy loss failed on {} (model output of shape {:?}, labels of shape {:?}; \
                 the output must be [batch, classes] and every label below `classes`)",
                    at(),
                    outputs.size(),
                    y.size()
                ),
                e,
            )
        })
}
