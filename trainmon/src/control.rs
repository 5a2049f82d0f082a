//! What a hook can ask of the loop, and the return types that say it.

use crate::error::BoxError;

/// A hook's request to the training loop. Hooks return it instead of mutating the trainer;
/// the loop carries it out and records why it stopped.
#[must_use = "a hook's Control is only acted on when returned"]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Control {
    /// Go on training.
    #[default]
    Continue,
    /// Stop training, for the reason given. From an epoch hook, training stops after that
    /// epoch; from a batch hook, after that batch (the epoch then ends early: its end hooks run
    /// and it is recorded as it is). The other hooks of the same event still run.
    Stop(String),
}

impl Control {
    /// Stop training, for `reason` (kept in the history: [`crate::History::stop_reason`]).
    pub fn stop(reason: impl Into<String>) -> Self {
        Control::Stop(reason.into())
    }

    /// Whether this asks to stop.
    pub fn is_stop(&self) -> bool {
        matches!(self, Control::Stop(_))
    }
}

/// A type a hook may return: `()`, [`Control`], `Result<(), E>` or `Result<Control, E>` for any
/// error `E` (an `Err` stops training with [`crate::Error::Hook`] naming the hook).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a hook return type",
    label = "hooks cannot return this",
    note = "a hook returns `()`, `Control`, `Result<(), E>` or `Result<Control, E>` (E: std::error::Error)"
)]
pub trait IntoControl {
    /// The loop's view of the returned value.
    fn into_control(self) -> Result<Control, BoxError>;
}

impl IntoControl for () {
    #[inline]
    fn into_control(self) -> Result<Control, BoxError> {
        Ok(Control::Continue)
    }
}

impl IntoControl for Control {
    #[inline]
    fn into_control(self) -> Result<Control, BoxError> {
        Ok(self)
    }
}

impl<T: IntoControl, E: Into<BoxError>> IntoControl for Result<T, E> {
    #[inline]
    fn into_control(self) -> Result<Control, BoxError> {
        self.map_err(Into::into).and_then(IntoControl::into_control)
    }
}
