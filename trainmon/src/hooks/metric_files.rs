//! Metric files: CSV and JSON Lines, a line per epoch and per logged step.

use super::monitor::Mode;
use super::run_status::StatusFile;
use crate::context::HookContext;
use crate::control::Control;
use crate::error::{BoxError, Error};
use crate::hook::{Hook, Plugin};
use crate::records::history::LoggedValue;
use crate::records::key::MetricKey;
use crate::records::saved::HookState;
use crate::schedule::event::Event;
use crate::schedule::filter::Filter;
use crate::schedule::priority;
use crate::schedule::spec::HookSpec;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Writes every epoch's metrics — and, with [`MetricFiles::steps`], the running values every
/// `n` batches — to `epochs.csv` / `epochs.jsonl` (and `steps.csv` / `steps.jsonl`) in a
/// directory; the numbers hooks logged ([`crate::HookContext::log`]) to `logged.csv` /
/// `logged.jsonl`, a line each (`step,name,value`: a tidy table); and the batches a rollback
/// skipped ([`crate::Rollback`]) to `skipped.jsonl`. Those two are written at each epoch's end
/// (and the fit's): a crash loses what was logged since the last one. Each line is flushed as it is written, so a crash loses at most the line being
/// written. A value that is not finite is empty in CSV and `null` in JSON.
///
/// In a resumed fit ([`crate::Trainer::resumable`]) the files go on from the lines of the
/// resume point: those a crashed run wrote after it are cut off, so each epoch has one line.
///
/// ```text
/// epochs.csv   epoch,time_s,loss,accuracy,val_loss,val_accuracy,lr,throughput
///              1,0.052,0.7012,0.5,0.695,0.515,0.001,15384.6
/// steps.jsonl  {"epoch":1,"batch":10,"step":10,"loss":0.7101,"accuracy":0.4938}
/// ```
///
/// JSON Lines keys come in the CSV's column order.
///
/// It also keeps `status.json` there: where the fit is (epoch, batch, running values, learning
/// rate, rate, the stop reason or error), replaced atomically at the fit's start, each epoch's
/// begin and end, at most every 0.5 s at a batch's end, and when the fit ends or fails. That
/// is what `cargo trainmon watch DIR` shows live, from any process; a reader costs the training
/// nothing. [`MetricFiles::monitor`] names the metric whose best it shows.
#[derive(Debug)]
pub struct MetricFiles {
    dir: PathBuf,
    csv: bool,
    jsonl: bool,
    every: u64,
    epochs: Option<Files>,
    steps: Option<Files>,
    /// `logged.csv` / `logged.jsonl`, once a hook logged a number, and how many logged values
    /// (of [`crate::History::logged_all`]) were looked at.
    logged: Option<Files>,
    logged_seen: usize,
    /// Skipped batches in `skipped.jsonl`.
    skipped_written: usize,
    /// The files' lengths in the resume point a fit resumes from.
    resumed: Option<Written>,
    /// Whether to keep `status.json`, and the metric whose best it names.
    status: bool,
    monitor: Option<(MetricKey, Mode)>,
    status_file: Option<StatusFile>,
}

