//! Values the application gives the trainer, for hooks to read: [`Res`] parameters.

use std::any::{Any, TypeId};
use std::ops::Deref;

/// The values a trainer was given, one per type.
#[derive(Default)]
pub(crate) struct Resources {
    values: Vec<(TypeId, &'static str, Box<dyn Any + Send + Sync>)>,
}

/// No resources: what hooks see outside a trainer (the dispatch benchmark, the built-ins' tests).
pub(crate) static NONE: Resources = Resources { values: Vec::new() };

impl Resources {
    /// Adds `value`, replacing one of the same type.
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        self.values.retain(|(t, _, _)| *t != id);
        self.values.push((id, std::any::type_name::<T>(), Box::new(value)));
    }

    /// The value of type `T`, if the trainer was given one.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.values
            .iter()
            .find(|(t, _, _)| *t == id)
            .and_then(|(_, _, value)| value.downcast_ref())
    }

    pub(crate) fn contains(&self, id: TypeId) -> bool {
        self.values.iter().any(|(t, _, _)| *t == id)
    }
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.values.iter().map(|(_, name, _)| name))
            .finish()
    }
}

/// A resource the hook needs: what a `Res<T>` parameter asks of the trainer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub(crate) id: TypeId,
    pub(crate) name: &'static str,
}

impl Requirement {
    /// The requirement of a `Res<T>`.
    pub fn of<T: 'static>() -> Self {
        Requirement {
            id: TypeId::of::<T>(),
            name: std::any::type_name::<T>(),
        }
    }

    /// The type's name.
    pub fn type_name(&self) -> &'static str {
        self.name
    }
}

/// A hook parameter: a value of type `T` the trainer was given with
/// [`crate::Trainer::resource`], read-only.
///
/// A hook in a library cannot be handed its settings by the binary that runs it: it has no
/// caller. Instead the binary gives the trainer values, one per type (newtypes name them), and
/// a hook takes the ones it needs as [`Res<T>`] parameters, as bevy's systems take `Res<T>`:
///
/// ```
/// use trainmon::prelude::*;
///
/// /// Epochs without a lower loss before training stops.
/// pub struct Patience(pub u32);
///
/// #[on_epoch_end]
/// fn early_stop(epoch: &EpochLogs, patience: Res<Patience>, mut best: Local<Option<f64>>, mut bad: Local<u32>) -> Control {
///     match *best {
///         Some(best) if epoch.loss() >= best => *bad += 1,
///         _ => (*best, *bad) = (Some(epoch.loss()), 0),
///     }
///     if *bad >= patience.0 { Control::stop("no progress") } else { Control::Continue }
/// }
///
/// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// # let model = tch::nn::linear(vs.root(), 2, 2, Default::default());
/// let trainer = Trainer::new(&vs, &model).resource(Patience(3));
/// # let _ = trainer;
/// ```
///
/// Resources are shared and read-only. A hook that takes a `Res<T>` the trainer was not given
/// makes `fit` fail when it starts, before any batch, with an error naming the hook (file:line)
/// and the type.
pub struct Res<'a, T>(&'a T);

impl<'a, T> Res<'a, T> {
    pub(crate) fn new(value: &'a T) -> Self {
        Res(value)
    }

    /// The value, for as long as the call (an associated function, so that it never hides a
    /// method of `T`: `Res::into_inner(patience)`).
    pub fn into_inner(this: Self) -> &'a T {
        this.0
    }
}

impl<T> Deref for Res<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0
    }
}

impl<T> Clone for Res<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Res<'_, T> {}

impl<T: std::fmt::Debug> std::fmt::Debug for Res<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
