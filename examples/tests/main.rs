//! The examples' tests, one binary: each module starts its example (`target/…/examples/NAME`,
//! which `cargo test` builds beside this binary) and checks what it did and wrote — `rebuilds`
//! runs cargo on the workspace instead; its tests are `module::test` (`cargo xtask test --test
//! examples resume::`).

mod common;

mod char_lm;
mod data_parallel;
mod early_stop;
mod full_monitoring;
mod gan;
mod interrupt;
mod rebuilds;
mod resume;
mod watch;
