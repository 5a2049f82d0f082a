//! The first batches of a fit, timed (the step and its hooks) while the dispatch times the
//! hooks, to warn about hooks slower than the step itself.

use crate::trainer::dispatch::Dispatch;
use std::time::Duration;

/// The time spent on the batches profiled so far.
#[derive(Default)]
pub(super) struct Profile {
    spent: Duration,
    batches: u32,
}

/// Batches at the start of a fit over which hooks are timed against the training step.
const PROFILED_BATCHES: u32 = 20;

impl Profile {
    /// Whether the next batch is timed.
    pub fn timing(&self) -> bool {
        self.batches < PROFILED_BATCHES
    }

    /// Counts a profiled batch that took `spent`; after the last, warns about training-batch
    /// hooks slower than the step itself, and the dispatch stops timing.
    pub fn add(&mut self, dispatch: &mut Dispatch<'_>, spent: Duration) {
        self.spent += spent;
        self.batches += 1;
        if self.batches < PROFILED_BATCHES {
            return;
        }
        dispatch.profile(false);
        let Profile { spent, batches } = *self;
        let (step, slow) = dispatch.slow_hooks(spent, batches);
        for (hook, location, event, per_batch) in slow {
            tracing::warn!(
                "hook `{hook}` ({location}) at `{event}` takes {per_batch:.2?} per batch, more than the training \
                 step itself ({step:.2?}), over the first {batches} batches: it slows training down; consider a \
                 filter (`every = N`)"
            );
        }
    }
}
