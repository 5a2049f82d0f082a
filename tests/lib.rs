//! Shared setup of the integration tests: the tutorial's data and model, seeded; one lock for
//! libtorch's generator; the names of tests a test starts as child processes.

use tch::{nn, Device, Kind, Tensor};
use trainmon::TensorDataset;

/// libtorch's random generator is one per process: a test that seeds it or draws from it (data,
/// initial weights, dropout, a fit with `Trainer::seed`) holds this lock while it does, so that
/// the tests of a binary, which run in parallel threads, draw one at a time. One lock for every
/// module of a binary: a module's draws would change another's.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds [`SERIAL`] (a test that failed while holding it does not fail the others).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The name libtest gives test `name` of the module at `module_path` (`module_path!()`): the
/// path without the binary's crate, as `--exact` takes it to run that test alone.
pub fn test_name(module_path: &str, name: &str) -> String {
    match module_path.split_once("::") {
        Some((_crate, module)) => format!("{module}::{name}"),
        None => name.to_owned(),
    }
}

/// `RandomDataset(1000, 20)` of the tutorial: standard normal features, labels 0 or 1.
pub fn tutorial_data(seed: i64) -> TensorDataset {
    tch::manual_seed(seed);
    let features = Tensor::randn([1000, 20], (Kind::Float, Device::Cpu));
    let labels = Tensor::randint(2, [1000], (Kind::Int64, Device::Cpu));
    TensorDataset::new(features, labels).expect("a valid dataset")
}

/// The tutorial's model, `Linear(20, 2)`, with weights drawn after seeding with `seed`.
pub fn tutorial_model(seed: i64) -> (nn::VarStore, nn::Linear) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = nn::linear(vs.root() / "fc", 20, 2, Default::default());
    (vs, model)
}

/// The tutorial's classifier as a training step of one's own: cross-entropy of the model's
/// outputs, which it returns for the metrics.
pub struct ClassifierStep<'m> {
    pub model: &'m nn::Linear,
}

impl trainmon::TrainStep<(Tensor, Tensor)> for ClassifierStep<'_> {
    fn training_step(
        &mut self,
        (x, y): &(Tensor, Tensor),
        ctx: &trainmon::StepContext<'_>,
    ) -> Result<trainmon::StepOutput, trainmon::BoxError> {
        let outputs = nn::ModuleT::forward_t(self.model, x, ctx.training());
        let loss = outputs.f_cross_entropy_loss::<Tensor>(y, None, tch::Reduction::Mean, -100, 0.0)?;
        Ok(trainmon::StepOutput::loss(loss).with_outputs(outputs, y.shallow_clone()))
    }
}

/// The tutorial's data with NaN in the features of sample `poisoned`: the batch it falls in
/// has a loss that is not finite.
pub fn poisoned_data(seed: i64, poisoned: i64) -> TensorDataset {
    tch::manual_seed(seed);
    let features = Tensor::randn([1000, 20], (Kind::Float, Device::Cpu));
    let labels = Tensor::randint(2, [1000], (Kind::Int64, Device::Cpu));
    let _ = features.get(poisoned).fill_(f64::NAN);
    TensorDataset::new(features, labels).expect("a valid dataset")
}

/// The tutorial's classifier as a step that optimizes by hand, with its one optimizer named
/// `fc`: `ClassifierStep`'s loss, its backward pass and optimizer step asked for by the step.
pub struct ClassifierByHand<'m> {
    pub model: &'m nn::Linear,
}

impl trainmon::TrainStep<(Tensor, Tensor)> for ClassifierByHand<'_> {
    fn manual_optimization(&self) -> bool {
        true
    }

    fn training_step(
        &mut self,
        batch: &(Tensor, Tensor),
        ctx: &trainmon::StepContext<'_>,
    ) -> Result<trainmon::StepOutput, trainmon::BoxError> {
        ctx.zero_grad("fc")?;
        let outputs = nn::ModuleT::forward_t(self.model, &batch.0, ctx.training());
        let loss = outputs.f_cross_entropy_loss::<Tensor>(&batch.1, None, tch::Reduction::Mean, -100, 0.0)?;
        ctx.backward(&loss)?;
        ctx.optimizer_step("fc")?;
        Ok(trainmon::StepOutput::loss(loss.detach()).with_outputs(outputs.detach(), batch.1.shallow_clone()))
    }
}

