//! What the loop calls: the [`Hook`] trait; [`IntoHook`], which makes functions and closures
//! over hook parameters hooks; and the hook the attributes generate.

use crate::context::HookContext;
use crate::control::{Control, IntoControl};
use crate::error::BoxError;
use crate::param::{fetch, HookParam};
use crate::records::saved::HookState;
use crate::resource::Requirement;
use crate::schedule::event::Event;

/// A hook instance: something the loop calls at its event.
///
/// The attributes generate one per annotated function, holding its `Local` state. Functions
/// and closures over hook parameters are hooks too ([`IntoHook`]), for hooks configured at run
/// time; implement the trait for a struct whose state you keep yourself.
pub trait Hook: Send {
    /// Runs the hook once. An `Err` stops training with [`crate::Error::Hook`].
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError>;

    /// The state to keep in a resume point ([`crate::Trainer::resumable`]), taken at the end of
    /// an epoch after its hooks ran; `None` (the default) when there is none.
    fn state(&self) -> Result<Option<HookState>, BoxError> {
        Ok(None)
    }

    /// The resources ([`crate::Res`]) the hook needs the trainer to have been given:
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

/// A hook that runs at several events with one state — what the built-in hooks are. Its
/// `call` sees which event it is at through [`HookContext::event`].
pub trait Plugin: Hook + 'static {
    /// Where it runs: one spec per event, each with its filter and priority.
    fn specs(&self) -> Vec<crate::schedule::spec::HookSpec>;
}

/// Saves the `Local` parameters of a hook's state, by parameter name and type
/// ([`HookParam::save`]).
type SaveLocals<S> = fn(&S, &mut HookState);
/// Restores them, taking from the saved state what they restore.
type LoadLocals<S> = fn(&mut S, &mut HookState);

/// A hook made of state and a function over it: what the attributes generate, and what
/// functions and closures become through [`IntoHook`].
struct FnHook<S, F> {
    state: S,
    call: F,
    /// How its `Local` parameters are kept in resume points.
    save: SaveLocals<S>,
    load: LoadLocals<S>,
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
        let mut saved = HookState::marks();
        (self.save)(&self.state, &mut saved);
        Ok((!saved.no_marks()).then_some(saved))
    }

    fn requires(&self) -> &[Requirement] {
        &self.requires
    }

    fn restore(&mut self, mut state: HookState) -> Result<(), BoxError> {
        (self.load)(&mut self.state, &mut state);
        // What no parameter took: a parameter renamed, removed or of another type since.
        for (key, _) in state.take_marks() {
            tracing::warn!(
                "the resume point keeps a `Local` `{key}` that matches no parameter of this hook now (renamed, \
                 removed, or of another type): it is dropped"
            );
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
        save,
        load,
        requires,
    })
}

/// Something that becomes a hook: a [`Hook`] itself, or a function or closure that takes hook
/// parameters — the same as an annotated function's, `Local<T>` included — and returns what a
/// hook may return. Given to [`crate::Trainer::add_hook`] with a [`crate::HookSpec`] that says
/// when it runs, or to [`crate::testing::Harness`].
///
/// ```
/// use trainmon::prelude::*;
/// use trainmon::{Event, Filter, HookSpec};
/// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// # let model = tch::nn::linear(vs.root(), 2, 2, Default::default());
///
/// let every = 50; // from the command line, say
/// let trainer = Trainer::new(&vs, &model).add_hook(
///     HookSpec::new(Event::BatchEnd, "cli_logger").filter(Filter::ALWAYS.every(every)),
///     move |batch: &BatchLogs, mut seen: Local<u32>| {
///         *seen += 1;
///         println!("batch {} (log line {}): loss {:.4}", batch.number(), *seen, batch.loss());
///     },
/// );
/// # let _ = trainer;
/// ```
///
/// A parameter that does not exist at the spec's event (`&BatchLogs` at `on_epoch_end`) makes
/// `fit` fail before any batch, naming the hook. As an annotated function's, a closure's `Local`
/// values are kept in resume points, named by their place among its parameters (`#1:
/// Local<u32>`): a resumed fit gives them back.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a hook",
    label = "not a hook",
    note = "a hook is a `Hook`, or a function or closure whose parameters are hook parameters (`&BatchLogs`, `&EpochLogs`, `&TrainState`, `&History`, `Local<T>`, `Scratch<T>`, `Res<T>`, `&VarStore`, `LearningRate`, `Dist`, `StepBatch<B>`, `&Error`, `&HookContext`), annotated with their types, returning `()`, `Control`, or a `Result` of them; a `Local<T>` is kept in resume points, so serde handles its `T` (`Serialize + Deserialize`), a `Scratch<T>` is not"
)]
pub trait IntoHook<Marker>: Sized {
    /// The hook, boxed for the trainer.
    fn into_hook(self) -> Box<dyn Hook>;

