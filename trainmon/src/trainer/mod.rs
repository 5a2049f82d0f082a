//! The `Trainer`: a tch training loop that finds the registered hooks and calls them.

pub(crate) mod dispatch;
mod fit;
mod parallel;
mod rollback;

pub use rollback::Rollback;

use crate::data::Dataset;
use crate::hook::{Hook, IntoHook, Plugin};
use crate::precision::{GradScaler, Precision};
use crate::records::loss::Loss;
use crate::records::metrics::Metric;
use crate::registry::Hooks;
use crate::resource::Resources;
use crate::schedule::spec::HookSpec;
use std::path::PathBuf;
use tch::nn;

/// Trains a tch model on a dataset, calling every registered hook at its event.
///
/// ```no_run
/// use tch::nn::{self, OptimizerConfig};
/// use trainmon::{Trainer, TensorDataset};
///
/// # fn main() -> trainmon::Result<()> {
/// let vs = nn::VarStore::new(tch::Device::cuda_if_available());
/// let model = nn::linear(vs.root(), 20, 2, Default::default());
/// let data = TensorDataset::new(
///     tch::Tensor::randn([1000, 20], (tch::Kind::Float, tch::Device::Cpu)),
///     tch::Tensor::randint(2, [1000], (tch::Kind::Int64, tch::Device::Cpu)),
/// )?;
/// let history = Trainer::new(&vs, &model)
///     .optimizer(nn::Adam::default(), 1e-3)
///     .epochs(5)
///     .batch_size(32)
///     .fit(&data)?;
/// println!("final loss {:.4}", history.last().unwrap().loss());
/// # Ok(())
/// # }
/// ```
pub struct Trainer<'a> {
    vs: &'a nn::VarStore,
    /// The model of the trainer's own step (`fit`); none for a step of the user's only.
    model: Option<&'a dyn nn::ModuleT>,
    optimizer: OptimizerSetting,
    settings: TrainSetup,
    data: DataSetup<'a>,
    hooks: HookSetup,
    resources: Resources,
    /// The group this trainer trains with, data-parallel, if any.
    group: Option<&'a crate::dist::ProcessGroup>,
}

/// How to train: the plain settings of the builder.
#[derive(Clone, Debug)]
struct TrainSetup {
    epochs: usize,
    batch_size: usize,
    shuffle: bool,
    seed: Option<u64>,
    drop_last: bool,
    accumulate: usize,
    clip: Option<Clip>,
    lazy_reads: Option<bool>,
    nan_policy: NanPolicy,
    /// Where to keep the resume point, if the fit is resumable.
    resume: Option<PathBuf>,
    /// Also a resume point every this many optimizer steps, within epochs (0: none).
    resume_steps: u64,
    /// Rolling back over bad batches, if asked for.
    rollback: Option<Rollback>,
    /// The precision of the forward pass and the loss.
    precision: Precision,
    /// A gradient scaler set with `grad_scaler` (`Fp16Mixed` has one without).
    grad_scaler: Option<GradScaler>,
}

impl TrainSetup {
    /// The gradient scaler of the fit: the one given, or fp16's default.
    fn scaler(&self) -> Option<GradScaler> {
        match (self.grad_scaler, self.precision) {
            (Some(scaler), _) => Some(scaler),
            (None, Precision::Fp16Mixed) => Some(GradScaler::new()),
            (None, _) => None,
        }
    }
}

/// What is measured: the validation data, the loss, the metrics of your own.
struct DataSetup<'a> {
    validation: Validation<'a>,
    loss: Loss,
    metrics: Vec<MetricFactory>,
}

/// Which hooks run, besides the registered ones selected.
struct HookSetup {
    selection: Hooks,
    added: Vec<Added>,
    tolerated: Vec<String>,
    /// Hooks added that cannot run where their specs say (a parameter missing at an event):
    /// `fit` refuses to start with these.
    refused: Vec<String>,
}

/// A hook added at run time, and where it runs.
struct Added {
    specs: Vec<HookSpec>,
    hook: Box<dyn Hook>,
}

/// What `fit` does about NaN in a dataset's features (checked once, when `fit` starts, for
/// datasets that hold their samples as tensors; [`crate::hooks::TerminateOnNaN`] catches the
/// effect on the loss for any dataset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NanPolicy {
    /// Fail with an error naming how many samples and the first one.
    Error,
    /// Log a warning naming them, and train (the default).
    #[default]
    Warn,
    /// Do not look.
    Ignore,
}

