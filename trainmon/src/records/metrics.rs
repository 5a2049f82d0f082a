//! Metrics: running values within an epoch, and the trait for metrics of your own.
//!
//! The loss and the metrics accumulate batch after batch. Where they accumulate depends on the
//! device: on the CPU each batch's values are read at once (a read costs nothing there), on CUDA
//! they are summed on the device and read to the host only when a hook asks for them — so a
//! logger with `every = 10` costs one host synchronisation every 10 batches, not one every batch.
//! [`crate::Trainer::lazy_reads`] overrides the choice.

use crate::error::{Error, Result};
use std::cell::Cell;
use tch::{Kind, TchError, Tensor};

/// A metric of your own, computed over the batches of an epoch (and, separately, of each
/// validation run, under the name `val_<name>`). The loop calls `update` after every batch
/// (without gradients), `compute` when a hook or the history asks for the value, and `reset` at
/// the start of every epoch and validation run.
///
/// ```
/// use tch::{Kind, TchError, Tensor};
/// use trainmon::Metric;
///
/// /// Mean absolute error, summed on the device.
/// #[derive(Default)]
/// struct MeanAbsoluteError {
///     sum: Option<Tensor>,
///     count: i64,
/// }
///
/// impl Metric for MeanAbsoluteError {
///     fn name(&self) -> &str {
///         "mae"
///     }
///     fn update(&mut self, outputs: &Tensor, targets: &Tensor) -> Result<(), TchError> {
///         let batch = (outputs - targets).f_abs()?.f_sum(Kind::Double)?;
///         self.sum = Some(match self.sum.take() {
///             Some(sum) => sum + batch,
///             None => batch,
///         });
///         self.count += outputs.numel() as i64;
///         Ok(())
///     }
///     fn compute(&self) -> Result<f64, TchError> {
///         match &self.sum {
///             Some(sum) => Ok(sum.f_double_value(&[])? / self.count as f64),
///             None => Ok(f64::NAN),
///         }
///     }
///     fn reset(&mut self) {
///         *self = Self::default();
///     }
/// }
///
/// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// # let model = tch::nn::linear(vs.root(), 3, 1, Default::default());
/// let trainer = trainmon::Trainer::new(&vs, &model)
///     .loss(trainmon::Loss::Mse)
///     .metric(MeanAbsoluteError::default); // `mae` and `val_mae`
/// # let _ = trainer;
/// ```
pub trait Metric: Send {
    /// The name hooks and the history know it by (`get("mae")`, `get("val_mae")`).
    fn name(&self) -> &str;
    /// Adds a batch: the model's outputs and the batch's targets, on the training device.
    fn update(&mut self, outputs: &Tensor, targets: &Tensor) -> Result<(), TchError>;
    /// The value over the batches since the last reset. May read from the device.
    fn compute(&self) -> Result<f64, TchError>;
    /// Forgets every batch.
    fn reset(&mut self);

    /// Told when a fit starts whether its values stay on the device until read (`true`: the
    /// default on CUDA, [`crate::Trainer::lazy_reads`]) or are read at every batch (the CPU's):
    /// a metric keeping a running sum can keep it where the fit's reads are cheapest, as
    /// [`Accuracy`] does. The default ignores it.
    fn lazy_reads(&mut self, lazy: bool) {
        let _ = lazy;
    }

    /// Its running state, for a resume point taken within an epoch
    /// ([`crate::Trainer::resumable_steps`]); `None` (the default) when it keeps none: a fit
    /// resumed within an epoch then computes it over the batches after the resume point only,
    /// and says so.
    fn state(&self) -> Result<Option<crate::records::saved::HookState>, crate::BoxError> {
        Ok(None)
    }

    /// Takes back a state [`Metric::state`] returned.
    fn restore(&mut self, state: crate::records::saved::HookState) -> Result<(), crate::BoxError> {
        let _ = state;
        Ok(())
    }
}

