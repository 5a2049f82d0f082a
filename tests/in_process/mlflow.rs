//! The `Mlflow` hook against a real `mlflow server` (from the venv `cargo xtask test` installs),
//! read back with MLflow's own Python client (`MlflowClient`): parameters, every metric's
//! history, logged values, artifacts and the model, tags, and the run's status — for a fit that
//! ends, fails, is interrupted, loses its server, and is resumed; and a URI that is not a
//! server, which fails the fit before training.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tch::nn;
use trainmon::hooks::{Mlflow, MlflowReport, Plots};
use trainmon::{Control, Event, Filter, History, HookContext, HookSpec, Hooks, Trainer};
use trainmon_tests::{capture_logs, free_port, mlflow_python, tutorial_data, tutorial_model, weights, MlflowServer};

/// Reads runs back with MLflow's client: `argv` = tracking URI, a directory to download the
/// model into, then run ids. Prints a list, a record per run.
const READER: &str = r#"
import json, os, struct, sys
from mlflow.tracking import MlflowClient

uri, downloads, run_ids = sys.argv[1], sys.argv[2], sys.argv[3:]
client = MlflowClient(tracking_uri=uri)

def artifacts(run_id, path=None):
    found = []
    for f in client.list_artifacts(run_id, path):
        found += artifacts(run_id, f.path) if f.is_dir else [[f.path, f.file_size]]
    return found

