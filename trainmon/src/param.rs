//! Hook parameters, taken by type: a hook asks for what it needs, in any order.
//!
//! | parameter | what it is | at which events |
//! |---|---|---|
//! | `&TrainState` | epoch, batch, global step, elapsed time, device, learning rate | all |
//! | `&BatchLogs` | running loss and accuracy so far in the epoch (or validation run) | `on_batch_end`, `on_validation_batch_end` |
//! | `&EpochLogs` | the epoch's metrics by name: `loss`, `accuracy`, `time`, `val_loss`, `val_accuracy` | `on_validation_end`, `on_epoch_end` |
//! | `&History` | every finished epoch so far, and the stop reason | all |
//! | `Local<T>` | state private to the hook, kept across its calls (`T: Default + Send + 'static`) | all |
//! | `&VarStore` | the model's variables (weights; gradients after the backward pass) | all |
//! | `LearningRate` | the optimizer's learning rate: read it, set it | all |
//! | `Res<T>` | a value the trainer was given with `.resource(value)` ([`crate::resource`]) | all |
//! | `&Error` | the error that ended training | `on_exception` |
//!
//! A type that is not a hook parameter, or a parameter that does not exist at the hook's event,
//! is a compile error under that parameter.

use crate::error::Error;
use crate::event::events;
use crate::history::{EpochLogs, History};
use crate::hook::HookContext;
use crate::metrics::BatchLogs;
use crate::resource::{Requirement, Res};
use crate::trainer::TrainState;
use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use tch::nn::VarStore;

/// A type a hook may take as a parameter. Implemented for the types in the [module](self) table.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a hook parameter",
    label = "not a hook parameter",
    note = "a hook takes, in any order: `&TrainState`, `&BatchLogs`, `&EpochLogs`, `&History`, `Local<T>`, `Res<T>`, `&VarStore`, `LearningRate`, `&Error`"
)]
pub trait HookParam {
    /// State kept by the hook instance for this parameter (`()` unless it is a `Local`).
    type State: Send + 'static;
    /// The value handed to the hook.
    type Item<'a>;
    /// The events this parameter exists at: a type of [`scope`].
    type Scope;
    /// The state at the start of a fit.
    fn init_state() -> Self::State;
    /// The value for one call; `None` where the context lacks it (prevented at compile time by
    /// [`Self::Scope`]).
    fn fetch<'a>(state: &'a mut Self::State, ctx: &'a HookContext<'_>) -> Option<Self::Item<'a>>;
}

/// Where parameters exist: each type names a set of events.
pub mod scope {
    /// Every event.
    #[derive(Debug)]
    pub enum AnyEvent {}
    /// `on_batch_end` and `on_validation_batch_end`: where batch logs exist.
    #[derive(Debug)]
    pub enum BatchEnds {}
    /// `on_validation_end` and `on_epoch_end`: where an epoch's logs exist.
    #[derive(Debug)]
    pub enum EpochEnds {}
    /// `on_exception`: where the error exists.
    #[derive(Debug)]
    pub enum Exception {}
}

/// Whether a parameter of this scope exists at event `E`.
#[diagnostic::on_unimplemented(
    message = "this hook parameter does not exist in `{E}` hooks",
    label = "not available in this hook",
    note = "`&BatchLogs` exists in `on_batch_end` and `on_validation_batch_end` hooks, `&EpochLogs` in `on_validation_end` and `on_epoch_end` hooks, `&Error` in `on_exception` hooks; the other parameters everywhere"
)]
pub trait ScopeIncludes<E> {}

impl<E> ScopeIncludes<E> for scope::AnyEvent {}
impl ScopeIncludes<events::BatchEnd> for scope::BatchEnds {}
impl ScopeIncludes<events::ValidationBatchEnd> for scope::BatchEnds {}
impl ScopeIncludes<events::ValidationEnd> for scope::EpochEnds {}
impl ScopeIncludes<events::EpochEnd> for scope::EpochEnds {}
impl ScopeIncludes<events::Exception> for scope::Exception {}

/// Not public API: the check the attributes emit for each parameter, spanned at its type.
#[doc(hidden)]
pub fn param_at<P, E>()
where
    P: HookParam,
    P::Scope: ScopeIncludes<E>,
{
}

/// Not public API: fetches one parameter for the generated call, or says why it can't.
#[doc(hidden)]
#[inline]
pub fn fetch<'a, P: HookParam>(
    state: &'a mut P::State,
    ctx: &'a HookContext<'_>,
) -> Result<P::Item<'a>, crate::error::BoxError> {
    match P::fetch(state, ctx) {
        Some(item) => Ok(item),
        None => Err(format!(
            "parameter `{}` does not exist at {}",
            std::any::type_name::<P>(),
            ctx.event()
        )
        .into()),
    }
}