thread_local! {
    /// Reads of values kept on the device, on this thread: the loop attributes them to the hook
    /// it is calling (see [`crate::records::history::HookCost::device_reads`]).
    static DEVICE_READS: Cell<u64> = const { Cell::new(0) };
}

/// Reads of values kept on the device so far on this thread.
pub(crate) fn device_reads() -> u64 {
    DEVICE_READS.get()
}

/// Counts a read of a value kept on the device made elsewhere (the gradient scaler's scale).
pub(crate) fn count_device_read() {
    DEVICE_READS.set(DEVICE_READS.get() + 1);
}

/// A running sum of scalar tensors: on the host (read at every add) or on the device (read when
/// asked).
#[derive(Debug)]
pub(crate) enum Sum {
    Host(f64),
    Device(Option<Tensor>),
}

impl Sum {
    pub(crate) fn new(lazy: bool) -> Self {
        if lazy {
            Sum::Device(None)
        } else {
            Sum::Host(0.0)
        }
    }

    /// Adds a scalar tensor (without gradients: callers run under `no_grad`).
    pub(crate) fn add(&mut self, value: &Tensor) -> Result<(), TchError> {
        match self {
            Sum::Host(sum) => *sum += value.f_double_value(&[])?,
            // A copy: the first value must not alias a tensor someone else holds.
            Sum::Device(None) => *self = Sum::Device(Some(value.f_to_dtype(Kind::Double, false, true)?)),
            Sum::Device(Some(sum)) => {
                if sum.device() != value.device() {
                    // A sum restored from a resume point starts on the host.
                    *sum = sum.f_to_device(value.device())?;
                }
                let _ = sum.f_add_(value)?;
            }
        }
        Ok(())
    }

    pub(crate) fn value(&self) -> Result<f64, TchError> {
        match self {
            Sum::Host(sum) => Ok(*sum),
            Sum::Device(None) => Ok(0.0),
            Sum::Device(Some(sum)) => {
                DEVICE_READS.set(DEVICE_READS.get() + 1);
                sum.f_double_value(&[])
            }
        }
    }

    fn reset(&mut self) {
        *self = Sum::new(matches!(self, Sum::Device(_)));
    }

    /// Sets the sum to `value` (restoring a saved one), where it is kept.
    fn set(&mut self, value: f64) {
        *self = match self {
            Sum::Host(_) => Sum::Host(value),
            Sum::Device(_) if value == 0.0 => Sum::Device(None),
            Sum::Device(_) => Sum::Device(Some(Tensor::from(value))),
        }
    }
}

/// A running sum and count, as a resume point keeps them.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedSum {
    #[serde(with = "crate::records::history::float")]
    sum: f64,
    count: i64,
}

/// Share of samples whose arg-max output is their class label (labels are class indices).
#[derive(Debug)]
pub struct Accuracy {
    correct: Sum,
    samples: i64,
}

impl Accuracy {
    /// An accuracy summed on the device (read when computed) — or, in a fit that reads its
    /// values at every batch (the CPU's default), on the host ([`Metric::lazy_reads`]).
    pub fn new() -> Self {
        Accuracy::with_reads(true)
    }

    pub(crate) fn with_reads(lazy: bool) -> Self {
        Accuracy {
            correct: Sum::new(lazy),
            samples: 0,
        }
    }
}

impl Default for Accuracy {
    fn default() -> Self {
        Accuracy::new()
    }
}

impl Metric for Accuracy {
    fn name(&self) -> &str {
        "accuracy"
    }

    fn update(&mut self, outputs: &Tensor, targets: &Tensor) -> Result<(), TchError> {
        let right = outputs.f_argmax(-1, false)?.f_eq_tensor(targets)?.f_sum(Kind::Int64)?;
        self.correct.add(&right)?;
        self.samples += targets.size().first().copied().unwrap_or(0);
        Ok(())
    }

