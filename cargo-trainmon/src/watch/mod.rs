//! `cargo trainmon watch DIR…`: a live terminal dashboard of training runs, from the files
//! they write: `status.json` and the metric files that trainmon's `MetricFiles` hook keeps
//! (its docs describe them; [`Status`] is what is read of `status.json`).
//!
//! It only reads: nothing is written into a run directory and no training process is
//! signalled, so it can attach to, and leave, any run at any time, also one on another host
//! through a shared file system. Each run gets a column; several are compared side by side on
//! the same metric.
//!
//! [`run`] reads a directory into a model, [`ui`] draws the model at a given time (no clock is
//! read while drawing: a test renders a fixed moment), and [`App`] holds the runs and what the
//! keys chose.

pub mod format;
mod records;
pub mod run;
mod status;
mod tail;
pub mod ui;

pub use records::{Logged, Table};
pub use run::{Run, State};
pub use status::{Monitor, Status};

use anyhow::{bail, Context, Result};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often the files are looked at, unless `--interval` says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);

/// What `watch` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The directories, as typed.
    pub dirs: Vec<String>,
    pub interval: Duration,
}

impl Options {
    /// `DIR [DIR…] [--interval MS]`.
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut dirs = Vec::new();
        let mut interval = DEFAULT_INTERVAL;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let ms = match arg.as_str() {
                "--interval" => Some(
                    it.next()
                        .context("--interval needs milliseconds, e.g. `--interval 1000`")?
                        .as_str(),
                ),
                other => other.strip_prefix("--interval="),
            };
            if let Some(ms) = ms {
                let ms: u64 = ms
                    .parse()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .with_context(|| format!("--interval takes milliseconds (a whole number > 0), not `{ms}`"))?;
                interval = Duration::from_millis(ms);
            } else if arg.starts_with('-') {
                bail!("`watch` has no option `{arg}`");
            } else {
                dirs.push(arg.clone());
            }
        }
        if dirs.is_empty() {
            bail!("`watch` needs a run directory, e.g. `cargo trainmon watch runs/NAME/version_0`");
        }
        Ok(Options { dirs, interval })
    }
}

/// What a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing: the key means nothing here.
    None,
    /// The view changed: draw again.
    Redraw,
    Quit,
}

/// The runs watched and what the keys chose.
#[derive(Debug)]
pub struct App {
    pub runs: Vec<Run>,
    /// The metric picked with the keys; until then the first run's monitored one.
    chosen: Option<String>,
    /// The log scale of the metrics where it was toggled.
    log: HashMap<String, bool>,
}

impl App {
    pub fn new(runs: Vec<Run>) -> App {
        App {
            runs,
            chosen: None,
            log: HashMap::new(),
        }
    }

    /// Reads what changed in each run's files.
    pub fn refresh(&mut self) {
        for run in &mut self.runs {
            run.refresh();
        }
    }

    /// The metric names of all runs, in the order they first come.
    pub fn metrics(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for name in self.runs.iter().flat_map(Run::metric_names) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// The metric the charts show: the one picked, else the base (without `val_`) of the
    /// first run's monitored metric, else the first there is.
    pub fn metric(&self) -> Option<String> {
        let names = self.metrics();
        if let Some(chosen) = self.chosen.as_ref().filter(|c| names.contains(c)) {
            return Some(chosen.clone());
        }
        let monitored = self
            .runs
            .iter()
            .find(|r| r.metrics_dir().is_some())
            .map(|r| r.monitor().0);
        let candidates = monitored.as_deref().map(|m| [m.strip_prefix("val_").unwrap_or(m), m]);
        let found = candidates.into_iter().flatten().find(|m| names.iter().any(|n| n == m));
        found.map(str::to_owned).or_else(|| names.first().cloned())
    }

    /// Whether `metric` is drawn on a log scale: as toggled, else for a loss.
    pub fn log_scale(&self, metric: &str) -> bool {
        self.log.get(metric).copied().unwrap_or(metric.ends_with("loss"))
    }

    /// Handles a key press.
    pub fn key(&mut self, key: KeyEvent) -> Action {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
            KeyCode::Char('c') if ctrl => Action::Quit,
            KeyCode::Right | KeyCode::Tab | KeyCode::Char('l') => self.step_metric(1),
            KeyCode::Left | KeyCode::BackTab | KeyCode::Char('h') => self.step_metric(-1),
            KeyCode::Char('g') => match self.metric() {
                Some(metric) => {
                    let log = !self.log_scale(&metric);
                    self.log.insert(metric, log);
                    Action::Redraw
                }
                None => Action::None,
            },
            _ => Action::None,
        }
    }

    fn step_metric(&mut self, by: isize) -> Action {
        let names = self.metrics();
        let Some(current) = self.metric() else {
            return Action::None;
        };
        let at = names.iter().position(|n| *n == current).unwrap_or(0) as isize;
        let next = (at + by).rem_euclid(names.len() as isize) as usize;
        self.chosen = Some(names[next].clone());
        Action::Redraw
    }
}

/// Seconds since the Unix epoch, now: the time the dashboard is drawn at.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Puts the terminal back (raw mode off, the main screen) when dropped: on return and on
/// error; ratatui's panic hook does it on a panic.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs the dashboard until a quit key.
pub fn watch(options: &Options) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        bail!("`watch` draws on a terminal, and its output is not one");
    }
    let runs = options.dirs.iter().map(|dir| Run::open(dir, dir.clone())).collect();
    let mut app = App::new(runs);
    let mut terminal = ratatui::try_init().context("could not set the terminal up")?;
    let _restore = Restore;
    let mut next_read = Instant::now() + options.interval;
    loop {
        terminal
            .draw(|frame| ui::draw(frame, &app, unix_now()))
            .context("could not draw")?;
        let wait = next_read.saturating_duration_since(Instant::now());
        if event::poll(wait).context("could not read the terminal's events")? {
            // A resize, or any other event, just draws again.
            if let Event::Key(key) = event::read().context("could not read the terminal's events")? {
                if key.kind != KeyEventKind::Release && app.key(key) == Action::Quit {
                    return Ok(());
                }
            }
        }
        if Instant::now() >= next_read {
            app.refresh();
            next_read = Instant::now() + options.interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options() {
        let o = Options::parse(&args("a b --interval 250")).unwrap();
        assert_eq!(o.dirs, ["a", "b"]);
        assert_eq!(o.interval, Duration::from_millis(250));
        assert_eq!(
            Options::parse(&args("--interval=40 a")).unwrap().interval,
            Duration::from_millis(40)
        );
        assert_eq!(Options::parse(&args("a")).unwrap().interval, DEFAULT_INTERVAL);
        let err = Options::parse(&args("a --interval x")).unwrap_err().to_string();
        assert!(err.contains("not `x`"), "{err}");
        assert!(Options::parse(&args("a --interval 0")).is_err());
        assert!(Options::parse(&args("a --interval")).is_err());
        assert!(Options::parse(&args("--fast a"))
            .unwrap_err()
            .to_string()
            .contains("`--fast`"));
        assert!(Options::parse(&[])
            .unwrap_err()
            .to_string()
            .contains("needs a run directory"));
    }
}