    /// Why the hook cannot run at `event`: a parameter that does not exist there.
    fn check(event: Event) -> Result<(), String> {
        let _ = event;
        Ok(())
    }
}

/// Marks [`IntoHook`] for a [`Hook`].
#[doc(hidden)]
pub struct IsHook;

impl<H: Hook + 'static> IntoHook<IsHook> for H {
    fn into_hook(self) -> Box<dyn Hook> {
        Box::new(self)
    }
}

/// Marks [`IntoHook`] for a function of these parameters returning `R`.
#[doc(hidden)]
pub struct IsFunction<Params, R>(std::marker::PhantomData<fn(Params) -> R>);

macro_rules! function_hooks {
    ($($p:ident $s:ident $t:ident),*) => {
        impl<F, R, $($p: HookParam),*> IntoHook<IsFunction<($($p,)*), R>> for F
        where
            F: Send + 'static,
            F: FnMut($($p),*) -> R,
            F: FnMut($($p::Item<'_>),*) -> R,
            R: IntoControl,
        {
            #[allow(non_snake_case, unused_mut, unused_variables, clippy::unused_unit)]
            fn into_hook(mut self) -> Box<dyn Hook> {
                let mut requires = Vec::new();
                $(requires.extend($p::requirement());)*
                // Called through the bound on items (a closure's higher-ranked signature), not
                // the one on parameter types, which only lets the compiler infer them.
                #[allow(clippy::too_many_arguments)]
                fn call_with<R, $($t),*>(mut f: impl FnMut($($t),*) -> R, $($s: $t),*) -> R {
                    f($($s),*)
                }
                Box::new(FnHook {
                    state: ($($p::init_state(),)*),
                    call: move |state: &mut ($($p::State,)*), ctx: &HookContext<'_>| {
                        let ($($s,)*) = state;
                        let out = call_with(&mut self, $(fetch::<$p>($s, ctx)?),*);
                        out.into_control()
                    },
                    // Its parameters by their place: `#0`, `#1`….
                    save: |state, saved| {
                        let ($($s,)*) = state;
                        let mut _place = 0;
                        $($p::save($s, &format!("#{_place}"), saved); _place += 1;)*
                    },
                    load: |state, saved| {
                        let ($($s,)*) = state;
                        let mut _place = 0;
                        $($p::load($s, &format!("#{_place}"), saved); _place += 1;)*
                    },
                    requires,
                })
            }

            #[allow(unused_variables)]
            fn check(event: Event) -> Result<(), String> {
                $(
                    if !$p::exists_at(event) {
                        return Err(format!(
                            "its parameter `{}` does not exist at `{event}`",
                            short_type_name(std::any::type_name::<$p>())
                        ));
                    }
                )*
                Ok(())
            }
        }
    };
}

/// A type's name without module paths: `&trainmon::metrics::BatchLogs` → `&BatchLogs`.
fn short_type_name(name: &str) -> String {
    let mut short = String::with_capacity(name.len());
    let mut segment = 0;
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("::") {
            short.truncate(segment);
            rest = &rest[2..];
            continue;
        }
        short.push(c);
        if !(c.is_alphanumeric() || c == '_') {
            segment = short.len();
        }
        rest = &rest[c.len_utf8()..];
    }
    short
}

function_hooks!();
function_hooks!(P0 s0 T0);
function_hooks!(P0 s0 T0, P1 s1 T1);
function_hooks!(P0 s0 T0, P1 s1 T1, P2 s2 T2);
function_hooks!(P0 s0 T0, P1 s1 T1, P2 s2 T2, P3 s3 T3);
function_hooks!(P0 s0 T0, P1 s1 T1, P2 s2 T2, P3 s3 T3, P4 s4 T4);
function_hooks!(P0 s0 T0, P1 s1 T1, P2 s2 T2, P3 s3 T3, P4 s4 T4, P5 s5 T5);
function_hooks!(P0 s0 T0, P1 s1 T1, P2 s2 T2, P3 s3 T3, P4 s4 T4, P5 s5 T5, P6 s6 T6);
function_hooks!(P0 s0 T0, P1 s1 T1, P2 s2 T2, P3 s3 T3, P4 s4 T4, P5 s5 T5, P6 s6 T6, P7 s7 T7);

#[cfg(test)]
mod tests {
    use super::short_type_name;

    #[test]
    fn type_names_lose_their_module_paths() {
        for (full, short) in [
            ("&trainmon::metrics::BatchLogs", "&BatchLogs"),
            ("trainmon::param::Local<alloc::vec::Vec<f64>>", "Local<Vec<f64>>"),
            ("trainmon::resource::Res<(a::B, c::D)>", "Res<(B, D)>"),
            ("u32", "u32"),
        ] {
            assert_eq!(short_type_name(full), short);
        }
    }
}