/// Makes a fresh instance of a metric: one for training, one for validation, every fit.
type MetricFactory = Box<dyn Fn() -> Box<dyn Metric>>;

enum Validation<'a> {
    None,
    Data(&'a dyn Dataset),
    Split(f64),
}

#[derive(Clone, Copy, Debug)]
enum Clip {
    Norm(f64),
    Value(f64),
}

/// The optimizer the builder was given.
enum OptimizerSetting {
    Missing,
    Failed(String),
    Ready(Box<dyn crate::optim::Optimizer>, f64),
    /// Optimizers by name, each over a part of the model, and the first one's learning rate.
    Named(crate::optim::Named, f64),
}

impl<'a> Trainer<'a> {
    /// A trainer of `model`, whose variables live in `vs` (training runs on `vs.device()`).
    ///
    /// Defaults: 1 epoch, batches of 32, shuffled every epoch with a random seed. An optimizer
    /// must be set with [`Trainer::optimizer`].
    pub fn new(vs: &'a nn::VarStore, model: &'a impl nn::ModuleT) -> Self {
        Trainer {
            model: Some(model),
            ..Trainer::for_steps(vs)
        }
    }

    /// A trainer of the variables of `vs` with a training step of yours ([`crate::TrainStep`],
    /// given to [`Trainer::fit_steps`]): the models are the step's. Its defaults are
    /// [`Trainer::new`]'s; its loss is the step's (no [`Trainer::loss`]), and its metrics are
    /// the ones you add ([`Trainer::metric`]), on the outputs and targets the step returns.
    pub fn for_steps(vs: &'a nn::VarStore) -> Self {
        Trainer {
            vs,
            model: None,
            optimizer: OptimizerSetting::Missing,
            settings: TrainSetup {
                epochs: 1,
                batch_size: 32,
                shuffle: true,
                seed: None,
                drop_last: false,
                accumulate: 1,
                clip: None,
                lazy_reads: None,
                nan_policy: NanPolicy::Warn,
                resume: None,
                resume_steps: 0,
                rollback: None,
                precision: Precision::Fp32,
                grad_scaler: None,
            },
            data: DataSetup {
                validation: Validation::None,
                loss: Loss::CrossEntropy,
                metrics: Vec::new(),
            },
            hooks: HookSetup {
                selection: Hooks::all(),
                added: Vec::new(),
                tolerated: Vec::new(),
                refused: Vec::new(),
            },
            resources: Default::default(),
            group: None,
        }
    }

