//! What the loop calls: the [`Hook`] trait, and the context a hook's parameters come from.

use crate::control::Control;
use crate::error::BoxError;
use crate::event::Event;
use crate::history::{EpochLogs, History};
use crate::metrics::BatchLogs;
use crate::trainer::TrainState;

/// A hook instance: something the loop calls at its event. The attributes generate one per
/// annotated function (holding its `Local` state); it is also the trait for hooks built at
/// run time.
pub trait Hook: Send {
    /// Runs the hook once. An `Err` stops training with [`crate::Error::Hook`].
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError>;
}

/// Everything a hook may read at the moment it runs; its parameters are taken from here.
#[derive(Clone, Copy)]
pub struct HookContext<'a> {
    pub(crate) event: Event,
    pub(crate) state: &'a TrainState,
    pub(crate) batch: Option<&'a BatchLogs>,
    pub(crate) epoch: Option<&'a EpochLogs>,
    pub(crate) history: &'a History,
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

    /// The running logs of the batch just trained (batch events only).
    pub fn batch(&self) -> Option<&'a BatchLogs> {
        self.batch
    }

    /// The logs of the epoch that just ended (`on_epoch_end` only).
    pub fn epoch(&self) -> Option<&'a EpochLogs> {
        self.epoch
    }

    /// Every finished epoch so far (at `on_epoch_end`, the one just ended included).
    pub fn history(&self) -> &'a History {
        self.history
    }
}

/// A hook made of state and a function over it; what the attributes generate.
struct FnHook<S, F> {
    state: S,
    call: F,
}

impl<S, F> Hook for FnHook<S, F>
where
    S: Send,
    F: FnMut(&mut S, &HookContext<'_>) -> Result<Control, BoxError> + Send,
{
    #[inline]
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        (self.call)(&mut self.state, ctx)
    }
}

/// Not public API: boxes a hook made of `state` and `call`, for the attributes' generated code.
#[doc(hidden)]
pub fn fn_hook<S, F>(state: S, call: F) -> Box<dyn Hook>
where
    S: Send + 'static,
    F: FnMut(&mut S, &HookContext<'_>) -> Result<Control, BoxError> + Send + 'static,
{
    Box::new(FnHook { state, call })
}
