//! `cargo trainmon watch`: run directories written here as trainmon writes them (see the
//! status.json spec), drawn at a fixed moment on a test terminal and compared with the
//! snapshots in `snapshots/` (`INSTA_UPDATE=always` rewrites them; look at the diff).

use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use trainmon_setup::watch::run::host_name;
use trainmon_setup::watch::{ui, Action, App, Run, State};

/// The moment every test draws at.
const NOW: f64 = 1_764_570_000.0;
const STARTED: f64 = NOW - 312.0;

/// Loss and accuracy of epoch `e` (1-based) of a made-up run that learns.
fn loss(e: usize) -> f64 {
    0.2 + 0.5 * 0.8f64.powi(e as i32)
}
fn accuracy(e: usize) -> f64 {
    0.95 - 0.4 * 0.75f64.powi(e as i32)
}

/// A line of a metric file: its values in the writer's column order.
type Fields = Vec<(&'static str, Value)>;

/// An epoch line.
fn epoch_line(e: usize) -> Fields {
    vec![
        ("epoch", json!(e)),
        ("time_s", json!(2.0 + 0.1 * e as f64)),
        ("loss", json!(loss(e))),
        ("accuracy", json!(accuracy(e))),
        ("val_loss", json!(loss(e) + 0.02 * e as f64)),
        ("val_accuracy", json!(accuracy(e) - 0.02)),
        ("lr", json!(0.001 * 0.9f64.powi(e as i32 - 1))),
        ("throughput", json!(14000.0 + 100.0 * e as f64)),
    ]
}

fn get(fields: &Fields, key: &str) -> f64 {
    fields.iter().find(|(k, _)| *k == key).unwrap().1.as_f64().unwrap()
}

/// A step line every 10 of 50 batches an epoch, up to `epoch`'s `batch`.
fn step_lines(epoch: usize, batch: usize) -> Vec<Fields> {
    let mut lines = Vec::new();
    for e in 1..=epoch {
        for b in (10..=50).step_by(10).filter(|b| e < epoch || *b <= batch) {
            let progress = e as f64 - 1.0 + b as f64 / 50.0;
            lines.push(vec![
                ("epoch", json!(e)),
                ("batch", json!(b)),
                ("step", json!((e - 1) * 50 + b)),
                (
                    "loss",
                    json!(0.2 + 0.6 * 0.8f64.powf(progress) + 0.02 * ((b / 10) % 2) as f64),
                ),
                ("accuracy", json!(0.95 - 0.45 * 0.75f64.powf(progress))),
            ]);
        }
    }
    lines
}

/// One JSON object, keys in order (a `json!` map would sort them).
fn json_line(fields: &Fields) -> String {
    let entries: Vec<String> = fields.iter().map(|(k, v)| format!("{}:{v}", json!(k))).collect();
    format!("{{{}}}", entries.join(","))
}

fn jsonl(lines: &[Fields]) -> String {
    lines.iter().map(|l| json_line(l) + "\n").collect()
}

/// `lines` as CSV, the header from the first; a null is an empty field.
fn csv(lines: &[Fields]) -> String {
    let header: Vec<&str> = lines[0].iter().map(|(k, _)| *k).collect();
    let mut text = header.join(",") + "\n";
    for line in lines {
        let fields: Vec<String> = line.iter().map(|(_, v)| v.to_string().replace("null", "")).collect();
        text += &(fields.join(",") + "\n");
    }
    text
}

/// A status.json as trainmon writes it: `fields` over a running fit's defaults.
fn status(fields: Value) -> String {
    let mut status = json!({
        "format": 1, "state": "running", "pid": std::process::id(), "host": host_name(),
        "started_unix_s": STARTED, "updated_unix_s": NOW - 0.4, "elapsed_s": 311.6,
        "epoch": 4, "epochs": 30, "batch": 17, "batches_per_epoch": 50, "global_step": 167,
        "epoch_elapsed_s": 0.7, "samples_per_s": 14250.0, "lr": 0.000729,
        "running": {"loss": 0.4213, "accuracy": 0.8125},
        "monitor": {"metric": "val_loss", "mode": "min"},
        "stop_reason": null, "error": null, "world_size": 1,
    });
    for (key, value) in fields.as_object().unwrap() {
        status[key] = value.clone();
    }
    status.to_string()
}

/// A run directory `version_0` with its files in `metrics/`.
struct Fixture {
    _tmp: tempfile::TempDir,
    run: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("version_0");
        std::fs::create_dir_all(run.join("metrics")).unwrap();
        std::fs::create_dir_all(run.join("checkpoints")).unwrap();
        Fixture { _tmp: tmp, run }
    }

    fn write(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.run.join("metrics").join(name), text).unwrap();
        self
    }

    fn append(&self, name: &str, text: &str) {
        use std::io::Write;
        let path = self.run.join("metrics").join(name);
        let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    /// The run, named as a user would have typed it.
    fn open(&self, label: &str) -> Run {
        Run::open(&self.run, label)
    }
}

