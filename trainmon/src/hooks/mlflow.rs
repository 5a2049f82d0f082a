//! Tracking a fit in MLflow, through a tracking server's REST API.

mod rest;
mod worker;

use crate::context::HookContext;
use crate::control::Control;
use crate::error::BoxError;
use crate::hook::{Hook, Plugin};
use crate::records::history::LoggedValue;
use crate::records::saved::HookState;
use crate::schedule::event::Event;
use crate::schedule::priority;
use crate::schedule::spec::HookSpec;
use rest::{Client, Failure, Metric, MAX_PARAMS, MAX_TAGS, REQUEST_TIMEOUT};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use worker::{Finish, Shared, Upload, Worker};

/// How long the end of a fit waits, by default, for the last values, the artifacts and the
/// run's status to reach the server.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Events' worth of values queued for the background thread; beyond, values are dropped
/// (and counted) rather than slow training down.
const QUEUE: usize = 10_000;
/// The longest parameter value and tag value sent (MLflow refuses longer ones: 6000 and 8000
/// characters).
const MAX_PARAM_VALUE: usize = 6000;
const MAX_TAG_VALUE: usize = 5000;
/// The longest metric, parameter or tag name MLflow takes.
const MAX_NAME: usize = 250;
/// The tags of how a fit ended, when it did not end plainly.
const STOP_REASON_TAG: &str = "trainmon.stop_reason";
/// The tag with the kind of the stop (`StopCause::name`): what tells an interrupt from an early stop.
const STOP_CAUSE_TAG: &str = "trainmon.stop_cause";
const ERROR_TAG: &str = "trainmon.error";

/// Logs a fit to an [MLflow](https://mlflow.org) tracking server (`mlflow server`), through its
/// REST API, as one MLflow run:
///
/// - **parameters**: the trainer's settings ([`crate::HookContext::settings`]: `epochs`,
///   `batch_size`, `batches_per_epoch`, `optimizer`, `lr`, `seed`, `loss`, `device`, `shuffle`,
///   `drop_last`, `accumulate_gradients`, `clip`, `validation`, `samples`,
///   `validation_samples`, `precision`, `grad_scaler`), then yours ([`Mlflow::param`], which win over a setting of the same
///   name);
/// - **metrics**: every epoch's values (`loss`, `accuracy`, `val_*`, your metrics, `lr`,
///   `time_s`, `throughput`) at step = the epoch; with [`Mlflow::steps`], the running values as
///   `{name}_step` at step = the global step; the numbers hooks log
///   ([`crate::HookContext::log`]) under their name at their step. Each is stamped with when it
///   was recorded. A name MLflow does not take (only letters, digits and `_-. :/`) is logged
///   with `_` for the other characters, with a warning;
/// - **tags**: yours, `mlflow.runName`, `mlflow.source.name` (the binary), `mlflow.user`,
///   `trainmon.version`; at the end `trainmon.stop_reason` when a hook stopped training, or
///   `trainmon.error` when it failed;
/// - **artifacts**, uploaded when the fit ends: the final weights as `model/final.safetensors`
///   ([`Mlflow::log_model`]) and the files and directories of [`Mlflow::artifacts`] (the plots
///   of [`crate::hooks::Plots`], the metric files…);
/// - **status**: `FINISHED` when the fit ends (an early stop included), `KILLED` when
///   [`crate::hooks::Interrupt`] stopped it (Ctrl-C), `FAILED` when it failed.
///
/// When the fit starts, the hook reaches the server, gets (or creates) the experiment and
/// creates the run before anything else runs: a URI that is not a reachable MLflow server
/// fails the fit there, before any training. From then on it never holds training up: values
/// go through a bounded queue to a background thread that sends them in batches. A server that
/// is down, or goes down, is retried with backoff (one warning per outage) while training goes
/// on; a full queue drops values and counts them ([`Mlflow::report`]). When the fit ends, the
/// thread gets [`Mlflow::flush_timeout`] (10 s) to send what is left, upload the artifacts and
/// set the run's status; a warning then says how many values were not sent — they are still in
/// the history (and the metric files of [`crate::hooks::MetricFiles`]).
///
/// It runs last at the end of training (priority [`priority::TRACKING`]), so the plots and
/// checkpoints it uploads are written; and first at its start. In a resumable fit
/// ([`crate::Trainer::resumable`]) the resume point keeps the run's id: the resumed fit goes
/// on in the same run, and values the interrupted process sent already (the resumed fit
/// computes them again) are not sent twice — a metric's steps up to the latest the server has
/// are skipped.
///
/// The server's URI is `http://` or `https://`; `MLFLOW_TRACKING_TOKEN` (a bearer token) or
/// `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` authenticate, as for MLflow's own
/// clients. Artifacts go through the server's artifact proxy (`mlflow-artifacts:` runs, what
/// `mlflow server` gives them by default); a run whose artifacts go elsewhere (a local path,
/// `s3://` with `--no-serve-artifacts`) gets none, with a warning.
///
/// ```no_run
/// use tch::nn;
/// use trainmon::hooks::{Mlflow, Plots};
/// use trainmon::{TensorDataset, Trainer};
///
/// # fn main() -> trainmon::Result<()> {
/// # let vs = nn::VarStore::new(tch::Device::Cpu);
/// # let model = nn::linear(vs.root(), 20, 2, Default::default());
/// # let data = TensorDataset::new(tch::Tensor::zeros([8, 20], tch::kind::FLOAT_CPU), tch::Tensor::zeros([8], tch::kind::INT64_CPU))?;
/// let mlflow = Mlflow::new("http://127.0.0.1:5000")
///     .experiment("tutorial")
///     .run_name("adam-1e-3")
///     .param("model", "linear")
///     .tag("team", "vision")
///     .steps(50)
///     .artifacts("runs/demo/plots");
/// let report = mlflow.report();
/// Trainer::new(&vs, &model)
///     .optimizer(nn::Adam::default(), 1e-3)
///     .epochs(10)
///     .with(Plots::new("runs/demo/plots"))
///     .with(mlflow)
///     .fit(&data)?;
/// println!("MLflow run {:?}: {} values sent", report.run_id(), report.sent());
/// # Ok(())
/// # }
/// ```
pub struct Mlflow {
    uri: String,
    experiment: String,
    run_name: Option<String>,
    params: Vec<(String, String)>,
    tags: Vec<(String, String)>,
    artifacts: Vec<PathBuf>,
    log_model: bool,
    every: u64,
    flush_timeout: Duration,
    report: MlflowReport,
    /// The run a resume point names, until the fit goes on in it.
    resumed: Option<Kept>,
    /// The run of the fit under way.
    live: Option<Live>,
}

