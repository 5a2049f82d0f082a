//! What a hook sees when it runs: the [`HookContext`] its parameters are taken from, and the
//! [`LearningRate`] it may change.

use crate::error::Error;
use crate::records::history::{EpochLogs, Histogram, History, Logged, LoggedValue};
use crate::records::metrics::BatchLogs;
use crate::resource::Resources;
use crate::schedule::event::Event;
use crate::state::{Settings, TrainState};
use std::cell::{Cell, RefCell};
use tch::nn::VarStore;

/// Everything a hook may read at the moment it runs; its parameters are taken from here.
#[derive(Clone, Copy)]
pub struct HookContext<'a> {
    pub(crate) event: Event,
    pub(crate) state: &'a TrainState,
    pub(crate) settings: &'a Settings,
    pub(crate) batch: Option<&'a BatchLogs>,
    pub(crate) epoch: Option<&'a EpochLogs>,
    pub(crate) history: &'a History,
    pub(crate) vs: &'a VarStore,
    pub(crate) learning_rate: &'a Cell<f64>,
    pub(crate) error: Option<&'a Error>,
    pub(crate) resources: &'a Resources,
    /// What hooks log at this event, until the loop moves it into the history.
    pub(crate) logged: &'a RefCell<Vec<Logged>>,
    /// The gradient scaler's scale, on the device, when the fit scales.
    pub(crate) grad_scale: Option<&'a tch::Tensor>,
    /// The batch being trained or validated, and its type's name (from the batch's forward pass
    /// to its `on_batch_end`).
    pub(crate) step_batch: Option<(&'a dyn std::any::Any, &'static str)>,
}

impl<'a> HookContext<'a> {
    /// The event being run.
    pub fn event(&self) -> Event {
        self.event
    }

