//! Stop as soon as the loss is not a number.

use crate::context::HookContext;
use crate::control::{Control, StopCause};
use crate::error::BoxError;
use crate::hook::{Hook, Plugin};
use crate::schedule::event::Event;
use crate::schedule::filter::Filter;
use crate::schedule::priority;
use crate::schedule::spec::HookSpec;

/// Stops training at the first batch whose running loss is NaN or infinite (Ignite's
/// `TerminateOnNan`). The check reads the loss after every batch — on CUDA a host
/// synchronisation each time; `every(n)` checks every n batches instead.
#[derive(Debug, Clone)]
pub struct TerminateOnNaN {
    every: u64,
}

impl TerminateOnNaN {
    /// Checks after every batch.
    pub fn new() -> Self {
        TerminateOnNaN { every: 1 }
    }

    /// Checks after every `n`th batch of each epoch (a NaN stays in the running mean, so it is
    /// still caught, up to `n - 1` batches late).
    pub fn every(mut self, n: u64) -> Self {
        self.every = n;
        self
    }
}

impl Default for TerminateOnNaN {
    fn default() -> Self {
        TerminateOnNaN::new()
    }
}

impl Hook for TerminateOnNaN {
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        let Some(batch) = ctx.batch() else {
            return Ok(Control::Continue);
        };
        let loss = batch.loss();
        Ok(if loss.is_finite() {
            Control::Continue
        } else {
            Control::stop_for(
                StopCause::NotFinite,
                format!(
                    "the loss is {loss} at batch {} of epoch {}",
                    batch.number(),
                    ctx.state().epoch()
                ),
            )
        })
    }
}

impl Plugin for TerminateOnNaN {
    fn specs(&self) -> Vec<HookSpec> {
        vec![HookSpec::new(Event::BatchEnd, "TerminateOnNaN")
            .filter(Filter::ALWAYS.every(self.every))
            .priority(priority::EARLY_STOPPING)]
    }
}