/// The Python of the bootstrap venv (which has TensorBoard's reader): `TRAINMON_PYTHON`, set by
/// `cargo xtask`, or found through the `.libtorch` link the bootstrap made.
pub fn bootstrap_python() -> std::path::PathBuf {
    if let Some(python) = std::env::var_os("TRAINMON_PYTHON") {
        return python.into();
    }
    let link = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.libtorch");
    // .libtorch → <venv>/lib/python3.X/site-packages/torch
    let venv = std::fs::canonicalize(&link)
        .ok()
        .and_then(|torch| torch.ancestors().nth(4).map(|v| v.join("bin/python")));
    match venv {
        Some(python) if python.exists() => python,
        _ => panic!(
            "no bootstrap Python: run the tests through `cargo xtask test` (or set TRAINMON_PYTHON to a \
             Python with `tensorboard` installed)"
        ),
    }
}

/// Runs a Python `script` of the bootstrap's Python on `arg` (`sys.argv[1]`); returns the JSON it
/// prints. Fails the test with Python's error when it fails.
pub fn python_json(script: &str, arg: &std::path::Path) -> serde_json::Value {
    run_python_json(&bootstrap_python(), script, &[arg.as_os_str()])
}

/// Runs `script` with `python` (`sys.argv[1:]` = `args`); the JSON it prints. Fails the test
/// with Python's error when the script fails, or with what it printed when that is not JSON.
fn run_python_json(python: &std::path::Path, script: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "the Python script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the script prints no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs `f` with a tracing subscriber that records what is logged; returns `f`'s result and
/// the lines, as `(level, message)`.
pub fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, Vec<(String, String)>) {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines = text
        .lines()
        .map(|line| {
            let (level, message) = line.trim_start().split_once(' ').unwrap_or((line, ""));
            (level.to_owned(), message.to_owned())
        })
        .collect();
    (result, lines)
}

/// Every weight of the model, by variable name, as one vector.
pub fn weights(vs: &nn::VarStore) -> Vec<f32> {
    let mut named: Vec<_> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
        .iter()
        .flat_map(|(_, t)| Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float)).unwrap())
        .collect()
}

/// The `bin/` directory of the MLflow venv (`mlflow`, `python` with MLflow's client):
/// `TRAINMON_MLFLOW`, which `cargo xtask test` sets after installing it.
pub fn mlflow_bin() -> std::path::PathBuf {
    match std::env::var_os("TRAINMON_MLFLOW") {
        Some(dir) if !dir.is_empty() => dir.into(),
        _ => panic!(
            "TRAINMON_MLFLOW is not set: run the tests through `cargo xtask test`, which installs MLflow (or \
             `eval \"$(cargo xtask env)\"` first, which installs it too and prints the variable)"
        ),
    }
}

/// Runs a Python `script` with MLflow's Python (`sys.argv[1:]` = `args`); returns the JSON it
/// prints. Fails the test with Python's error when it fails.
pub fn mlflow_python(script: &str, args: &[&str]) -> serde_json::Value {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    run_python_json(&mlflow_bin().join("python"), script, &args)
}

/// A free TCP port of 127.0.0.1 (free when asked: nothing listens on it until someone binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A real `mlflow server` of its own, for a test: its SQLite store (`mlflow.db`) and artifacts
/// (`artifacts/`) in a directory, on a free port of 127.0.0.1, one worker, no job runner. It is
/// killed — with the processes it started — when dropped.
pub struct MlflowServer {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub uri: String,
    log: std::path::PathBuf,
    killed: bool,
}

/// How long a server may take to answer `/health` (a few seconds alone, more beside others).
const MLFLOW_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

