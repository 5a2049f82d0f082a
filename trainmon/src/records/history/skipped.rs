//! What a rollback skipped ([`crate::Rollback`]), as the history keeps it.

use serde::{Deserialize, Serialize};

/// Batches skipped by a rollback ([`crate::Rollback`]): training went back to the state after
/// the batch before `batches`' first, and went on with the batch after their last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub(crate) epoch: usize,
    pub(crate) batches: std::ops::RangeInclusive<usize>,
    pub(crate) step: u64,
    pub(crate) reason: String,
    pub(crate) samples: Vec<i64>,
}

impl Skipped {
    /// The epoch (1-based).
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// The batches of the epoch skipped (1-based): those since the snapshot, the anomalous
    /// one last.
    pub fn batches(&self) -> std::ops::RangeInclusive<usize> {
        self.batches.clone()
    }

    /// The optimizer step the anomalous batch would have been.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// What was wrong with the anomalous batch's loss.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The indices in the training set of the samples skipped (in the epoch's order).
    pub fn samples(&self) -> &[i64] {
        &self.samples
    }
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (first, last) = (self.batches.start(), self.batches.end());
        if first == last {
            write!(f, "batch {last} of epoch {} ({})", self.epoch, self.reason)
        } else {
            write!(f, "batches {first}–{last} of epoch {} ({})", self.epoch, self.reason)
        }
    }
}