/// A run in epoch 4 of 30, three epochs done, with step lines.
fn running_fixture() -> Fixture {
    let fixture = Fixture::new();
    fixture
        .write("status.json", &status(json!({})))
        .write("epochs.jsonl", &jsonl(&(1..=3).map(epoch_line).collect::<Vec<_>>()))
        .write("steps.jsonl", &jsonl(&step_lines(4, 17)));
    fixture
}

/// A run that early stopping ended after 12 epochs: CSV files only.
fn finished_fixture() -> Fixture {
    let fixture = Fixture::new();
    fixture
        .write(
            "status.json",
            &status(json!({
                "state": "finished", "epoch": 12, "batch": 0, "global_step": 600, "epoch_elapsed_s": 0.0,
                "updated_unix_s": NOW - 3600.0 * 3.0, "elapsed_s": 1402.5, "running": {},
                "stop_reason": "`val_loss` did not improve for 5 epochs",
            })),
        )
        .write("epochs.csv", &csv(&(1..=12).map(epoch_line).collect::<Vec<_>>()))
        .write("steps.csv", &csv(&step_lines(12, 50)));
    fixture
}

/// Draws `app` on a `width` × `height` test terminal at [`NOW`].
fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app, NOW)).unwrap();
    terminal
}

/// The screen's text, a line per row.
fn text(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            text.push_str(buffer[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

/// `text` with each run of spaces before a border (`│`) made one space on the lines that have
/// `on`.
fn collapse_padding(text: &str, on: &str) -> String {
    let lines = text.lines().map(|line| {
        if !line.contains(on) {
            return line.to_owned();
        }
        let mut out = String::new();
        for c in line.chars() {
            if c == '│' && out.ends_with("  ") {
                out.truncate(out.trim_end_matches(' ').len());
                out.push(' ');
            }
            out.push(c);
        }
        out
    });
    lines.collect::<Vec<_>>().join("\n")
}

fn press(app: &mut App, code: KeyCode) -> Action {
    app.key(KeyEvent::new(code, KeyModifiers::NONE))
}

#[test]
fn a_running_run_mid_epoch() {
    let fixture = running_fixture();
    let app = App::new(vec![fixture.open("runs/mnist/version_0")]);
    assert_eq!(app.runs[0].state(NOW), State::Running);
    let screen = draw(&app, 100, 30);
    let text = text(&screen);
    for part in [
        "running · up 5m 12s · updated 0s ago",
        "epoch 4/30",
        "17/50 · 1s left",
        "best val_loss",
        "at epoch 3 (lowest)",
    ] {
        assert!(text.contains(part), "{part:?} in\n{text}");
    }
    assert!(
        text.contains(" loss by epoch (log) "),
        "the monitored metric's base, on a log scale:\n{text}"
    );
    insta::assert_snapshot!("running", screen.backend());
}

#[test]
fn a_finished_run_with_a_stop_reason_and_val_lines() {
    let fixture = finished_fixture();
    let app = App::new(vec![fixture.open("runs/mnist/version_1")]);
    assert_eq!(app.runs[0].state(NOW), State::Finished);
    let best = app.runs[0].best().unwrap();
    let val_losses: Vec<f64> = (1..=12).map(|e| get(&epoch_line(e), "val_loss")).collect();
    let lowest = val_losses.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(best.value, lowest);
    assert_eq!(
        val_losses[best.epoch as usize - 1],
        lowest,
        "the epoch of the best value"
    );
    let screen = draw(&app, 100, 30);
    let text = text(&screen);
    assert!(
        text.contains("finished · 12/30 epochs · took 23m 23s · ended 3h ago"),
        "{text}"
    );
    assert!(
        text.contains("stopped: `val_loss` did not improve for 5 epochs"),
        "{text}"
    );
    assert!(text.contains("val_loss"), "the val_ line in the legend:\n{text}");
    assert!(!text.contains("left"), "no time left for a finished run:\n{text}");
    insta::assert_snapshot!("finished", screen.backend());
}

#[test]
fn a_failed_run_with_its_error() {
    let fixture = Fixture::new();
    fixture
        .write(
            "status.json",
            &status(json!({
                "state": "failed", "epoch": 2, "batch": 31, "global_step": 81, "elapsed_s": 5.9,
                "updated_unix_s": NOW - 40.0, "monitor": null,
                "error": "the loss is NaN at epoch 2, batch 31 (TerminateOnNaN): lower the learning rate",
            })),
        )
        .write("epochs.jsonl", &jsonl(&[epoch_line(1)]));
    let app = App::new(vec![fixture.open("runs/mnist/version_2")]);
    assert_eq!(app.runs[0].state(NOW), State::Failed);
    let screen = draw(&app, 100, 30);
    let text = text(&screen);
    assert!(text.contains("failed · after 6s · 40s ago"), "{text}");
    assert!(text.contains("error: the loss is NaN at epoch 2, batch 31"), "{text}");
    assert!(text.contains("no steps file"), "{text}");
    assert!(
        text.contains("best val_loss"),
        "no monitor: val_loss, as the epochs have it:\n{text}"
    );
    insta::assert_snapshot!("failed", screen.backend());
}

#[test]
fn a_killed_run_is_gone() {
    // A process that has exited: its pid names no process now.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let fixture = running_fixture();
    fixture.write(
        "status.json",
        &status(json!({"pid": pid, "updated_unix_s": NOW - 185.0})),
    );
    let app = App::new(vec![fixture.open("runs/mnist/version_3")]);
    assert_eq!(
        app.runs[0].state(NOW),
        State::Gone {
            pid,
            age_s: Some(185.0)
        }
    );
    let screen = draw(&app, 100, 30);
    let text = text(&screen);
    let said = format!("gone: process {pid} no longer runs (killed?), last update 3m ago");
    assert!(text.contains(&said), "{said:?} in\n{text}");
    assert!(!text.contains("left"), "no time left for a dead run:\n{text}");
    // The pid's width varies: it and the padding before a border are not compared.
    let shown = screen
        .backend()
        .to_string()
        .replace(&format!("process {pid} no"), "process [pid] no");
    insta::assert_snapshot!("killed", collapse_padding(&shown, "[pid]"));
}

#[test]
fn the_same_run_on_another_host_is_only_quiet() {
    let fixture = running_fixture();
    fixture.write(
        "status.json",
        &status(json!({"host": "trainbox-7", "pid": 1, "updated_unix_s": NOW - 301.0})),
    );
    let run = fixture.open("a");
    assert_eq!(run.state(NOW), State::Quiet { age_s: 301.0 });
    assert_eq!(run.state(NOW - 250.0), State::Running, "updated 51 s before: running");
    assert_eq!(run.remote_host(), Some("trainbox-7"));
}

#[test]
fn two_runs_side_by_side_show_the_same_metric() {
    let running = running_fixture();
    running.write(
        "status.json",
        &status(json!({"host": "trainbox-7", "updated_unix_s": NOW - 301.0, "world_size": 4})),
    );
    let finished = finished_fixture();
    let mut app = App::new(vec![
        running.open("runs/a/version_0"),
        finished.open("runs/b/version_0"),
    ]);
    let screen = draw(&app, 100, 30);
    let text = text(&screen);
    for part in ["running? · no update for 5m · on trainbox-7", "4 processes"] {
        assert!(text.contains(part), "{part:?} in\n{text}");
    }
    assert_eq!(text.matches(" loss by epoch (log) ").count(), 2, "{text}");
    insta::assert_snapshot!("side_by_side", screen.backend());

    assert_eq!(press(&mut app, KeyCode::Right), Action::Redraw);
    let text = self::text(&draw(&app, 100, 30));
    assert_eq!(text.matches(" accuracy by epoch ").count(), 2, "both switched:\n{text}");
}

#[test]
fn a_directory_that_is_not_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("plots")).unwrap();
    std::fs::write(tmp.path().join("plots/loss.png"), b"png").unwrap();
    let fixture = running_fixture();
    let app = App::new(vec![
        Run::open(tmp.path(), "runs/not-a-run"),
        Run::open(tmp.path().join("missing"), "runs/missing"),
        fixture.open("runs/mnist/version_0"),
    ]);
    assert_eq!(app.runs[0].metrics_dir(), None);
    let screen = draw(&app, 120, 30);
    let text = text(&screen);
    assert!(text.contains("not a trainmon run: no"), "{text}");
    for name in ["status.json", "epochs.jsonl", "epochs.csv"] {
        assert!(text.contains(name), "{name}, looked for, is named:\n{text}");
    }
    assert!(text.contains("does not exist"), "{text}");
    assert!(
        text.contains(" loss by epoch "),
        "the run beside them is drawn:\n{text}"
    );

    // A folder of runs names them.
    let runs = tempfile::tempdir().unwrap();
    for name in ["version_0", "version_1"] {
        std::fs::create_dir_all(runs.path().join(name).join("metrics")).unwrap();
        std::fs::write(runs.path().join(name).join("metrics/status.json"), status(json!({}))).unwrap();
    }
    let parent = Run::open(runs.path(), "runs/mnist");
    assert_eq!(parent.metrics_dir(), None);
    assert!(
        parent.not_a_run().ends_with("; runs in it: version_0, version_1"),
        "{}",
        parent.not_a_run()
    );

    // Files that come later are found at the next refresh.
    std::fs::create_dir(tmp.path().join("metrics")).unwrap();
    std::fs::write(tmp.path().join("metrics/epochs.csv"), csv(&[epoch_line(1)])).unwrap();
    let mut app = app;
    app.refresh();
    assert_eq!(app.runs[0].metrics_dir(), Some(tmp.path().join("metrics").as_path()));
    assert_eq!(app.runs[0].epochs.data().len(), 1);
}

#[test]
fn the_metrics_folder_itself_is_a_run_and_jsonl_wins_over_csv() {
    let fixture = running_fixture();
    // A CSV twin with fewer lines: the JSON Lines file is the one read.
    fixture.write("epochs.csv", &csv(&[epoch_line(1)]));
    let run = Run::open(fixture.run.join("metrics"), "metrics");
    assert_eq!(run.metrics_dir(), Some(fixture.run.join("metrics").as_path()));
    assert_eq!(run.epochs.data().len(), 3);
    assert_eq!(run.epochs.file_name().as_deref(), Some("epochs.jsonl"));
}

#[test]
fn a_line_cut_mid_write_is_silent_while_running() {
    let fixture = running_fixture();
    fixture.append("epochs.jsonl", "{\"epoch\":4,\"time_s\":2.4,\"lo");
    fixture.append("steps.jsonl", "{\"epoch\":4,\"ba");
    let mut run = fixture.open("a");
    assert_eq!(run.epochs.data().len(), 3);
    assert_eq!(run.problems(NOW), Vec::<String>::new());

    // The writer finishes the line: it is read whole.
    let rest = &json_line(&epoch_line(4))["{\"epoch\":4,\"time_s\":2.4,\"lo".len()..];
    fixture.append("epochs.jsonl", &format!("{rest}\n"));
    run.refresh();
    assert_eq!(run.epochs.data().len(), 4);
    assert_eq!(run.epochs.data().last("loss"), Some(loss(4)));

    // Once the run is over a cut line is one that could not be read.
    fixture.write("status.json", &status(json!({"state": "finished"})));
    run.refresh();
    let problems = run.problems(NOW);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("1 line of steps.jsonl could not be read: line 17: cut off"),
        "{problems:?}"
    );
}