    /// Where training is: epoch, batch, global step, elapsed time, device.
    pub fn state(&self) -> &'a TrainState {
        self.state
    }

    /// How the trainer was set up for this fit: batch size, optimizer, loss, seed, clipping…
    /// (what an experiment tracker records as the run's parameters).
    ///
    /// ```
    /// use trainmon::{Event, HookContext, HookSpec, TensorDataset, Trainer};
    /// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    /// # let model = tch::nn::linear(vs.root(), 20, 2, Default::default());
    /// # let data = TensorDataset::new(
    /// #     tch::Tensor::randn([64, 20], tch::kind::FLOAT_CPU),
    /// #     tch::Tensor::zeros([64], tch::kind::INT64_CPU),
    /// # ).unwrap();
    /// Trainer::new(&vs, &model)
    ///     .optimizer(tch::nn::Sgd::default(), 0.1)
    ///     .batch_size(16)
    ///     .validation_split(0.25)
    ///     .add_hook(HookSpec::new(Event::TrainBegin, "settings"), |ctx: &HookContext| {
    ///         let s = ctx.settings();
    ///         assert_eq!((s.batch_size(), s.batches_per_epoch(), s.learning_rate()), (16, 3, 0.1));
    ///         assert_eq!((s.samples(), s.validation_samples(), s.validation_split()), (48, 16, Some(0.25)));
    ///         assert!(s.optimizer().starts_with("Sgd"));
    ///     })
    ///     .fit(&data)?;
    /// # Ok::<(), trainmon::Error>(())
    /// ```
    pub fn settings(&self) -> &'a Settings {
        self.settings
    }

    /// The running logs of the batch just trained or validated (`on_batch_end`,
    /// `on_validation_batch_end`).
    pub fn batch(&self) -> Option<&'a BatchLogs> {
        self.batch
    }

    /// The batch being trained or validated, as its type `B` — the `(features, targets)` of a
    /// [`crate::Dataset`] as `(Tensor, Tensor)`, a [`crate::BatchDataset`]'s own batch —, on the
    /// training device: from its forward pass to `on_batch_end` (and at
    /// `on_validation_batch_end`). `None` elsewhere or for another type.
    pub fn step_batch<B: 'static>(&self) -> Option<&'a B> {
        self.step_batch.and_then(|(batch, _)| batch.downcast_ref::<B>())
    }

    /// The epoch's logs (`on_validation_end`, `on_epoch_end`).
    pub fn epoch(&self) -> Option<&'a EpochLogs> {
        self.epoch
    }

    /// Every finished epoch so far (from `on_validation_end` on, the current one included).
    pub fn history(&self) -> &'a History {
        self.history
    }

    /// The model's variables (read them, save them; their gradients after the backward pass).
    pub fn var_store(&self) -> &'a VarStore {
        self.vs
    }

    /// The optimizer's learning rate, to read or change.
    pub fn learning_rate(&self) -> LearningRate<'a> {
        LearningRate(self.learning_rate)
    }

    /// The error that ended training (`on_exception` only).
    pub fn error(&self) -> Option<&'a Error> {
        self.error
    }

    /// The gradient scaler's scale in force ([`crate::Trainer::grad_scaler`]): what the loss
    /// is multiplied by before the backward pass; `None` when the fit does not scale. Read from
    /// the device when asked (on CUDA, a synchronisation). In `on_after_backward` at a window's
    /// last batch and later, the gradients are unscaled already; at a window's earlier batches
    /// they are still multiplied by it. After a step the scaler skipped, it is the backed-off one.
    pub fn grad_scale(&self) -> Option<f64> {
        self.grad_scale.map(|scale| {
            crate::records::metrics::count_device_read();
            scale.double_value(&[])
        })
    }

    /// The value of type `T` the trainer was given with [`crate::Trainer::resource`].
    pub fn resource<T: 'static>(&self) -> Option<&'a T> {
        self.resources.get::<T>()
    }

    /// Logs a number under `name` at the current step: it goes to the history
    /// ([`History::logged`]) and to the outputs that show logged values (TensorBoard, metric
    /// files). The step: in a training batch before its optimizer step (`on_batch_begin` to
    /// `on_before_optimizer_step`), the step the batch trains toward; elsewhere the last step
    /// taken.
    ///
    /// ```
    /// use trainmon::{Event, Filter, HookContext, HookSpec, TensorDataset, Trainer};
    /// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    /// # let model = tch::nn::linear(vs.root() / "fc1", 20, 2, Default::default());
    /// # let data = TensorDataset::new(
    /// #     tch::Tensor::randn([64, 20], tch::kind::FLOAT_CPU),
    /// #     tch::Tensor::zeros([64], tch::kind::INT64_CPU),
    /// # ).unwrap();
    /// let history = Trainer::new(&vs, &model)
    ///     .optimizer(tch::nn::Adam::default(), 1e-3)
    ///     .add_hook(
    ///         HookSpec::new(Event::BeforeOptimizerStep, "fc1_grad").filter(Filter::ALWAYS.every(2)),
    ///         |ctx: &HookContext| {
    ///             let grad = ctx.var_store().variables()["fc1.weight"].grad();
    ///             ctx.log("fc1_grad_max", grad.abs().max().double_value(&[]))
    ///         },
    ///     )
    ///     .fit(&data)?;
    /// assert_eq!(history.logged("fc1_grad_max").len(), 1, "batch 2 of 2");
    /// # Ok::<(), trainmon::Error>(())
    /// ```
    pub fn log(&self, name: impl Into<String>, value: f64) {
        self.logged.borrow_mut().push(Logged {
            step: self.step(),
            name: name.into(),
            value: LoggedValue::Scalar(value),
        });
    }

    /// The step a value logged now is logged at (see [`HookContext::log`]).
    fn step(&self) -> u64 {
        let before_the_step = matches!(
            self.event,
            Event::BatchBegin | Event::BeforeBackward | Event::AfterBackward | Event::BeforeOptimizerStep
        );
        self.state.global_step + u64::from(before_the_step)
    }

    /// Logs the histogram of `tensor`'s finite values (in 30 buckets) under `name` at the
    /// current step (as [`HookContext::log`]), for TensorBoard's histograms (two reads to the
    /// host); nothing when no value is finite.
    pub fn log_histogram(&self, name: impl Into<String>, tensor: &tch::Tensor) -> Result<(), tch::TchError> {
        if let Some(histogram) = Histogram::of(tensor, 30)? {
            self.logged.borrow_mut().push(Logged {
                step: self.step(),
                name: name.into(),
                value: LoggedValue::Histogram(histogram),
            });
        }
        Ok(())
    }
}