impl MlflowServer {
    /// Starts a server keeping its data in `dir` (created if need be; a server started again on
    /// the same directory has the first one's runs), and waits until it answers.
    pub fn start(dir: &std::path::Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// As [`MlflowServer::start`], with more arguments for `mlflow server`.
    pub fn start_with(dir: &std::path::Path, args: &[&str]) -> Self {
        use std::os::unix::process::CommandExt;
        std::fs::create_dir_all(dir).expect("create the server's directory");
        let port = free_port();
        let log = dir.join(format!("server-{port}.log"));
        let out = std::fs::File::create(&log).expect("create the server's log");
        let child = std::process::Command::new(mlflow_bin().join("mlflow"))
            .arg("server")
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            .args(args)
            // The job runner (a dozen consumer processes for LLM features) is not needed.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .stdout(out.try_clone().expect("the log"))
            .stderr(out)
            // Its own process group, so that the uvicorn worker it starts goes with it.
            .process_group(0)
            .spawn()
            .expect("start `mlflow server`");
        let mut server = MlflowServer {
            child,
            uri: format!("http://127.0.0.1:{port}"),
            log,
            killed: false,
        };
        server.wait_until_healthy(port);
        server
    }

    fn wait_until_healthy(&mut self, port: u16) {
        let started = std::time::Instant::now();
        loop {
            if health(port) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "`mlflow server` exited ({status}) before answering:\n{}",
                    self.log_text()
                );
            }
            if started.elapsed() > MLFLOW_START_TIMEOUT {
                panic!(
                    "`mlflow server` did not answer /health on port {port} within {MLFLOW_START_TIMEOUT:?}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// What the server wrote (its stdout and stderr).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the server and its processes at once (SIGKILL to its process group), and waits
    /// for it.
    pub fn kill(&mut self) {
        if std::mem::replace(&mut self.killed, true) {
            return;
        }
        // The whole group, even when the server itself is gone: a worker it left dies too.
        // SAFETY: kill(2) with a negative pid signals the process group the server leads.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the server on `port` answers `GET /health` with 200.
fn health(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let request = format!("GET /health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

/// Tests that run ranks of a process group as child processes of their own test binary: the
/// `rank_process` test (ignored by default) of the module that starts them does what
/// `TRAINMON_TEST_ROLE` says and prints its outcome as a `RESULT {json}` line.
pub mod ranks {
    use std::process::{Command, Output, Stdio};

    /// The `rank_process` test of the module at this path (`Ranks(module_path!())`), which
    /// the module's tests start as ranks.
    pub struct Ranks(pub &'static str);

    impl Ranks {
        /// The arguments that run the module's `rank_process` alone.
        pub fn args(&self) -> [String; 6] {
            [
                "--ignored".to_owned(),
                "--exact".to_owned(),
                super::test_name(self.0, "rank_process"),
                "--nocapture".to_owned(),
                "--test-threads".to_owned(),
                "1".to_owned(),
            ]
        }

        /// This binary as a child running `rank_process` with `role` and extra environment.
        pub fn child(&self, role: &str, envs: &[(&str, String)]) -> Command {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.args(self.args())
                .env("TRAINMON_TEST_ROLE", role)
                .env("OMP_NUM_THREADS", "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in envs {
                cmd.env(k, v);
            }
            cmd
        }

        /// Ranks 0..n of `role`, launched by hand (RANK, WORLD_SIZE, MASTER_* on a free port, a
        /// 20 s timeout), each with `extra` too; their outputs, in rank order.
        pub fn world(&self, role: &str, n: usize, extra: &[(&str, String)]) -> Vec<Output> {
            let port = free_port();
            let children: Vec<_> = (0..n)
                .map(|rank| {
                    let mut envs = vec![
                        ("RANK", rank.to_string()),
                        ("WORLD_SIZE", n.to_string()),
                        ("MASTER_ADDR", "127.0.0.1".to_owned()),
                        ("MASTER_PORT", port.to_string()),
                        ("TRAINMON_DIST_TIMEOUT_S", "20".to_owned()),
                    ];
                    envs.extend(extra.iter().cloned());
                    self.child(role, &envs).spawn().unwrap()
                })
                .collect();
            children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
        }
    }

    /// A port nobody listens on now.
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Every `RESULT …` line of `stdout`, parsed (a line may follow libtest's
    /// "test rank_process ... " on the same line).
    pub fn results(stdout: &[u8]) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(stdout)
            .lines()
            .filter_map(|l| {
                l.split_once("RESULT ")
                    .map(|(_, json)| serde_json::from_str(json).unwrap())
            })
            .collect()
    }

    /// The `RESULT …` line a child printed, parsed.
    pub fn result(out: &Output) -> serde_json::Value {
        results(&out.stdout).into_iter().next().unwrap_or_else(|| {
            panic!(
                "no result: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

/// Registers, in the binary that calls it, a hook without a group that fails any fit running
/// every registered hook (no `.hooks(…)`, or `Hooks::all()`): in a binary of many modules, such a
/// fit would run every module's hooks.
#[macro_export]
macro_rules! every_fit_selects_its_hooks {
    () => {
        #[trainmon::on_train_begin]
        fn every_registered_hook() -> Result<(), String> {
            Err(
                "a fit of this binary ran every module's registered hooks: select the test's own, \
                 `.hooks(Hooks::groups([…]))` or `.hooks(Hooks::none())`"
                    .into(),
            )
        }
    };
}