#[test]
fn unreadable_lines_and_a_cut_status_are_said_and_the_rest_shown() {
    let fixture = running_fixture();
    let mut steps: Vec<String> = step_lines(4, 17).iter().map(json_line).collect();
    steps[13] = "garbage".into();
    steps[15] = "{\"epoch\":4,\"batch\":10,\"step\":160,\"loss\":\"high\"}".into();
    fixture.write("steps.jsonl", &(steps.join("\n") + "\n"));
    // A fixed pid and host: the cut (and the column the error names) is the same in every run.
    let full = status(json!({"pid": 4242, "host": "elsewhere"}));
    fixture.write("status.json", &full[..full.len() / 2]);
    let app = App::new(vec![fixture.open("runs/mnist/version_4")]);
    let run = &app.runs[0];
    assert_eq!(run.steps.data().len(), steps.len() - 2, "every readable line");
    assert_eq!(run.state(NOW), State::Unknown, "no status could be read");
    let problems = run.problems(NOW);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("status.json could not be read: EOF"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("2 lines of steps.jsonl could not be read: line 14: expected value"),
        "{problems:?}"
    );
    let screen = draw(&app, 100, 30);
    insta::assert_snapshot!("unreadable", screen.backend());
}

#[test]
fn keys_switch_the_metric_and_the_scale() {
    let fixture = running_fixture();
    fixture.write(
        "logged.jsonl",
        &jsonl(&[
            vec![("step", json!(50)), ("name", json!("grad_norm")), ("value", json!(1.5))],
            vec![
                ("step", json!(100)),
                ("name", json!("grad_norm")),
                ("value", json!(0.9)),
            ],
        ]),
    );
    let mut app = App::new(vec![fixture.open("a")]);
    assert_eq!(
        app.metrics(),
        ["loss", "accuracy", "grad_norm", "time_s", "lr", "throughput"],
        "val_ folded into their base; bookkeeping last"
    );
    let title = |app: &App| {
        let text = text(&draw(app, 100, 30));
        let line = text
            .lines()
            .find(|l| l.contains(" by epoch"))
            .unwrap_or_default()
            .to_owned();
        (text, line)
    };
    assert_eq!(app.metric().as_deref(), Some("loss"), "the monitored val_loss's base");
    assert!(title(&app).1.contains("loss by epoch (log)"));

    assert_eq!(press(&mut app, KeyCode::Char('g')), Action::Redraw);
    let (_, line) = title(&app);
    assert!(
        line.contains("loss by epoch ") && !line.contains("(log)"),
        "linear now: {line}"
    );

    for (key, metric) in [
        (KeyCode::Right, "accuracy"),
        (KeyCode::Tab, "grad_norm"),
        (KeyCode::Char('l'), "time_s"),
        (KeyCode::Char('h'), "grad_norm"),
        (KeyCode::BackTab, "accuracy"),
        (KeyCode::Left, "loss"),
        (KeyCode::Left, "throughput"),
    ] {
        assert_eq!(press(&mut app, key), Action::Redraw);
        assert_eq!(app.metric().as_deref(), Some(metric), "after {key:?}");
    }
    press(&mut app, KeyCode::Right);
    let (text, line) = title(&app);
    assert!(
        line.contains(" loss by epoch ") && !line.contains("(log)"),
        "the toggle is kept: {line}"
    );
    assert!(text.contains("[loss]"), "{text}");

    press(&mut app, KeyCode::Right);
    let (text, line) = title(&app);
    assert!(
        line.contains(" accuracy by epoch ") && !line.contains("(log)"),
        "{line}"
    );
    assert_eq!(press(&mut app, KeyCode::Char('g')), Action::Redraw);
    assert!(
        title(&app).1.contains(" accuracy by epoch (log) "),
        "log for accuracy now"
    );
    assert!(text.contains(" accuracy by step (running value) "), "{text}");

    press(&mut app, KeyCode::Right);
    let text = title(&app).0;
    assert!(
        text.contains(" grad_norm logged, by step (log) ") || text.contains(" grad_norm logged, by step "),
        "{text}"
    );
    assert!(text.contains("the epoch lines have no grad_norm"), "{text}");

    assert_eq!(press(&mut app, KeyCode::Char('x')), Action::None);
    for code in [KeyCode::Char('q'), KeyCode::Esc] {
        assert_eq!(press(&mut app, code), Action::Quit);
    }
    assert_eq!(
        app.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Action::Quit
    );
}