def model(run_id):
    # safetensors, read by hand: a little-endian u64 header length, the JSON header, the data.
    dst = os.path.join(downloads, run_id)
    os.makedirs(dst, exist_ok=True)
    local = client.download_artifacts(run_id, "model/final.safetensors", dst)
    data = open(local, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", t
        start, end = t["data_offsets"]
        raw = data[8 + n + start:8 + n + end]
        tensors[name] = {"shape": t["shape"], "values": list(struct.unpack("<%df" % (len(raw) // 4), raw))}
    return {"metadata": header.get("__metadata__", {}), "tensors": tensors}

runs = []
for run_id in run_ids:
    run = client.get_run(run_id)
    files = artifacts(run_id)
    runs.append({
        "status": run.info.status,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "run_name": run.info.run_name,
        "experiment_runs": [r.info.run_id for r in client.search_runs([run.info.experiment_id])],
        "params": run.data.params,
        "tags": {k: v for k, v in run.data.tags.items()},
        "metrics": {
            key: [[m.step, m.value, m.timestamp] for m in client.get_metric_history(run_id, key)]
            for key in run.data.metrics
        },
        "artifacts": files,
        "model": model(run_id) if any(p == "model/final.safetensors" for p, _ in files) else None,
    })
print(json.dumps(runs))
"#;

/// A run as [`READER`] reads it.
#[derive(Debug, serde::Deserialize)]
struct Run {
    status: String,
    start_time: i64,
    end_time: Option<i64>,
    run_name: String,
    experiment_runs: Vec<String>,
    params: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    /// By key: `[step, value, timestamp]`, in the server's order.
    metrics: BTreeMap<String, Vec<(i64, f64, i64)>>,
    artifacts: Vec<(String, u64)>,
    model: Option<Model>,
}

#[derive(Debug, serde::Deserialize)]
struct Model {
    metadata: BTreeMap<String, String>,
    tensors: BTreeMap<String, Tensor>,
}

#[derive(Debug, serde::Deserialize)]
struct Tensor {
    shape: Vec<i64>,
    values: Vec<f32>,
}

fn read_back(uri: &str, dir: &Path, run_ids: &[String]) -> Vec<Run> {
    let downloads = dir.join("downloads");
    let mut args = vec![uri, downloads.to_str().unwrap()];
    args.extend(run_ids.iter().map(String::as_str));
    serde_json::from_value(mlflow_python(READER, &args)).expect("the reader's records")
}

/// The steps of a metric, in order (sorted: MLflow's history order is by insertion).
fn steps(run: &Run, key: &str) -> Vec<i64> {
    let mut steps: Vec<i64> = run
        .metrics
        .get(key)
        .unwrap_or(&Vec::new())
        .iter()
        .map(|m| m.0)
        .collect();
    steps.sort_unstable();
    steps
}

/// `(step, value)` of a metric, by step.
fn values(run: &Run, key: &str) -> Vec<(i64, f64)> {
    let mut values: Vec<(i64, f64)> = run
        .metrics
        .get(key)
        .unwrap_or(&Vec::new())
        .iter()
        .map(|m| (m.0, m.1))
        .collect();
    values.sort_by_key(|v| v.0);
    values
}

/// An epoch metric of the history, as MLflow should have it.
fn epoch_values(history: &History, name: &str) -> Vec<(i64, f64)> {
    history
        .epochs()
        .iter()
        .map(|e| (e.epoch() as i64, e.get(name).unwrap()))
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The metrics of every epoch (as `epoch_values` reads them: `time` is `time_s`).
const EPOCH_METRICS: [(&str, &str); 7] = [
    ("loss", "loss"),
    ("accuracy", "accuracy"),
    ("val_loss", "val_loss"),
    ("val_accuracy", "val_accuracy"),
    ("lr", "lr"),
    ("time_s", "time"),
    ("throughput", "throughput"),
];

#[test]
fn a_fit_is_read_back_with_mlflows_client() {
    let tmp = tempfile::tempdir().unwrap();
    let server = MlflowServer::start(&tmp.path().join("server"));
    // libtorch's generator is drawn from below; the server starts beside the other tests.
    let _serial = trainmon_tests::serial();
    let plots = tmp.path().join("plots");
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let mlflow = Mlflow::new(&server.uri)
        .experiment("read back")
        .run_name("tutorial")
        .param("model", "linear")
        .params([("width", 20), ("classes", 2)])
        .tag("team", "tests")
        .steps(10)
        .artifacts(&plots);
    let report = mlflow.report();
    let started = now_ms();
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(3)
        .seed(7)
        .validation_split(0.2)
        .hooks(Hooks::none())
        .add_hook(
            HookSpec::new(Event::BeforeOptimizerStep, "grad_max").filter(Filter::ALWAYS.every(5)),
            |ctx: &HookContext| {
                let grad = ctx.var_store().variables()["fc.weight"].grad();
                ctx.log("grad_max", grad.abs().max().double_value(&[]));
            },
        )
        .with(Plots::new(&plots))
        .with(mlflow)
        .fit(&data)
        .unwrap();
    let ended = now_ms();
    assert_eq!(report.status().as_deref(), Some("FINISHED"));
    assert_eq!(report.unsent(), 0, "everything was sent");
    assert_eq!(report.outages(), 0);
    let run_id = report.run_id().expect("a run");
    let run = read_back(&server.uri, tmp.path(), std::slice::from_ref(&run_id)).remove(0);

    assert_eq!(run.status, "FINISHED");
    assert_eq!(run.run_name, "tutorial");
    assert_eq!(run.experiment_runs, std::slice::from_ref(&run_id));
    assert!(started <= run.start_time && run.end_time.is_some_and(|end| run.start_time <= end && end <= ended));

    // The trainer's settings, then the user's parameters.
    let params: BTreeMap<&str, &str> = run.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let optimizer = params.get("optimizer").copied().unwrap_or_default();
    assert!(optimizer.starts_with("Adam {"), "{optimizer}");
    let want: BTreeMap<&str, &str> = [
        ("epochs", "3"),
        ("batch_size", "32"),
        ("batches_per_epoch", "25"),
        ("optimizer", optimizer),
        ("lr", "0.001"),
        ("seed", "7"),
        ("loss", "CrossEntropy"),
        ("device", "cpu"),
        ("shuffle", "true"),
        ("drop_last", "false"),
        ("accumulate_gradients", "1"),
        ("clip", "none"),
        ("validation", "split 0.2"),
        ("samples", "800"),
        ("validation_samples", "200"),
        ("precision", "fp32"),
        ("grad_scaler", "none"),
        ("model", "linear"),
        ("width", "20"),
        ("classes", "2"),
    ]
    .into();
    assert_eq!(params, want);

    // Tags: the user's, the run's name, the source, trainmon's version; no stop, no error.
    let binary = std::env::current_exe().unwrap();
    let binary = binary.file_name().unwrap().to_str().unwrap();
    for (key, value) in [
        ("team", "tests"),
        ("mlflow.runName", "tutorial"),
        ("mlflow.source.name", binary),
        ("trainmon.version", env!("CARGO_PKG_VERSION")),
    ] {
        assert_eq!(run.tags.get(key).map(String::as_str), Some(value), "tag {key}");
    }
    assert!(!run.tags.contains_key("trainmon.stop_reason") && !run.tags.contains_key("trainmon.error"));

    // Every epoch metric, at step = the epoch, exactly as the history has it.
    for (key, name) in EPOCH_METRICS {
        assert_eq!(values(&run, key), epoch_values(&history, name), "{key}");
    }
    // The running values every 10 optimizer steps (25 an epoch, 75 in all).
    let every_10: Vec<i64> = (1..=7).map(|i| i * 10).collect();
    assert_eq!(steps(&run, "loss_step"), every_10);
    assert_eq!(steps(&run, "accuracy_step"), every_10);
    assert!(values(&run, "loss_step").iter().all(|(_, v)| v.is_finite() && *v > 0.0));
    // What the hook logged, at its steps.
    let logged: Vec<(i64, f64)> = history
        .logged("grad_max")
        .iter()
        .map(|(s, v)| (*s as i64, *v))
        .collect();
    assert_eq!(logged.len(), 15, "every 5th of 75 steps");
    assert_eq!(values(&run, "grad_max"), logged);
    let names: Vec<&str> = run.metrics.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "accuracy",
            "accuracy_step",
            "grad_max",
            "loss",
            "loss_step",
            "lr",
            "throughput",
            "time_s",
            "val_accuracy",
            "val_loss"
        ]
    );
    // Stamped when recorded, within the fit; an epoch's after the one before.
    let stamps = |key: &str| {
        let mut m = run.metrics[key].clone();
        m.sort_by_key(|m| m.0);
        m.iter().map(|m| m.2).collect::<Vec<i64>>()
    };
    for key in run.metrics.keys() {
        assert!(stamps(key).iter().all(|t| (started..=ended).contains(t)), "{key}");
    }
    assert!(stamps("loss").is_sorted());

    // The plots and the model, uploaded.
    let mut want: Vec<(String, u64)> = std::fs::read_dir(&plots)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                format!("plots/{}", e.file_name().to_str().unwrap()),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    assert!(want.len() >= 4, "the plots were written: {want:?}");
    let model_size = run
        .artifacts
        .iter()
        .find(|(p, _)| p == "model/final.safetensors")
        .map(|a| a.1);
    want.push(("model/final.safetensors".into(), model_size.unwrap_or(0)));
    want.sort();
    let mut got = run.artifacts.clone();
    got.sort();
    assert_eq!(got, want);
    let mut uploaded = report.artifacts();
    uploaded.sort();
    assert_eq!(uploaded, want.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>());
    let model = run.model.expect("the model");
    assert_eq!(model.metadata.get("mlflow_run_id"), Some(&run_id));
    assert_eq!(model.tensors["fc.weight"].shape, [2, 20]);
    assert_eq!(model.tensors["fc.bias"].shape, [2]);
    let saved: Vec<f32> = ["fc.bias", "fc.weight"]
        .iter()
        .flat_map(|name| model.tensors[*name].values.clone())
        .collect();
    assert_eq!(saved, weights(&vs), "the final weights, to the bit");
}

#[test]
fn failed_interrupted_and_stopped_fits_end_failed_killed_and_finished_and_every_step_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let server = MlflowServer::start(&tmp.path().join("server"));
    // libtorch's generator is drawn from below; the server starts beside the other tests.
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(3);
    let fit = |experiment: &str, control: fn(usize, usize) -> Result<Control, String>| {
        let (vs, model) = tutorial_model(4);
        let mlflow = Mlflow::new(&server.uri).experiment(experiment);
        let report = mlflow.report();
        let result = Trainer::new(&vs, &model)
            .optimizer(nn::Sgd::default(), 0.1)
            .epochs(4)
            .batch_size(100)
            .hooks(Hooks::none())
            .add_hook(HookSpec::new(Event::BatchEnd, "judge"), move |ctx: &HookContext| {
                control(ctx.state().epoch(), ctx.state().batch())
            })
            .with(mlflow)
            .fit(&data);
        (result, report)
    };
    // An error in epoch 2 (batch 3) fails the fit.
    let (failed, failed_report) = fit("failed", |epoch, batch| match (epoch, batch) {
        (2, 3) => Err("boom in epoch 2".into()),
        _ => Ok(Control::Continue),
    });
    let err = failed.unwrap_err();
    assert!(format!("{err:#}").contains("boom in epoch 2"), "{err:#}");
    // Stopped the way `Interrupt` stops a fit (Ctrl-C): a stop whose cause is an interrupt.
    let (interrupted, interrupted_report) = fit("interrupted", |epoch, batch| {
        Ok(if (epoch, batch) == (2, 3) {
            Control::stop_for(trainmon::StopCause::Interrupted, "Ctrl-C")
        } else {
            Control::Continue
        })
    });
    let interrupted = interrupted.unwrap();
    let stop = interrupted.stop_reason().unwrap();
    assert_eq!(
        (stop.cause, stop.reason.as_str()),
        (trainmon::StopCause::Interrupted, "Ctrl-C")
    );
    // An early stop of another cause ends normally, whatever its text says.
    let (stopped, stopped_report) = fit("stopped", |epoch, batch| {
        Ok(if (epoch, batch) == (3, 10) {
            Control::stop("interrupted")
        } else {
            Control::Continue
        })
    });
    assert_eq!(stopped.unwrap().epochs().len(), 3);

    // A value every step of 1000: more than one request's worth (1000 values), none dropped.
    let (vs, model) = tutorial_model(4);
    let many = Mlflow::new(&server.uri).experiment("every step").steps(1);
    let many_report = many.report();
    let many_history = Trainer::new(&vs, &model)
        .optimizer(nn::Sgd::default(), 0.01)
        .batch_size(1)
        .hooks(Hooks::none())
        .with(many)
        .fit(&data)
        .unwrap();
    assert_eq!((many_report.sent(), many_report.unsent()), (2 * 1000 + 5, 0));

    let reports = [&failed_report, &interrupted_report, &stopped_report, &many_report];
    let statuses: Vec<Option<String>> = reports.iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses,
        [
            Some("FAILED".into()),
            Some("KILLED".into()),
            Some("FINISHED".into()),
            Some("FINISHED".into())
        ]
    );
    let ids: Vec<String> = reports.iter().map(|r| r.run_id().unwrap()).collect();
    let runs = read_back(&server.uri, tmp.path(), &ids);
    let [failed, interrupted, stopped, many] = &runs[..] else {
        panic!("four runs")
    };

    assert_eq!(failed.status, "FAILED");
    let error = failed.tags.get("trainmon.error").cloned().unwrap_or_default();
    assert!(
        error.contains("hook `judge`") && error.contains("boom in epoch 2"),
        "{error}"
    );
    // Epoch 1 ended; epoch 2 did not.
    assert_eq!(steps(failed, "loss"), [1]);
    assert!(failed.model.is_none(), "no model of a failed fit");
    assert!(failed.end_time.is_some());

    assert_eq!(interrupted.status, "KILLED");
    assert_eq!(
        interrupted.tags.get("trainmon.stop_reason").map(String::as_str),
        Some("Ctrl-C")
    );
    assert_eq!(
        interrupted.tags.get("trainmon.stop_cause").map(String::as_str),
        Some("interrupted")
    );
    // A batch hook's stop cuts the epoch short: it ends (with the batches it ran), and the fit.
    assert_eq!(steps(interrupted, "loss"), [1, 2]);
    assert!(
        interrupted.model.is_some(),
        "the weights of an interrupted fit are kept"
    );

    assert_eq!(stopped.status, "FINISHED");
    assert_eq!(
        stopped.tags.get("trainmon.stop_reason").map(String::as_str),
        Some("interrupted")
    );
    assert_eq!(
        stopped.tags.get("trainmon.stop_cause").map(String::as_str),
        Some("hook")
    );
    assert_eq!(steps(stopped, "loss"), [1, 2, 3]);

    assert_eq!(steps(many, "loss_step"), (1..=1000).collect::<Vec<i64>>());
    assert_eq!(steps(many, "accuracy_step"), (1..=1000).collect::<Vec<i64>>());
    assert_eq!(values(many, "loss"), epoch_values(&many_history, "loss"));
}

#[test]
fn a_server_that_goes_down_does_not_stop_training() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("server");
    let server = Arc::new(Mutex::new(Some(MlflowServer::start(&store))));
    // libtorch's generator is drawn from below; the server starts beside the other tests.
    let _serial = trainmon_tests::serial();
    let uri = server.lock().unwrap().as_ref().unwrap().uri.clone();
    let data = tutorial_data(5);
    let (vs, model) = tutorial_model(6);
    let flush = Duration::from_secs(2);
    let mlflow = Mlflow::new(&uri).experiment("outage").flush_timeout(flush);
    let report = mlflow.report();
    let watched = report.clone();
    let killer = server.clone();
    let train_end = Arc::new(Mutex::new(None));
    let train_end_seen = train_end.clone();
    let ((history, returned), logs) = capture_logs(|| {
        let history = Trainer::new(&vs, &model)
            .optimizer(nn::Sgd::default(), 0.1)
            .epochs(5)
            .batch_size(100)
            .validation_split(0.2)
            .hooks(Hooks::none())
            // At the start of epoch 3, once the server has epochs 1 and 2, it dies.
            .add_hook(
                HookSpec::new(Event::EpochBegin, "kill_the_server"),
                move |ctx: &HookContext| {
                    if ctx.state().epoch() != 3 {
                        return;
                    }
                    let waiting = Instant::now();
                    while watched.sent() < 2 * EPOCH_METRICS.len() as u64 {
                        assert!(
                            waiting.elapsed() < Duration::from_secs(30),
                            "epochs 1 and 2 never reached the server"
                        );
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    killer.lock().unwrap().as_mut().unwrap().kill();
                },
            )
            .add_hook(HookSpec::new(Event::TrainEnd, "train_end"), move || {
                *train_end_seen.lock().unwrap() = Some(Instant::now());
            })
            .with(mlflow)
            .fit(&data);
        (history, Instant::now())
    });
    let history = history.expect("training goes on without its server");
    assert_eq!(history.epochs().len(), 5);
    // The end waited for the server no longer than the flush deadline (and a little).
    let ending = returned - train_end.lock().unwrap().expect("the fit ended");
    assert!(ending <= flush + Duration::from_millis(1500), "the end took {ending:?}");
    assert_eq!(report.outages(), 1);
    assert!(
        report.unsent() >= 3 * EPOCH_METRICS.len() as u64,
        "epochs 3 to 5: {} unsent",
        report.unsent()
    );
    assert_eq!(report.sent(), 2 * EPOCH_METRICS.len() as u64);
    assert_eq!(report.status(), None, "no server to take it");
    let warnings: Vec<&str> = logs
        .iter()
        .filter(|(level, _)| level == "WARN")
        .map(|(_, message)| message.as_str())
        .collect();
    let outage = warnings.iter().filter(|w| w.contains("does not answer")).count();
    assert_eq!(outage, 1, "one warning per outage: {warnings:#?}");
    // One warning at the end says what the run lacks.
    let lacks = format!(
        "lacks {} metric values ({} not sent within the flush timeout of 2s), and 1 of 1 artifacts, and its status \
         FINISHED (it shows as RUNNING)",
        report.unsent(),
        report.unsent()
    );
    assert!(warnings.iter().any(|w| w.contains(&lacks)), "{warnings:#?}");
    assert_eq!(warnings.len(), 2, "{warnings:#?}");

    // The store keeps what was sent before the server died.
    drop(server.lock().unwrap().take());
    let again = MlflowServer::start(&store);
    let run = read_back(&again.uri, tmp.path(), &[report.run_id().unwrap()]).remove(0);
    assert_eq!(run.status, "RUNNING");
    assert_eq!(values(&run, "loss"), epoch_values(&history, "loss")[..2]);
}

#[test]
fn a_resumed_fit_goes_on_in_its_run_without_duplicate_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let server = MlflowServer::start(&tmp.path().join("server"));
    // libtorch's generator is drawn from below; the server starts beside the other tests.
    let _serial = trainmon_tests::serial();
    let resume = tmp.path().join("resume");
    let data = tutorial_data(8);
    let crash = Arc::new(AtomicBool::new(true));
    let fit = |crash: Arc<AtomicBool>| {
        let (vs, model) = tutorial_model(9);
        let mlflow = Mlflow::new(&server.uri).experiment("resume").steps(10);
        let report = mlflow.report();
        let history = Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-2)
            .epochs(5)
            .seed(10)
            .validation_split(0.2)
            .resumable(&resume)
            .hooks(Hooks::none())
            .add_hook(HookSpec::new(Event::EpochEnd, "epoch_x"), |ctx: &HookContext| {
                ctx.log("epoch_x", ctx.state().epoch() as f64)
            })
            // Fails at the end of epoch 3, before its resume point: the fit goes on from epoch 2.
            .add_hook(HookSpec::new(Event::EpochEnd, "crash"), move |ctx: &HookContext| {
                if crash.load(Ordering::SeqCst) && ctx.state().epoch() == 3 {
                    return Err("the process dies in epoch 3".to_owned());
                }
                Ok(())
            })
            .with(mlflow)
            .fit(&data);
        (history, report)
    };
    let (crashed, first) = fit(crash.clone());
    assert!(crashed.is_err());
    assert_eq!(first.status().as_deref(), Some("FAILED"));
    crash.store(false, Ordering::SeqCst);
    let (history, second) = fit(crash);
    let history = history.unwrap();
    assert_eq!(second.status().as_deref(), Some("FINISHED"));
    let run_id = first.run_id().unwrap();
    assert_eq!(second.run_id(), Some(run_id.clone()), "the same run");

    let run = read_back(&server.uri, tmp.path(), std::slice::from_ref(&run_id)).remove(0);
    assert_eq!(run.experiment_runs, [run_id], "one run");
    assert_eq!(run.status, "FINISHED");
    assert!(
        !run.tags.contains_key("trainmon.error"),
        "the crash's error tag is gone"
    );
    for (key, _) in EPOCH_METRICS {
        assert_eq!(steps(&run, key), [1, 2, 3, 4, 5], "{key}: each epoch once");
    }
    // Epoch 3 came from the crashed process; the resumed one computed it again, the same.
    for name in ["loss", "accuracy", "val_loss", "val_accuracy", "lr"] {
        assert_eq!(values(&run, name), epoch_values(&history, name), "{name}");
    }
    // 25 steps an epoch: every 10th of 125, once; the logged values once each.
    assert_eq!(steps(&run, "loss_step"), (1..=12).map(|i| i * 10).collect::<Vec<i64>>());
    let logged: Vec<(i64, f64)> = history.logged("epoch_x").iter().map(|(s, v)| (*s as i64, *v)).collect();
    assert_eq!(logged.len(), 5);
    assert_eq!(values(&run, "epoch_x"), logged);
}

