//! What the example tests share.

use std::path::PathBuf;

/// The binary of example `name`, which `cargo test` builds beside the test's (unless the run
/// is filtered to one test: then `cargo build --example NAME` first).
pub fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_owned();
    let path = deps.parent().unwrap().join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --example {name}`",
        path.display()
    );
    path
}