/// The optimizer's learning rate, to read or to change from a hook (a scheduler, a warm-up).
/// A new value applies from the next optimizer step on.
///
/// ```
/// use trainmon::prelude::*;
///
/// // Halve the learning rate every 10 epochs.
/// #[on_epoch_end(every = 10)]
/// fn step_decay(lr: LearningRate) {
///     lr.set(lr.get() * 0.5);
/// }
/// ```
#[derive(Clone, Copy)]
pub struct LearningRate<'a>(pub(crate) &'a Cell<f64>);

impl LearningRate<'_> {
    /// The learning rate in force.
    pub fn get(&self) -> f64 {
        self.0.get()
    }

    /// Sets the learning rate; it must be finite and not negative, or `fit` fails with an error.
    pub fn set(&self, learning_rate: f64) {
        self.0.set(learning_rate)
    }
}

impl std::fmt::Debug for LearningRate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// What hooks see of a run beside the hooks themselves — where training is, the finished
/// epochs, the learning rate hooks may change — making their contexts. The training loop, the
/// [`crate::testing::Harness`] and the dispatch benchmark each hold one.
pub(crate) struct Scene {
    pub(crate) state: TrainState,
    /// How the trainer was set up (the builder's defaults outside a fit).
    pub(crate) settings: Settings,
    pub(crate) history: History,
    /// The learning rate as hooks see and set it; the loop applies a change after each event.
    pub(crate) learning_rate: Cell<f64>,
    /// What hooks logged at the event under way; moved into the history after it.
    pub(crate) logged: RefCell<Vec<Logged>>,
    /// The gradient scaler's scale (shared with the scaler, which updates it in place).
    pub(crate) grad_scale: Option<tch::Tensor>,
}

impl Scene {
    pub(crate) fn new(state: TrainState) -> Self {
        Scene {
            learning_rate: Cell::new(state.learning_rate),
            state,
            settings: Settings::default(),
            history: History::default(),
            logged: RefCell::new(Vec::new()),
            grad_scale: None,
        }
    }

    /// Moves what hooks logged at the event just run into the history.
    #[inline]
    pub(crate) fn keep_logged(&mut self) {
        let logged = self.logged.get_mut();
        if !logged.is_empty() {
            self.history.logged.append(logged);
        }
    }

    /// The context of `event`, with the model's variables and the trainer's resources; the
    /// epoch's logs at epoch and validation ends.
    pub(crate) fn context<'c>(&'c self, event: Event, vs: &'c VarStore, resources: &'c Resources) -> HookContext<'c> {
        let epoch = match event {
            Event::ValidationEnd | Event::EpochEnd => self.history.epochs.last(),
            _ => None,
        };
        HookContext {
            event,
            state: &self.state,
            settings: &self.settings,
            batch: None,
            epoch,
            history: &self.history,
            vs,
            learning_rate: &self.learning_rate,
            error: None,
            resources,
            logged: &self.logged,
            grad_scale: self.grad_scale.as_ref(),
            step_batch: None,
        }
    }
}

impl<'a> HookContext<'a> {
    /// With the running logs of a batch (batch ends).
    pub(crate) fn with_batch(self, batch: &'a BatchLogs) -> Self {
        HookContext {
            batch: Some(batch),
            ..self
        }
    }

    /// With the batch being trained or validated.
    pub(crate) fn with_step_batch(self, batch: Option<(&'a dyn std::any::Any, &'static str)>) -> Self {
        HookContext {
            step_batch: batch,
            ..self
        }
    }

    /// With the error that ended training (`on_exception`).
    pub(crate) fn with_error(self, error: &'a Error) -> Self {
        HookContext {
            error: Some(error),
            ..self
        }
    }
}

/// The gradients the trainable variables of `vs` have (clipping, the gradient scaler).
pub(crate) fn defined_grads(vs: &VarStore) -> Vec<tch::Tensor> {
    vs.trainable_variables()
        .iter()
        .map(|v| v.grad())
        .filter(|g| g.defined())
        .collect()
}

/// The variables of `vs` by name, sorted: the same order in every process (resume points,
/// snapshots, optimizers, weight files).
pub(crate) fn variables_by_name(vs: &VarStore) -> Vec<(String, tch::Tensor)> {
    let mut variables: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    variables
}