/// What a resume point keeps: the run the fit logs to.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Kept {
    run_id: String,
    experiment_id: String,
}

/// A fit under way: its run, and the queue to the background thread.
struct Live {
    kept: Kept,
    uri: String,
    artifact_base: Option<String>,
    queue: SyncSender<Vec<Metric>>,
    shared: Arc<Shared>,
    done: Receiver<()>,
    report: MlflowReport,
    /// The latest step of each metric on the server when a resumed fit started: values up
    /// to it were sent by the interrupted process.
    server_steps: HashMap<String, i64>,
    /// Epochs of the history, and values hooks logged, queued so far.
    epochs_seen: usize,
    logged_seen: usize,
    /// The global step of the last running values queued.
    last_step: Option<u64>,
    /// Names as MLflow takes them.
    names: HashMap<String, String>,
    /// Whether values were dropped (a warning said so).
    dropping: bool,
}

impl std::fmt::Debug for Mlflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mlflow")
            .field("uri", &self.uri)
            .field("experiment", &self.experiment)
            .field("run_name", &self.run_name)
            .field("params", &self.params)
            .field("tags", &self.tags)
            .field("artifacts", &self.artifacts)
            .field("log_model", &self.log_model)
            .field("steps", &self.every)
            .field("flush_timeout", &self.flush_timeout)
            .field("run", &self.live.as_ref().map(|live| &live.kept.run_id))
            .finish()
    }
}

impl Mlflow {
    /// Logs to the tracking server at `uri` (`http://host:5000`), in the experiment `Default`,
    /// with the final weights, without running values.
    pub fn new(uri: impl Into<String>) -> Self {
        Mlflow {
            uri: uri.into(),
            experiment: "Default".into(),
            run_name: None,
            params: Vec::new(),
            tags: Vec::new(),
            artifacts: Vec::new(),
            log_model: true,
            every: 0,
            flush_timeout: FLUSH_TIMEOUT,
            report: MlflowReport::default(),
            resumed: None,
            live: None,
        }
    }

