//! One run directory as the dashboard sees it: where its files are, what they hold, and what
//! state the run is in. Reading only: nothing is written there and the training process is
//! never signalled.

use super::records::{Logged, Source, Table};
use super::status::{Status, StatusFile};
use std::path::{Path, PathBuf};

/// A run "running" with no update for this long is said to be quiet (its process may hang or
/// be gone, which another host cannot tell).
pub const STALE_AFTER_S: f64 = 120.0;

/// The files that make a directory a trainmon run's metrics folder.
const MARKERS: [&str; 3] = ["status.json", "epochs.jsonl", "epochs.csv"];

/// Epoch columns that are bookkeeping, not metrics: listed after the metrics.
const BOOKKEEPING: [&str; 4] = ["time_s", "time", "lr", "throughput"];

/// A run directory being watched.
#[derive(Debug)]
pub struct Run {
    /// How the run is named in its header: the directory as typed.
    pub label: String,
    dir: PathBuf,
    /// The folder with the files, once found: `dir` or one of its subfolders.
    metrics: Option<PathBuf>,
    status: StatusFile,
    pub epochs: Source<Table>,
    pub steps: Source<Table>,
    pub logged: Source<Logged>,
    /// This machine's host name, to tell whether the training process would be visible.
    local_host: String,
    /// Whether the training process was there at the last refresh; `None` when that cannot
    /// be seen (another host, no `/proc`, not running).
    alive: Option<bool>,
    exists: bool,
    /// Run directories one level further down, when `dir` is not one: a hint for its panel.
    below: Vec<String>,
}

/// The best value of the monitored metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Best {
    pub metric: String,
    /// Whether higher is better.
    pub higher: bool,
    pub value: f64,
    pub epoch: f64,
}

/// The state of a run, as the panel says it.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// No `status.json` (yet): only the metric files tell how far it is.
    Unknown,
    Running,
    /// "running" in its file, but not updated for [`STALE_AFTER_S`] or more.
    Quiet {
        age_s: f64,
    },
    /// "running" in its file, on this host, but its process is no longer there.
    Gone {
        pid: u32,
        age_s: Option<f64>,
    },
    Finished,
    Failed,
    /// A state this version does not know.
    Other(String),
}

impl Run {
    /// A run to watch in `dir`, read once.
    pub fn open(dir: impl Into<PathBuf>, label: impl Into<String>) -> Run {
        let mut run = Run {
            label: label.into(),
            dir: dir.into(),
            metrics: None,
            status: StatusFile::default(),
            epochs: Source::new("epochs"),
            steps: Source::new("steps"),
            logged: Source::new("logged"),
            local_host: host_name(),
            alive: None,
            exists: true,
            below: Vec::new(),
        };
        run.refresh();
        run
    }

    /// Reads what changed in the files since the last call.
    pub fn refresh(&mut self) {
        self.exists = self.dir.is_dir();
        if self.metrics.is_none() {
            self.metrics = find_metrics(&self.dir);
            self.below = match self.metrics {
                Some(_) => Vec::new(),
                None => runs_below(&self.dir),
            };
        }
        let Some(dir) = self.metrics.clone() else { return };
        self.status.update(&dir);
        self.epochs.update(&dir);
        self.steps.update(&dir);
        self.logged.update(&dir);
        self.alive = self.status().and_then(|s| process_alive(s, &self.local_host));
    }

    /// The directory as given.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the directory is there.
    pub fn exists(&self) -> bool {
        self.exists
    }

    /// The folder the files are in; `None` when `dir` is not (yet) a trainmon run.
    pub fn metrics_dir(&self) -> Option<&Path> {
        self.metrics.as_deref()
    }

    /// What looks for the files, for the panel of a directory that has none.
    pub fn not_a_run(&self) -> String {
        let mut text = format!(
            "not a trainmon run: no {} in {} or its subfolders",
            MARKERS.join(", "),
            self.dir.display()
        );
        if !self.below.is_empty() {
            text.push_str(&format!("; runs in it: {}", self.below.join(", ")));
        }
        text
    }

    /// The last `status.json` that could be read.
    pub fn status(&self) -> Option<&Status> {
        self.status.status.as_ref()
    }

    /// The host the run trains on, when it is not this one.
    pub fn remote_host(&self) -> Option<&str> {
        self.status()?.host.as_deref().filter(|h| *h != self.local_host)
    }

    /// The state at `now` (seconds since the Unix epoch).
    pub fn state(&self, now: f64) -> State {
        let Some(status) = self.status() else {
            return State::Unknown;
        };
        let age_s = status.updated_unix_s.map(|t| now - t);
        match status.state.as_deref() {
            Some("running") => match (self.alive, status.pid) {
                (Some(false), Some(pid)) => State::Gone { pid, age_s },
                _ => match age_s {
                    Some(age_s) if age_s >= STALE_AFTER_S => State::Quiet { age_s },
                    _ => State::Running,
                },
            },
            Some("finished") => State::Finished,
            Some("failed") => State::Failed,
            Some(other) => State::Other(other.to_owned()),
            None => State::Unknown,
        }
    }

