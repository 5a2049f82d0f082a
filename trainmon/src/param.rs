//! Hook parameters, taken by type: see [`HookParam`].

use crate::context::{HookContext, LearningRate};
use crate::error::Error;
use crate::records::history::{EpochLogs, History};
use crate::records::metrics::BatchLogs;
use crate::records::saved::HookState;
use crate::resource::{Requirement, Res};
use crate::schedule::event::events::{scope, ScopeIncludes};
use crate::schedule::event::Event;
use crate::state::{Dist, TrainState};
use std::ops::{Deref, DerefMut};
use tch::nn::VarStore;

/// A type a hook may take as a parameter: a hook asks for what it needs, by type, in any order.
///
/// | parameter | what it is | at which events |
/// |---|---|---|
/// | `&TrainState` | epoch, batch, global step, elapsed time, device, learning rate | all |
/// | `&BatchLogs` | running loss and accuracy so far in the epoch (or validation run) | `on_batch_end`, `on_validation_batch_end` |
/// | `&EpochLogs` | the epoch's metrics by name: `loss`, `accuracy`, `time`, `val_loss`, `val_accuracy` | `on_validation_end`, `on_epoch_end` |
/// | `&History` | every finished epoch so far, and the stop reason | all |
/// | `Local<T>` | state private to the hook, kept across its calls and in resume points (`T: Default + Send + 'static`, and serde's `Serialize + Deserialize`) | all |
/// | `Scratch<T>` | state private to the hook, kept across its calls, not in resume points (`T: Default + Send + 'static`) | all |
/// | `&VarStore` | the model's variables (weights; gradients after the backward pass) | all |
/// | `LearningRate` | the optimizer's learning rate: read it, set it | all |
/// | `Dist` | this process's rank and the world size in a data-parallel fit ([`Dist`]) | all |
/// | `Res<T>` | a value the trainer was given with `.resource(value)` ([`Res`]) | all |
/// | `&Error` | the error that ended training | `on_exception` |
/// | `&HookContext` | all of the above, as optional values | all |
///
/// For an annotated function, a type that is not a hook parameter, or a parameter that does not
/// exist at the hook's event, is a compile error under that parameter; for a function added at
/// run time ([`crate::IntoHook`]), `fit` refuses to start.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a hook parameter",
    label = "not a hook parameter",
    note = "a hook takes, in any order: `&TrainState`, `&BatchLogs`, `&EpochLogs`, `&History`, `Local<T>`, `Scratch<T>`, `Res<T>`, `&VarStore`, `LearningRate`, `Dist`, `StepBatch<B>`, `&Error`, `&HookContext`"
)]
pub trait HookParam {
    /// State kept by the hook instance for this parameter (`()` unless it is a `Local`).
    type State: Send + 'static;
    /// The value handed to the hook.
    type Item<'a>;
    /// The events this parameter exists at: a type of [`crate::events::scope`].
    type Scope: scope::Scope;
    /// The state at the start of a fit.
    fn init_state() -> Self::State;
    /// Keeps the state in a resume point, under the parameter's `name` (a `Local`'s; nothing by
    /// default).
    fn save(state: &Self::State, name: &str, saved: &mut HookState) {
        let _ = (state, name, saved);
    }
    /// Takes back what [`Self::save`] kept under `name`, when a fit resumes (nothing by
    /// default).
    fn load(state: &mut Self::State, name: &str, saved: &mut HookState) {
        let _ = (state, name, saved);
    }
    /// What the trainer must have been given for it (a `Res<T>`: a `T`).
    fn requirement() -> Option<Requirement> {
        None
    }
    /// Whether it exists at `event` (checked at compile time for annotated functions, when
    /// `fit` starts for hooks added at run time).
    fn exists_at(event: Event) -> bool {
        <Self::Scope as scope::Scope>::includes(event)
    }
    /// The value for one call; `None` where the context lacks it (prevented at compile time by
    /// [`Self::Scope`]).
    fn fetch<'a>(state: &'a mut Self::State, ctx: &'a HookContext<'_>) -> Option<Self::Item<'a>>;

    /// Why [`Self::fetch`] found nothing in `ctx`: by default, that the parameter does not
    /// exist at its event.
    fn missing(ctx: &HookContext<'_>) -> String {
        format!(
            "parameter `{}` does not exist at {}",
            std::any::type_name::<Self>(),
            ctx.event()
        )
    }
}