    /// The experiment to log to, by name (created if the server has none of that name).
    pub fn experiment(mut self, name: impl Into<String>) -> Self {
        self.experiment = name.into();
        self
    }

    /// The run's name (by default, the one the server makes up).
    pub fn run_name(mut self, name: impl Into<String>) -> Self {
        self.run_name = Some(name.into());
        self
    }

    /// A parameter of the run, beside the trainer's settings (a value of the same name as a
    /// setting replaces it).
    pub fn param(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.params.push((key.into(), value.to_string()));
        self
    }

    /// Parameters of the run, as [`Mlflow::param`].
    pub fn params<K: Into<String>, V: ToString>(mut self, params: impl IntoIterator<Item = (K, V)>) -> Self {
        self.params
            .extend(params.into_iter().map(|(k, v)| (k.into(), v.to_string())));
        self
    }

    /// A tag of the run.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// A file or directory to upload as the run's artifacts when the fit ends (or fails): a
    /// directory goes with everything in it, under its own name (`runs/demo/plots` →
    /// `plots/loss.png`…), a file under its name. What is not there then is left out, with a
    /// warning.
    pub fn artifacts(mut self, path: impl Into<PathBuf>) -> Self {
        self.artifacts.push(path.into());
        self
    }

    /// Whether to upload the model's final weights (safetensors, as the checkpoints) as the
    /// artifact `model/final.safetensors` when the fit ends — not when it fails (default
    /// `true`).
    pub fn log_model(mut self, log_model: bool) -> Self {
        self.log_model = log_model;
        self
    }

    /// Also the running values of training (`loss_step`, `accuracy_step`…) every `n`
    /// optimizer steps, at the global step (`0`: none, the default).
    pub fn steps(mut self, n: u64) -> Self {
        self.every = n;
        self
    }

    /// How long the end of a fit may wait for the last values, the artifacts and the run's
    /// status to reach the server (default 10 s): what is not sent by then is not, with a
    /// warning. Give large models time to upload.
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// A handle on what the hook did — the run's id, the values sent and not sent, the
    /// outages, the final status — to read during and after `fit`.
    pub fn report(&self) -> MlflowReport {
        self.report.clone()
    }
}

/// What an [`Mlflow`] hook did in its latest fit, read through the handle
/// [`Mlflow::report`] returns.
#[derive(Clone, Default, Debug)]
pub struct MlflowReport(Arc<Mutex<Reported>>);

#[derive(Default, Debug)]
struct Reported {
    run_id: Option<String>,
    experiment_id: Option<String>,
    /// Values handed to the background thread.
    queued: u64,
    /// Values the server took.
    sent: u64,
    /// Values dropped, the queue being full.
    dropped: u64,
    /// Values the server refused.
    refused: u64,
    outages: u32,
    status: Option<String>,
    artifacts: Vec<String>,
}

impl MlflowReport {
    /// The run's id, once the fit started.
    pub fn run_id(&self) -> Option<String> {
        self.lock().run_id.clone()
    }

    /// The experiment's id, once the fit started.
    pub fn experiment_id(&self) -> Option<String> {
        self.lock().experiment_id.clone()
    }

    /// Metric values the server took.
    pub fn sent(&self) -> u64 {
        self.lock().sent
    }

    /// Metric values not on the server: dropped while the queue was full, refused by the
    /// server, or not sent by the flush deadline (during the fit, those still queued too).
    pub fn unsent(&self) -> u64 {
        let r = self.lock();
        r.dropped + r.queued.saturating_sub(r.sent)
    }

    /// Metric values dropped because the queue was full (the server slow or down).
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Times the server stopped answering (each warned about once).
    pub fn outages(&self) -> u32 {
        self.lock().outages
    }

    /// The status the run ended with, once the server took it (`FINISHED`, `FAILED`,
    /// `KILLED`); `None` before, or when it could not be set.
    pub fn status(&self) -> Option<String> {
        self.lock().status.clone()
    }

