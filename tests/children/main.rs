//! The integration tests that start child processes of this binary: ranks of a process group
//! (by hand and under `torchrun`), a fit killed with SIGKILL, the test run again as user
//! `nobody` or without a tracing subscriber. A child runs its role, a test of the same module,
//! by that test's name (`trainmon_tests::test_name`, `trainmon_tests::ranks::Ranks`).
//!
//! As in `in_process`, every fit selects its hooks — the hook below fails one that would run
//! them all — and the parts of a test that draw from libtorch's generator in this process hold
//! `trainmon_tests::serial()`; a test that only waits for its children holds nothing.

mod data_parallel;
mod dist;
mod kill_during_write;
mod resources;
mod rollback;
mod unwritable;

// A fit that runs every registered hook would run every module's: it fails at its start.
trainmon_tests::every_fit_selects_its_hooks!();
