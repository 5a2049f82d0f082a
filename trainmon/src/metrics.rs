//! Running values of an epoch: the loss and accuracy hooks see after each batch.
//!
//! As in the tutorial trainmon retraces: the running loss is the mean of the batch losses so
//! far in the epoch, the running accuracy the share of samples so far classified right.

use crate::error::{Error, Result};
use tch::{Kind, Tensor};

/// The running logs after a training batch, as `on_batch_end` hooks see them.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchLogs {
    pub(crate) number: usize,
    pub(crate) size: usize,
    pub(crate) loss: f64,
    pub(crate) accuracy: f64,
}

impl BatchLogs {
    /// The batch's 1-based number within its epoch.
    pub fn number(&self) -> usize {
        self.number
    }

    /// Samples in this batch (the last batch of an epoch may be smaller).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Mean of the batch losses so far in this epoch.
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// Share of the epoch's samples so far whose predicted class (arg max) was right.
    pub fn accuracy(&self) -> f64 {
        self.accuracy
    }
}

/// Sums over the batches of one epoch.
#[derive(Default, Debug)]
pub(crate) struct Running {
    batches: usize,
    loss_sum: f64,
    correct: i64,
    samples: i64,
}

impl Running {
    /// Adds a batch: its mean loss, and its outputs against the labels for accuracy.
    pub(crate) fn update(&mut self, loss: &Tensor, outputs: &Tensor, labels: &Tensor) -> Result<BatchLogs> {
        let read = |err| Error::torch("reading the batch's loss and accuracy", err);
        let loss = loss.f_double_value(&[]).map_err(read)?;
        let correct = outputs
            .f_argmax(-1, false)
            .and_then(|predicted| predicted.f_eq_tensor(labels))
            .and_then(|right| right.f_sum(Kind::Int64))
            .and_then(|sum| sum.f_int64_value(&[]))
            .map_err(read)?;
        let size = labels.size().first().copied().unwrap_or(0);
        self.batches += 1;
        self.loss_sum += loss;
        self.correct += correct;
        self.samples += size;
        Ok(BatchLogs {
            number: self.batches,
            size: size as usize,
            loss: self.loss(),
            accuracy: self.accuracy(),
        })
    }

    pub(crate) fn batches(&self) -> usize {
        self.batches
    }

    pub(crate) fn samples(&self) -> usize {
        self.samples as usize
    }

    pub(crate) fn loss(&self) -> f64 {
        if self.batches == 0 {
            f64::NAN
        } else {
            self.loss_sum / self.batches as f64
        }
    }

    pub(crate) fn accuracy(&self) -> f64 {
        if self.samples == 0 {
            f64::NAN
        } else {
            self.correct as f64 / self.samples as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_values_follow_the_tutorial() {
        let mut running = Running::default();
        // Batch 1: logits favour class 1 for both samples, labels 1 and 0 → 1 of 2 right.
        let out = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 1.0]).view([2, 2]);
        let logs = running
            .update(&Tensor::from(0.5f64), &out, &Tensor::from_slice(&[1i64, 0]))
            .unwrap();
        assert_eq!(
            (logs.number(), logs.size(), logs.loss(), logs.accuracy()),
            (1, 2, 0.5, 0.5),
            "after batch 1"
        );
        // Batch 2: one sample, right.
        let out = Tensor::from_slice(&[2.0f32, 0.0]).view([1, 2]);
        let logs = running
            .update(&Tensor::from(1.5f64), &out, &Tensor::from_slice(&[0i64]))
            .unwrap();
        assert_eq!((logs.number(), logs.size()), (2, 1), "batch 2 is the short last batch");
        assert_eq!(logs.loss(), 1.0, "mean of batch losses 0.5 and 1.5");
        assert_eq!(logs.accuracy(), 2.0 / 3.0, "2 right of 3 samples");
        assert_eq!((running.batches(), running.samples()), (2, 3));
    }
}