    /// The artifacts uploaded, by path.
    pub fn artifacts(&self) -> Vec<String> {
        self.lock().artifacts.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Reported> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Milliseconds since the Unix epoch: MLflow's timestamps.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `name` as MLflow takes names of metrics, parameters and tags: letters, digits and `_-. :/`,
/// a relative path without empty, `.` or `..` parts, 250 characters at most.
fn mlflow_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "_-. :/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let parts: Vec<&str> = cleaned
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .map(|part| if part == ".." { "__" } else { part })
        .collect();
    let joined: String = parts.join("/").chars().take(MAX_NAME).collect();
    if joined.is_empty() {
        "_".to_owned()
    } else {
        joined
    }
}

/// At most `max` characters of `text`.
fn truncated(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

/// The error of a request made when the fit starts, naming the server and what was asked.
fn refused_at_start(uri: &str, doing: &str, failure: Failure) -> BoxError {
    match failure {
        Failure::Transport(why) => {
            format!("could not reach the MLflow tracking server at {uri} (to {doing}): {why}").into()
        }
        Failure::Status { code: Some(_), .. } => {
            format!("the MLflow tracking server at {uri} could not {doing}: {failure}").into()
        }
        failure => format!("{uri} is not an MLflow tracking server (asked to {doing}, it answered {failure})").into(),
    }
}

impl Mlflow {
    /// Reaches the server, opens the run (a new one, or the resume point's), logs the
    /// parameters and tags, and starts the background thread.
    fn begin(&mut self, ctx: &HookContext<'_>) -> Result<(), BoxError> {
        self.live = None;
        *self.report.lock() = Reported::default();
        let client = Client::new(&self.uri)?;
        let uri = client.uri().to_owned();
        let mut resumed = None;
        if let Some(kept) = self.resumed.take() {
            let doing = format!("read the run {} of the resume point", kept.run_id);
            match client.get_run(&kept.run_id) {
                Ok(Some(run)) if run.lifecycle_stage != "deleted" => resumed = Some(run),
                Ok(_) => tracing::warn!(
                    "MLflow: the run {} of the resume point is not on {uri} (deleted?): the fit goes on in a new run",
                    kept.run_id
                ),
                Err(failure) => return Err(refused_at_start(&uri, &doing, failure)),
            }
        }
        let tags = self.tags();
        let resuming = resumed.is_some();
        let run = match resumed {
            Some(run) => {
                client
                    .update_run(&run.id, "RUNNING", None, REQUEST_TIMEOUT)
                    .map_err(|f| refused_at_start(&uri, "mark the resumed run as running", f))?;
                run
            }
            None => {
                let experiment_id = self.experiment_id(&client)?;
                let created = client.create_run(&experiment_id, self.run_name.as_deref(), now_ms(), &tags);
                created.map_err(|f| refused_at_start(&uri, "create a run", f))?
            }
        };
        if let Err(err) = self.set_run_up(&client, &run, resuming, &tags, ctx) {
            // The run would show as running for ever: failed, if the server lets it.
            let _ = client.update_run(&run.id, "FAILED", Some(now_ms()), Duration::from_secs(5));
            return Err(err);
        }
        let artifact_base = client.artifact_base(&run.artifact_uri);
        if artifact_base.is_none() && (self.log_model || !self.artifacts.is_empty()) {
            tracing::warn!(
                "MLflow: the run's artifacts go to {}, which the hook cannot write through the server (it uploads \
                 through the artifact proxy of `mlflow server`, on by default): the model and artifacts are not \
                 uploaded",
                run.artifact_uri
            );
        }
        let kept = Kept {
            run_id: run.id.clone(),
            experiment_id: run.experiment_id.clone(),
        };
        let (queue, receiver) = mpsc::sync_channel(QUEUE);
        let (done_sender, done) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let worker = Worker {
            client,
            run_id: run.id.clone(),
            queue: receiver,
            shared: shared.clone(),
            report: self.report.clone(),
            done: done_sender,
            down: false,
            refusals: HashSet::new(),
        };
        // The thread logs where the fit does.
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        std::thread::Builder::new()
            .name("trainmon-mlflow".into())
            .spawn(move || tracing::dispatcher::with_default(&dispatch, || worker.run()))
            .map_err(|e| format!("could not start the MLflow thread: {e}"))?;
        {
            let mut report = self.report.lock();
            report.run_id = Some(kept.run_id.clone());
            report.experiment_id = Some(kept.experiment_id.clone());
        }
        tracing::info!(
            "MLflow: {} run {uri}/#/experiments/{}/runs/{}",
            if resuming { "going on in" } else { "logging to" },
            kept.experiment_id,
            kept.run_id
        );
        let mut live = Live {
            kept,
            uri,
            artifact_base,
            queue,
            shared,
            done,
            report: self.report.clone(),
            server_steps: run.steps,
            epochs_seen: 0,
            logged_seen: 0,
            last_step: None,
            names: HashMap::new(),
            dropping: false,
        };
        // A resumed fit's history holds the epochs before its resume point: what the server
        // lacks of them (sent by nobody when the process died) goes now.
        live.queue_history(ctx);
        self.live = Some(live);
        Ok(())
    }

    /// Logs the run's parameters — a resumed run's new ones — and, resuming, its tags again
    /// (it lost those of how the interrupted fit ended).
    fn set_run_up(
        &self,
        client: &Client,
        run: &rest::Run,
        resuming: bool,
        tags: &[(String, String)],
        ctx: &HookContext<'_>,
    ) -> Result<(), BoxError> {
        let uri = client.uri();
        // A resumed run has its parameters: the new ones only (MLflow refuses changes).
        let mut params = self.run_params(ctx);
        params.retain(|(key, value)| match run.params.get(key) {
            None => true,
            Some(old) if old == value => false,
            Some(old) => {
                tracing::warn!(
                    "MLflow: the resumed run has the parameter `{key}` = `{old}`, this fit `{value}`; MLflow keeps the \
                     first"
                );
                false
            }
        });
        for params in params.chunks(MAX_PARAMS) {
            client
                .log_batch(&run.id, &[], params, &[], REQUEST_TIMEOUT)
                .map_err(|f| refused_at_start(uri, "log the run's parameters", f))?;
        }
        if resuming {
            // How the interrupted fit ended is not how this one will.
            for key in [STOP_REASON_TAG, ERROR_TAG] {
                if run.tags.contains_key(key) {
                    client
                        .delete_tag(&run.id, key)
                        .map_err(|f| refused_at_start(uri, &format!("remove the tag `{key}` of the resumed run"), f))?;
                }
            }
            for tags in tags.chunks(MAX_TAGS) {
                client
                    .log_batch(&run.id, &[], &[], tags, REQUEST_TIMEOUT)
                    .map_err(|f| refused_at_start(uri, "log the run's tags", f))?;
            }
        }
        Ok(())
    }

    /// The experiment's id, created if need be.
    fn experiment_id(&self, client: &Client) -> Result<String, BoxError> {
        let uri = client.uri();
        let name = &self.experiment;
        let doing = format!("look up the experiment `{name}`");
        match client.experiment_by_name(name) {
            Ok(Some(experiment)) if experiment.lifecycle_stage == "deleted" => Err(format!(
                "the experiment `{name}` is deleted on the MLflow tracking server at {uri}: restore it (`mlflow \
                 experiments restore --experiment-id {}`) or log to another",
                experiment.id
            )
            .into()),
            Ok(Some(experiment)) => Ok(experiment.id),
            Ok(None) => match client.create_experiment(name) {
                Ok(id) => Ok(id),
                // Made by another process meanwhile.
                Err(failure) if failure.code() == Some("RESOURCE_ALREADY_EXISTS") => {
                    match client.experiment_by_name(name) {
                        Ok(Some(experiment)) => Ok(experiment.id),
                        Ok(None) => Err(refused_at_start(uri, &doing, failure)),
                        Err(failure) => Err(refused_at_start(uri, &doing, failure)),
                    }
                }
                Err(failure) => Err(refused_at_start(
                    uri,
                    &format!("create the experiment `{name}`"),
                    failure,
                )),
            },
            Err(failure) => Err(refused_at_start(uri, &doing, failure)),
        }
    }

    /// The trainer's settings, then the user's parameters (which replace a setting of the
    /// same name), with names and values as MLflow takes them.
    fn run_params(&self, ctx: &HookContext<'_>) -> Vec<(String, String)> {
        let s = ctx.settings();
        let device = match s.device() {
            tch::Device::Cpu => "cpu".to_owned(),
            tch::Device::Cuda(i) => format!("cuda:{i}"),
            other => format!("{other:?}").to_lowercase(),
        };
        let clip = match (s.clip_grad_norm(), s.clip_grad_value()) {
            (Some(max), _) => format!("norm {max}"),
            (_, Some(max)) => format!("value {max}"),
            _ => "none".to_owned(),
        };
        let validation = match (s.validation_split(), s.validation_samples()) {
            (Some(fraction), _) => format!("split {fraction}"),
            (None, 0) => "none".to_owned(),
            (None, _) => "dataset".to_owned(),
        };
        let scaler = s.grad_scaler().map_or("none".to_owned(), |scaler| scaler.to_string());
        let settings = [
            ("epochs", s.epochs().to_string()),
            ("batch_size", s.batch_size().to_string()),
            ("batches_per_epoch", s.batches_per_epoch().to_string()),
            ("optimizer", s.optimizer().to_owned()),
            ("lr", s.learning_rate().to_string()),
            ("seed", s.seed().map_or("none".to_owned(), |seed| seed.to_string())),
            ("loss", s.loss().to_owned()),
            ("device", device),
            ("shuffle", s.shuffle().to_string()),
            ("drop_last", s.drop_last().to_string()),
            ("accumulate_gradients", s.accumulate_gradients().to_string()),
            ("clip", clip),
            ("validation", validation),
            ("samples", s.samples().to_string()),
            ("validation_samples", s.validation_samples().to_string()),
            ("precision", s.precision().to_string()),
            ("grad_scaler", scaler),
        ];
        let mut params: Vec<(String, String)> = Vec::new();
        let given = settings
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain(self.params.iter().cloned());
        for (key, value) in given {
            let key = mlflow_name(&key);
            let value = truncated(&value, MAX_PARAM_VALUE);
            match params.iter_mut().find(|(k, _)| *k == key) {
                Some(param) => param.1 = value,
                None => params.push((key, value)),
            }
        }
        params
    }

    /// The run's tags: the user's, then the run's name, source, user and trainmon's version.
    fn tags(&self) -> Vec<(String, String)> {
        let mut tags: Vec<(String, String)> = self
            .tags
            .iter()
            .map(|(k, v)| (mlflow_name(k), truncated(v, MAX_TAG_VALUE)))
            .collect();
        if let Some(name) = &self.run_name {
            tags.push(("mlflow.runName".into(), truncated(name, MAX_TAG_VALUE)));
        }
        let binary = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
            .or_else(|| std::env::args().next())
            .unwrap_or_default();
        tags.push(("mlflow.source.name".into(), binary));
        tags.push(("mlflow.source.type".into(), "LOCAL".into()));
        if let Some(user) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
            tags.push(("mlflow.user".into(), user));
        }
        tags.push(("trainmon.version".into(), env!("CARGO_PKG_VERSION").into()));
        let mut seen = HashSet::new();
        // The last of a name wins: the user's come first, so keep the first of each.
        tags.retain(|(key, _)| seen.insert(key.clone()));
        tags
    }

    /// Ends the run: the last values, the artifacts and the status go to the background
    /// thread, which gets the flush deadline to send them.
    fn end(&mut self, ctx: &HookContext<'_>, status: &'static str, tags: Vec<(String, String)>) {
        let Some(mut live) = self.live.take() else {
            return;
        };
        live.queue_history(ctx);
        let mut uploads = Vec::new();
        let mut scratch = None;
        if live.artifact_base.is_some() {
            for path in &self.artifacts {
                artifact_files(path, &mut uploads);
            }
            if self.log_model && status != "FAILED" {
                let dir =
                    std::env::temp_dir().join(format!("trainmon-mlflow-{}-{}", std::process::id(), live.kept.run_id));
                let file = dir.join("final.safetensors");
                let metadata = crate::output::weights::Metadata::from([
                    ("mlflow_run_id".to_owned(), live.kept.run_id.clone()),
                    ("epoch".to_owned(), ctx.state().epoch().to_string()),
                    ("global_step".to_owned(), ctx.state().global_step().to_string()),
                ]);
                let saved = std::fs::create_dir_all(&dir)
                    .map_err(BoxError::from)
                    .and_then(|()| crate::output::weights::save(ctx.var_store(), &file, &metadata));
                match saved {
                    Ok(()) => uploads.push(Upload {
                        file,
                        path: "model/final.safetensors".into(),
                    }),
                    Err(e) => tracing::warn!("MLflow: the final weights could not be saved for the upload: {e}"),
                }
                scratch = Some(dir);
            }
        }
        let deadline = Instant::now() + self.flush_timeout;
        let uploads_count = uploads.len();
        live.shared.finish(
            Finish {
                status,
                end_time: now_ms(),
                tags,
                artifact_base: live.artifact_base.clone(),
                uploads,
                scratch,
            },
            deadline,
        );
        let Live {
            kept, uri, queue, done, ..
        } = live;
        // The thread sends what is queued, then finishes.
        drop(queue);
        // A moment past the deadline for the thread to give up its last request.
        let _ = done.recv_timeout(self.flush_timeout + Duration::from_millis(500));
        let report = self.report.lock();
        let mut missing = Vec::new();
        let unsent = report.dropped + report.queued.saturating_sub(report.sent);
        if unsent > 0 {
            let late = (unsent - report.dropped).saturating_sub(report.refused);
            let why: Vec<String> = [
                (report.dropped, "dropped while the queue was full".to_owned()),
                (report.refused, "refused by the server".to_owned()),
                (
                    late,
                    format!("not sent within the flush timeout of {:?}", self.flush_timeout),
                ),
            ]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, why)| format!("{n} {why}"))
            .collect();
            missing.push(format!("{unsent} metric values ({})", why.join(", ")));
        }
        if report.artifacts.len() < uploads_count {
            missing.push(format!(
                "{} of {uploads_count} artifacts",
                uploads_count - report.artifacts.len()
            ));
        }
        if report.status.is_none() {
            missing.push(format!("its status {status} (it shows as RUNNING)"));
        }
        if !missing.is_empty() {
            tracing::warn!(
                "MLflow: run {} on {uri} lacks {}; the values are in the fit's history (and in the files of \
                 `MetricFiles`)",
                kept.run_id,
                missing.join(", and ")
            );
        }
    }
}

