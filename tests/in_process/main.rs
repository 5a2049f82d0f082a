//! The integration tests that train in the test process: one module a scenario, its tests
//! `module::test` (`cargo xtask test --test in_process resume::` runs one module's).
//!
//! The modules share the binary's hook registry and libtorch's one generator: every fit selects
//! its hooks (its module's group, or none) — the hook below fails one that would run them all —,
//! and a test that draws from the generator holds `trainmon_tests::serial()`.

mod all_events;
mod architecture;
mod bad_input;
mod batch;
mod batch_stop;
mod builtins;
mod checkpoints_in_pytorch;
mod control_stop;
mod cuda_linked;
mod determinism;
mod ema;
mod exception;
mod failing_hooks;
mod filters;
mod grad_stats;
mod history_json;
mod hook_costs;
mod hook_order;
mod hooks_called;
mod learning_rate;
mod loader;
mod local_keys;
mod local_state;
mod losses_metrics;
mod mlflow;
mod model_modes;
mod precision;
mod resume;
mod run_time_hooks;
mod slow_hooks;
mod soak;
mod status_file;
mod steps;
mod tensorboard;

// A fit that runs every registered hook would run every module's: it fails at its start.
trainmon_tests::every_fit_selects_its_hooks!();