    fn compute(&self) -> Result<f64, TchError> {
        if self.samples == 0 {
            return Ok(f64::NAN);
        }
        Ok(self.correct.value()? / self.samples as f64)
    }

    fn reset(&mut self) {
        self.correct.reset();
        self.samples = 0;
    }

    fn lazy_reads(&mut self, lazy: bool) {
        if self.samples == 0 {
            self.correct = Sum::new(lazy);
        }
    }

    fn state(&self) -> Result<Option<crate::records::saved::HookState>, crate::BoxError> {
        let saved = SavedSum {
            sum: self.correct.value()?,
            count: self.samples,
        };
        Ok(Some(crate::records::saved::HookState::new(saved)?))
    }

    fn restore(&mut self, state: crate::records::saved::HookState) -> Result<(), crate::BoxError> {
        let saved: SavedSum = state.value()?;
        self.correct.set(saved.sum);
        self.samples = saved.count;
        Ok(())
    }
}

/// The counters and loss sum of [`BatchLogs`] within an epoch, as a resume point keeps them.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct SavedLogs {
    number: usize,
    size: usize,
    samples: usize,
    #[serde(with = "crate::records::history::float")]
    loss: f64,
}

/// The whole running state of [`BatchLogs`]: counters and each metric's, by name.
pub(crate) struct LogsState {
    pub(crate) counters: SavedLogs,
    pub(crate) metrics: Vec<(String, Option<crate::records::saved::HookState>)>,
}

/// The running logs of an epoch (or a validation run) after its latest batch, as
/// `on_batch_end` and `on_validation_batch_end` hooks see them. Values are computed when asked
/// (and kept until the next batch): the running loss is the mean of the batch losses so far,
/// the running accuracy the share of samples so far classified right, as in the tutorial.
pub struct BatchLogs {
    /// Whether updates need `no_grad`: device sums and metrics of your own must not record
    /// autograd history (the built-in eager reads do not).
    needs_no_grad: bool,
    number: usize,
    size: usize,
    samples: usize,
    loss: Sum,
    metrics: Vec<Box<dyn Metric>>,
    /// Values computed since the latest batch: the loss, then each metric.
    cache: Vec<Cell<Option<f64>>>,
}

impl BatchLogs {
    /// Running logs over `metrics`; `own_metrics` says whether some are the user's (whose
    /// updates then run without gradients).
    pub(crate) fn new(lazy: bool, metrics: Vec<Box<dyn Metric>>, own_metrics: bool) -> Self {
        let cache = (0..=metrics.len()).map(|_| Cell::new(None)).collect();
        BatchLogs {
            needs_no_grad: lazy || own_metrics,
            number: 0,
            size: 0,
            samples: 0,
            loss: Sum::new(lazy),
            metrics,
            cache,
        }
    }

    /// Starts a new epoch or validation run.
    pub(crate) fn reset(&mut self) {
        self.number = 0;
        self.size = 0;
        self.samples = 0;
        self.loss.reset();
        self.metrics.iter_mut().for_each(|m| m.reset());
        self.cache.iter().for_each(|c| c.set(None));
    }