impl Live {
    /// Queues values for the background thread, without those a resumed run has already; a
    /// full queue drops them (counted).
    fn send(&mut self, values: Vec<Metric>) {
        let values: Vec<Metric> = if self.server_steps.is_empty() {
            values
        } else {
            (values.into_iter())
                .filter(|m| self.server_steps.get(&m.key).is_none_or(|&latest| m.step > latest))
                .collect()
        };
        if values.is_empty() {
            return;
        }
        let n = values.len() as u64;
        match self.queue.try_send(values) {
            Ok(()) => self.report.lock().queued += n,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.report.lock().dropped += n;
                if !self.dropping {
                    self.dropping = true;
                    tracing::warn!(
                        "MLflow: the queue of values for {} is full (the server is slow or down): values are dropped \
                         until it drains, and counted",
                        self.uri
                    );
                }
            }
        }
    }

    /// `name` as MLflow takes it (a warning the first time it is not).
    fn name(&mut self, name: &str) -> String {
        if let Some(known) = self.names.get(name) {
            return known.clone();
        }
        let taken = mlflow_name(name);
        if taken != name {
            tracing::warn!("MLflow: the name `{name}` is not one MLflow takes: it is logged as `{taken}`");
        }
        self.names.insert(name.to_owned(), taken.clone());
        taken
    }

    /// Queues the epochs of the history not queued yet, and the values hooks logged.
    fn queue_history(&mut self, ctx: &HookContext<'_>) {
        let epochs = ctx.history().epochs();
        for epoch in epochs.get(self.epochs_seen..).unwrap_or_default() {
            let (timestamp, step) = (now_ms(), epoch.epoch() as i64);
            let extra = [
                ("lr", epoch.learning_rate()),
                ("time_s", epoch.time().as_secs_f64()),
                ("throughput", epoch.throughput()),
            ];
            let values = (epoch.metrics().chain(extra))
                .map(|(name, value)| Metric {
                    key: self.name(name),
                    value,
                    timestamp,
                    step,
                })
                .collect();
            self.send(values);
        }
        self.epochs_seen = epochs.len();
        self.queue_logged(ctx);
    }

    /// Queues the numbers hooks logged since the last time, under their name at their step.
    fn queue_logged(&mut self, ctx: &HookContext<'_>) {
        let logged = ctx.history().logged_all();
        let Some(new) = logged.get(self.logged_seen..).filter(|new| !new.is_empty()) else {
            return;
        };
        let timestamp = now_ms();
        let values = (new.iter())
            .filter_map(|l| match l.value() {
                LoggedValue::Scalar(value) => Some(Metric {
                    key: self.name(l.name()),
                    value: *value,
                    timestamp,
                    step: l.step() as i64,
                }),
                LoggedValue::Histogram(_) => None,
            })
            .collect();
        self.logged_seen = logged.len();
        self.send(values);
    }

    /// The running values every `every` optimizer steps, as `{name}_step` at the global step.
    fn queue_steps(&mut self, ctx: &HookContext<'_>, every: u64) {
        let step = ctx.state().global_step();
        if every == 0 || step == 0 || step % every != 0 || self.last_step == Some(step) {
            return;
        }
        self.last_step = Some(step);
        let Some(batch) = ctx.batch() else { return };
        let timestamp = now_ms();
        let values = (batch.names())
            .map(|name| Metric {
                key: self.name(&format!("{name}_step")),
                value: batch.get(name).unwrap_or(f64::NAN),
                timestamp,
                step: step as i64,
            })
            .collect();
        self.send(values);
    }
}

