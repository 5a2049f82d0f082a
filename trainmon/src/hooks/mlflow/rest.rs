//! The part of MLflow's REST API the [`super::Mlflow`] hook uses (`/api/2.0/mlflow/…` and the
//! artifact proxy, `/api/2.0/mlflow-artifacts/…`), over a blocking HTTP client.
//!
//! Checked against `mlflow server` 3.17: experiments get-by-name (404 `RESOURCE_DOES_NOT_EXIST`
//! when missing) and create; runs create, get, update and log-batch (non-finite values as the
//! strings `"NaN"`, `"Infinity"`, `"-Infinity"`, as protobuf's JSON mapping writes them);
//! artifacts by PUT of the file's bytes to the proxy.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// How long a request may take before the background thread's flush deadline (and at the
/// start of a fit, before training): a server that answers in none is as good as down.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// MLflow's limits on one `runs/log-batch` request.
pub(super) const MAX_METRICS: usize = 1000;
pub(super) const MAX_PARAMS: usize = 100;
pub(super) const MAX_TAGS: usize = 100;
/// The largest answer read (a run's data, with every metric's latest value).
const ANSWER_LIMIT: u64 = 256 << 20;

/// A tracking server, at its URI.
#[derive(Clone)]
pub(super) struct Client {
    /// The tracking URI without a trailing `/`.
    base: String,
    agent: ureq::Agent,
    /// The `Authorization` header, from the variables MLflow's own clients read.
    auth: Option<String>,
}

/// Why a request did not do what it asked.
#[derive(Clone, Debug)]
pub(super) enum Failure {
    /// No answer: the connection failed, or timed out.
    Transport(String),
    /// An error status; `code` is MLflow's `error_code` when the body was MLflow's error.
    Status {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// A success status with a body that is not JSON: not MLflow's answer.
    NotJson { status: u16, content_type: String },
}

impl Failure {
    /// Whether trying again later may work: no answer, or the server was busy or failing.
    pub fn transient(&self) -> bool {
        match self {
            Failure::Transport(_) => true,
            Failure::Status { status, .. } => *status == 429 || *status >= 500,
            Failure::NotJson { .. } => false,
        }
    }

    /// MLflow's `error_code`, when the server answered with MLflow's error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Failure::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transport(message) => f.write_str(message),
            Failure::Status {
                status,
                code: Some(code),
                message,
            } => write!(f, "HTTP {status}, {code}: {message}"),
            Failure::Status {
                status,
                code: None,
                message,
            } => write!(f, "HTTP {status} without MLflow's error ({message})"),
            Failure::NotJson { status, content_type } => {
                write!(f, "HTTP {status} with a body of {content_type}, not MLflow's JSON")
            }
        }
    }
}

/// One value of a metric, as MLflow keeps it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Metric {
    pub key: String,
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub step: i64,
}

impl Metric {
    fn to_json(&self) -> Value {
        // Protobuf's JSON mapping, which the server parses: non-finite doubles as strings.
        let value = if self.value.is_nan() {
            json!("NaN")
        } else if self.value.is_infinite() {
            json!(if self.value > 0.0 { "Infinity" } else { "-Infinity" })
        } else {
            json!(self.value)
        };
        json!({"key": self.key, "value": value, "timestamp": self.timestamp, "step": self.step})
    }
}

/// An experiment, as the server has it.
pub(super) struct Experiment {
    pub id: String,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
}

/// A run, as the server has it.
pub(super) struct Run {
    pub id: String,
    pub experiment_id: String,
    /// Where its artifacts go: `mlflow-artifacts:/…` through the server's proxy.
    pub artifact_uri: String,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
    /// The latest step of each metric it has.
    pub steps: HashMap<String, i64>,
    /// Its parameters.
    pub params: HashMap<String, String>,
    /// Its tags.
    pub tags: HashMap<String, String>,
}