macro_rules! borrowed_param {
    ($ty:ty, $scope:ty, |$ctx:ident| $get:expr) => {
        impl HookParam for &'_ $ty {
            type State = ();
            type Item<'a> = &'a $ty;
            type Scope = $scope;
            fn init_state() {}
            #[inline]
            fn fetch<'a>(_: &'a mut (), $ctx: &'a HookContext<'_>) -> Option<&'a $ty> {
                $get
            }
        }
    };
}

borrowed_param!(TrainState, scope::AnyEvent, |ctx| Some(ctx.state));
borrowed_param!(History, scope::AnyEvent, |ctx| Some(ctx.history));
borrowed_param!(VarStore, scope::AnyEvent, |ctx| Some(ctx.vs));
borrowed_param!(BatchLogs, scope::BatchEnds, |ctx| ctx.batch);
borrowed_param!(EpochLogs, scope::EpochEnds, |ctx| ctx.epoch);
borrowed_param!(Error, scope::Exception, |ctx| ctx.error);

/// State private to one hook, kept across its calls within a fit; starts as `T::default()`.
///
/// When `T` implements serde's `Serialize` and `Deserialize` (numbers, strings, `Vec`s, maps,
/// your own types with `#[derive(Serialize, Deserialize)]`), resume points keep it
/// ([`crate::Trainer::resumable`]) as CBOR, and a resumed fit gives it back to the bit (NaN and
/// infinities included); other types — or a value that fails to serialize or to read back —
/// start from their default, with a warning naming the hook.
///
/// ```
/// use trainmon::prelude::*;
///
/// #[on_epoch_end]
/// fn count_epochs(mut seen: Local<u32>) {
///     *seen += 1;
/// }
/// ```
pub struct Local<'a, T>(&'a mut T);

impl<T> Deref for Local<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0
    }
}

impl<T> DerefMut for Local<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Local<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Default + Send + 'static> HookParam for Local<'_, T> {
    type State = T;
    type Item<'a> = Local<'a, T>;
    type Scope = scope::AnyEvent;
    fn init_state() -> T {
        T::default()
    }
    #[inline]
    fn fetch<'a>(state: &'a mut T, _: &'a HookContext<'_>) -> Option<Local<'a, T>> {
        Some(Local(state))
    }
}

/// Not public API: picks, for the attributes' generated code, how a parameter's state is kept
/// in resume points, by autoref specialization on `(&&Persist::<P>::new()).save(…)`: method
/// resolution tries [`PersistLocal`] first (a `Local<T>` whose `T` serde handles: kept), then
/// [`PersistUnserializable`] (another `Local<T>`: not kept, with a warning on resume), then
/// [`PersistNothing`] (any other parameter). None of them has a bound that could fail on a
/// wrong parameter type, whose error is the parameter check's alone.
#[doc(hidden)]
pub struct Persist<P: ?Sized>(std::marker::PhantomData<fn() -> Box<P>>);

impl<P: ?Sized> Persist<P> {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Persist(std::marker::PhantomData)
    }
}

use crate::hook::HookState;

/// Records what became of parameter `index` in the state's JSON object of marks.
fn mark(saved: &mut HookState, index: usize, what: String) {
    if let serde_json::Value::Object(marks) = &mut saved.value {
        marks.insert(index.to_string(), what.into());
    }
}

/// The mark of parameter `index`, if any.
fn marked(saved: &HookState, index: usize) -> Option<&str> {
    saved.value.get(index.to_string())?.as_str()
}

/// What a `Local` is kept as: CBOR (exact for every float, NaN and infinities included), in
/// a tensor of bytes named by the parameter's index.
const KEPT: &str = "kept";

#[doc(hidden)]
pub trait PersistLocal {
    type State;
    fn save(&self, state: &Self::State, index: usize, saved: &mut HookState);
    fn load(&self, state: &mut Self::State, index: usize, saved: &HookState);
}

impl<T> PersistLocal for &Persist<Local<'_, T>>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    type State = T;
    fn save(&self, state: &T, index: usize, saved: &mut HookState) {
        let mut bytes = Vec::new();
        match ciborium::into_writer(state, &mut bytes) {
            Ok(()) => {
                saved.tensors.push((index.to_string(), tch::Tensor::from_slice(&bytes)));
                mark(saved, index, KEPT.into());
            }
            Err(e) => mark(saved, index, format!("not kept: {e}")),
        }
    }
    fn load(&self, state: &mut T, index: usize, saved: &HookState) {
        let name = index.to_string();
        let bytes = saved
            .tensors
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| Vec::<u8>::try_from(t).map_err(|e| e.to_string()));
        let read = match (marked(saved, index), bytes) {
            (Some(KEPT), Some(Ok(bytes))) => ciborium::from_reader(bytes.as_slice()).map_err(|e| e.to_string()),
            (Some(KEPT), Some(Err(e))) => Err(e),
            (Some(KEPT), None) => Err("its bytes are missing".into()),
            (Some(why), _) => Err(why.to_owned()),
            (None, _) => return, // a parameter added since: it starts from its default
        };
        match read {
            Ok(value) => *state = value,
            Err(why) => tracing::warn!(
                "its `Local<{}>` is not restored ({why}): it starts from its default",
                std::any::type_name::<T>()
            ),
        }
    }
}