    /// Whether a writer may be in the middle of a line of the files (a cut last line is then
    /// not a problem): running, or not known.
    pub fn writing(&self, now: f64) -> bool {
        matches!(self.state(now), State::Running | State::Quiet { .. } | State::Unknown)
    }

    /// What could not be read, a line per file.
    pub fn problems(&self, now: f64) -> Vec<String> {
        let writing = self.writing(now);
        let mut problems: Vec<String> = self.status.problem.iter().cloned().collect();
        problems.extend(self.epochs.problem(writing));
        problems.extend(self.steps.problem(writing));
        problems.extend(self.logged.problem(writing));
        problems
    }

    /// The metric names this run has, `val_X` folded into `X` when both are there: metrics of
    /// the epochs, then those only in the steps or logged files, then the bookkeeping columns
    /// (`time_s`, `lr`, `throughput`).
    pub fn metric_names(&self) -> Vec<String> {
        let epochs = self.epochs.data().columns().iter().filter(|c| *c != "epoch");
        let steps = self
            .steps
            .data()
            .columns()
            .iter()
            .filter(|c| !["epoch", "batch", "step"].contains(&c.as_str()));
        let logged = self.logged.data().names().iter();
        let all: Vec<&String> = epochs.chain(steps).chain(logged).collect();
        let mut names: Vec<String> = Vec::new();
        for name in all.iter().filter(|n| !BOOKKEEPING.contains(&n.as_str())) {
            let base = name.strip_prefix("val_").filter(|b| all.iter().any(|n| n == b));
            let name = base.unwrap_or(name);
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        for name in BOOKKEEPING {
            if all.iter().any(|n| *n == name) {
                names.push(name.to_owned());
            }
        }
        names
    }

    /// The metric whose best value is shown, and whether higher is better: `status.json`'s
    /// monitor, else `val_loss` when the epochs have it, else `loss`; mode auto: higher is
    /// better for a name with "acc" in it.
    pub fn monitor(&self) -> (String, bool) {
        let monitor = self.status().and_then(|s| s.monitor.as_ref());
        let metric = monitor.and_then(|m| m.metric.clone()).unwrap_or_else(|| {
            if self.epochs.data().has("val_loss") {
                "val_loss".into()
            } else {
                "loss".into()
            }
        });
        let higher = match monitor.and_then(|m| m.mode.as_deref()) {
            Some("max") => true,
            Some("min") => false,
            _ => metric.contains("acc"),
        };
        (metric, higher)
    }

    /// The best value of the monitored metric over the epochs, and its epoch.
    pub fn best(&self) -> Option<Best> {
        let (metric, higher) = self.monitor();
        let table = self.epochs.data();
        let mut best: Option<(f64, f64)> = None;
        for (row, value) in table.values(&metric).enumerate() {
            let Some(value) = value else { continue };
            let epoch = table.get(row, "epoch").unwrap_or((row + 1) as f64);
            let better = match best {
                None => true,
                Some((b, _)) if higher => value > b,
                Some((b, _)) => value < b,
            };
            if better {
                best = Some((value, epoch));
            }
        }
        best.map(|(value, epoch)| Best {
            metric,
            higher,
            value,
            epoch,
        })
    }

    /// The mean time of an epoch, from the epoch lines.
    pub fn mean_epoch_s(&self) -> Option<f64> {
        let table = self.epochs.data();
        let column = if table.has("time_s") { "time_s" } else { "time" };
        let times: Vec<f64> = table.values(column).flatten().collect();
        (!times.is_empty()).then(|| times.iter().sum::<f64>() / times.len() as f64)
    }
}

/// The folder of `dir` with a run's files: `dir` itself, or a direct subfolder (`metrics/`
/// first, then the others by name).
pub fn find_metrics(dir: &Path) -> Option<PathBuf> {
    let has_files = |d: &Path| MARKERS.iter().any(|m| d.join(m).is_file());
    if has_files(dir) {
        return Some(dir.to_owned());
    }
    let mut subfolders: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subfolders.sort_by_key(|p| (p.file_name() != Some("metrics".as_ref()), p.clone()));
    subfolders.into_iter().find(|d| has_files(d))
}

/// The names of the subfolders of `dir` that are runs (`version_0`, …), at most 5.
fn runs_below(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir() && find_metrics(&e.path()).is_some())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.len() > 5 {
        let more = names.len() - 4;
        names.truncate(4);
        names.push(format!("and {more} more"));
    }
    names
}

/// Whether the process of a running fit is still there: `None` when that cannot be seen
/// (not running, another host, or no `/proc`). Only `/proc` is looked at: no signal is sent.
fn process_alive(status: &Status, local_host: &str) -> Option<bool> {
    if status.state.as_deref() != Some("running") || status.host.as_deref() != Some(local_host) {
        return None;
    }
    let pid = status.pid?;
    if !Path::new("/proc/self").exists() {
        return None;
    }
    Some(Path::new(&format!("/proc/{pid}")).exists())
}

/// This machine's host name, read as trainmon's writer reads it (`localhost` when it cannot
/// be).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