/// The files to upload for `path`: itself, or everything in it under its name, in order.
fn artifact_files(path: &Path, uploads: &mut Vec<Upload>) {
    let name = path
        .file_name()
        .map_or_else(|| "artifacts".to_owned(), |n| n.to_string_lossy().into_owned());
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => walk(path, &name, uploads),
        Ok(_) => uploads.push(Upload {
            file: path.to_owned(),
            path: name,
        }),
        Err(e) => tracing::warn!(
            "MLflow: the artifact {} cannot be read ({e}): it is not uploaded",
            path.display()
        ),
    }
}

fn walk(dir: &Path, prefix: &str, uploads: &mut Vec<Upload>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(
                "MLflow: the artifacts in {} cannot be read ({e}): they are not uploaded",
                dir.display()
            );
            return;
        }
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let artifact = format!("{prefix}/{name}");
        if path.is_dir() {
            walk(&path, &artifact, uploads);
        } else if path.is_file() {
            uploads.push(Upload {
                file: path,
                path: artifact,
            });
        }
    }
}

impl Hook for Mlflow {
    fn state(&self) -> Result<Option<HookState>, BoxError> {
        let kept = self.live.as_ref().map(|live| &live.kept).or(self.resumed.as_ref());
        kept.map(HookState::new).transpose()
    }