/// How much of each file was written, as a resume point keeps it.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
struct Lengths {
    csv: Option<u64>,
    jsonl: Option<u64>,
    header: bool,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
struct Written {
    epochs: Option<Lengths>,
    steps: Option<Lengths>,
    #[serde(default)]
    logged: Option<Lengths>,
    #[serde(default)]
    logged_seen: usize,
}

impl MetricFiles {
    /// CSV and JSON Lines files of the epochs in `dir` (created if need be).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        MetricFiles {
            dir: dir.into(),
            csv: true,
            jsonl: true,
            every: 0,
            epochs: None,
            steps: None,
            logged: None,
            logged_seen: 0,
            skipped_written: 0,
            resumed: None,
            status: true,
            monitor: None,
            status_file: None,
        }
    }

    /// Whether to keep `status.json` (default `true`).
    pub fn status(mut self, status: bool) -> Self {
        self.status = status;
        self
    }

    /// The metric `status.json` names as monitored (mode auto: higher is better for an
    /// accuracy), whose best value and epoch `cargo trainmon watch` shows; without it, the
    /// dashboard picks `val_loss`, or `loss`.
    pub fn monitor(mut self, metric: impl Into<MetricKey>) -> Self {
        self.monitor = Some((metric.into(), Mode::Auto));
        self
    }

    /// Whether to write the CSV files (default `true`).
    pub fn csv(mut self, csv: bool) -> Self {
        self.csv = csv;
        self
    }

    /// Whether to write the JSON Lines files (default `true`).
    pub fn jsonl(mut self, jsonl: bool) -> Self {
        self.jsonl = jsonl;
        self
    }

    /// Also a line of running values every `n` batches of each epoch (`0`: none, the default).
    pub fn steps(mut self, n: u64) -> Self {
        self.every = n;
        self
    }

    fn begin(&mut self) -> Result<(), BoxError> {
        std::fs::create_dir_all(&self.dir).map_err(Error::io("create the directory", &self.dir))?;
        let resumed = self.resumed.take().unwrap_or_default();
        self.epochs = Some(Files::open(&self.dir, "epochs", self.csv, self.jsonl, resumed.epochs)?);
        if self.every > 0 {
            self.steps = Some(Files::open(&self.dir, "steps", self.csv, self.jsonl, resumed.steps)?);
        }
        // A fit after another of the same trainer starts afresh (a new history).
        self.logged = match resumed.logged {
            Some(lengths) => Some(Files::open(&self.dir, "logged", self.csv, self.jsonl, Some(lengths))?),
            None => None,
        };
        self.logged_seen = resumed.logged_seen;
        self.skipped_written = 0;
        self.status_file = self.status.then(|| StatusFile::new(&self.dir, self.monitor.clone()));
        Ok(())
    }

    /// The numbers hooks logged since the last time, a line each: `step,name,value`.
    fn write_logged(&mut self, ctx: &HookContext<'_>) -> Result<(), BoxError> {
        let logged = ctx.history().logged_all();
        for l in logged.get(self.logged_seen..).unwrap_or_default() {
            let LoggedValue::Scalar(value) = l.value() else {
                continue;
            };
            if self.logged.is_none() {
                self.logged = Some(Files::open(&self.dir, "logged", self.csv, self.jsonl, None)?);
            }
            if let Some(files) = &mut self.logged {
                let counters = [("step", l.step().into()), ("name", l.name().into())];
                files.write(&counters, &[("value".to_owned(), *value)])?;
            }
        }
        self.logged_seen = logged.len();
        self.write_skipped(ctx)
    }

    /// `skipped.jsonl`: the batches rollbacks skipped ([`crate::History::skipped`]), a line
    /// each, written again (atomically) from the history when there are new ones.
    fn write_skipped(&mut self, ctx: &HookContext<'_>) -> Result<(), BoxError> {
        let skipped = ctx.history().skipped();
        if skipped.len() == self.skipped_written {
            return Ok(());
        }
        let path = self.dir.join("skipped.jsonl");
        crate::output::atomically(&path, |temp| {
            let mut lines = Vec::new();
            for s in skipped {
                serde_json::to_writer(&mut lines, s).map_err(|e| Error::io("write", temp)(e.into()))?;
                lines.push(b'\n');
            }
            std::fs::write(temp, lines).map_err(Error::io("write", temp))
        })?;
        self.skipped_written = skipped.len();
        Ok(())
    }
}

/// The CSV and JSONL files of one kind of line.
#[derive(Debug)]
struct Files {
    csv: Option<(PathBuf, csv::Writer<File>)>,
    jsonl: Option<(PathBuf, BufWriter<File>)>,
    header: bool,
}

impl Files {
    /// New files, or — resuming — the files cut to their lengths in the resume point.
    fn open(dir: &Path, stem: &str, csv: bool, jsonl: bool, resumed: Option<Lengths>) -> Result<Self, BoxError> {
        let mut header = resumed.is_some_and(|r| r.header);
        let mut open = |ext: &str, length: Option<u64>| -> Result<(PathBuf, File), Error> {
            let path = dir.join(format!("{stem}.{ext}"));
            let existing = length.and_then(|_| std::fs::OpenOptions::new().write(true).open(&path).ok());
            let file = match (existing, length) {
                (Some(mut file), Some(length)) => {
                    let now = file.metadata().map_err(Error::io("read", &path))?.len();
                    if now >= length {
                        // Lines written after the resume point go: the resumed fit writes them again.
                        file.set_len(length)
                            .map_err(Error::io("cut to the resume point", &path))?;
                    } else {
                        // Shorter (lost in a power cut?): keep what is there, and go on after it.
                        tracing::warn!(
                            "{} is shorter than in the resume point ({now} bytes, not {length}): lines may be missing",
                            path.display()
                        );
                        header &= now > 0;
                    }
                    file.seek(SeekFrom::End(0)).map_err(Error::io("append to", &path))?;
                    file
                }
                _ => {
                    if length.is_some() {
                        tracing::warn!("{} is gone: it starts over", path.display());
                        header = false;
                    }
                    File::create(&path).map_err(Error::io("create", &path))?
                }
            };
            Ok((path, file))
        };
        let csv = if csv {
            let (path, file) = open("csv", resumed.and_then(|r| r.csv))?;
            Some((path, csv::Writer::from_writer(file)))
        } else {
            None
        };
        let jsonl = if jsonl {
            let (path, file) = open("jsonl", resumed.and_then(|r| r.jsonl))?;
            Some((path, BufWriter::new(file)))
        } else {
            None
        };
        Ok(Files { csv, jsonl, header })
    }