/// Not public API: the check the attributes emit for each parameter, spanned at its type.
#[doc(hidden)]
pub fn param_at<P, E>()
where
    P: HookParam,
    P::Scope: ScopeIncludes<E>,
{
}

/// Not public API: a parameter's state at the start of a fit, for the generated hook.
#[doc(hidden)]
pub fn init_state<P: HookParam>() -> P::State {
    P::init_state()
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
        None => Err(P::missing(ctx).into()),
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

impl HookParam for &'_ HookContext<'_> {
    type State = ();
    type Item<'a> = &'a HookContext<'a>;
    type Scope = scope::AnyEvent;
    fn init_state() {}
    #[inline]
    fn fetch<'a>(_: &'a mut (), ctx: &'a HookContext<'_>) -> Option<&'a HookContext<'a>> {
        Some(ctx)
    }
}

/// State private to one hook, kept across its calls within a fit; starts as `T::default()`.
///
/// Resume points keep it ([`crate::Trainer::resumable`]) as CBOR, and a resumed fit gives it
/// back to the bit (NaN and infinities included), for an annotated function and a closure added
/// at run time alike: `T` implements serde's `Serialize` and `Deserialize` (numbers, strings,
/// `Vec`s, maps, your own types with `#[derive(Serialize, Deserialize)]`). A value that fails to
/// serialize or to read back starts from its default, with a warning naming the hook. State
/// that resume points need not keep (an `Instant`, a cache of tensors) is a [`Scratch<T>`].
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

impl<T> HookParam for Local<'_, T>
where
    T: Default + Send + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
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
    fn save(state: &T, name: &str, saved: &mut HookState) {
        let key = key::<T>(name);
        let mut bytes = Vec::new();
        match ciborium::into_writer(state, &mut bytes) {
            Ok(()) => {
                saved.tensors.push((key.clone(), tch::Tensor::from_slice(&bytes)));
                saved.mark(&key, KEPT.into());
            }
            Err(e) => saved.mark(&key, format!("not kept: {e}")),
        }
    }
    fn load(state: &mut T, name: &str, saved: &mut HookState) {
        let key = key::<T>(name);
        let read = match saved.take_mark(&key) {
            None => return, // a parameter added since: it starts from its default
            Some((mark, Some(bytes))) if mark == KEPT => Vec::<u8>::try_from(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|bytes| ciborium::from_reader(bytes.as_slice()).map_err(|e| e.to_string())),
            Some((mark, None)) if mark == KEPT => Err("its bytes are missing".into()),
            Some((why, _)) => Err(why),
        };
        match read {
            Ok(value) => *state = value,
            Err(why) => tracing::warn!("its `{key}` is not restored ({why}): it starts from its default"),
        }
    }
}

/// The key of a `Local` in a resume point: its parameter's name and its type, so that
/// parameters swapped, renamed or retyped between runs never take another's value. A closure's
/// parameters are named by their place, `#0`, `#1`….
fn key<T>(name: &str) -> String {
    format!("{name}: Local<{}>", std::any::type_name::<T>())
}

/// What a `Local` is kept as: CBOR (exact for every float, NaN and infinities included), in
/// a tensor of bytes named by its key.
const KEPT: &str = "kept";

/// State private to one hook, kept across its calls within a fit, that resume points do not
/// keep: a resumed fit starts it from `T::default()`. For what needs no keeping or cannot be
/// kept — an `Instant`, a cache of tensors, a file handle; [`Local<T>`] is kept.
///
/// ```
/// use trainmon::prelude::*;
/// use std::time::Instant;
///
/// #[on_epoch_end]
/// fn epoch_time(mut since: Scratch<Option<Instant>>) {
///     if let Some(start) = since.replace(Instant::now()) {
///         println!("{:?} since the last epoch's end", start.elapsed());
///     }
/// }
/// ```
pub struct Scratch<'a, T>(&'a mut T);

impl<T> Deref for Scratch<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0
    }
}