    /// The running state within an epoch, for a resume point: the counters, the loss sum and
    /// each metric's state by `index:name` (`None` for a metric that keeps none, or whose state
    /// cannot be taken: that is warned about, and it is as if it kept none).
    pub(crate) fn state(&self) -> LogsState {
        let metrics = self
            .metrics
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let state = match crate::panics::caught(|| m.state()) {
                    Ok(Ok(state)) => state,
                    Ok(Err(e)) => {
                        tracing::warn!("the running state of metric `{}` cannot be saved: {e}", m.name());
                        None
                    }
                    Err(panic) => {
                        tracing::warn!("the metric `{}` panicked saving its state: {panic}", m.name());
                        None
                    }
                };
                (format!("{i}:{}", m.name()), state)
            })
            .collect();
        let loss = self.loss.value().unwrap_or_else(|e| {
            tracing::warn!("the running loss cannot be read for a resume point: {e}");
            f64::NAN
        });
        LogsState {
            counters: SavedLogs {
                number: self.number,
                size: self.size,
                samples: self.samples,
                loss,
            },
            metrics,
        }
    }

    /// Takes back a running state [`BatchLogs::state`] returned (after a reset). A metric
    /// without a saved state starts from nothing, with a warning.
    pub(crate) fn restore(&mut self, state: LogsState) -> Result<()> {
        let SavedLogs {
            number,
            size,
            samples,
            loss,
        } = state.counters;
        (self.number, self.size, self.samples) = (number, size, samples);
        self.loss.set(loss);
        let mut saved = state.metrics;
        for (i, metric) in self.metrics.iter_mut().enumerate() {
            let key = format!("{i}:{}", metric.name());
            let at = saved.iter().position(|(k, s)| *k == key && s.is_some());
            let restored = match at.and_then(|at| saved.swap_remove(at).1) {
                Some(s) => match crate::panics::caught(|| metric.restore(s)) {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(panic) => Err(format!("panicked: {panic}")),
                },
                None => Err("it keeps no state in resume points".into()),
            };
            if let Err(why) = restored {
                tracing::warn!(
                    "the metric `{}` starts this epoch over ({why}): its value covers only the batches after the \
                     resume",
                    metric.name()
                );
                metric.reset();
            }
        }
        self.cache.iter().for_each(|c| c.set(None));
        Ok(())
    }

    /// Adds a batch: its mean loss, and its outputs against the targets for the metrics.
    pub(crate) fn update(&mut self, loss: &Tensor, outputs: &Tensor, targets: &Tensor) -> Result<()> {
        let size = targets.size().first().copied().unwrap_or(0) as usize;
        self.update_sized(loss, Some((outputs, targets)), size)
    }

    /// [`Self::update`] with a batch of `size` samples (data-parallel: every rank's), and its
    /// outputs and targets if the step gave them (the metrics need them).
    pub(crate) fn update_sized(
        &mut self,
        loss: &Tensor,
        outputs: Option<(&Tensor, &Tensor)>,
        size: usize,
    ) -> Result<()> {
        let _no_grad = self.needs_no_grad.then(tch::no_grad_guard);
        let read = |err| Error::torch("accumulating the batch's loss and metrics", err);
        if let (None, Some(metric)) = (outputs, self.metrics.first()) {
            return Err(Error::config(
                "metric",
                format!(
                    "the metric `{}` compares outputs and targets, and the step returned none: return \
                 `StepOutput::loss(loss).with_outputs(outputs, targets)`",
                    metric.name()
                ),
            ));
        }
        self.loss.add(loss).map_err(read)?;
        if let Some((outputs, targets)) = outputs {
            for metric in &mut self.metrics {
                metric
                    .update(outputs, targets)
                    .map_err(|e| Error::torch(format!("updating the metric `{}`", metric.name()), e))?;
            }
        }
        self.number += 1;
        self.size = size;
        self.samples += self.size;
        self.cache.iter().for_each(|c| c.set(None));
        Ok(())
    }

    /// Whether some metric reads the outputs and targets (else the loss is all a batch adds).
    pub(crate) fn has_metrics(&self) -> bool {
        !self.metrics.is_empty()
    }

    /// The batch's 1-based number within its epoch (or validation run).
    pub fn number(&self) -> usize {
        self.number
    }

    /// Samples in this batch (the last batch of an epoch may be smaller). Data-parallel, the
    /// ranks' batches together: every rank's hooks see the global batch.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Samples so far in the epoch (or validation run); data-parallel, over every rank.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Mean of the batch losses so far in this epoch.
    pub fn loss(&self) -> f64 {
        self.cached(0, || Ok(self.loss.value()? / self.number as f64))
    }

    /// Share of the epoch's samples so far whose predicted class (arg max) was right; NaN when
    /// the trainer tracks no accuracy (a loss other than cross-entropy).
    pub fn accuracy(&self) -> f64 {
        self.get("accuracy").unwrap_or(f64::NAN)
    }

    /// A running value by name: `"loss"`, `"accuracy"`, or a metric of your own.
    pub fn get(&self, name: &str) -> Option<f64> {
        if name == "loss" {
            return Some(self.loss());
        }
        let i = self.metrics.iter().position(|m| m.name() == name)?;
        Some(self.cached(i + 1, || self.metrics[i].compute()))
    }

    /// The names of the running values: `"loss"`, then the metrics'.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        std::iter::once("loss").chain(self.metrics.iter().map(|m| m.name()))
    }

    /// Every running value, by name (reads them all).
    pub(crate) fn values(&self) -> Vec<(String, f64)> {
        self.names()
            .map(|name| (name.to_owned(), self.get(name).unwrap_or(f64::NAN)))
            .collect()
    }

    fn cached(&self, slot: usize, compute: impl FnOnce() -> Result<f64, TchError>) -> f64 {
        if let Some(value) = self.cache[slot].get() {
            return value;
        }
        let value = compute().unwrap_or_else(|err| {
            tracing::error!("could not read a running value to the host: {err}");
            f64::NAN
        });
        self.cache[slot].set(Some(value));
        value
    }
}

