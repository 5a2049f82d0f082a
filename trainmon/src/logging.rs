//! One call to see what training says: a `tracing` subscriber that behaves.
//!
//! trainmon's built-ins ([`crate::hooks::Logger`], warnings about slow hooks, the summary) and
//! your hooks log through [`tracing`], which prints nothing until the program installs a
//! subscriber. [`init`] installs one:
//!
//! - its level comes from `RUST_LOG` (`info` when unset): `RUST_LOG=warn` keeps only warnings,
//!   `RUST_LOG=trainmon=debug` shows trainmon's own debug lines;
//! - it writes colours only to a terminal, and none when `NO_COLOR` is set;
//! - it has the progress-bar layer, so [`crate::hooks::Progress`] draws its bars (on a terminal)
//!   and log lines do not tear them.
//!
//! ```no_run
//! fn main() -> trainmon::Result<()> {
//!     trainmon::logging::init()?;
//!     // … train: `INFO epoch 1/5 done in 0.21 s: loss 0.6931, accuracy 0.5012`
//!     Ok(())
//! }
//! ```
//!
//! [`Logging`] chooses more: the tutorial's bare messages (no level), timestamps, another
//! default level.

use crate::error::{Error, Result};
use std::io::IsTerminal;
use tracing_indicatif::IndicatifLayer;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Installs the default subscriber: `LEVEL message` lines on stdout, `RUST_LOG` honoured
/// (default `info`), colour only on a terminal and without `NO_COLOR`, progress bars wired in.
/// An error if the program already installed a subscriber.
pub fn init() -> Result<()> {
    Logging::new().init()
}

/// A subscriber to install, configured: `Logging::new().bare().init()?`.
#[derive(Debug, Clone)]
#[must_use = "a `Logging` does nothing until `.init()`"]
pub struct Logging {
    bare: bool,
    time: bool,
    default: LevelFilter,
}

impl Logging {
    /// Lines with their level, without timestamps; `info` unless `RUST_LOG` says otherwise.
    pub fn new() -> Self {
        Logging {
            bare: false,
            time: false,
            default: LevelFilter::INFO,
        }
    }

    /// The messages alone, as the tutorial prints them (`Batch 10: Loss = 0.7012, …`).
    pub fn bare(mut self) -> Self {
        self.bare = true;
        self
    }

    /// Each line starts with its time.
    pub fn timestamps(mut self, on: bool) -> Self {
        self.time = on;
        self
    }

    /// The level when `RUST_LOG` is not set (default `info`).
    pub fn default_level(mut self, level: tracing::Level) -> Self {
        self.default = level.into();
        self
    }

    /// Installs it as the program's subscriber; an error if one is installed already.
    pub fn init(self) -> Result<()> {
        let filter = EnvFilter::builder()
            .with_default_directive(self.default.into())
            .from_env_lossy();
        let indicatif = IndicatifLayer::new();
        let lines = tracing_subscriber::fmt::layer()
            .with_ansi(colour())
            .with_target(false)
            .with_level(!self.bare)
            .with_writer(indicatif.get_stdout_writer());
        // Only the lines are filtered: `RUST_LOG=warn` keeps the bars of `Progress`.
        let lines = if self.time {
            lines.boxed()
        } else {
            lines.without_time().boxed()
        };
        tracing_subscriber::registry()
            .with(lines.with_filter(filter))
            .with(indicatif)
            .try_init()
            .map_err(|e| Error::config("Logging", format!("logging could not be installed: {e}")))
    }
}

impl Default for Logging {
    fn default() -> Self {
        Logging::new()
    }
}

/// Whether to write colour codes: to a terminal, unless `NO_COLOR` is set (to anything but "").
fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Says once, on stderr, that log lines are going nowhere, when no subscriber is installed:
/// for hooks that exist to log ([`crate::hooks::Logger`]).
pub(crate) fn warn_if_unseen(what: &str) {
    static SAID: std::sync::Once = std::sync::Once::new();
    let unseen = tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>());
    if unseen {
        SAID.call_once(|| {
            eprintln!(
                "trainmon: {what} logs through `tracing`, but no subscriber is installed, so nothing is printed: \
                 call `trainmon::logging::init()?` at the start of `main`"
            );
        });
    }
}