#[test]
fn lines_added_are_read_at_the_next_refresh_and_nothing_is_written() {
    let fixture = running_fixture();
    let listing = |dir: &Path| -> Vec<(PathBuf, u64, std::time::SystemTime)> {
        let mut all = Vec::new();
        let mut todo = vec![dir.to_owned()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let entry = entry.unwrap();
                let meta = entry.metadata().unwrap();
                if meta.is_dir() {
                    todo.push(entry.path());
                }
                all.push((entry.path(), meta.len(), meta.modified().unwrap()));
            }
        }
        all.sort();
        all
    };
    let mut app = App::new(vec![fixture.open("a")]);
    draw(&app, 100, 30);
    fixture.append("epochs.jsonl", &jsonl(&[epoch_line(4)]));
    fixture.write(
        "status.json",
        &status(json!({"epoch": 5, "batch": 0, "global_step": 200})),
    );
    let before = listing(&fixture.run);
    app.refresh();
    let text = text(&draw(&app, 100, 30));
    assert_eq!(app.runs[0].epochs.data().len(), 4);
    assert!(text.contains("epoch 5/30"), "{text}");
    assert_eq!(listing(&fixture.run), before, "the run directory is as it was");
}

#[test]
fn without_status_json_the_files_tell_the_progress() {
    let fixture = Fixture::new();
    fixture
        .write("epochs.jsonl", &jsonl(&(1..=3).map(epoch_line).collect::<Vec<_>>()))
        .write("steps.jsonl", &jsonl(&step_lines(4, 20)));
    let app = App::new(vec![fixture.open("runs/old/version_0")]);
    assert_eq!(app.runs[0].state(NOW), State::Unknown);
    let text = text(&draw(&app, 100, 30));
    assert!(text.contains("state unknown · no status.json"), "{text}");
    assert!(
        text.contains("3 epochs done · last step 170 (epoch 4, batch 20)"),
        "{text}"
    );
    assert!(text.contains(" loss by epoch (log) "), "{text}");
}

