//! The one error type of trainmon: every message names its cause.

use crate::spec::HookLocation;
use std::path::PathBuf;

/// A boxed error, as hooks return them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with trainmon's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in trainmon; every variant says what, where, and with which value.
///
/// Each cause is printed once: `{}` gives the error's own message, its cause is its
/// [`source`](std::error::Error::source) (as `anyhow` prints it: "Caused by: …"), and `{:#}`
/// gives the message and every cause on one line, `a: b: c`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The dataset cannot be trained on (lengths differ, no samples, wrong kinds…).
    Data(String),
    /// The `Trainer` was set up with a value it cannot use (batch size 0, no optimizer…).
    Config(String),
    /// libtorch refused an operation; `context` says which and on what shapes.
    Torch {
        /// What the loop was doing, with the shapes and kinds involved.
        context: String,
        /// libtorch's error.
        source: TorchError,
    },
    /// A hook returned an error or panicked; training stopped.
    Hook {
        /// The hook's function name (or the name of a run-time hook).
        hook: String,
        /// Where the hook is defined.
        location: HookLocation,
        /// What went wrong.
        source: BoxError,
    },
    /// A file or directory could not be read or written.
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
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A plot could not be drawn.
    Plot {
        /// The plot's file.
        path: PathBuf,
        /// What the plotting backend said.
        message: String,
    },
}

/// libtorch's error: the first line of its message (libtorch goes on with a C++ stack), and
/// tch's error itself where there was one (an operation that returned it, not a panic).
#[derive(Debug)]
pub struct TorchError {
    message: String,
    tch: Option<tch::TchError>,
}

impl TorchError {
    /// libtorch's whole message, its C++ stack included.
    pub fn full_message(&self) -> String {
        match &self.tch {
            Some(tch::TchError::Torch(message)) => message.clone(),
            Some(other) => other.to_string(),
            None => self.message.clone(),
        }
    }

    /// tch's error, unless libtorch's failure came as a panic of the bindings.
    pub fn tch_error(&self) -> Option<&tch::TchError> {
        self.tch.as_ref()
    }
}

impl std::fmt::Display for TorchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TorchError {}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Data(message) => write!(f, "invalid dataset: {message}")?,
            Error::Config(message) => write!(f, "invalid trainer setup: {message}")?,
            Error::Torch { context, .. } => f.write_str(context)?,
            Error::Hook { hook, location, .. } => write!(f, "hook `{hook}` ({location}) failed")?,
            Error::Io { action, path, .. } => write!(f, "could not {action} {}", path.display())?,
            Error::Checkpoint { path, message } => {
                write!(f, "checkpoint {} cannot be loaded: {message}", path.display())?
            }
            Error::Plot { path, message } => write!(f, "could not draw the plot {}: {message}", path.display())?,
        }
        if f.alternate() {
            let mut cause = std::error::Error::source(self);
            while let Some(error) = cause {
                write!(f, ": {error}")?;
                cause = error.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Torch { source, .. } => Some(source),
            Error::Hook { source, .. } => Some(&**source),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Error {
    /// A libtorch error, with the context of what the loop was doing.
    pub(crate) fn torch(context: impl Into<String>, err: tch::TchError) -> Self {
        let message = match &err {
            tch::TchError::Torch(message) => first_line(message).to_owned(),
            other => other.to_string(),
        };
        Error::Torch {
            context: context.into(),
            source: TorchError {
                message,
                tch: Some(err),
            },
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
            source: TorchError {
                message: message.to_owned(),
                tch: None,
            },
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
        assert_eq!(format!("{err:#}"), "ctx: Target 5 is out of bounds.", "a TchError");
        assert_eq!(err.to_string(), "ctx", "the cause is the source, printed once");
        let source = std::error::Error::source(&err).expect("a source");
        assert_eq!(source.to_string(), "Target 5 is out of bounds.");
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
            assert_eq!(format!("{:#}", Error::torch_panic("ctx", panic)), want, "{why}");
        }
    }
}
