//! The `Trainer`: a tch training loop that finds the registered hooks and calls them.

pub(crate) mod dispatch;
mod fit;
mod guard;
mod state;

pub use state::TrainState;

use crate::data::TensorDataset;
use crate::hook::Hook;
use crate::registry::{HookSpec, Hooks};
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
    model: &'a dyn nn::ModuleT,
    optimizer: Optimizer,
    epochs: usize,
    batch_size: usize,
    shuffle: bool,
    seed: Option<u64>,
    validation: Option<&'a TensorDataset>,
    selection: Hooks,
    added: Vec<(HookSpec, Box<dyn Hook>)>,
}

enum Optimizer {
    Missing,
    Failed(String),
    Ready(nn::Optimizer, f64),
}

impl<'a> Trainer<'a> {
    /// A trainer of `model`, whose variables live in `vs` (training runs on `vs.device()`).
    ///
    /// Defaults: 1 epoch, batches of 32, shuffled every epoch with a random seed. An optimizer
    /// must be set with [`Trainer::optimizer`].
    pub fn new(vs: &'a nn::VarStore, model: &'a impl nn::ModuleT) -> Self {
        Trainer {
            vs,
            model,
            optimizer: Optimizer::Missing,
            epochs: 1,
            batch_size: 32,
            shuffle: true,
            seed: None,
            validation: None,
            selection: Hooks::all(),
            added: Vec::new(),
        }
    }

    /// The optimizer over the variables of `vs`, with learning rate `lr`
    /// (`nn::Adam::default()`, `nn::Sgd::default()`, …).
    pub fn optimizer(mut self, config: impl nn::OptimizerConfig, lr: f64) -> Self {
        self.optimizer = match config.build(self.vs, lr) {
            Ok(optimizer) => Optimizer::Ready(optimizer, lr),
            Err(err) => Optimizer::Failed(err.to_string()),
        };
        self
    }

    /// Number of epochs to train (fewer if a hook stops training).
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    /// Samples per batch; the last batch of an epoch holds the rest (1000 samples in batches of
    /// 32 make 32 batches, the last of 8).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Whether to shuffle the samples at the start of every epoch (default `true`).
    pub fn shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }

    /// Seeds the shuffling, and libtorch's generator when `fit` starts (dropout and the like),
    /// so that two runs with the same seed and the same initial weights train alike.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// A validation set, evaluated at the end of every epoch (eval mode, no gradients, in
    /// order, in batches of the training batch size). Its loss and accuracy are in the epoch's
    /// logs as `val_loss` and `val_accuracy`.
    pub fn validation(mut self, data: &'a TensorDataset) -> Self {
        self.validation = Some(data);
        self
    }

    /// Which registered hooks run: all of them by default; see [`Hooks`].
    pub fn hooks(mut self, selection: Hooks) -> Self {
        self.selection = selection;
        self
    }

    /// Adds a hook built at run time — a struct implementing [`Hook`], or a closure through
    /// [`crate::hook::hook_fn`] — run as `spec` says, ordered with the registered hooks (at equal
    /// priority it runs first: its module path is empty). It runs whatever [`Trainer::hooks`]
    /// selects, and keeps its state from one `fit` to the next.
    ///
    /// ```
    /// use trainmon::hook::hook_fn;
    /// use trainmon::filter::Filter;
    /// use trainmon::registry::HookSpec;
    /// use trainmon::{Event, Trainer};
    /// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    /// # let model = tch::nn::linear(vs.root(), 2, 2, Default::default());
    ///
    /// let every = 50; // say, from the command line
    /// let trainer = Trainer::new(&vs, &model).add_hook(
    ///     HookSpec::new(Event::BatchEnd, "cli_logger").filter(Filter::ALWAYS.every(every)),
    ///     hook_fn(|ctx| println!("loss {:.4}", ctx.batch().unwrap().loss())),
    /// );
    /// ```
    pub fn add_hook(mut self, spec: HookSpec, hook: impl Hook + 'static) -> Self {
        self.added.push((spec, Box::new(hook)));
        self
    }
}