#[test]
fn any_terminal_size_draws_without_a_panic() {
    let running = running_fixture();
    let finished = finished_fixture();
    let tmp = tempfile::tempdir().unwrap();
    let app = App::new(vec![running.open("a"), finished.open("b"), Run::open(tmp.path(), "c")]);
    for (width, height) in [(1, 1), (10, 3), (30, 8), (60, 12), (80, 24), (250, 70)] {
        let text = text(&draw(&app, width, height));
        assert_eq!(text.lines().count(), height as usize);
    }
    let big = text(&draw(&app, 250, 70));
    assert_eq!(big.matches(" loss by step (running value) (log) ").count(), 2, "{big}");
}

#[test]
fn a_log_scale_leaves_out_values_that_are_not_positive() {
    let fixture = running_fixture();
    let logged: Vec<Fields> = [(50, 1.5), (100, 0.0), (150, -0.25), (200, 0.8)]
        .into_iter()
        .map(|(step, value)| {
            vec![
                ("step", json!(step)),
                ("name", json!("margin")),
                ("value", json!(value)),
            ]
        })
        .collect();
    fixture.write("logged.csv", &csv(&logged));
    let mut app = App::new(vec![fixture.open("a")]);
    while app.metric().as_deref() != Some("margin") {
        press(&mut app, KeyCode::Right);
    }
    let text = text(&draw(&app, 100, 30));
    assert!(text.contains(" margin logged, by step "), "{text}");
    assert!(
        !text.contains("left out"),
        "linear by default: every value drawn\n{text}"
    );
    press(&mut app, KeyCode::Char('g'));
    let text = self::text(&draw(&app, 100, 30));
    assert!(
        text.contains(" margin logged, by step (log) · 2 values ≤ 0 left out "),
        "{text}"
    );
}