impl Client {
    /// A client of the tracking server at `uri` (`http://` or `https://`); nothing is sent yet.
    pub fn new(uri: &str) -> Result<Self, String> {
        let base = uri.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "`{uri}` is not an http:// or https:// URI: the Mlflow hook logs to a tracking server (`mlflow \
                 server`) through its REST API"
            ));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(format!("trainmon/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            base,
            agent,
            auth: authorization(),
        })
    }

    /// The tracking URI, without a trailing `/`.
    pub fn uri(&self) -> &str {
        &self.base
    }

    /// GET `/api/2.0/mlflow/{path}` with `query`: the answer's JSON.
    pub fn get(&self, path: &str, query: &[(&str, &str)], timeout: Duration) -> Result<Value, Failure> {
        let mut request = self
            .agent
            .get(format!("{}/api/2.0/mlflow/{path}", self.base))
            .config()
            .timeout_global(Some(timeout))
            .build();
        for (key, value) in query {
            request = request.query(*key, *value);
        }
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth);
        }
        answer(request.call())
    }

    /// POST `body` to `/api/2.0/mlflow/{path}`: the answer's JSON.
    pub fn post(&self, path: &str, body: &Value, timeout: Duration) -> Result<Value, Failure> {
        let mut request = self
            .agent
            .post(format!("{}/api/2.0/mlflow/{path}", self.base))
            .config()
            .timeout_global(Some(timeout))
            .build();
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth);
        }
        answer(request.send_json(body))
    }

    /// The experiment named `name`, if there is one.
    pub fn experiment_by_name(&self, name: &str) -> Result<Option<Experiment>, Failure> {
        match self.get("experiments/get-by-name", &[("experiment_name", name)], REQUEST_TIMEOUT) {
            Ok(answer) => {
                let experiment = &answer["experiment"];
                match experiment["experiment_id"].as_str() {
                    Some(id) => Ok(Some(Experiment {
                        id: id.to_owned(),
                        lifecycle_stage: text(&experiment["lifecycle_stage"]),
                    })),
                    None => Err(unexpected(&answer, "an experiment")),
                }
            }
            Err(failure) if failure.code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(failure) => Err(failure),
        }
    }

    /// Creates an experiment named `name`; its id.
    pub fn create_experiment(&self, name: &str) -> Result<String, Failure> {
        let answer = self.post("experiments/create", &json!({"name": name}), REQUEST_TIMEOUT)?;
        match answer["experiment_id"].as_str() {
            Some(id) => Ok(id.to_owned()),
            None => Err(unexpected(&answer, "an experiment id")),
        }
    }

    /// Creates a run in an experiment, started at `start_time` (ms), with `tags`.
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: Option<&str>,
        start_time: i64,
        tags: &[(String, String)],
    ) -> Result<Run, Failure> {
        let mut body = json!({
            "experiment_id": experiment_id,
            "start_time": start_time,
            "tags": pairs(tags),
        });
        if let Some(name) = run_name {
            body["run_name"] = json!(name);
        }
        if let Some(user) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
            body["user_id"] = json!(user);
        }
        let answer = self.post("runs/create", &body, REQUEST_TIMEOUT)?;
        run(&answer["run"]).ok_or_else(|| unexpected(&answer, "a run"))
    }

    /// The run `run_id`, with its metrics' latest steps and its parameters, if the server has it.
    pub fn get_run(&self, run_id: &str) -> Result<Option<Run>, Failure> {
        match self.get("runs/get", &[("run_id", run_id)], REQUEST_TIMEOUT) {
            Ok(answer) => run(&answer["run"])
                .map(Some)
                .ok_or_else(|| unexpected(&answer, "a run")),
            Err(failure) if failure.code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(failure) => Err(failure),
        }
    }

    /// Logs metric values, parameters and tags to a run, in one request (within MLflow's
    /// limits: [`MAX_METRICS`] values, [`MAX_PARAMS`] parameters, [`MAX_TAGS`] tags).
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[(String, String)],
        tags: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), Failure> {
        let body = json!({
            "run_id": run_id,
            "metrics": metrics.iter().map(Metric::to_json).collect::<Vec<_>>(),
            "params": pairs(params),
            "tags": pairs(tags),
        });
        self.post("runs/log-batch", &body, timeout).map(drop)
    }

    /// Sets a run's status (`RUNNING`, `FINISHED`, `FAILED`, `KILLED`) and end time (ms).
    pub fn update_run(
        &self,
        run_id: &str,
        status: &str,
        end_time: Option<i64>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let mut body = json!({"run_id": run_id, "status": status});
        if let Some(end_time) = end_time {
            body["end_time"] = json!(end_time);
        }
        self.post("runs/update", &body, timeout).map(drop)
    }

    /// Removes a tag from a run.
    pub fn delete_tag(&self, run_id: &str, key: &str) -> Result<(), Failure> {
        self.post(
            "runs/delete-tag",
            &json!({"run_id": run_id, "key": key}),
            REQUEST_TIMEOUT,
        )
        .map(drop)
    }

    /// Where a run whose artifact URI is `artifact_uri` takes files by PUT: the server's
    /// artifact proxy for `mlflow-artifacts:` URIs (what `mlflow server` gives runs by
    /// default), the URI itself for `http(s):` ones; `None` for a store the client would
    /// write itself (a local path, `s3://`…), which this client does not.
    pub fn artifact_base(&self, artifact_uri: &str) -> Option<String> {
        let proxy = "api/2.0/mlflow-artifacts/artifacts";
        if let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") {
            match rest.strip_prefix("//") {
                // `mlflow-artifacts://host:port/path`: that host, with the tracking URI's scheme.
                Some(rest) => {
                    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
                    let scheme = self.base.split_once("://").map_or("http", |(s, _)| s);
                    Some(format!("{scheme}://{authority}/{proxy}/{}", path.trim_matches('/')))
                }
                None => Some(format!("{}/{proxy}/{}", self.base, rest.trim_matches('/'))),
            }
        } else if artifact_uri.starts_with("http://") || artifact_uri.starts_with("https://") {
            Some(artifact_uri.trim_end_matches('/').to_owned())
        } else {
            None
        }
    }

    /// Uploads `file` as the artifact `path` (`/`-separated) under `base` (from
    /// [`Client::artifact_base`]).
    pub fn upload(&self, base: &str, path: &str, file: &Path, timeout: Duration) -> Result<(), Failure> {
        let encoded: Vec<String> = path.split('/').map(encode_segment).collect();
        let body = std::fs::File::open(file)
            .map_err(|e| Failure::Transport(format!("could not read {}: {e}", file.display())))?;
        let mut request = self
            .agent
            .put(format!("{base}/{}", encoded.join("/")))
            .config()
            .timeout_global(Some(timeout))
            .build()
            .content_type("application/octet-stream");
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth);
        }
        answer(request.send(body)).map(drop)
    }
}

