//! What the loop calls: the [`Hook`] trait, and the context a hook's parameters come from.

use crate::control::{Control, IntoControl};
use crate::error::{BoxError, Error};
use crate::event::Event;
use crate::history::{EpochLogs, History};
use crate::metrics::BatchLogs;
use crate::param::LearningRate;
use crate::resource::{Requirement, Resources};
use crate::trainer::TrainState;
use std::cell::Cell;
use tch::nn::VarStore;

/// A hook instance: something the loop calls at its event.
///
/// The attributes generate one per annotated function, holding its `Local` state. Implement it
/// (or wrap a closure with [`hook_fn`]) for hooks configured at run time, and add them with
/// [`crate::Trainer::add_hook`].
pub trait Hook: Send {
    /// Runs the hook once. An `Err` stops training with [`crate::Error::Hook`].
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError>;

    /// The state to keep in a resume point ([`crate::Trainer::resumable`]), taken at the end of
    /// an epoch after its hooks ran; `None` (the default) when there is none.
    fn state(&self) -> Result<Option<HookState>, BoxError> {
        Ok(None)
    }

    /// The resources ([`crate::resource`]) the hook needs the trainer to have been given:
    /// `fit` refuses to start without them, naming the hook. None by default.
    fn requires(&self) -> &[Requirement] {
        &[]
    }

    /// Takes back a state [`Hook::state`] returned, when a fit resumes, before its first event.
    fn restore(&mut self, state: HookState) -> Result<(), BoxError> {
        let _ = state;
        Ok(())
    }
}

/// A hook's state in a resume point: a JSON value and, for what is best kept as tensors (a
/// copy of the best weights), named tensors.
#[derive(Debug, Default)]
pub struct HookState {
    /// The state's plain part.
    pub value: serde_json::Value,
    /// Its tensors, by name (saved bit for bit, restored on the CPU).
    pub tensors: Vec<(String, tch::Tensor)>,
}

impl HookState {
    /// A state of a plain value (anything `serde` serializes).
    pub fn new(value: impl serde::Serialize) -> Result<Self, BoxError> {
        Ok(HookState {
            value: serde_json::to_value(value)?,
            tensors: Vec::new(),
        })
    }

    /// The plain part, read back as `T`.
    pub fn value<T: serde::de::DeserializeOwned>(&self) -> Result<T, BoxError> {
        Ok(T::deserialize(&self.value)?)
    }
}

/// A hook that runs at several events with one state — what the built-in hooks are. Its
/// `call` sees which event it is at through [`HookContext::event`].
pub trait Plugin: Hook + 'static {
    /// Where it runs: one spec per event, each with its filter and priority.
    fn specs(&self) -> Vec<crate::registry::HookSpec>;
}

/// Everything a hook may read at the moment it runs; its parameters are taken from here.
#[derive(Clone, Copy)]
pub struct HookContext<'a> {
    pub(crate) event: Event,
    pub(crate) state: &'a TrainState,
    pub(crate) batch: Option<&'a BatchLogs>,
    pub(crate) epoch: Option<&'a EpochLogs>,
    pub(crate) history: &'a History,
    pub(crate) vs: &'a VarStore,
    pub(crate) learning_rate: &'a Cell<f64>,
    pub(crate) error: Option<&'a Error>,
    pub(crate) resources: &'a Resources,
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

    /// The running logs of the batch just trained or validated (`on_batch_end`,
    /// `on_validation_batch_end`).
    pub fn batch(&self) -> Option<&'a BatchLogs> {
        self.batch
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
        LearningRate::new(self.learning_rate)
    }

    /// The error that ended training (`on_exception` only).
    pub fn error(&self) -> Option<&'a Error> {
        self.error
    }

    /// The value of type `T` the trainer was given with [`crate::Trainer::resource`].
    pub fn resource<T: 'static>(&self) -> Option<&'a T> {
        self.resources.get::<T>()
    }
}

/// Saves the `Local` parameters of a hook's state, by parameter index (see [`crate::param::Persist`]).
type SaveLocals<S> = fn(&S, &mut HookState);
/// Restores them.
type LoadLocals<S> = fn(&mut S, &HookState);

/// A hook made of state and a function over it; what the attributes generate.
struct FnHook<S, F> {
    state: S,
    call: F,
    locals: Option<(SaveLocals<S>, LoadLocals<S>)>,
    requires: Vec<Requirement>,
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

    fn state(&self) -> Result<Option<HookState>, BoxError> {
        let Some((save, _)) = self.locals else { return Ok(None) };
        let mut saved = HookState {
            value: serde_json::Value::Object(Default::default()),
            tensors: Vec::new(),
        };
        save(&self.state, &mut saved);
        let empty = saved.value.as_object().is_none_or(|marks| marks.is_empty());
        Ok((!empty).then_some(saved))
    }

    fn requires(&self) -> &[Requirement] {
        &self.requires
    }

    fn restore(&mut self, state: HookState) -> Result<(), BoxError> {
        if let Some((_, load)) = self.locals {
            load(&mut self.state, &state);
        }
        Ok(())
    }
}

/// Not public API: boxes a hook made of `state` and `call`, for the attributes' generated code;
/// `save` and `load` keep its `Local` parameters in resume points; `requires` are the
/// resources its parameters need.
#[doc(hidden)]
pub fn fn_hook<S, F>(
    state: S,
    call: F,
    save: SaveLocals<S>,
    load: LoadLocals<S>,
    requires: Vec<Requirement>,
) -> Box<dyn Hook>
where
    S: Send + 'static,
    F: FnMut(&mut S, &HookContext<'_>) -> Result<Control, BoxError> + Send + 'static,
{
    Box::new(FnHook {
        state,
        call,
        locals: Some((save, load)),
        requires,
    })
}

/// A hook from a closure over the [`HookContext`], returning anything a hook may return.
///
/// ```
/// use trainmon::hook::hook_fn;
///
/// let every_n = 50; // from the command line, say
/// let logger = hook_fn(move |ctx| {
///     if let Some(batch) = ctx.batch() {
///         println!("batch {} of {every_n}: loss {:.4}", batch.number(), batch.loss());
///     }
/// });
/// # let _ = logger;
/// ```
pub fn hook_fn<F, R>(mut f: F) -> impl Hook
where
    F: FnMut(&HookContext<'_>) -> R + Send + 'static,
    R: IntoControl,
{
    FnHook {
        state: (),
        call: move |_: &mut (), ctx: &HookContext<'_>| f(ctx).into_control(),
        locals: None,
        requires: Vec::new(),
    }
}
