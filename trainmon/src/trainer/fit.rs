//! The training loop.

use super::dispatch::Dispatch;
use super::{guard, Optimizer, TrainState, Trainer};
use crate::data::TensorDataset;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::history::{EpochLogs, History};
use crate::hook::HookContext;
use crate::metrics::{BatchLogs, Running};
use crate::registry::registrations;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hash::{BuildHasher, RandomState};
use std::time::Instant;
use tch::{Reduction, Tensor};

impl Trainer<'_> {
    /// Trains for the configured epochs and returns the history.
    ///
    /// Every hook registered in the binary runs at its event, in the registry's order. Training
    /// stops early when a hook returns [`crate::Control::Stop`] (see its docs for where), and
    /// fails with an [`Error`] naming the cause when the setup, the data, the model or a hook
    /// cannot go on.
    pub fn fit(&mut self, data: &TensorDataset) -> Result<History> {
        let (optimizer, learning_rate) = match &mut self.optimizer {
            Optimizer::Ready(optimizer, lr) => (optimizer, *lr),
            Optimizer::Missing => {
                return Err(Error::Config(
                    "no optimizer: call `.optimizer(nn::Adam::default(), 1e-3)` (or another) before `fit`".into(),
                ))
            }
            Optimizer::Failed(err) => return Err(Error::Config(format!("the optimizer could not be built: {err}"))),
        };
        if self.batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1, got 0".into()));
        }
        let device = self.vs.device();
        let to_device = |t: &Tensor, what| {
            t.f_to_device(device)
                .map_err(|e| Error::torch(format!("moving the {what} to {device:?}"), e))
        };
        let features = to_device(data.features(), "features")?;
        let labels = to_device(data.labels(), "labels")?;
        let samples = data.len();
        let batch_size = self.batch_size;
        let batches = samples.div_ceil(batch_size);
        let seed = self.seed.unwrap_or_else(|| RandomState::new().hash_one(Instant::now()));
        if let Some(seed) = self.seed {
            tch::manual_seed(seed as i64);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);

        let registered = registrations();
        tracing::debug!(
            hooks = registered.len(),
            epochs = self.epochs,
            batches,
            ?device,
            "fit: {}",
            registered
                .iter()
                .map(|r| format!("{}@{}", r.name(), r.event()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut dispatch = Dispatch::new(&registered);
        let mut history = History::default();
        let mut state = TrainState {
            epoch: 0,
            epochs: self.epochs,
            batch: 0,
            batches,
            global_step: 0,
            started: Instant::now(),
            device,
            learning_rate,
        };
        macro_rules! fire {
            ($event:expr, $count:expr, batch: $batch:expr, epoch: $epoch:expr) => {
                dispatch.fire(
                    $count,
                    &HookContext {
                        event: $event,
                        state: &state,
                        batch: $batch,
                        epoch: $epoch,
                        history: &history,
                    },
                )?
            };
        }

        fire!(Event::TrainBegin, 1, batch: None, epoch: None);
        'epochs: for epoch in 1..=self.epochs {
            if dispatch.stopped() {
                break;
            }
            state.epoch = epoch;
            state.batch = 0;
            let started = Instant::now();
            fire!(Event::EpochBegin, epoch, batch: None, epoch: None);
            if dispatch.stopped() {
                break;
            }
            let (xs, ys) = if self.shuffle {
                let mut order: Vec<i64> = (0..samples as i64).collect();
                order.shuffle(&mut rng);
                let order = Tensor::from_slice(&order).to_device(device);
                let pick = |t: &Tensor| {
                    t.f_index_select(0, &order)
                        .map_err(|e| Error::torch("shuffling the dataset", e))
                };
                (pick(&features)?, pick(&labels)?)
            } else {
                (features.shallow_clone(), labels.shallow_clone())
            };
            let mut running = Running::default();
            for batch in 1..=batches {
                state.batch = batch;
                fire!(Event::BatchBegin, batch, batch: None, epoch: None);
                if dispatch.stopped() {
                    break;
                }
                let start = (batch - 1) * batch_size;
                let len = batch_size.min(samples - start);
                let slice = |t: &Tensor| {
                    t.f_narrow(0, start as i64, len as i64)
                        .map_err(|e| Error::torch("batching", e))
                };
                let (x, y) = (slice(&xs)?, slice(&ys)?);
                let logs = step(self.model, optimizer, &mut running, &x, &y, epoch, batch)?;
                state.global_step += 1;
                fire!(Event::BatchEnd, batch, batch: Some(&logs), epoch: None);
                if dispatch.stopped() {
                    break;
                }
            }
            if running.batches() == 0 {
                break 'epochs;
            }
            history.epochs.push(EpochLogs {
                epoch,
                loss: running.loss(),
                accuracy: running.accuracy(),
                time: started.elapsed(),
                batches: running.batches(),
                samples: running.samples(),
            });
            history.elapsed = state.started.elapsed();
            state.batch = 0;
            fire!(Event::EpochEnd, epoch, batch: None, epoch: history.epochs.last());
        }
        history.stop = dispatch.take_stop();
        if let Some(stop) = &history.stop {
            tracing::debug!("training stopped: {stop}");
        }
        history.elapsed = state.started.elapsed();
        state.batch = 0;
        fire!(Event::TrainEnd, 1, batch: None, epoch: None);
        history.elapsed = state.started.elapsed();
        Ok(history)
    }
}

/// One optimizer step on a batch; returns the epoch's running logs after it.
fn step(
    model: &dyn tch::nn::ModuleT,
    optimizer: &mut tch::nn::Optimizer,
    running: &mut Running,
    x: &Tensor,
    y: &Tensor,
    epoch: usize,
    batch: usize,
) -> Result<BatchLogs> {
    let at = || format!("batch {batch} of epoch {epoch}");
    let outputs = guard::quietly(|| model.forward_t(x, true)).map_err(|panic| {
        Error::torch_panic(
            format!(
                "the model's forward pass failed on {} (features of shape {:?}, {:?})",
                at(),
                x.size(),
                x.kind()
            ),
            &panic,
        )
    })?;
    let loss = outputs
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
        })?;
    optimizer.zero_grad();
    loss.f_backward()
        .map_err(|e| Error::torch(format!("the backward pass failed on {}", at()), e))?;
    optimizer.step();
    running.update(&loss, &outputs, y)
}
