//! Hooks defined in a library crate of the workspace, which depends on trainmon under another
//! name (`tm`): the attributes find it in `Cargo.toml`, or are told with `crate = "tm"`. A
//! binary runs these hooks only if it links this crate, e.g. with `use trainmon_test_hooks as _;`.

use std::sync::Mutex;
use tm::prelude::*;

/// The epochs at which [`library_hook`] ran.
pub static CALLS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Records each epoch's number.
#[on_epoch_end(crate = "tm", group = "from_library")]
pub fn library_hook(epoch: &EpochLogs) {
    CALLS.lock().unwrap().push(epoch.epoch());
}

/// The epochs at which [`renamed_found`] ran.
pub static FOUND: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// The same, its attribute without `crate`: it reads the renamed dependency from `Cargo.toml`.
#[on_epoch_end(group = "from_library")]
pub fn renamed_found(epoch: &EpochLogs) {
    FOUND.lock().unwrap().push(epoch.epoch());
}
