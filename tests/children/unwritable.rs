//! Output directories that cannot be created or written — read-only ones, and paths through a
//! file — are errors that name the path and the cause, and what was written before stays.
//!
//! Permissions do not stop root: run as root, the test runs itself again as a child process
//! that drops to user `nobody` first.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use tch::nn::{self, VarStore};
use tch::Device;
use trainmon::hooks::{MetricFiles, ModelCheckpoint, Plots, TensorBoard};
use trainmon::{Error, Hooks, Trainer};
use trainmon_tests::tutorial_data;

/// Set in the child: the directory prepared for it.
const CHILD: &str = "TRAINMON_UNWRITABLE_DIR";
const TEST: &str = "unwritable_output_directories_are_errors_naming_them";
const NOBODY: u32 = 65534;

fn fit(add: impl FnOnce(Trainer<'_>) -> Trainer<'_>) -> trainmon::Result<trainmon::History> {
    let data = tutorial_data(1);
    let vs = VarStore::new(Device::Cpu);
    let model = nn::linear(vs.root(), 20, 2, Default::default());
    let trainer = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(3)
        .hooks(Hooks::none());
    add(trainer).fit(&data)
}

/// The cases, in `root`: a read-only directory `ro/` and a regular file `file`.
fn cases(root: &Path) {
    let _serial = trainmon_tests::serial();
    let ro = root.join("ro");
    let file = root.join("file");
    type Case<'a> = (
        &'a str,
        Box<dyn Fn() -> trainmon::Result<trainmon::History> + 'a>,
        Vec<String>,
    );
    let cases: Vec<Case> = vec![
        (
            "metric files in a read-only directory",
            Box::new(|| fit(|t| t.with(MetricFiles::new(ro.join("metrics"))))),
            vec![format!(
                "could not create the directory {}",
                ro.join("metrics").display()
            )],
        ),
        (
            "checkpoints in a read-only directory",
            Box::new(|| fit(|t| t.with(ModelCheckpoint::new(ro.join("checkpoints"))))),
            vec![format!(
                "could not create the checkpoint directory {}",
                ro.join("checkpoints").display()
            )],
        ),
        (
            "TensorBoard files in a read-only directory",
            Box::new(|| fit(|t| t.with(TensorBoard::new(&ro)))),
            vec![format!(
                "could not create {}",
                ro.join("events.out.tfevents.").display()
            )],
        ),
        (
            "a resume point in a read-only directory",
            Box::new(|| fit(|t| t.resumable(&ro))),
            vec!["resume.safetensors".into(), ro.display().to_string()],
        ),
        (
            "checkpoints under a file",
            Box::new(|| fit(|t| t.with(ModelCheckpoint::new(file.join("checkpoints"))))),
            vec![format!(
                "could not create the checkpoint directory {}",
                file.join("checkpoints").display()
            )],
        ),
        (
            "a resume point under a file",
            Box::new(|| fit(|t| t.resumable(file.join("resume")))),
            vec![format!(
                "could not create the resume directory {}",
                file.join("resume").display()
            )],
        ),
    ];
    for (why, fit, want) in cases {
        let err = format!("{:#}", fit().expect_err(why));
        for piece in &want {
            assert!(err.contains(piece.as_str()), "{why}: expected {piece:?} in {err:?}");
        }
        assert!(
            err.contains("Permission denied") || err.contains("Not a directory"),
            "{why}: the cause in {err:?}"
        );
    }

    // Plots into a read-only directory fail at the end of training: the metric files written
    // during it are whole.
    let metrics = root.join("metrics");
    let err = format!(
        "{:#}",
        fit(|t| t.with(MetricFiles::new(&metrics)).with(Plots::new(&ro))).unwrap_err()
    );
    assert!(
        err.contains("hook `Plots`") && err.contains(&ro.display().to_string()),
        "{err}"
    );
    let lines = std::fs::read_to_string(metrics.join("epochs.csv")).unwrap();
    assert_eq!(lines.lines().count(), 4, "a header and three epochs: {lines}");

    // A run directory in a read-only root.
    let err = trainmon::output::RunDir::create(&ro, "demo").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(
        format!("{err:#}").contains(&ro.join("demo").display().to_string()),
        "{err}"
    );
}

#[test]
fn unwritable_output_directories_are_errors_naming_them() {
    if let Some(root) = std::env::var_os(CHILD) {
        // The child: drop root's privileges, then run the cases.
        // SAFETY: plain system calls, in a process of this test alone.
        unsafe {
            assert_eq!(libc::setgid(NOBODY), 0, "setgid");
            assert_eq!(libc::setuid(NOBODY), 0, "setuid");
        }
        cases(Path::new(&root));
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let ro = root.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::write(root.path().join("file"), b"not a directory").unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // SAFETY: a plain system call.
    if unsafe { libc::geteuid() } != 0 {
        cases(root.path());
        return;
    }
    // As root: the child, as nobody, needs to enter the directory and write beside `ro`.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            trainmon_tests::test_name(module_path!(), TEST).as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, root.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the child failed:\n{text}");
    assert!(text.contains("1 passed"), "the child ran the test:\n{text}");
}
