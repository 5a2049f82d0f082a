//! Turning panics into errors: tch panics where libtorch throws (a shape mismatch in a model's
//! `forward`), and hooks are user code that may panic.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set while a libtorch call that may panic runs: its panic becomes an error, not a message.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, returning its panic's message as an error. The panic is not printed: the caller
/// reports it as a `trainmon::Error`. Other panics still reach the panic hook in place.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info)
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result.map_err(|payload| message(&*payload))
}

/// Runs `f`, returning its panic's message as an error; the panic is printed as usual (a
/// hook's panic comes with its backtrace).
pub(crate) fn caught<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| message(&*payload))
}

fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_messages() {
        assert_eq!(quietly(|| 7), Ok(7));
        assert_eq!(quietly(|| -> u8 { panic!("shape {}", 3) }), Err("shape 3".to_owned()));
        assert_eq!(caught(|| -> u8 { panic!("static") }), Err("static".to_owned()));
        assert!(!QUIET.with(Cell::get), "quiet flag reset after the call");
    }
}
