//! The one error type of trainmon: every message names its cause.

use crate::schedule::spec::HookLocation;
use std::path::PathBuf;

/// A boxed error, as hooks return them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with trainmon's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in trainmon; every variant says what, where, and with which value.
///
/// Each cause is printed once: `{}` gives the error's own message, its cause is its
/// [`source`](std::error::Error::source) (as `anyhow` prints it: "Caused by: …"), and `{:#}`
/// gives the message and every cause on one line, `a: b: c`. `{:?}` — what `main` prints of the
/// error it returns (`fn main() -> trainmon::Result<()>`) — is the message, then its causes under
/// "Caused by:", one a line, as anyhow's; match on the variants for their fields.
#[non_exhaustive]
pub enum Error {
    /// The dataset cannot be trained on (lengths differ, no samples, wrong kinds…).
    Data(String),
    /// The `Trainer`, or a part given to it, was set up with a value it cannot use (batch size
    /// 0, no optimizer, a prefetch without workers…); `setting` says which.
    Config {
        /// The setting at fault, as it is written: a `Trainer` method (`"batch_size"`,
        /// `"optimizer_for"`, `"rollback"`…), or the part given to it (`"Loader::prefetch"`,
        /// `"Ema"`, `"Rendezvous::from_env"`…).
        setting: &'static str,
        /// What is wrong with its value, and what would do.
        message: String,
    },
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
    /// Training across processes failed: the group could not be joined (the store at its
    /// address did not answer within the timeout), a collective failed (a rank died), or the
    /// ranks disagree (on the model…); the message names the address, the operation or the rank.
    Distributed(String),
    /// A plot could not be drawn.
    Plot {
        /// The plot's file.
        path: PathBuf,
        /// What the plotting backend said.
        message: String,
    },
    /// The dataset could not build a batch: [`crate::Dataset::batch`] returned an error or
    /// panicked, on the training thread or on a [`crate::Loader`]'s worker.
    Batch {
        /// The batch's sample indices, in its order.
        indices: Vec<i64>,
        /// The dataset's error, or the panic's message.
        source: BoxError,
    },
    /// A training or validation step of the user's ([`crate::TrainStep`]) returned an error or
    /// panicked, or returned a loss the loop cannot train with (not a scalar, no gradient).
    Step {
        /// Which batch: `batch 3 of epoch 1`, `validation batch 2 of epoch 1`.
        at: String,
        /// The step's error, the panic's message, or what is wrong with its loss.
        source: BoxError,
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
            Error::Config { setting, message } => write!(f, "invalid trainer setup (`{setting}`): {message}")?,
            Error::Torch { context, .. } => f.write_str(context)?,
            Error::Hook { hook, location, .. } => write!(f, "hook `{hook}` ({location}) failed")?,
            Error::Io { action, path, .. } => write!(f, "could not {action} {}", path.display())?,
            Error::Checkpoint { path, message } => {
                write!(f, "checkpoint {} cannot be loaded: {message}", path.display())?
            }
            Error::Plot { path, message } => write!(f, "could not draw the plot {}: {message}", path.display())?,
            Error::Batch { indices, .. } => write!(
                f,
                "the dataset could not build the batch of samples {}",
                samples(indices)
            )?,
            Error::Distributed(message) => write!(f, "distributed training: {message}")?,
            Error::Step { at, .. } => write!(f, "the step failed on {at}")?,
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

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let causes: Vec<String> = std::iter::successors(std::error::Error::source(self), |e| e.source())
            .map(ToString::to_string)
            .collect();
        match causes.as_slice() {
            [] => Ok(()),
            [one] => write!(f, "\n\nCaused by:\n    {one}"),
            many => {
                f.write_str("\n\nCaused by:")?;
                for (i, cause) in many.iter().enumerate() {
                    write!(f, "\n    {i}: {cause}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Torch { source, .. } => Some(source),
            Error::Hook { source, .. } => Some(&**source),
            Error::Io { source, .. } => Some(source),
            Error::Batch { source, .. } => Some(&**source),
            Error::Step { source, .. } => Some(&**source),
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

    /// A setting that cannot be used, [`Error::Config`].
    pub(crate) fn config(setting: &'static str, message: String) -> Self {
        Error::Config { setting, message }
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { action, path, source }
    }
}

impl From<crate::precision::scaler::Failed> for Error {
    fn from(crate::precision::scaler::Failed(what, err): crate::precision::scaler::Failed) -> Self {
        Error::torch(format!("the gradient scaler {what}"), err)
    }
}

impl Error {
    /// The dataset's error on the batch of `indices`, as an [`Error::Batch`] (unless it is one).
    pub(crate) fn batch(indices: &[i64], err: Error) -> Self {
        match err {
            Error::Batch { .. } => err,
            other => Error::Batch {
                indices: indices.to_vec(),
                source: Box::new(other),
            },
        }
    }

    /// A panic of the dataset while it built the batch of `indices`; `thread` says on which
    /// thread ("", " on loader worker 2").
    pub(crate) fn batch_panic(indices: &[i64], panic: &str, thread: &str) -> Self {
        Error::Batch {
            indices: indices.to_vec(),
            source: format!("panicked{thread}: {panic}").into(),
        }
    }
}

/// A batch's sample indices for a message: the first few, and how many.
/// `[3, 17, 42, 8, 11, 90, …] (32 samples)`
pub(crate) fn samples(indices: &[i64]) -> String {
    const SHOWN: usize = 6;
    let mut list: Vec<String> = indices.iter().take(SHOWN).map(i64::to_string).collect();
    if indices.len() > SHOWN {
        list.push("…".into());
    }
    let count = match indices.len() {
        1 => "1 sample".to_owned(),
        n => format!("{n} samples"),
    };
    format!("[{}] ({count})", list.join(", "))
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

    #[test]
    fn debug_reads_as_main_prints_it() {
        let err = Error::config("epochs", "epochs must be at least 1, got 0".into());
        assert_eq!(
            format!("{err:?}"),
            "invalid trainer setup (`epochs`): epochs must be at least 1, got 0"
        );
        let io = Error::Io {
            action: "create the run directory",
            path: "/runs/a".into(),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied (os error 13)"),
        };
        let hook = Error::Hook {
            hook: "MetricFiles".into(),
            location: HookLocation {
                file: "src/main.rs",
                line: 12,
                column: 10,
            },
            source: Box::new(io),
        };
        assert_eq!(
            format!("{hook:?}"),
            "hook `MetricFiles` (src/main.rs:12) failed\n\nCaused by:\n    0: could not create the run directory \
             /runs/a\n    1: Permission denied (os error 13)"
        );
    }

    #[test]
    fn batch_errors_name_their_samples_and_cause() {
        let indices: Vec<i64> = (10..42).rev().collect();
        let err = Error::batch(&indices, Error::Data("file 7 is truncated".into()));
        assert_eq!(
            format!("{err:#}"),
            "the dataset could not build the batch of samples [41, 40, 39, 38, 37, 36, …] (32 samples): invalid \
             dataset: file 7 is truncated"
        );
        let again = Error::batch(&[1], err);
        assert!(
            matches!(&again, Error::Batch { indices, .. } if indices.len() == 32),
            "not wrapped twice"
        );
        let panic = Error::batch_panic(&[5], "boom", " on loader worker 2");
        assert_eq!(
            format!("{panic:#}"),
            "the dataset could not build the batch of samples [5] (1 sample): panicked on loader worker 2: boom"
        );
        assert_eq!(samples(&[1, 2]), "[1, 2] (2 samples)");
    }
}