/// MLflow's answer: its JSON on success, or why it failed.
fn answer(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value, Failure> {
    let mut response = result.map_err(|e| Failure::Transport(transport(&e)))?;
    let status = response.status().as_u16();
    let content_type = response.body().mime_type().unwrap_or("no content type").to_owned();
    let text = response
        .body_mut()
        .with_config()
        .limit(ANSWER_LIMIT)
        .read_to_string()
        .map_err(|e| Failure::Transport(format!("the answer could not be read: {}", transport(&e))))?;
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    if (200..300).contains(&status) {
        if text.trim().is_empty() {
            return Ok(json!({}));
        }
        return parsed.ok_or(Failure::NotJson { status, content_type });
    }
    let code = parsed
        .as_ref()
        .and_then(|v| v["error_code"].as_str())
        .map(str::to_owned);
    let message = match parsed.as_ref().and_then(|v| v["message"].as_str()) {
        Some(message) => message.to_owned(),
        None if text.trim().is_empty() => format!("an empty body of {content_type}"),
        None => format!("a body of {content_type}: {}", snippet(&text)),
    };
    Err(Failure::Status { status, code, message })
}

/// A transport error in words: what happened, without ureq's wrapping.
fn transport(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Io(e) => e.to_string(),
        ureq::Error::Timeout(_) => "no answer in time".to_owned(),
        ureq::Error::HostNotFound => "host not found".to_owned(),
        ureq::Error::ConnectionFailed => "the connection failed".to_owned(),
        other => other.to_string(),
    }
}