    fn restore(&mut self, state: HookState) -> Result<(), BoxError> {
        self.resumed = Some(state.value()?);
        Ok(())
    }

    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        match ctx.event() {
            Event::TrainBegin => self.begin(ctx)?,
            Event::BatchEnd => {
                if let Some(live) = &mut self.live {
                    live.queue_steps(ctx, self.every);
                    live.queue_logged(ctx);
                }
            }
            Event::EpochEnd => {
                if let Some(live) = &mut self.live {
                    live.queue_history(ctx);
                }
            }
            Event::TrainEnd => {
                let stop = ctx.history().stop_reason();
                let interrupted = stop.is_some_and(|s| s.cause == crate::control::StopCause::Interrupted);
                let tags = stop
                    .map(|s| {
                        vec![
                            (STOP_REASON_TAG.to_owned(), truncated(&s.reason, MAX_TAG_VALUE)),
                            (STOP_CAUSE_TAG.to_owned(), s.cause.name().to_owned()),
                        ]
                    })
                    .unwrap_or_default();
                self.end(ctx, if interrupted { "KILLED" } else { "FINISHED" }, tags);
            }
            Event::Exception => {
                let error = ctx.error().map_or_else(|| "unknown".to_owned(), |e| format!("{e:#}"));
                let tags = vec![(ERROR_TAG.to_owned(), truncated(&error, MAX_TAG_VALUE))];
                self.end(ctx, "FAILED", tags);
            }
            _ => {}
        }
        Ok(Control::Continue)
    }
}

impl Plugin for Mlflow {
    fn specs(&self) -> Vec<HookSpec> {
        let at = |event| HookSpec::new(event, "Mlflow").priority(priority::TRACKING).rank_zero();
        vec![
            // First: a server it cannot reach fails the fit before any other hook starts.
            HookSpec::new(Event::TrainBegin, "Mlflow")
                .priority(i32::MAX)
                .rank_zero(),
            // Every batch: values hooks log are stamped close to when they were.
            at(Event::BatchEnd),
            at(Event::EpochEnd),
            at(Event::TrainEnd),
            at(Event::Exception),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_mlflow_takes_them() {
        for (name, want) in [
            ("val_loss", "val_loss"),
            ("grad_norm/fc1.weight", "grad_norm/fc1.weight"),
            ("loss(%)", "loss___"),
            ("/a//b/./c/", "a/b/c"),
            ("a/../b", "a/__/b"),
            ("", "_"),
            ("é-1 :x", "é-1 :x"),
        ] {
            assert_eq!(mlflow_name(name), want, "{name}");
        }
        assert_eq!(mlflow_name(&"x".repeat(300)).len(), MAX_NAME);
    }
}
