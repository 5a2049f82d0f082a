//! The [`super::Mlflow`] hook's background thread: it takes the values the hook queues, sends
//! them in batches, waits out a server that is down (retrying with exponential backoff, one
//! warning per outage), and at the end of the fit uploads the artifacts and sets the run's
//! status — all within the flush deadline the hook sets when the fit ends.

use super::rest::{Client, Failure, Metric, MAX_METRICS, MAX_TAGS, REQUEST_TIMEOUT};
use super::MlflowReport;
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The first wait before trying a request again; it doubles with each failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Tries of a request the server itself fails (MLflow's error, status 5xx) before it is given
/// up: a request it cannot take is not retried for ever.
const SERVER_ERROR_TRIES: u32 = 4;

/// What the hook and the thread share: how the fit ended, once it did, and the deadline.
#[derive(Default)]
pub(super) struct Shared {
    ending: Mutex<Ending>,
    /// Wakes the thread from a backoff when the fit ends.
    wake: Condvar,
}

#[derive(Default)]
struct Ending {
    finish: Option<Finish>,
    deadline: Option<Instant>,
}

impl Shared {
    /// The fit ended: what to do last, and by when.
    pub fn finish(&self, finish: Finish, deadline: Instant) {
        let mut ending = self.lock();
        ending.finish = Some(finish);
        ending.deadline = Some(deadline);
        self.wake.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, Ending> {
        self.ending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the thread does once the queued values are sent: tags, uploads, the run's status.
pub(super) struct Finish {
    /// `FINISHED`, `FAILED` or `KILLED`.
    pub status: &'static str,
    /// Milliseconds since the Unix epoch.
    pub end_time: i64,
    pub tags: Vec<(String, String)>,
    /// Where the run takes artifacts ([`Client::artifact_base`]).
    pub artifact_base: Option<String>,
    pub uploads: Vec<Upload>,
    /// A directory of files written for the uploads, removed after them.
    pub scratch: Option<PathBuf>,
}

/// A file to upload as an artifact.
pub(super) struct Upload {
    pub file: PathBuf,
    /// Its path among the run's artifacts, `/`-separated.
    pub path: String,
}

/// How a request ended, retries included.
enum Outcome<T> {
    Done(T),
    /// The server refused it (or failed it again and again): trying again does not help.
    Refused(Failure),
    /// The flush deadline passed first.
    OutOfTime,
}

/// The thread's side: one per fit.
pub(super) struct Worker {
    pub client: Client,
    pub run_id: String,
    pub queue: Receiver<Vec<Metric>>,
    pub shared: Arc<Shared>,
    pub report: MlflowReport,
    /// Told when the thread is done.
    pub done: Sender<()>,
    /// Whether the server is down (an outage warned about).
    pub down: bool,
    /// The refusals warned about, by the server's error code.
    pub refusals: HashSet<String>,
}

impl Worker {
    /// Sends what is queued until the hook lets go of the queue, then finishes the run.
    pub fn run(mut self) {
        let mut pending: VecDeque<Metric> = VecDeque::new();
        let mut open = true;
        loop {
            // Wait for values when there are none to send; then take what is there.
            if pending.is_empty() && open {
                match self.queue.recv() {
                    Ok(values) => pending.extend(values),
                    Err(_) => open = false,
                }
            }
            while open && pending.len() < MAX_METRICS {
                match self.queue.try_recv() {
                    Ok(values) => pending.extend(values),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            if pending.is_empty() {
                if open {
                    continue;
                }
                break;
            }
            let n = pending.len().min(MAX_METRICS);
            let batch: Vec<Metric> = pending.range(..n).cloned().collect();
            let run_id = self.run_id.clone();
            match self.request(|client, timeout| client.log_batch(&run_id, &batch, &[], &[], timeout)) {
                Outcome::Done(()) => self.report.lock().sent += n as u64,
                Outcome::Refused(failure) => {
                    self.report.lock().refused += n as u64;
                    self.refused(&failure, &format!("{n} values"));
                }
                // What is left counts as not sent (queued, never sent).
                Outcome::OutOfTime => break,
            }
            pending.drain(..n);
        }
        self.finish();
        let _ = self.done.send(());
    }

    /// The last requests of the run: its tags, its artifacts, its status.
    fn finish(&mut self) {
        let Some(finish) = self.shared.lock().finish.take() else {
            return;
        };
        let run_id = self.run_id.clone();
        for tags in finish.tags.chunks(MAX_TAGS) {
            if let Outcome::Refused(failure) =
                self.request(|client, timeout| client.log_batch(&run_id, &[], &[], tags, timeout))
            {
                self.refused(&failure, "the run's end tags");
            }
        }
        if let Some(base) = &finish.artifact_base {
            for upload in &finish.uploads {
                match self.request(|client, timeout| client.upload(base, &upload.path, &upload.file, timeout)) {
                    Outcome::Done(()) => self.report.lock().artifacts.push(upload.path.clone()),
                    Outcome::Refused(failure) => tracing::warn!(
                        "MLflow: {} could not be uploaded as the artifact `{}`: {failure}",
                        upload.file.display(),
                        upload.path
                    ),
                    Outcome::OutOfTime => break,
                }
            }
        }
        let status = finish.status;
        match self.request(|client, timeout| client.update_run(&run_id, status, Some(finish.end_time), timeout)) {
            Outcome::Done(()) => self.report.lock().status = Some(status.to_owned()),
            Outcome::Refused(failure) => self.refused(&failure, "the run's status"),
            Outcome::OutOfTime => {}
        }
        if let Some(scratch) = &finish.scratch {
            let _ = std::fs::remove_dir_all(scratch);
        }
    }

    /// Makes a request until it is done, refused, or the flush deadline passes; waits out
    /// outages with exponential backoff.
    fn request<T>(&mut self, mut call: impl FnMut(&Client, Duration) -> Result<T, Failure>) -> Outcome<T> {
        let mut backoff = FIRST_BACKOFF;
        let mut server_errors = 0;
        loop {
            let Some(timeout) = self.time_left() else {
                return Outcome::OutOfTime;
            };
            match call(&self.client, timeout) {
                Ok(done) => {
                    self.up();
                    return Outcome::Done(done);
                }
                Err(failure) if failure.transient() => {
                    // MLflow's own error (not a proxy's for a server behind it): a few tries.
                    if failure.code().is_some() {
                        server_errors += 1;
                        if server_errors >= SERVER_ERROR_TRIES {
                            self.up();
                            return Outcome::Refused(failure);
                        }
                    }
                    self.down(&failure);
                    if !self.pause(backoff) {
                        return Outcome::OutOfTime;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(failure) => {
                    self.up();
                    return Outcome::Refused(failure);
                }
            }
        }
    }

    /// How long the next request may take: [`REQUEST_TIMEOUT`], or less once the deadline is
    /// near; `None` once it passed.
    fn time_left(&self) -> Option<Duration> {
        match self.shared.lock().deadline {
            None => Some(REQUEST_TIMEOUT),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(REQUEST_TIMEOUT))
            }
        }
    }

    /// Waits `pause` before the next try, or less when the fit ends meanwhile (one more try at
    /// once); `false` when the deadline passed.
    fn pause(&self, pause: Duration) -> bool {
        let until = Instant::now() + pause;
        let mut ending = self.shared.lock();
        let finishing = ending.deadline.is_some();
        loop {
            let now = Instant::now();
            if let Some(deadline) = ending.deadline {
                if now >= deadline {
                    return false;
                }
                if !finishing {
                    return true;
                }
            }
            let limit = ending.deadline.map_or(until, |deadline| deadline.min(until));
            if now >= limit {
                return true;
            }
            ending = self
                .shared
                .wake
                .wait_timeout(ending, limit - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// A request failed for want of a server: one warning per outage.
    fn down(&mut self, failure: &Failure) {
        if self.down {
            return;
        }
        self.down = true;
        self.report.lock().outages += 1;
        tracing::warn!(
            "MLflow: the tracking server {} does not answer ({failure}); training goes on, and what is queued is \
             sent when it is back",
            self.client.uri()
        );
    }

    /// The server answered.
    fn up(&mut self) {
        if self.down {
            self.down = false;
            tracing::info!("MLflow: the tracking server {} answers again", self.client.uri());
        }
    }

    /// The server refused `what`: a warning, once per kind of refusal.
    fn refused(&mut self, failure: &Failure, what: &str) {
        let kind = failure.code().unwrap_or("other").to_owned();
        if self.refusals.insert(kind) {
            tracing::warn!(
                "MLflow: the tracking server {} refused {what} of run {}: {failure}",
                self.client.uri(),
                self.run_id
            );
        }
    }
}