    /// Trains data-parallel with `group`, as PyTorch's `DistributedDataParallel`: every rank of
    /// the group runs this fit on a replica of the model.
    ///
    /// - **Start**: the ranks agree on the model's variables (an error names the first that
    ///   differs) and take rank 0's weights.
    /// - **Data**: each epoch's order (the same on every rank: the same seed) is shared out as
    ///   `DistributedSampler` does (every `world`-th sample, padded to equal shares).
    /// - **Gradients**: averaged over the ranks after the `on_after_backward` hooks (which see
    ///   this rank's own) and before clipping and `on_before_optimizer_step`, in buckets of
    ///   about 25 MB; under gradient accumulation, only at optimizer steps.
    /// - **Metrics**: the running values and the epoch's metrics are those of every rank's
    ///   batches together (each batch's loss, outputs and targets are gathered), so every
    ///   rank's hooks see the same values and take the same decisions. Validation runs on the
    ///   whole validation set on every rank.
    /// - **Stops**: a stop on any rank — a hook's, early stopping, a time limit — stops every
    ///   rank at the same batch or epoch boundary.
    /// - **Failures**: a rank that fails ends the others, within the timeout, with an error
    ///   naming it and giving its error (one killed: naming it as gone).
    /// - **Hooks**: a [`crate::Dist`] parameter tells a hook its rank; the built-in outputs,
    ///   and hooks with `rank = 0`, run on rank 0 alone.
    /// - **Resume points** ([`Trainer::resumable`]): written by rank 0 after a barrier, read
    ///   by every rank. Under `torchrun --max-restarts N`, a group restarted after a rank died
    ///   goes on from the last one, to the bit.
    /// - **Rollbacks** ([`Trainer::rollback`]): the ranks judge their mean loss, so a bad
    ///   batch on any rank rolls every rank back to the same snapshot.
    /// - **The gradient scaler**: the ranks agree on whether a step's gradients are finite
    ///   (one scalar's all-reduce), so they skip the same steps and keep one scale.
    ///
    /// The group is borrowed: one launch can run several fits (train, then fine-tune; a sweep)
    /// on it, one after the other.
    ///
    /// ```no_run
    /// # fn main() -> trainmon::Result<()> {
    /// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    /// # let model = tch::nn::linear(vs.root(), 20, 2, Default::default());
    /// # let data = trainmon::TensorDataset::new(tch::Tensor::zeros([4, 20], tch::kind::FLOAT_CPU), tch::Tensor::zeros([4], tch::kind::INT64_CPU))?;
    /// // torchrun --no-python --nproc-per-node 2 target/release/my_training
    /// let group = trainmon::dist::ProcessGroup::from_env()?;
    /// let history = trainmon::Trainer::new(&vs, &model)
    ///     .optimizer(tch::nn::Adam::default(), 1e-3)
    ///     .seed(0)
    ///     .data_parallel(&group)
    ///     .fit(&data)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn data_parallel(mut self, group: &'a crate::dist::ProcessGroup) -> Self {
        self.group = Some(group);
        self
    }

    /// The optimizer over the trainable variables of `vs`, with learning rate `lr`:
    /// `nn::Adam::default()`, `nn::AdamW`, `nn::Sgd`, `nn::RmsProp` with any of their settings.
    /// The trainer runs [`crate::optim`]'s implementations of them, whose state a resume point
    /// saves (tch's own optimizers keep theirs out of reach).
    pub fn optimizer(mut self, config: impl crate::optim::OptimizerConfig, lr: f64) -> Self {
        self.optimizer = match (&self.optimizer, config.build_optimizer(self.vs, lr)) {
            (OptimizerSetting::Named(..), _) => OptimizerSetting::Failed(
                "both `optimizer_for` (over a part of the model) and `optimizer` (over the whole): give one or the \
                 other"
                    .into(),
            ),
            (_, Ok(optimizer)) => OptimizerSetting::Ready(optimizer, lr),
            (_, Err(err)) => OptimizerSetting::Failed(err.to_string()),
        };
        self
    }

    /// An optimizer named `name` over the variables under `path` alone (`vs.root() / path`),
    /// with learning rate `lr`: a trainer of several models in one `VarStore` (a GAN's generator
    /// and discriminator) gives each its own. Every call adds one; they step together, or, for a
    /// step that optimizes by hand ([`crate::TrainStep::manual_optimization`]), each when the
    /// step says (`ctx.optimizer_step(name)`). A resume point keeps every one's state. The
    /// trainer's learning rate (the history's, the one hooks read and set) is the first one's;
    /// the others keep their ratio to it (a schedule scales them all; if the first's is 0, they
    /// keep their own). Paths that overlap, and a name with `/`, are refused.
    pub fn optimizer_for(
        mut self,
        name: &str,
        path: &str,
        config: impl crate::optim::OptimizerConfig,
        lr: f64,
    ) -> Self {
        let mut named = match std::mem::replace(&mut self.optimizer, OptimizerSetting::Missing) {
            OptimizerSetting::Missing => crate::optim::Named::new(self.vs)
                .map(|named| (named, lr))
                .map_err(|err| err.to_string()),
            OptimizerSetting::Named(named, first) => Ok((named, first)),
            OptimizerSetting::Ready(..) => Err(
                "both `optimizer` (over the whole model) and `optimizer_for` (over a part): give one or the other"
                    .to_owned(),
            ),
            OptimizerSetting::Failed(err) => Err(err),
        };
        if let Ok((parts, _)) = &mut named {
            let built = config.build_optimizer_for(self.vs, path, lr);
            if let Err(err) = built.and_then(|optimizer| parts.add(name, path, optimizer, lr)) {
                let why = match err {
                    crate::Error::Config { message, .. } => message,
                    other => other.to_string(),
                };
                named = Err(format!("the optimizer `{name}`: {why}"));
            }
        }
        self.optimizer = match named {
            Ok((parts, first)) => OptimizerSetting::Named(parts, first),
            Err(err) => OptimizerSetting::Failed(err),
        };
        self
    }

    /// Number of epochs to train (fewer if a hook stops training).
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.settings.epochs = epochs;
        self
    }

    /// Samples per batch; the last batch of an epoch holds the rest (1000 samples in batches of
    /// 32 make 32 batches, the last of 8) unless [`Trainer::drop_last`] says otherwise.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.settings.batch_size = batch_size;
        self
    }

    /// Whether to shuffle the samples at the start of every epoch (default `true`).
    pub fn shuffle(mut self, shuffle: bool) -> Self {
        self.settings.shuffle = shuffle;
        self
    }

    /// Seeds the shuffling, and libtorch's generator at the start of every epoch (from the seed
    /// and the epoch's number: dropout and the like), so that two runs with the same seed and
    /// the same initial weights train alike — and a resumed run as the uninterrupted one.
    pub fn seed(mut self, seed: u64) -> Self {
        self.settings.seed = Some(seed);
        self
    }

    /// Whether to leave out the last batch of an epoch when it is smaller than the batch size
    /// (default `false`: it is trained on).
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.settings.drop_last = drop_last;
        self
    }

    /// A validation set, evaluated at the end of every epoch (eval mode, no gradients, in
    /// order, in batches of the training batch size). Its loss and metrics are in the epoch's
    /// logs prefixed `val_`: `val_loss`, `val_accuracy`.
    pub fn validation(mut self, data: &'a impl Dataset) -> Self {
        self.data.validation = Validation::Data(data);
        self
    }

    /// Validates on the last `fraction` of the training data (taken before any shuffling, as
    /// Keras does) and trains on the rest; `0 < fraction < 1`.
    pub fn validation_split(mut self, fraction: f64) -> Self {
        self.data.validation = Validation::Split(fraction);
        self
    }

    /// The loss to minimise (default [`Loss::CrossEntropy`], which also tracks accuracy).
    pub fn loss(mut self, loss: Loss) -> Self {
        self.data.loss = loss;
        self
    }

    /// Tracks a metric of your own, made by `make` (`MyMetric::default`): one instance on the
    /// training batches, one (named `val_<name>`) on the validation set; hooks read it by name.
    pub fn metric<M: Metric + 'static>(mut self, make: impl Fn() -> M + 'static) -> Self {
        self.data.metrics.push(Box::new(move || Box::new(make())));
        self
    }

    /// Clips the gradients' global L2 norm to `max` before each optimizer step (after the
    /// `on_after_backward` hooks, before the `on_before_optimizer_step` ones). Done on the device,
    /// without reading the norm to the host.
    pub fn clip_grad_norm(mut self, max: f64) -> Self {
        self.settings.clip = Some(Clip::Norm(max));
        self
    }

    /// Clamps every gradient value into `[-max, max]` before each optimizer step.
    pub fn clip_grad_value(mut self, max: f64) -> Self {
        self.settings.clip = Some(Clip::Value(max));
        self
    }

    /// Accumulates gradients over `k` batches per optimizer step (the loss scaled by `1/k`), for
    /// an effective batch `k` times larger; the last window of an epoch may be shorter.
    ///
    /// Batch events still fire at every batch and count batches; `on_before_optimizer_step`
    /// fires once per step; the global step ([`crate::TrainState::global_step`], and
    /// `counter = global_step` filters) counts optimizer steps, so the `k` batches of one window
    /// share a step number.
    pub fn accumulate_gradients(mut self, k: usize) -> Self {
        self.settings.accumulate = k;
        self
    }

    /// Whether running values stay on the device until a hook asks for them (`true`), or are
    /// read to the host after every batch (`false`). By default: lazily on CUDA, where a read is
    /// a synchronisation; eagerly on the CPU, where it costs nothing (measured in the README).
    pub fn lazy_reads(mut self, lazy: bool) -> Self {
        self.settings.lazy_reads = Some(lazy);
        self
    }

    /// Trains in mixed precision ([`Precision`]; default fp32): the forward pass and the loss,
    /// in training and validation, run under autocast on the model's device type (as
    /// `torch.autocast(device_type, dtype)`), the outputs cast back to fp32 for the loss and the
    /// metrics; the weights, their gradients and the optimizer stay fp32. `Fp16Mixed` (CUDA
    /// only: on the CPU it is an error when `fit` starts) also scales the gradients with
    /// [`GradScaler::new`] unless [`Trainer::grad_scaler`] gives one.
    ///
    /// ```
    /// use trainmon::prelude::*;
    /// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    /// # let model = tch::nn::linear(vs.root(), 2, 2, Default::default());
    /// let trainer = Trainer::new(&vs, &model).precision(Precision::Bf16Mixed);
    /// # let _ = trainer;
    /// ```
    pub fn precision(mut self, precision: Precision) -> Self {
        self.settings.precision = precision;
        self
    }

    /// Scales the loss for the backward pass and unscales the gradients before each optimizer
    /// step, skipping steps whose gradients overflow ([`GradScaler`]), whatever the precision
    /// (`Fp16Mixed` has one by default; this replaces it).
    ///
    /// With a scaler, at an optimizer step (an accumulation window's last batch): the backward
    /// pass on `loss × scale`, the gradients unscaled and checked for inf/NaN, the
    /// `on_after_backward` hooks (unscaled gradients), clipping, the `on_before_optimizer_step`
    /// hooks, then the step — or none, when the check found inf or NaN (counted in
    /// [`crate::History::scaler_skipped_steps`]; the global step counts it all the same) — and
    /// the scale's update. The `on_after_backward` hooks of a window's earlier batches see the
    /// gradients summed so far still multiplied by the scale ([`crate::HookContext::grad_scale`]):
    /// they are unscaled once per window.
    pub fn grad_scaler(mut self, scaler: GradScaler) -> Self {
        self.settings.grad_scaler = Some(scaler);
        self
    }

    /// Which registered hooks run: all of them by default; see [`Hooks`].
    pub fn hooks(mut self, selection: Hooks) -> Self {
        self.hooks.selection = selection;
        self
    }

    /// Adds a hook built at run time — a function or closure over hook parameters (the same
    /// as an annotated function's: [`IntoHook`]), or a struct implementing [`Hook`] — run as
    /// `spec` says, ordered with the registered hooks (at equal priority it runs first: its
    /// module path is empty). It runs whatever [`Trainer::hooks`] selects, and keeps its state
    /// from one `fit` to the next. A parameter that does not exist at the spec's event makes
    /// `fit` fail before any batch, naming the hook.
    ///
    /// ```
    /// use trainmon::prelude::*;
    /// use trainmon::{Event, Filter, HookSpec};
    /// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    /// # let model = tch::nn::linear(vs.root(), 2, 2, Default::default());
    ///
    /// let every = 50; // say, from the command line
    /// let trainer = Trainer::new(&vs, &model).add_hook(
    ///     HookSpec::new(Event::BatchEnd, "cli_logger").filter(Filter::ALWAYS.every(every)),
    ///     |batch: &BatchLogs| println!("loss {:.4}", batch.loss()),
    /// );
    /// ```
    pub fn add_hook<M>(mut self, spec: HookSpec, hook: impl IntoHook<M>) -> Self {
        self.hooks.check::<M, _>(&hook, &spec);
        self.hooks.added.push(Added {
            specs: vec![spec],
            hook: hook.into_hook(),
        });
        self
    }

    /// What to do about NaN in the features (default: warn).
    pub fn nan_policy(mut self, policy: NanPolicy) -> Self {
        self.settings.nan_policy = policy;
        self
    }

    /// Rolls training back over bad batches (a non-finite loss, or a spike) instead of going
    /// on with them: see [`Rollback`].
    ///
    /// ```
    /// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    /// # let model = tch::nn::linear(vs.root(), 2, 2, Default::default());
    /// use trainmon::{Rollback, Trainer};
    /// let trainer = Trainer::new(&vs, &model).rollback(Rollback::new().spike(6.0, 50).give_up_after(3, 500));
    /// # let _ = trainer;
    /// ```
    pub fn rollback(mut self, rollback: Rollback) -> Self {
        self.settings.rollback = Some(rollback);
        self
    }

    /// Hooks (by group, function name, path, or a plugin's name such as `"Logger"`) whose
    /// failures do not end training: a tolerated hook that errors or panics is disabled for the
    /// rest of the fit, with a warning naming it and the error. For hooks that are not critical,
    /// as a logger.
    pub fn tolerate_failures<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.hooks.tolerated.extend(names.into_iter().map(Into::into));
        self
    }

    /// Makes the fit resumable from `dir`: at the end of every epoch whose batches all ran, it
    /// writes `dir/resume.safetensors` — the model's weights, the optimizer's state, the epoch
    /// and step counters, the shuffling generator, the learning rate, the history so far and
    /// every hook's state (`Local` parameters, built-ins such as early stopping's counters and
    /// the checkpoints kept) — replacing the previous one atomically. When `fit` starts and
    /// the file is there, it goes on from it instead of from the start, as Keras's
    /// `BackupAndRestore` does: run the same program again after a crash, and with a fixed
    /// seed it ends with what the uninterrupted run would have (tested by killing one).
    ///
    /// An epoch cut short (a batch hook stopped it: an interrupt, a time limit) is not saved:
    /// the resumed fit trains it again from its start — or from its latest point within it, with
    /// [`Trainer::resumable_steps`]. A fit that had ended ends again at once:
    /// one a hook stopped at an epoch's end, and one that ran all its epochs unless given more
    /// `epochs` (then it trains on). A point of another model or optimizer setting is an error,
    /// and the weights stay as they were. Delete the file to start over.
    ///
    /// ```no_run
    /// # use tch::nn;
    /// # use trainmon::{Trainer, TensorDataset};
    /// # fn main() -> trainmon::Result<()> {
    /// # let vs = nn::VarStore::new(tch::Device::Cpu);
    /// # let model = nn::linear(vs.root(), 20, 2, Default::default());
    /// # let data = TensorDataset::new(tch::Tensor::zeros([8, 20], tch::kind::FLOAT_CPU), tch::Tensor::zeros([8], tch::kind::INT64_CPU))?;
    /// let history = Trainer::new(&vs, &model)
    ///     .optimizer(nn::Adam::default(), 1e-3)
    ///     .epochs(100)
    ///     .seed(42)
    ///     .resumable("runs/exp1")
    ///     .fit(&data)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn resumable(mut self, dir: impl Into<PathBuf>) -> Self {
        self.settings.resume = Some(dir.into());
        self
    }

    /// Also writes the resume point of [`Trainer::resumable`] every `n` optimizer steps (by the
    /// global step, at the end of an accumulation window), within epochs: a fit killed in a long
    /// epoch goes on from its latest step point instead of the epoch's start. The point keeps the
    /// epoch's running loss and metrics (a metric of your own keeps its own if it implements
    /// [`Metric::state`]; otherwise it covers the batches after the resume only, with a
    /// warning). With a seed, a resumable fit seeds libtorch's generator per batch, so a fit
    /// run again with the same settings ends as the uninterrupted one, to the bit.
    ///
    /// Each point rewrites the whole file (weights, optimizer state, the hooks' states, the
    /// history) and flushes the metric files: pick `n` so that this stays small next to `n`
    /// steps. The resumed epoch's `on_epoch_begin` hooks do not run again (a progress bar shows
    /// no epoch bar for it). `0` (the default): at epoch ends only.
    pub fn resumable_steps(mut self, n: u64) -> Self {
        self.settings.resume_steps = n;
        self
    }

    /// Gives the hooks a value to read: a hook takes it as a `Res<T>` parameter
    /// ([`crate::Res`]), shared and read-only. One value per type (a second replaces the
    /// first): wrap settings in newtypes, `.resource(Patience(2))`. A hook that takes a
    /// `Res<T>` the trainer was not given makes `fit` fail before any batch, naming the hook.
    ///
    /// ```
    /// use trainmon::prelude::*;
    ///
    /// struct Patience(u32);
    ///
    /// #[on_epoch_end]
    /// fn show(patience: Res<Patience>) {
    ///     println!("patience {}", patience.0);
    /// }
    /// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    /// # let model = tch::nn::linear(vs.root(), 2, 2, Default::default());
    /// let trainer = Trainer::new(&vs, &model).resource(Patience(2));
    /// # let _ = trainer;
    /// ```
    pub fn resource<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.resources.insert(value);
        self
    }

    /// Adds a plugin: a hook that runs at several events with one state, as the built-in hooks
    /// of [`crate::hooks`] do (`.with(EarlyStopping::new("val_loss").patience(3))`). Like
    /// [`Trainer::add_hook`], it runs whatever [`Trainer::hooks`] selects. Its errors name it
    /// and this call's place in your code (`hook \`MetricFiles\` (src/main.rs:42) failed`).
    #[track_caller]
    pub fn with(mut self, plugin: impl Plugin) -> Self {
        let caller = std::panic::Location::caller();
        let mut specs = plugin.specs();
        for spec in &mut specs {
            spec.0.location = crate::HookLocation {
                file: caller.file(),
                line: caller.line(),
                column: caller.column(),
            };
        }
        self.hooks.added.push(Added {
            specs,
            hook: Box::new(plugin),
        });
        self
    }
}

impl HookSetup {
    /// Records why a hook added at run time cannot run where `spec` says, if it can't.
    fn check<M, H: IntoHook<M>>(&mut self, _: &H, spec: &HookSpec) {
        if let Err(why) = H::check(spec.0.event()) {
            self.refused
                .push(format!("hook `{}` ({}): {why}", spec.0.name(), spec.0.location()));
        }
    }
}
