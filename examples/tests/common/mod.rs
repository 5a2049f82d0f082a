//! What the example tests share.

use std::path::PathBuf;

/// One test at a time (when each file was a binary of its own, the files ran one after
/// another): each test trains in processes of its example, and some time what they do (kills
/// timed against a run's measured length, signals after the second epoch), which a second
/// training process on the machine would change.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

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

/// Runs example `name` with `args` and `--out OUT`, in `out`, with `env`: it must succeed and
/// print its run directory (`OUT/<name>/version_0`) last. Returns that directory and its stdout.
pub fn run_in(name: &str, args: &[&str], out: &std::path::Path, env: &[(&str, &str)]) -> (PathBuf, String) {
    let mut command = std::process::Command::new(example(name));
    command.args(args).arg("--out").arg(out);
    for (key, value) in env {
        command.env(key, value);
    }
    let result = command
        .output()
        .unwrap_or_else(|e| panic!("run the {name} example: {e}"));
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stdout}\n{stderr}");
    let run = out.join(name).join("version_0");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with(&format!("Run directory: {}", run.display())), "{stdout}");
    (run, stdout)
}