    /// The files' lengths (every line is flushed as written), once the lines are on disk: the
    /// resume point that records them is.
    fn lengths(&self) -> Result<Lengths, BoxError> {
        let length = |path: &Path, file: &File| {
            file.sync_data()
                .and_then(|()| file.metadata())
                .map(|m| m.len())
                .map_err(Error::io("flush", path))
        };
        Ok(Lengths {
            csv: self.csv.as_ref().map(|(p, w)| length(p, w.get_ref())).transpose()?,
            jsonl: self.jsonl.as_ref().map(|(p, w)| length(p, w.get_ref())).transpose()?,
            header: self.header,
        })
    }

    /// One line: counters (integers, or a name) then values, named.
    fn write(&mut self, counters: &[(&str, serde_json::Value)], values: &[(String, f64)]) -> Result<(), BoxError> {
        if let Some((path, csv)) = &mut self.csv {
            let failed = |e: csv::Error| format!("could not write {}: {e}", path.display());
            if !self.header {
                let names = counters
                    .iter()
                    .map(|(n, _)| *n)
                    .chain(values.iter().map(|(n, _)| n.as_str()));
                csv.write_record(names).map_err(failed)?;
            }
            let fields = counters
                .iter()
                .map(|(_, v)| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .chain(
                    values
                        .iter()
                        .map(|(_, v)| if v.is_finite() { v.to_string() } else { String::new() }),
                );
            csv.write_record(fields).map_err(failed)?;
            csv.flush()
                .map_err(|e| format!("could not write {}: {e}", path.display()))?;
        }
        if let Some((path, jsonl)) = &mut self.jsonl {
            // The keys in the CSV's column order (a JSON map would sort them).
            let fields = (counters.iter().map(|(n, v)| (*n, v.clone())))
                .chain(values.iter().map(|(n, v)| (n.as_str(), super::run_status::number(*v))));
            let mut line = String::from("{");
            for (i, (name, value)) in fields.enumerate() {
                if i > 0 {
                    line.push(',');
                }
                line.push_str(&serde_json::to_string(name)?);
                line.push(':');
                line.push_str(&serde_json::to_string(&value)?);
            }
            line.push_str("}\n");
            let failed = |e: std::io::Error| format!("could not write {}: {e}", path.display());
            jsonl.write_all(line.as_bytes()).map_err(failed)?;
            jsonl.flush().map_err(failed)?;
        }
        self.header = true;
        Ok(())
    }
}

impl Hook for MetricFiles {
    fn state(&self) -> Result<Option<HookState>, BoxError> {
        let written = Written {
            epochs: self.epochs.as_ref().map(Files::lengths).transpose()?,
            steps: self.steps.as_ref().map(Files::lengths).transpose()?,
            logged: self.logged.as_ref().map(Files::lengths).transpose()?,
            logged_seen: self.logged_seen,
        };
        Ok(Some(HookState::new(written)?))
    }

    fn restore(&mut self, state: HookState) -> Result<(), BoxError> {
        self.resumed = Some(state.value()?);
        Ok(())
    }

    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        let state = ctx.state();
        match ctx.event() {
            Event::TrainBegin => self.begin()?,
            Event::BatchEnd => {
                let line = ctx
                    .batch()
                    .filter(|b| self.every > 0 && b.number() as u64 % self.every == 0);
                if let (Some(files), Some(batch)) = (&mut self.steps, line) {
                    let counters = [
                        ("epoch", state.epoch().into()),
                        ("batch", batch.number().into()),
                        ("step", state.global_step().into()),
                    ];
                    let values: Vec<(String, f64)> = batch
                        .names()
                        .map(|n| (n.to_owned(), batch.get(n).unwrap_or(f64::NAN)))
                        .collect();
                    files.write(&counters, &values)?;
                }
            }
            Event::EpochEnd => {
                if let (Some(files), Some(epoch)) = (&mut self.epochs, ctx.epoch()) {
                    let mut values = vec![("time_s".to_owned(), epoch.time().as_secs_f64())];
                    values.extend(epoch.metrics().map(|(n, v)| (n.to_owned(), v)));
                    values.push(("lr".to_owned(), epoch.learning_rate()));
                    values.push(("throughput".to_owned(), epoch.throughput()));
                    files.write(&[("epoch", epoch.epoch().into())], &values)?;
                }
                self.write_logged(ctx)?;
            }
            Event::TrainEnd | Event::Exception => self.write_logged(ctx)?,
            _ => {}
        }
        if let Some(status) = &mut self.status_file {
            status.update(ctx)?;
        }
        Ok(Control::Continue)
    }
}

impl Plugin for MetricFiles {
    fn specs(&self) -> Vec<HookSpec> {
        let at = |event| {
            HookSpec::new(event, "MetricFiles")
                .priority(priority::LOGGING)
                .rank_zero()
        };
        let mut specs = vec![at(Event::TrainBegin), at(Event::EpochEnd), at(Event::TrainEnd)];
        if self.status {
            // `status.json` follows every batch (writing at most every 0.5 s); step lines are
            // picked in `call`.
            specs.extend([at(Event::EpochBegin), at(Event::BatchEnd), at(Event::Exception)]);
        } else if self.every > 0 {
            specs.push(at(Event::BatchEnd).filter(Filter::ALWAYS.every(self.every)));
        }
        specs
    }
}
