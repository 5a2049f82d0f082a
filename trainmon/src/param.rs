//! Hook parameters, taken by type: a hook asks for what it needs, in any order.
//!
//! | parameter | what it is | at which events |
//! |---|---|---|
//! | `&TrainState` | epoch, batch, global step, elapsed time, device | all |
//! | `&BatchLogs` | running loss and accuracy of the epoch so far | `on_batch_end` |
//! | `&EpochLogs` | the finished epoch's loss, accuracy, time | `on_epoch_end` |
//! | `&History` | every finished epoch so far, and the stop reason | all |
//! | `Local<T>` | state private to the hook, kept across its calls (`T: Default`) | all |
//!
//! A parameter that does not exist at the hook's event is a compile error under that parameter.

use crate::event::events;
use crate::history::{EpochLogs, History};
use crate::hook::HookContext;
use crate::metrics::BatchLogs;
use crate::trainer::TrainState;
use std::ops::{Deref, DerefMut};

/// A type a hook may take as a parameter. Implemented for the types in the [module](self) table.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a hook parameter",
    label = "not a hook parameter",
    note = "a hook takes, in any order: `&TrainState`, `&BatchLogs`, `&EpochLogs`, `&History`, `Local<T>`"
)]
pub trait HookParam {
    /// State kept by the hook instance for this parameter (`()` unless it is a `Local`).
    type State: Send + 'static;
    /// The value handed to the hook.
    type Item<'a>;
    /// The events this parameter exists at: [`AnyEvent`], or one marker of [`events`].
    type Scope;
    /// The state at the start of a fit.
    fn init_state() -> Self::State;
    /// The value for one call; `None` where the context lacks it (prevented at compile time by
    /// [`Self::Scope`]).
    fn fetch<'a>(state: &'a mut Self::State, ctx: &'a HookContext<'_>) -> Option<Self::Item<'a>>;
}

/// The scope of a parameter that exists at every event.
#[derive(Debug)]
pub enum AnyEvent {}

/// Whether a parameter of this scope exists at event `E`.
#[diagnostic::on_unimplemented(
    message = "this hook parameter does not exist in `{E}` hooks",
    label = "only in `{Self}` hooks",
    note = "`&BatchLogs` exists in `on_batch_end` hooks, `&EpochLogs` in `on_epoch_end` hooks; `&TrainState`, `&History` and `Local<T>` everywhere"
)]
pub trait ScopeIncludes<E> {}

impl<E> ScopeIncludes<E> for AnyEvent {}
impl ScopeIncludes<events::BatchEnd> for events::BatchEnd {}
impl ScopeIncludes<events::EpochEnd> for events::EpochEnd {}

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

borrowed_param!(TrainState, AnyEvent, |ctx| Some(ctx.state));
borrowed_param!(History, AnyEvent, |ctx| Some(ctx.history));
borrowed_param!(BatchLogs, events::BatchEnd, |ctx| ctx.batch);
borrowed_param!(EpochLogs, events::EpochEnd, |ctx| ctx.epoch);

/// State private to one hook, kept across its calls within a fit; starts as `T::default()`.
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
    type Scope = AnyEvent;
    fn init_state() -> T {
        T::default()
    }
    #[inline]
    fn fetch<'a>(state: &'a mut T, _: &'a HookContext<'_>) -> Option<Local<'a, T>> {
        Some(Local(state))
    }
}