#[doc(hidden)]
pub trait PersistUnserializable {
    fn save<S>(&self, state: &S, index: usize, saved: &mut HookState);
    fn load<S>(&self, state: &mut S, index: usize, saved: &HookState);
}

impl<T> PersistUnserializable for &&Persist<Local<'_, T>> {
    fn save<S>(&self, _: &S, index: usize, saved: &mut HookState) {
        // A mark, so that resuming says what was not kept.
        mark(saved, index, "not kept".into());
    }
    fn load<S>(&self, _: &mut S, index: usize, saved: &HookState) {
        if marked(saved, index).is_some() {
            tracing::warn!(
                "its `Local<{}>` is not kept in resume points (the type does not implement serde's \
                 `Serialize` and `Deserialize`): it starts from its default",
                std::any::type_name::<T>()
            );
        }
    }
}

#[doc(hidden)]
pub trait PersistNothing {
    fn save<S>(&self, state: &S, index: usize, saved: &mut HookState);
    fn load<S>(&self, state: &mut S, index: usize, saved: &HookState);
}

impl<P: ?Sized> PersistNothing for Persist<P> {
    fn save<S>(&self, _: &S, _: usize, _: &mut HookState) {}
    fn load<S>(&self, _: &mut S, _: usize, _: &HookState) {}
}

/// The optimizer's learning rate, to read or to change from a hook (a scheduler, a warm-up).
/// A new value applies from the next optimizer step on.
///
/// ```
/// use trainmon::prelude::*;
///
/// // Halve the learning rate every 10 epochs.
/// #[on_epoch_end(every = 10)]
/// fn step_decay(lr: LearningRate) {
///     lr.set(lr.get() * 0.5);
/// }
/// ```
#[derive(Clone, Copy)]
pub struct LearningRate<'a>(&'a Cell<f64>);

impl<'a> LearningRate<'a> {
    pub(crate) fn new(cell: &'a Cell<f64>) -> Self {
        LearningRate(cell)
    }

    /// The learning rate in force.
    pub fn get(&self) -> f64 {
        self.0.get()
    }

    /// Sets the learning rate; it must be finite and not negative, or `fit` fails with an error.
    pub fn set(&self, learning_rate: f64) {
        self.0.set(learning_rate)
    }
}

impl std::fmt::Debug for LearningRate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl HookParam for LearningRate<'_> {
    type State = ();
    type Item<'a> = LearningRate<'a>;
    type Scope = scope::AnyEvent;
    fn init_state() {}
    #[inline]
    fn fetch<'a>(_: &'a mut (), ctx: &'a HookContext<'_>) -> Option<LearningRate<'a>> {
        Some(LearningRate(ctx.learning_rate))
    }
}

impl<T: Send + Sync + 'static> HookParam for Res<'_, T> {
    type State = ();
    type Item<'a> = Res<'a, T>;
    type Scope = scope::AnyEvent;
    fn init_state() {}
    #[inline]
    fn fetch<'a>(_: &'a mut (), ctx: &'a HookContext<'_>) -> Option<Res<'a, T>> {
        ctx.resources.get::<T>().map(Res::new)
    }
}

/// Not public API: picks, for the attributes' generated code, what a parameter needs the
/// trainer to have been given, by autoref specialization on
/// `(&&Require::<P>::new()).require(…)`: [`RequireResource`] for a `Res<T>` (a `T`), else
/// [`RequireNothing`]. Neither has a bound that could fail on a wrong parameter type.
#[doc(hidden)]
pub struct Require<P: ?Sized>(std::marker::PhantomData<fn() -> Box<P>>);

impl<P: ?Sized> Require<P> {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Require(std::marker::PhantomData)
    }
}

#[doc(hidden)]
pub trait RequireResource {
    fn require(&self, needs: &mut Vec<Requirement>);
}

impl<T: 'static> RequireResource for &Require<Res<'_, T>> {
    fn require(&self, needs: &mut Vec<Requirement>) {
        needs.push(Requirement::of::<T>());
    }
}

#[doc(hidden)]
pub trait RequireNothing {
    fn require(&self, needs: &mut Vec<Requirement>);
}

impl<P: ?Sized> RequireNothing for Require<P> {
    fn require(&self, _: &mut Vec<Requirement>) {}
}