#[test]
fn artifacts_the_server_does_not_take_are_left_out_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local-artifacts");
    // Runs whose artifacts go to a local directory, which the client would write itself.
    let server = MlflowServer::start_with(
        &tmp.path().join("server"),
        &[
            "--no-serve-artifacts",
            "--default-artifact-root",
            local.to_str().unwrap(),
        ],
    );
    // libtorch's generator is drawn from below; the server starts beside the other tests.
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(13);
    let (vs, model) = tutorial_model(14);
    let mlflow = Mlflow::new(&server.uri).experiment("local artifacts");
    let report = mlflow.report();
    let (history, logs) = capture_logs(|| {
        Trainer::new(&vs, &model)
            .optimizer(nn::Sgd::default(), 0.1)
            .batch_size(100)
            .hooks(Hooks::none())
            .with(mlflow)
            .fit(&data)
    });
    history.unwrap();
    let warnings: Vec<&str> = logs
        .iter()
        .filter(|(level, _)| level == "WARN")
        .map(|(_, message)| message.as_str())
        .collect();
    let local = local.display().to_string();
    assert!(
        matches!(&warnings[..], [w] if w.contains(&local) && w.contains("the model and artifacts are not uploaded")),
        "{warnings:#?}"
    );
    assert_eq!(report.status().as_deref(), Some("FINISHED"));
    assert_eq!((report.artifacts().len(), report.unsent()), (0, 0));
}

