//! Where training is, as hooks see it.

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