/// The start of a body, on one line, for a message.
fn snippet(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(120) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line,
    }
}

/// An answer that is JSON but not what was asked for.
fn unexpected(answer: &Value, what: &str) -> Failure {
    Failure::Status {
        status: 200,
        code: None,
        message: format!("the answer holds no {what}: {}", snippet(&answer.to_string())),
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn pairs(pairs: &[(String, String)]) -> Vec<Value> {
    pairs.iter().map(|(k, v)| json!({"key": k, "value": v})).collect()
}

/// A run from its JSON (`{"info": …, "data": …}`).
fn run(run: &Value) -> Option<Run> {
    let info = &run["info"];
    let id = info["run_id"]
        .as_str()
        .or_else(|| info["run_uuid"].as_str())?
        .to_owned();
    let data = &run["data"];
    let list = |name: &str| data[name].as_array().cloned().unwrap_or_default();
    let steps = list("metrics")
        .iter()
        .filter_map(|m| {
            let step = m["step"]
                .as_i64()
                .or_else(|| m["step"].as_str()?.parse().ok())
                .unwrap_or(0);
            Some((m["key"].as_str()?.to_owned(), step))
        })
        .collect();
    let pairs = |name: &str| {
        list(name)
            .iter()
            .filter_map(|p| Some((p["key"].as_str()?.to_owned(), text(&p["value"]))))
            .collect()
    };
    Some(Run {
        id,
        experiment_id: text(&info["experiment_id"]),
        artifact_uri: text(&info["artifact_uri"]),
        lifecycle_stage: text(&info["lifecycle_stage"]),
        steps,
        params: pairs("params"),
        tags: pairs("tags"),
    })
}

/// The `Authorization` header MLflow's clients send: `MLFLOW_TRACKING_TOKEN` (a bearer token),
/// or `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` (basic authentication).
fn authorization() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(token) = var("MLFLOW_TRACKING_TOKEN") {
        return Some(format!("Bearer {token}"));
    }
    let user = var("MLFLOW_TRACKING_USERNAME")?;
    let password = var("MLFLOW_TRACKING_PASSWORD").unwrap_or_default();
    Some(format!("Basic {}", base64(format!("{user}:{password}").as_bytes())))
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A path segment percent-encoded: unreserved characters as they are, the rest as `%XX`.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_rfc_4648() {
        for (text, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64(text.as_bytes()), want, "{text}");
        }
    }

    #[test]
    fn artifact_bases() {
        let client = Client::new("https://mlflow.example/").unwrap();
        assert_eq!(client.uri(), "https://mlflow.example");
        assert_eq!(
            client.artifact_base("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("https://mlflow.example/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts")
        );
        assert_eq!(
            client
                .artifact_base("mlflow-artifacts://other:5000/1/abc/artifacts")
                .as_deref(),
            Some("https://other:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts")
        );
        assert_eq!(client.artifact_base("/tmp/mlruns/1/abc/artifacts"), None);
        assert_eq!(client.artifact_base("s3://bucket/1/abc/artifacts"), None);
        assert!(Client::new("file:///tmp/mlruns").err().unwrap().contains("not an http"));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("a b%.png"), "a%20b%25.png");
        assert_eq!(encode_segment("final.safetensors"), "final.safetensors");
    }

    #[test]
    fn non_finite_values_as_protobuf_writes_them() {
        let metric = |value| Metric {
            key: "loss".into(),
            value,
            timestamp: 1,
            step: 2,
        };
        assert_eq!(metric(f64::NAN).to_json()["value"], "NaN");
        assert_eq!(metric(f64::NEG_INFINITY).to_json()["value"], "-Infinity");
        assert_eq!(metric(0.5).to_json()["value"], 0.5);
    }
}