impl<T> DerefMut for Scratch<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Scratch<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Default + Send + 'static> HookParam for Scratch<'_, T> {
    type State = T;
    type Item<'a> = Scratch<'a, T>;
    type Scope = scope::AnyEvent;
    fn init_state() -> T {
        T::default()
    }
    #[inline]
    fn fetch<'a>(state: &'a mut T, _: &'a HookContext<'_>) -> Option<Scratch<'a, T>> {
        Some(Scratch(state))
    }
}

/// Not public API: how the attributes' generated code keeps a parameter's state in resume
/// points, by autoref specialization on `(&&Persist::<P>::new()).save(…)`: method resolution
/// tries [`PersistParam`] first (a hook parameter: its [`HookParam::save`] and
/// [`HookParam::load`], which closures added at run time use too), then [`PersistNothing`]
/// (a type that is not one). Neither has a bound that could fail on a wrong parameter type,
/// whose error is the parameter check's alone.
#[doc(hidden)]
pub struct Persist<P: ?Sized>(std::marker::PhantomData<fn() -> Box<P>>);

impl<P: ?Sized> Persist<P> {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Persist(std::marker::PhantomData)
    }
}

#[doc(hidden)]
pub trait PersistParam {
    type State;
    fn save(&self, state: &Self::State, name: &str, saved: &mut HookState);
    fn load(&self, state: &mut Self::State, name: &str, saved: &mut HookState);
}

impl<P: HookParam> PersistParam for &Persist<P> {
    type State = P::State;
    fn save(&self, state: &P::State, name: &str, saved: &mut HookState) {
        P::save(state, name, saved);
    }
    fn load(&self, state: &mut P::State, name: &str, saved: &mut HookState) {
        P::load(state, name, saved);
    }
}

#[doc(hidden)]
pub trait PersistNothing {
    fn save<S>(&self, state: &S, name: &str, saved: &mut HookState);
    fn load<S>(&self, state: &mut S, name: &str, saved: &mut HookState);
}

impl<P: ?Sized> PersistNothing for Persist<P> {
    fn save<S>(&self, _: &S, _: &str, _: &mut HookState) {}
    fn load<S>(&self, _: &mut S, _: &str, _: &mut HookState) {}
}

/// The batch being trained or validated, as its type `B` (a hook parameter): a
/// [`crate::BatchDataset`]'s own batch type, or `(Tensor, Tensor)` for a [`crate::Dataset`]'s
/// features and targets — on the training device. It exists from the batch's forward pass to
/// its end: in `on_before_backward`, `on_after_backward`, `on_before_optimizer_step`,
/// `on_batch_end` and `on_validation_batch_end` hooks. A `B` other than the fit's batch type is
/// an error naming both when the hook runs.
///
/// ```
/// use trainmon::prelude::*;
///
/// #[on_batch_end(every = 100)]
/// fn batch_shapes(batch: StepBatch<(tch::Tensor, tch::Tensor)>) {
///     let (features, targets) = &*batch;
///     tracing::debug!("features {:?}, targets {:?}", features.size(), targets.size());
/// }
/// ```
pub struct StepBatch<'a, B>(&'a B);

impl<B> std::ops::Deref for StepBatch<'_, B> {
    type Target = B;
    fn deref(&self) -> &B {
        self.0
    }
}

impl<B: 'static> HookParam for StepBatch<'_, B> {
    type State = ();
    type Item<'a> = StepBatch<'a, B>;
    type Scope = scope::StepBatches;
    fn init_state() {}
    #[inline]
    fn fetch<'a>(_: &'a mut (), ctx: &'a HookContext<'_>) -> Option<StepBatch<'a, B>> {
        ctx.step_batch::<B>().map(StepBatch)
    }
    fn missing(ctx: &HookContext<'_>) -> String {
        match ctx.step_batch {
            Some((_, theirs)) => format!(
                "parameter `StepBatch<{}>`: this fit's batches are `{theirs}`",
                std::any::type_name::<B>(),
            ),
            None => format!("parameter `StepBatch` does not exist at {}", ctx.event()),
        }
    }
}

impl HookParam for Dist {
    type State = ();
    type Item<'a> = Dist;
    type Scope = scope::AnyEvent;
    fn init_state() {}
    #[inline]
    fn fetch<'a>(_: &'a mut (), ctx: &'a HookContext<'_>) -> Option<Dist> {
        Some(ctx.settings.dist)
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
    fn requirement() -> Option<Requirement> {
        Some(Requirement::of::<T>())
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
