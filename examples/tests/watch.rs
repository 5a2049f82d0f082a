//! `cargo trainmon watch` attached to a real training (the `full_monitoring` example), in a
//! pseudo-terminal whose screen is parsed as a terminal would show it: the run is drawn while
//! it trains, follows it epoch after epoch, shows its end, switches metric on a key, and `q`
//! quits, leaving the terminal as it was.
//!
//! The training runs for many epochs (they take milliseconds here) and is ended with Ctrl-C's
//! signal, which the example's `Interrupt` hook turns into a clean stop.

use crate::common::example;

use portable_pty::{CommandBuilder, PtySize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const ROWS: u16 = 40;
const COLS: u16 = 120;

/// The `cargo-trainmon` binary, built beside the examples (`cargo test --workspace` builds it).
fn cargo_trainmon() -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_owned();
    let path = deps.parent().unwrap().join("cargo-trainmon");
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p cargo-trainmon`",
        path.display()
    );
    path
}

/// A terminal's screen, fed with what the program in it writes.
struct Screen {
    parser: vt100::Parser,
    output: Receiver<Vec<u8>>,
}

impl Screen {
    /// Reads what came, and returns the screen's text.
    fn text(&mut self) -> String {
        while let Ok(bytes) = self.output.try_recv() {
            self.parser.process(&bytes);
        }
        self.parser.screen().contents()
    }

    /// Waits up to 30 s for the screen's text to satisfy `done`; returns the text then.
    fn wait_for(&mut self, what: &str, mut done: impl FnMut(&str) -> bool) -> String {
        self.wait_until(what, |screen| done(&screen.contents()));
        self.text()
    }

    /// Waits up to 30 s for the screen to satisfy `done`.
    fn wait_until(&mut self, what: &str, mut done: impl FnMut(&vt100::Screen) -> bool) {
        let started = Instant::now();
        loop {
            let text = self.text();
            if done(self.parser.screen()) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}; the screen:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The epoch in the gauge `epoch N/100000`, if the screen shows one.
fn gauge_epoch(text: &str) -> Option<u64> {
    let at = text.find("epoch ")? + "epoch ".len();
    let rest = &text[at..];
    let (epoch, rest) = rest.split_once('/')?;
    rest.starts_with("100000").then_some(())?;
    epoch.parse().ok()
}

fn wait_file(path: &Path) {
    let started = Instant::now();
    while !std::fs::read_to_string(path).is_ok_and(|t| t.lines().count() >= 1) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn watch_follows_a_training_run_in_a_terminal() {
    let _serial = crate::common::serial();
    let out = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(out.path().join("training.log")).unwrap();
    let mut training = Command::new(example("full_monitoring"))
        .args(["--epochs", "100000", "--patience", "100000", "--out"])
        .arg(out.path())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let run = out.path().join("full_monitoring").join("version_0");
    let metrics = run.join("metrics");
    wait_file(&metrics.join("epochs.jsonl"));
    wait_file(&metrics.join("status.json"));

    let pty = portable_pty::native_pty_system()
        .openpty(PtySize {
            rows: ROWS,
            cols: COLS,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut command = CommandBuilder::new(cargo_trainmon());
    command.args(["watch".as_ref(), run.as_os_str(), "--interval".as_ref(), "100".as_ref()]);
    command.env("TERM", "xterm-256color");
    command.cwd(out.path());
    let mut watch = pty.slave.spawn_command(command).unwrap();
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let mut keys = pty.master.take_writer().unwrap();
    let (sender, output) = channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        // Until the terminal closes (EOF, or EIO once the program has exited).
        while let Ok(n @ 1..) = reader.read(&mut buffer) {
            if sender.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = Screen {
        parser: vt100::Parser::new(ROWS, COLS, 0),
        output,
    };

    let text = screen.wait_for("the run drawn as running, with its epoch gauge", |t| {
        t.contains("running ·") && gauge_epoch(t).is_some()
    });
    assert!(
        text.contains(&run.display().to_string()),
        "the directory in the header:\n{text}"
    );
    assert!(text.contains(" loss by epoch (log) "), "the default metric:\n{text}");
    let first = gauge_epoch(&text).unwrap();
    let text = screen.wait_for("later epochs", |t| gauge_epoch(t).is_some_and(|e| e >= first + 2));
    assert!(text.contains("best val_loss"), "{text}");

    keys.write_all(b"\x1b[C").unwrap(); // →
    keys.flush().unwrap();
    let text = screen.wait_for("the next metric", |t| t.contains(" accuracy by epoch "));
    assert!(!text.contains(" loss by epoch "), "{text}");

    let sent = Command::new("kill")
        .args(["-INT", &training.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = training.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the training did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(out.path().join("training.log")).unwrap()
    );
    let text = screen.wait_for("the end of the run", |t| t.contains("finished ·"));
    assert!(text.contains("stopped: "), "the stop reason:\n{text}");
    assert!(!text.contains("running ·"), "{text}");

    keys.write_all(b"q").unwrap();
    keys.flush().unwrap();
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = watch.try_wait().unwrap() {
            break exit;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "`q` did not quit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        exit.success(),
        "watch exited with {exit:?}; the screen:\n{}",
        screen.text()
    );
    // What it wrote last may still be on its way.
    screen.wait_until("the terminal's main screen back", |screen| !screen.alternate_screen());
    let files: Vec<String> = std::fs::read_dir(&metrics)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("epochs.") || f.starts_with("steps.") || f == "status.json"),
        "watch wrote nothing there: {files:?}"
    );
}
