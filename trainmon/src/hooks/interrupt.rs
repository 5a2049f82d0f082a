//! Stopping cleanly on Ctrl-C or SIGTERM.

use crate::context::HookContext;
use crate::control::{Control, StopCause};
use crate::error::{BoxError, Error};
use crate::hook::{Hook, Plugin};
use crate::schedule::event::Event;
use crate::schedule::priority;
use crate::schedule::spec::HookSpec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The stop reason of a fit an interrupt stopped.
const INTERRUPTED: &str = "interrupted";

/// Exit status after a second signal: 128 + SIGINT, as shells report an interrupted program.
const EXIT_ON_SECOND_SIGNAL: i32 = 130;

/// Graceful interruption, opt in: the library installs no signal handler by itself. After
/// [`Interrupt::install`], the first Ctrl-C or SIGTERM lets the current batch finish, then
/// training stops as if a hook asked to — the epoch's end hooks run (so a `ModelCheckpoint`
/// saves), then the end-of-training ones — and `fit` returns normally with the stop reason
/// `interrupted`. A second signal exits at once.
///
/// ```no_run
/// use trainmon::hooks::Interrupt;
///
/// # fn main() -> trainmon::Result<()> {
/// let interrupt = Interrupt::install()?; // once per process
/// // … Trainer::new(&vs, &model).with(interrupt.clone()) …
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Interrupt {
    signalled: Arc<AtomicBool>,
}

impl Interrupt {
    /// Installs the process's handler for SIGINT and SIGTERM (there can be only one: a second
    /// call, or another handler installed through `ctrlc`, is an error).
    pub fn install() -> crate::Result<Self> {
        let signalled = Arc::new(AtomicBool::new(false));
        let flag = signalled.clone();
        ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                // The second signal: the user means it. `_exit`, not `exit`: running the static
                // destructors of libtorch while the training thread still uses it can crash.
                // SAFETY: `_exit` ends the process at once; it has no preconditions.
                unsafe { libc::_exit(EXIT_ON_SECOND_SIGNAL) }
            }
            eprintln!("interrupted: finishing the current batch (interrupt again to exit at once)");
        })
        .map_err(|e| Error::config("Interrupt", format!("could not install the interrupt handler: {e}")))?;
        Ok(Interrupt { signalled })
    }

    /// Whether a signal came.
    pub fn signalled(&self) -> bool {
        self.signalled.load(Ordering::Relaxed)
    }
}

impl Hook for Interrupt {
    fn call(&mut self, _: &HookContext<'_>) -> Result<Control, BoxError> {
        Ok(if self.signalled() {
            Control::stop_for(StopCause::Interrupted, INTERRUPTED)
        } else {
            Control::Continue
        })
    }
}

impl Plugin for Interrupt {
    fn specs(&self) -> Vec<HookSpec> {
        // After every batch (and at every epoch's start, for a signal between epochs).
        [Event::BatchEnd, Event::EpochBegin]
            .into_iter()
            .map(|event| HookSpec::new(event, "Interrupt").priority(priority::EARLY_STOPPING))
            .collect()
    }
}
