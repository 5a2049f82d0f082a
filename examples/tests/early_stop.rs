//! The `early_stop` example prints exactly the tutorial's lines and writes the three plots.

use crate::common::example;

use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) -> Vec<String> {
    let out = Command::new(example("early_stop"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .output()
        .expect("run the early_stop example");
    assert!(
        out.status.success(),
        "example failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `text` is a number printed with exactly `decimals` decimals.
fn is_fixed(text: &str, decimals: usize) -> bool {
    matches!(text.split_once('.'), Some((int, frac)) if !int.is_empty()
        && int.chars().all(|c| c.is_ascii_digit())
        && frac.len() == decimals
        && frac.chars().all(|c| c.is_ascii_digit()))
}

/// Checks the lines of one epoch against the tutorial's format; returns the lines it used.
fn check_epoch(lines: &[String], epoch: usize) -> usize {
    assert_eq!(lines[0], format!("Epoch {epoch} starting."), "epoch {epoch} start");
    for (i, batch) in [10, 20, 30].into_iter().enumerate() {
        let line = &lines[1 + i];
        let rest = line
            .strip_prefix(&format!("Batch {batch}: Loss = "))
            .unwrap_or_else(|| panic!("batch line {line:?}"));
        let (loss, accuracy) = rest
            .split_once(", Accuracy = ")
            .unwrap_or_else(|| panic!("batch line {line:?}"));
        assert!(is_fixed(loss, 4) && is_fixed(accuracy, 4), "4 decimals in {line:?}");
    }
    let line = &lines[4];
    let secs = line
        .strip_prefix(&format!("Epoch {epoch} finished in "))
        .and_then(|r| r.strip_suffix(" seconds."))
        .unwrap_or_else(|| panic!("epoch end line {line:?}"));
    assert!(is_fixed(secs, 2), "2 decimals in {line:?}");
    5
}

fn check_plots(dir: &Path) {
    for name in ["loss.png", "accuracy.png", "epoch_time.png"] {
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name} is a PNG");
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((width, height), (1000, 500), "{name} size");
    }
    let entries = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(entries, 3, "only the three plots, no temporary file left");
}

#[test]
fn five_epochs_print_the_tutorials_lines() {
    let _serial = crate::common::serial();
    let out = tempfile::tempdir().unwrap();
    let lines = run(&["--out", out.path().to_str().unwrap()]);
    let mut at = 0;
    for epoch in 1..=5 {
        at += check_epoch(&lines[at..], epoch);
    }
    let run_dir = out.path().join("early_stop").join("version_0");
    assert_eq!(
        lines[at..],
        [
            "Outputs: accuracy.png, epoch_time.png, loss.png".to_owned(),
            format!("Run directory: {}", run_dir.display())
        ],
        "what the run wrote, then the run directory, last"
    );
    check_plots(&run_dir);
}

#[test]
fn early_stopping_fires_with_many_epochs() {
    let _serial = crate::common::serial();
    let out = tempfile::tempdir().unwrap();
    let lines = run(&[
        "--epochs",
        "200",
        "--patience",
        "2",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let stop = lines
        .iter()
        .position(|l| l == "Early stopping triggered.")
        .expect("early stopping fired");
    let epochs = stop / 5;
    assert!(epochs > 2 && epochs < 200, "stopped after {epochs} epochs");
    let mut at = 0;
    for epoch in 1..=epochs {
        at += check_epoch(&lines[at..], epoch);
    }
    assert_eq!(at, stop, "the stop line follows the last epoch's end line");
    assert_eq!(
        lines.len(),
        stop + 3,
        "then only what the run wrote and the run directory"
    );
    assert!(lines[stop + 1].starts_with("Outputs: "), "{}", lines[stop + 1]);
    check_plots(&out.path().join("early_stop").join("version_0"));
}

#[test]
fn an_unwritable_output_directory_fails_before_training() {
    let _serial = crate::common::serial();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let result = Command::new(example("early_stop"))
        .args(["--out", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!result.status.success());
    assert!(
        result.stdout.is_empty(),
        "no epoch ran: {}",
        String::from_utf8_lossy(&result.stdout)
    );
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("could not create the run directory"), "{stderr}");
}

/// The example's stdout with `envs` set (and no other `RUST_LOG`/`NO_COLOR`), for one epoch.
fn printed(envs: &[(&str, &str)]) -> String {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(example("early_stop"));
    cmd.args(["--epochs", "1", "--out", out.path().to_str().unwrap()])
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .envs(envs.iter().copied());
    let result = cmd.output().unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    String::from_utf8(result.stdout).unwrap()
}

#[test]
fn rust_log_sets_what_is_printed() {
    let _serial = crate::common::serial();
    let default = printed(&[]);
    assert!(default.contains("Epoch 1 starting."), "{default}");
    assert!(!default.contains("fit starts"), "no debug line by default: {default}");
    assert_eq!(printed(&[("RUST_LOG", "warn")]), "", "warn silences the info lines");
    assert_eq!(printed(&[("RUST_LOG", "off")]), "");
    let debug = printed(&[("RUST_LOG", "info,trainmon=debug")]);
    assert!(
        debug.contains("fit starts") && debug.contains("Epoch 1 starting."),
        "trainmon's own debug lines: {debug}"
    );
    assert!(!debug.contains('\x1b'), "no colour codes into a pipe: {debug:?}");
}

/// The example's output under a pseudo-terminal (`script`), with `envs` set.
fn on_a_terminal(envs: &[(&str, &str)]) -> String {
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("typescript");
    let command = format!(
        "{} --epochs 1 --out {}",
        example("early_stop").display(),
        out.path().display()
    );
    let result = Command::new("script")
        .args(["-q", "-e", "-c", &command])
        .arg(&log)
        .env_remove("NO_COLOR")
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run `script` (util-linux)");
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    std::fs::read_to_string(log).unwrap()
}

#[test]
fn colours_only_on_a_terminal_and_never_with_no_color() {
    let _serial = crate::common::serial();
    let debug = ("RUST_LOG", "info,trainmon=debug");
    let coloured = on_a_terminal(&[debug]);
    assert!(coloured.contains("fit starts"), "{coloured}");
    assert!(coloured.contains("\x1b["), "a terminal gets colours: {coloured:?}");
    let plain = on_a_terminal(&[debug, ("NO_COLOR", "1")]);
    assert!(plain.contains("fit starts"), "{plain}");
    assert!(!plain.contains("\x1b["), "NO_COLOR: none: {plain:?}");
}
