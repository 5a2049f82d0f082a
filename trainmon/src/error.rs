//! The one error type of trainmon: every message names its cause.

use crate::spec::HookLocation;
use std::path::PathBuf;

/// A boxed error, as hooks return them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with trainmon's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in trainmon; every variant says what, where, and with which value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The dataset cannot be trained on (lengths differ, no samples, wrong kinds…).
    #[error("invalid dataset: {0}")]
    Data(String),
    /// The `Trainer` was set up with a value it cannot use (batch size 0, no optimizer…).
    #[error("invalid trainer setup: {0}")]
    Config(String),
    /// libtorch refused an operation; `context` says which and on what shapes.
    #[error("{context}: {message}")]
    Torch {
        /// What the loop was doing, with the shapes and kinds involved.
        context: String,
        /// libtorch's own message, first line.
        message: String,
    },
    /// A hook returned an error or panicked; training stopped.
    #[error("hook `{hook}` ({location}) failed: {source}")]
    Hook {
        /// The hook's function name (or the name of a run-time hook).
        hook: String,
        /// Where the hook is defined.
        location: HookLocation,
        /// What went wrong.
        source: BoxError,
    },
    /// A file or directory could not be read or written.
    #[error("could not {action} {path}: {source}", path = path.display())]
    Io {
        /// What was being done ("create the run directory", "write", …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A checkpoint cannot be loaded into the model: unreadable (truncated, not safetensors) or
    /// made for another model (variables missing, extra, or of other shapes).
    #[error("checkpoint {path} cannot be loaded: {message}", path = path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A plot could not be drawn.
    #[error("could not draw the plot {path}: {message}", path = path.display())]
    Plot {
        /// The plot's file.
        path: PathBuf,
        /// What the plotting backend said.
        message: String,
    },
}

impl Error {
    /// A libtorch error, with the context of what the loop was doing.
    pub(crate) fn torch(context: impl Into<String>, err: tch::TchError) -> Self {
        let message = match err {
            tch::TchError::Torch(message) => first_line(&message).to_owned(),
            other => other.to_string(),
        };
        Error::Torch {
            context: context.into(),
            message,
        }
    }

    /// A panic inside the libtorch bindings (tch panics where libtorch throws), made an error.
    /// Its message is `called `Result::unwrap()` on an `Err` value: Torch("…")`, escaped.
    pub(crate) fn torch_panic(context: impl Into<String>, panic: &str) -> Self {
        let inner = panic
            .strip_prefix("called `Result::unwrap()` on an `Err` value: ")
            .unwrap_or(panic);
        let message = match inner.strip_prefix("Torch(\"") {
            Some(rest) => {
                let rest = rest.strip_suffix("\")").unwrap_or(rest);
                first_line(rest.split("\\n").next().unwrap_or(rest))
            }
            None => first_line(inner),
        };
        Error::Torch {
            context: context.into(),
            message: message.to_owned(),
        }
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { action, path, source }
    }
}

/// libtorch's messages go on with "Exception raised from …" and a C++ stack: keep the cause.
fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_messages_keep_their_first_line() {
        let err = Error::torch(
            "ctx",
            tch::TchError::Torch("Target 5 is out of bounds.\nException raised from nll_loss".into()),
        );
        assert_eq!(err.to_string(), "ctx: Target 5 is out of bounds.", "a TchError");
        let cases = [
            (
                "called `Result::unwrap()` on an `Err` value: Torch(\"mat1 and mat2 shapes cannot be multiplied (32x10 and 20x2)\\nException raised from x\")",
                "ctx: mat1 and mat2 shapes cannot be multiplied (32x10 and 20x2)",
                "an unwrapped TchError",
            ),
            ("called `Result::unwrap()` on an `Err` value: Torch(\"one line (a)\")", "ctx: one line (a)", "no stack"),
            ("index out of range", "ctx: index out of range", "another panic"),
        ];
        for (panic, want, why) in cases {
            assert_eq!(Error::torch_panic("ctx", panic).to_string(), want, "{why}");
        }
    }
}