impl std::fmt::Debug for BatchLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("BatchLogs");
        s.field("number", &self.number).field("size", &self.size);
        for name in self.names() {
            s.field(name, &self.get(name));
        }
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(lazy: bool) -> Vec<(usize, usize, f64, f64)> {
        let mut logs = BatchLogs::new(lazy, vec![Box::new(Accuracy::with_reads(lazy))], false);
        let mut seen = Vec::new();
        // Batch 1: logits favour class 1 for both samples, labels 1 and 0 → 1 of 2 right.
        let out = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 1.0]).view([2, 2]);
        logs.update(&Tensor::from(0.5f32), &out, &Tensor::from_slice(&[1i64, 0]))
            .unwrap();
        seen.push((logs.number(), logs.size(), logs.loss(), logs.accuracy()));
        // Batch 2: one sample, right.
        let out = Tensor::from_slice(&[2.0f32, 0.0]).view([1, 2]);
        logs.update(&Tensor::from(1.5f32), &out, &Tensor::from_slice(&[0i64]))
            .unwrap();
        seen.push((logs.number(), logs.size(), logs.loss(), logs.accuracy()));
        assert_eq!(logs.samples(), 3);
        logs.reset();
        assert_eq!((logs.number(), logs.samples()), (0, 0), "reset");
        seen
    }

    #[test]
    fn running_values_follow_the_tutorial_read_eagerly_or_lazily() {
        let want = [(1, 2, 0.5, 0.5), (2, 1, 1.0, 2.0 / 3.0)];
        assert_eq!(
            batches(false),
            want,
            "eager: mean of batch losses, share of samples right"
        );
        assert_eq!(batches(true), want, "lazy: the same values");
    }

    #[test]
    fn values_by_name() {
        let mut logs = BatchLogs::new(false, vec![Box::new(Accuracy::with_reads(false))], false);
        let out = Tensor::from_slice(&[0.0f32, 1.0]).view([1, 2]);
        logs.update(&Tensor::from(2.0f32), &out, &Tensor::from_slice(&[1i64]))
            .unwrap();
        assert_eq!(logs.values(), [("loss".to_owned(), 2.0), ("accuracy".to_owned(), 1.0)]);
        assert_eq!(logs.get("nope"), None);
        let without = BatchLogs::new(false, Vec::new(), false);
        assert!(without.accuracy().is_nan(), "no accuracy tracked");
    }
}
