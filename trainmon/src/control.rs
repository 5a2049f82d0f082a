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
    /// Stop training, for the reason given, of the kind `cause`. From an epoch hook, training
    /// stops after that epoch; from a batch hook, after that batch (the epoch then ends early:
    /// its end hooks run and it is recorded as it is). The other hooks of the same event still
    /// run.
    Stop {
        /// What kind of stop it is.
        cause: StopCause,
        /// Why, in words (the history, the summary and the logs say it).
        reason: String,
    },
}

/// What kind of stop a [`Control::Stop`] is: carried as it is to the history
/// ([`crate::StopReason::cause`]), `history.json`, `status.json`, the summary and MLflow (a run
/// interrupted is `KILLED` there), so that nothing compares the reason's text.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopCause {
    /// A hook's own reason ([`Control::stop`]).
    #[default]
    Hook,
    /// Interrupted: Ctrl-C or a termination signal ([`crate::hooks::Interrupt`]).
    Interrupted,
    /// A time limit ran out ([`crate::hooks::TimeLimit`]).
    TimeLimit,
    /// The monitored metric stopped improving, reached its stopping threshold or diverged
    /// ([`crate::hooks::EarlyStopping`]).
    EarlyStopping,
    /// A loss or monitored value that is not finite ([`crate::hooks::TerminateOnNaN`], early
    /// stopping's finite check).
    NotFinite,
    /// Too many rollbacks within their window ([`crate::Rollback::give_up_after`]).
    Rollbacks,
    /// Another rank stopped (data-parallel: every rank stops at the same boundary).
    OtherRank,
}

impl StopCause {
    /// Its name as the records write it: `hook`, `interrupted`, `time_limit`, `early_stopping`,
    /// `not_finite`, `rollbacks`, `other_rank`.
    pub fn name(self) -> &'static str {
        match self {
            StopCause::Hook => "hook",
            StopCause::Interrupted => "interrupted",
            StopCause::TimeLimit => "time_limit",
            StopCause::EarlyStopping => "early_stopping",
            StopCause::NotFinite => "not_finite",
            StopCause::Rollbacks => "rollbacks",
            StopCause::OtherRank => "other_rank",
        }
    }
}

impl std::fmt::Display for StopCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Control {
    /// Stop training, for `reason` (kept in the history: [`crate::History::stop_reason`]); a
    /// hook's own stop ([`StopCause::Hook`]).
    pub fn stop(reason: impl Into<String>) -> Self {
        Control::stop_for(StopCause::Hook, reason)
    }

    /// Stop training for `reason`, a stop of the kind `cause` (a time limit of your own:
    /// [`StopCause::TimeLimit`]).
    pub fn stop_for(cause: StopCause, reason: impl Into<String>) -> Self {
        Control::Stop {
            cause,
            reason: reason.into(),
        }
    }

    /// Whether this asks to stop.
    pub fn is_stop(&self) -> bool {
        matches!(self, Control::Stop { .. })
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