#[test]
fn a_uri_that_is_not_an_mlflow_server_fails_the_fit_before_training() {
    let _serial = trainmon_tests::serial();
    // Nothing listens on this port.
    let closed = format!("http://127.0.0.1:{}", free_port());
    // An HTTP server that is not MLflow: a 404 page for everything.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0; 4096];
            let _ = stream.read(&mut request);
            let page = "<html><body>Not Found</body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    let data = tutorial_data(11);
    for (uri, want) in [
        (closed.as_str(), "could not reach the MLflow tracking server at"),
        (other.as_str(), "is not an MLflow tracking server"),
        ("file:///tmp/mlruns", "is not an http:// or https:// URI"),
    ] {
        let (vs, model) = tutorial_model(12);
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = batches.clone();
        let started = Instant::now();
        let err = Trainer::new(&vs, &model)
            .optimizer(nn::Sgd::default(), 0.1)
            .epochs(2)
            .hooks(Hooks::none())
            .add_hook(HookSpec::new(Event::BatchBegin, "count"), move || {
                counted.fetch_add(1, Ordering::SeqCst);
            })
            .with(Mlflow::new(uri))
            .fit(&data)
            .unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains(uri) && message.contains(want), "{uri}: {message}");
        assert_eq!(batches.load(Ordering::SeqCst), 0, "{uri}: no batch ran");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{uri}: {:?}",
            started.elapsed()
        );
    }
}

/// The report's handle is the hook's: clones see the same run.
#[test]
fn the_report_is_shared() {
    let mlflow = Mlflow::new("http://127.0.0.1:1");
    let report: MlflowReport = mlflow.report();
    assert_eq!(
        (report.run_id(), report.sent(), report.unsent(), report.status()),
        (None, 0, 0, None)
    );
}
