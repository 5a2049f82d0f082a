//! Where training is, as hooks see it.

use crate::precision::{GradScaler, Precision};
use std::time::{Duration, Instant};
use tch::Device;

/// The loop's counters and settings at the moment a hook runs (`&TrainState` parameter).
#[derive(Clone, Debug)]
pub struct TrainState {
    pub(crate) epoch: usize,
    pub(crate) epochs: usize,
    pub(crate) batch: usize,
    pub(crate) batches: usize,
    pub(crate) global_step: u64,
    pub(crate) started: Instant,
    pub(crate) device: Device,
    pub(crate) learning_rate: f64,
}

impl TrainState {
    /// The current epoch, 1-based (0 in `on_train_begin`).
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Epochs planned for this fit.
    pub fn epochs(&self) -> usize {
        self.epochs
    }

    /// The current batch within its epoch, 1-based (0 outside batch events and before the first).
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Batches per epoch, the last partial batch included.
    pub fn batches_per_epoch(&self) -> usize {
        self.batches
    }

    /// Optimizer steps taken so far in this fit, over all epochs.
    pub fn global_step(&self) -> u64 {
        self.global_step
    }

    /// Wall time since `fit` started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The device the model trains on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The optimizer's learning rate.
    pub fn learning_rate(&self) -> f64 {
        self.learning_rate
    }
}

/// How the trainer was set up for this fit, read-only: what an experiment tracker records as a
/// run's parameters ([`crate::HookContext::settings`]). Where training is — the epoch, the
/// batches per epoch, the device, the learning rate in force — is [`TrainState`]'s.
///
/// The [`crate::testing::Harness`] shows the builder's defaults, with no optimizer and no
/// samples.
#[derive(Clone, Debug)]
pub struct Settings {
    pub(crate) epochs: usize,
    pub(crate) batch_size: usize,
    pub(crate) batches: usize,
    pub(crate) optimizer: String,
    pub(crate) learning_rate: f64,
    pub(crate) seed: Option<u64>,
    pub(crate) loss: String,
    pub(crate) device: Device,
    pub(crate) shuffle: bool,
    pub(crate) drop_last: bool,
    pub(crate) accumulate: usize,
    pub(crate) clip_norm: Option<f64>,
    pub(crate) clip_value: Option<f64>,
    pub(crate) validation_split: Option<f64>,
    pub(crate) samples: usize,
    pub(crate) validation_samples: usize,
    pub(crate) precision: Precision,
    pub(crate) grad_scaler: Option<GradScaler>,
    pub(crate) dist: Dist,
}

impl Default for Settings {
    /// The builder's defaults ([`crate::Trainer::new`]), without an optimizer or data.
    fn default() -> Self {
        Settings {
            epochs: 1,
            batch_size: 32,
            batches: 0,
            optimizer: String::new(),
            learning_rate: f64::NAN,
            seed: None,
            loss: "CrossEntropy".into(),
            device: Device::Cpu,
            shuffle: true,
            drop_last: false,
            accumulate: 1,
            clip_norm: None,
            clip_value: None,
            validation_split: None,
            samples: 0,
            validation_samples: 0,
            precision: Precision::Fp32,
            grad_scaler: None,
            dist: Dist::ALONE,
        }
    }
}

impl Settings {
    /// Epochs planned ([`crate::Trainer::epochs`]).
    pub fn epochs(&self) -> usize {
        self.epochs
    }

    /// Samples per batch ([`crate::Trainer::batch_size`]).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Training batches per epoch, the last partial one included unless `drop_last`.
    pub fn batches_per_epoch(&self) -> usize {
        self.batches
    }

    /// The optimizer's algorithm and its settings, as a resume point names it
    /// (`"Adam { beta1: 0.9, beta2: 0.999, wd: 0.0, eps: 1e-8, amsgrad: false }"`); empty
    /// without one.
    pub fn optimizer(&self) -> &str {
        &self.optimizer
    }

    /// The learning rate the optimizer was given (schedulers change the one in force,
    /// [`TrainState::learning_rate`]).
    pub fn learning_rate(&self) -> f64 {
        self.learning_rate
    }

    /// The seed given with [`crate::Trainer::seed`], if one was.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// The loss minimised: `"CrossEntropy"`, `"Mse"` or `"Custom"`.
    pub fn loss(&self) -> &str {
        &self.loss
    }

    /// The device the model trains on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Whether the samples are shuffled every epoch.
    pub fn shuffle(&self) -> bool {
        self.shuffle
    }

    /// Whether the last batch of an epoch is left out when smaller than the batch size.
    pub fn drop_last(&self) -> bool {
        self.drop_last
    }

    /// Batches whose gradients add up per optimizer step (1: none accumulated).
    pub fn accumulate_gradients(&self) -> usize {
        self.accumulate
    }

    /// The gradients' global L2 norm is clipped to this ([`crate::Trainer::clip_grad_norm`]).
    pub fn clip_grad_norm(&self) -> Option<f64> {
        self.clip_norm
    }

    /// Every gradient value is clamped to ± this ([`crate::Trainer::clip_grad_value`]).
    pub fn clip_grad_value(&self) -> Option<f64> {
        self.clip_value
    }

    /// The fraction of the data held out for validation ([`crate::Trainer::validation_split`]).
    pub fn validation_split(&self) -> Option<f64> {
        self.validation_split
    }

    /// Training samples.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Validation samples (0: no validation).
    pub fn validation_samples(&self) -> usize {
        self.validation_samples
    }

    /// The precision of the forward pass and the loss ([`crate::Trainer::precision`]).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The gradient scaler's settings, if the fit scales: the one given with
    /// [`crate::Trainer::grad_scaler`], or `Fp16Mixed`'s default.
    pub fn grad_scaler(&self) -> Option<GradScaler> {
        self.grad_scaler
    }

    /// This process's place in a data-parallel fit ([`crate::Trainer::data_parallel`]); rank
    /// 0 of 1 otherwise.
    pub fn dist(&self) -> Dist {
        self.dist
    }
}

/// A process's place among the ranks of a data-parallel fit ([`crate::Trainer::data_parallel`]);
/// rank 0 of a world of 1 in a fit of one process. A hook parameter, at every event:
///
/// ```
/// use trainmon::prelude::*;
///
/// #[on_train_begin]
/// fn hello(dist: Dist) {
///     println!("rank {} of {} (GPU {} of its machine)", dist.rank(), dist.world_size(), dist.local_rank());
/// }
/// ```
///
/// A hook that must run once for all ranks takes the attribute option `rank = 0` instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dist {
    pub(crate) rank: usize,
    pub(crate) world_size: usize,
    pub(crate) local_rank: usize,
}

impl Dist {
    /// A fit of one process.
    pub(crate) const ALONE: Dist = Dist {
        rank: 0,
        world_size: 1,
        local_rank: 0,
    };

    /// This process's rank, 0-based.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of processes training together.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// This process's rank on its machine (the GPU it uses).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Whether this is rank 0, the one that writes the outputs.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
}
