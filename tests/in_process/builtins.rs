//! The built-in hooks in a real loop: early stopping (its reason in the history, best weights
//! restored however training ended, a clear error for a missing metric), terminate on NaN, and
//! the logger's formats.

use std::sync::Mutex;
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};
use trainmon::hooks::{
    EarlyStopping, Logger, LrMonitor, LrScheduler, MetricFiles, Mode, ModelCheckpoint, Plots, Progress,
    ReduceLrOnPlateau, Summary, TerminateOnNaN, Throughput, TimeLimit,
};
use trainmon::prelude::*;
use trainmon::{Event, HookSpec, Hooks};
use trainmon_tests::{capture_logs, tutorial_data, tutorial_model, weights};

static WEIGHTS: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

#[on_epoch_end(group = "record")]
fn record_weights(vs: &VarStore) {
    WEIGHTS.lock().unwrap().push(weights(vs));
}

/// libtorch's generator is one per process: the tests that seed it run one at a time.
use trainmon_tests::SERIAL;

#[test]
fn best_weights_come_back_however_training_ended() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for stop_at in [None, Some(3)] {
        WEIGHTS.lock().unwrap().clear();
        let data = tutorial_data(1);
        let (vs, model) = tutorial_model(2);
        // The loss falls, so in max mode the best epoch is the first.
        let mut trainer = Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-2)
            .seed(5)
            .epochs(4)
            .hooks(Hooks::groups(["record"]))
            .with(
                EarlyStopping::new("loss")
                    .mode(Mode::Max)
                    .patience(100)
                    .restore_best_weights(true),
            );
        if let Some(stop_at) = stop_at {
            trainer = trainer.add_hook(
                HookSpec::new(Event::EpochEnd, "other_stopper"),
                move |state: &TrainState| {
                    if state.epoch() == stop_at {
                        Control::stop("something else")
                    } else {
                        Control::Continue
                    }
                },
            );
        }
        let history = trainer.fit(&data).unwrap();
        let seen = WEIGHTS.lock().unwrap().clone();
        assert_eq!(seen.len(), stop_at.unwrap_or(4), "{stop_at:?}");
        assert_ne!(seen[0], *seen.last().unwrap(), "training moved the weights");
        assert_eq!(
            weights(&vs),
            seen[0],
            "epoch 1's weights restored (stop at {stop_at:?})"
        );
        if stop_at.is_some() {
            assert_eq!(history.stop_reason().unwrap().hook, "other_stopper");
        }
    }
}

#[test]
fn early_stopping_reasons_and_errors() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let fit = |stopper: EarlyStopping| {
        Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-3)
            .epochs(5)
            .validation_split(0.2)
            .hooks(Hooks::none())
            .with(stopper)
            .fit(&data)
    };
    let history = fit(EarlyStopping::new("val_loss").stopping_threshold(10.0)).unwrap();
    let stop = history.stop_reason().unwrap();
    assert_eq!((history.len(), stop.hook.as_str(), stop.epoch), (1, "EarlyStopping", 1));
    assert_eq!(stop.cause, trainmon::StopCause::EarlyStopping);
    assert!(
        stop.reason.contains("`val_loss` = ") && stop.reason.contains("reached the stopping threshold 10"),
        "{stop}"
    );

    let err = format!("{:#}", fit(EarlyStopping::new("val_acc")).unwrap_err());
    assert!(
        // Named where the fit added it (`.with(stopper)`), not in trainmon's own files.
        err.starts_with("hook `EarlyStopping` (tests/in_process/builtins.rs:"),
        "{err}"
    );
    assert!(
        err.contains(
            "monitors `val_acc`, which the epoch logs do not have; they have loss, accuracy, val_loss, val_accuracy"
        ),
        "{err}"
    );
}

#[test]
fn terminate_on_nan_stops_at_the_batch() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    let features = Tensor::randn([320, 20], (Kind::Float, Device::Cpu));
    let _ = features.get(100).get(3).fill_(f64::NAN); // in batch 4 (samples 96..128)
    let data = TensorDataset::new(features, Tensor::randint(2, [320], (Kind::Int64, Device::Cpu))).unwrap();
    let (vs, model) = tutorial_model(2);
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(3)
        .shuffle(false)
        .hooks(Hooks::none())
        .with(TerminateOnNaN::new())
        .fit(&data)
        .unwrap();
    let stop = history.stop_reason().unwrap();
    assert_eq!(stop.reason, "the loss is NaN at batch 4 of epoch 1");
    assert_eq!(stop.cause, trainmon::StopCause::NotFinite);
    assert_eq!(
        (history.len(), history.epochs()[0].batches()),
        (1, 4),
        "the epoch ended after batch 4"
    );
}

fn logged(logger: impl trainmon::Plugin) -> Vec<String> {
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let (_, lines) = capture_logs(|| {
        Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-3)
            .epochs(2)
            .validation_split(0.2)
            .hooks(Hooks::none())
            .with(logger)
            .fit(&data)
            .unwrap()
    });
    lines.into_iter().map(|(_, message)| message).collect()
}

#[test]
fn logger_formats() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lines = logged(Logger::tutorial());
    // 800 training samples: 25 batches, logged at 10 and 20.
    assert_eq!(lines.len(), 2 * 4, "{lines:#?}");
    assert_eq!(lines[0], "Epoch 1 starting.");
    assert!(
        lines[1].starts_with("Batch 10: Loss = ") && lines[1].contains(", Accuracy = "),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("Batch 20: Loss = "), "{}", lines[2]);
    assert!(
        lines[3].starts_with("Epoch 1 finished in ") && lines[3].ends_with(" seconds."),
        "{}",
        lines[3]
    );

    let lines = logged(Logger::new().every(20));
    assert_eq!(lines.len(), 2 * 2, "{lines:#?}");
    assert!(
        lines[0].starts_with("epoch 1/2 batch 20/25: loss ") && lines[0].contains(", accuracy "),
        "{}",
        lines[0]
    );
    let summary = &lines[1];
    assert!(summary.starts_with("epoch 1/2 done in "), "{summary}");
    for name in ["loss", "accuracy", "val_loss", "val_accuracy"] {
        assert!(summary.contains(&format!(" {name} ")), "{name} in {summary}");
    }
}

#[test]
fn metric_files_hold_the_history() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("metrics");
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(3)
        .validation_split(0.2)
        .hooks(Hooks::none())
        .with(MetricFiles::new(&out).steps(10))
        .fit(&data)
        .unwrap();

    let mut epochs = csv::Reader::from_path(out.join("epochs.csv")).unwrap();
    let header: Vec<String> = epochs.headers().unwrap().iter().map(str::to_owned).collect();
    let columns = [
        "epoch",
        "time_s",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "throughput",
    ];
    assert_eq!(header, columns);
    let rows: Vec<Vec<f64>> = epochs
        .records()
        .map(|r| r.unwrap().iter().map(|f| f.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 3);
    for (row, logs) in rows.iter().zip(history.epochs()) {
        let want: Vec<f64> = columns
            .iter()
            .map(|n| match *n {
                "epoch" => logs.epoch() as f64,
                "time_s" => logs.time().as_secs_f64(),
                n => logs.get(n).unwrap(),
            })
            .collect();
        assert_eq!(
            *row,
            want,
            "CSV row of epoch {} round-trips the history exactly",
            logs.epoch()
        );
    }

    let lines = std::fs::read_to_string(out.join("epochs.jsonl")).unwrap();
    let json: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(json.len(), 3);
    assert_eq!(json[2]["epoch"], 3);
    assert_eq!(json[2]["val_loss"].as_f64(), history.epochs()[2].val_loss());
    let keys: Vec<&str> = lines.lines().next().unwrap()[1..]
        .split(',')
        .map(|field| field.split(':').next().unwrap().trim_matches('"'))
        .collect();
    assert_eq!(keys, columns, "JSON Lines keys in the CSV's column order");

    // 800 training samples: 25 batches an epoch, a line at batches 10 and 20.
    let steps = std::fs::read_to_string(out.join("steps.jsonl")).unwrap();
    let steps: Vec<serde_json::Value> = steps.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let at: Vec<(u64, u64, u64)> = steps
        .iter()
        .map(|s| {
            (
                s["epoch"].as_u64().unwrap(),
                s["batch"].as_u64().unwrap(),
                s["step"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        at,
        [
            (1, 10, 10),
            (1, 20, 20),
            (2, 10, 35),
            (2, 20, 45),
            (3, 10, 60),
            (3, 20, 70)
        ]
    );
    assert!(steps.iter().all(|s| s["loss"].is_f64() && s["accuracy"].is_f64()));
    assert_eq!(
        csv::Reader::from_path(out.join("steps.csv")).unwrap().records().count(),
        6
    );

    // A directory that cannot be created is an error naming it, before any training.
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let err = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(Hooks::none())
        .with(MetricFiles::new(blocker.join("metrics")))
        .fit(&data)
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("could not create the directory") && err.contains("a-file/metrics"),
        "{err}"
    );
}

#[test]
fn schedulers_time_limits_and_throughput_in_a_loop() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Sgd::default(), 0.4)
        .epochs(5)
        .validation_split(0.2)
        .hooks(Hooks::none())
        .with(LrScheduler::step(2, 0.5))
        .with(LrMonitor)
        .with(Throughput::new().every(5))
        .fit(&data)
        .unwrap();
    assert_eq!(
        history.metric("lr"),
        [0.4, 0.4, 0.2, 0.2, 0.1],
        "each epoch's learning rate, in the history"
    );
    assert!(history.metric("throughput").iter().all(|t| t.is_finite() && *t > 0.0));

    // A plateau that never ends (no improvement can reach a relative threshold of 1e9): with
    // patience 0 the rate halves after every epoch but the first, which sets the best value.
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Sgd::default(), 0.1)
        .epochs(4)
        .hooks(Hooks::none())
        .with(ReduceLrOnPlateau::new("loss").patience(0).factor(0.5).threshold(1e9))
        .fit(&data)
        .unwrap();
    assert_eq!(history.metric("lr"), [0.1, 0.1, 0.05, 0.025]);

    // A clock of the test's own, 10 ms further on at each read: at `on_train_begin`, then after
    // each batch. The limit of 200 ms is reached after the 20th batch, however busy the machine.
    let (origin, reads) = (std::time::Instant::now(), std::sync::atomic::AtomicU32::new(0));
    let reads = std::sync::Arc::new(reads);
    let clock = {
        let reads = reads.clone();
        move || {
            origin
                + std::time::Duration::from_millis(
                    10 * u64::from(reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst)),
                )
        }
    };
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(1000)
        .hooks(Hooks::none())
        .with(TimeLimit::new(std::time::Duration::from_millis(200)).clock(clock))
        .fit(&data)
        .unwrap();
    let stop = history.stop_reason().expect("the time limit stopped training");
    assert_eq!(stop.reason, "time limit of 200ms reached after 200.00ms", "{stop}");
    assert_eq!(stop.cause, trainmon::StopCause::TimeLimit);
    assert_eq!((history.len(), history.last().unwrap().batches()), (1, 20));
    assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 21);
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn checkpoints_keep_the_best_the_last_and_the_failure() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let dir = tmp.path().join("best");
    let checkpoint = ModelCheckpoint::new(&dir)
        .filename("{epoch:02d}-{val_loss:.4f}")
        .monitor("val_loss")
        .save_top_k(2)
        .save_last(true);
    let saved = checkpoint.saved();
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 5e-2)
        .seed(3)
        .epochs(6)
        .validation_split(0.2)
        .hooks(Hooks::none())
        .with(checkpoint)
        .fit(&data)
        .unwrap();
    let mut by_value: Vec<(f64, usize)> = history
        .epochs()
        .iter()
        .map(|e| (e.val_loss().unwrap(), e.epoch()))
        .collect();
    by_value.sort_by(|a, b| a.0.total_cmp(&b.0));
    let want: Vec<String> = by_value[..2]
        .iter()
        .map(|(v, e)| format!("{e:02}-{v:.4}.safetensors"))
        .collect();
    let kept: Vec<String> = saved
        .kept()
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept, want, "the two lowest val_loss, best first");
    let mut on_disk = want.clone();
    on_disk.push("last.safetensors".into());
    on_disk.sort();
    assert_eq!(files_in(&dir), on_disk, "the others removed, no temporary file left");
    // `last` holds the final weights, loadable into a fresh model.
    let (mut fresh, _fresh_model) = tutorial_model(9);
    fresh.load(saved.last().unwrap()).unwrap();
    assert_eq!(weights(&fresh), weights(&vs));
    fresh.load(saved.best().unwrap()).unwrap();
    let (best_epoch, last_epoch) = (by_value[0].1, history.len());
    assert_eq!(
        weights(&fresh) == weights(&vs),
        best_epoch == last_epoch,
        "the best is epoch {best_epoch}'s"
    );

    // Every 10 optimizer steps, all kept, named by the default template.
    let dir = tmp.path().join("steps");
    Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(1)
        .batch_size(100)
        .hooks(Hooks::none())
        .with(ModelCheckpoint::new(&dir).every_epochs(0).every_steps(4))
        .fit(&data)
        .unwrap();
    assert_eq!(
        files_in(&dir),
        ["epoch=1-step=4.safetensors", "epoch=1-step=8.safetensors"]
    );

    // A failure saves the weights as they were.
    let dir = tmp.path().join("failure");
    let err = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(3)
        .hooks(Hooks::none())
        .with(ModelCheckpoint::new(&dir).every_epochs(0))
        .add_hook(HookSpec::new(Event::EpochEnd, "fails"), |state: &TrainState| {
            if state.epoch() == 2 {
                Err("broken".to_owned())
            } else {
                Ok(())
            }
        })
        .fit(&data)
        .unwrap_err();
    assert!(format!("{err:#}").contains("broken"), "{err:#}");
    assert_eq!(files_in(&dir), ["exception.safetensors"]);
    fresh.load(dir.join("exception.safetensors")).unwrap();
    assert_eq!(weights(&fresh), weights(&vs), "the weights at the failure");
}

#[test]
fn plots_in_png_and_svg() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plots");
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(3)
        .validation_split(0.2)
        .hooks(Hooks::none())
        .with(LrScheduler::exponential(0.5))
        .with(Plots::new(&dir).svg(true))
        .fit(&data)
        .unwrap();
    let mut want: Vec<String> = ["accuracy", "epoch_time", "learning_rate", "loss", "loss_steps"]
        .iter()
        .flat_map(|n| [format!("{n}.png"), format!("{n}.svg")])
        .collect();
    want.sort();
    assert_eq!(files_in(&dir), want);
    let png = std::fs::read(dir.join("loss.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let texts = |name: &str| -> Vec<String> {
        let svg = std::fs::read_to_string(dir.join(name)).unwrap().replace('\n', "");
        svg.split("<text")
            .skip(1)
            .map(|t| {
                t.split_once('>')
                    .unwrap()
                    .1
                    .split("</text>")
                    .next()
                    .unwrap()
                    .trim()
                    .to_owned()
            })
            .collect()
    };
    let loss = texts("loss.svg");
    for text in ["Loss Over Epochs", "Loss", "Validation loss", "Epochs", "1", "2", "3"] {
        assert!(loss.iter().any(|t| t == text), "{text} in loss.svg: {loss:?}");
    }
    assert!(
        !loss.iter().any(|t| t.contains("Training")),
        "a validation line: not \"Training\" alone"
    );
    let numbers = |texts: &[String]| {
        for t in texts
            .iter()
            .filter(|t| t.starts_with(|c: char| c.is_ascii_digit() || c == '-'))
        {
            assert!(
                !t.contains(' ') && t.parse::<f64>().is_ok(),
                "tick label {t:?} is a plain number: {texts:?}"
            );
        }
    };
    numbers(&loss);
    let lr = texts("learning_rate.svg");
    assert!(lr.iter().any(|t| t == "Learning Rate Over Epochs"));
    numbers(&lr);
    // 800 samples in batches of 32: 25 steps an epoch, the running loss every 10 steps.
    let steps = texts("loss_steps.svg");
    for text in ["Running Loss Over Steps", "Steps", "Running loss"] {
        assert!(steps.iter().any(|t| t == text), "{text} in loss_steps.svg: {steps:?}");
    }
    numbers(&steps);
}

#[test]
fn nothing_to_draw_is_an_error_and_no_epoch_no_plots() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let empty = trainmon::History::default();
    let err = trainmon::output::plot::write_all(&empty, tmp.path()).unwrap_err();
    assert!(
        matches!(&err, trainmon::Error::Plot { message, .. } if message.contains("nothing to draw")
            && message.contains("`loss` or `val_loss`")),
        "{err}"
    );
    assert!(files_in(tmp.path()).is_empty(), "no empty chart");

    // A fit stopped before its first epoch: no plots, a warning, and the fit ends well.
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let dir = tmp.path().join("plots");
    Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(Hooks::none())
        .add_hook(trainmon::HookSpec::new(trainmon::Event::TrainBegin, "stop"), || {
            trainmon::Control::stop("at once")
        })
        .with(Plots::new(&dir))
        .fit(&data)
        .unwrap();
    assert!(!dir.exists() || files_in(&dir).is_empty());
}

#[test]
fn summary_reports_the_best_epoch_and_the_outputs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("plots")).unwrap();
    std::fs::write(tmp.path().join("plots/loss.png"), b"").unwrap();
    std::fs::write(tmp.path().join("notes.txt"), b"").unwrap();
    let lines = logged(Summary::new().monitor("val_accuracy").outputs(tmp.path()));
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].starts_with("summary: 2 of 2 epochs in ") && lines[0].ends_with("all epochs run"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("summary: best val_accuracy "), "{}", lines[1]);
    assert_eq!(
        lines[2],
        format!(
            "summary: outputs so far in {}: notes.txt, plots/ (1 file)",
            tmp.path().display()
        )
    );
}

#[test]
fn progress_off_a_terminal_is_plain_lines_throttled_by_time() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        !std::io::IsTerminal::is_terminal(&std::io::stderr()),
        "the tests' stderr is not a terminal"
    );
    // No throttle: a line after every batch (800 samples: 25 batches an epoch, 2 epochs).
    let lines = logged(Progress::new().interval(std::time::Duration::ZERO));
    assert_eq!(lines.len(), 50, "{lines:#?}");
    assert!(
        lines[0].starts_with("progress: epoch 1/2, batch 1/25 (4%), "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(": loss ") && lines[0].contains(", accuracy "),
        "{}",
        lines[0]
    );
    assert!(
        lines[49].starts_with("progress: epoch 2/2, batch 25/25 (100%), "),
        "{}",
        lines[49]
    );
    for line in &lines {
        assert!(
            line.contains("/s batches, elapsed ") && line.contains(", ETA "),
            "the rate and the time left: {line}"
        );
    }
    assert!(lines[49].contains(", ETA 0 seconds: "), "{}", lines[49]);
    // The default throttle, 10 s: none in a fit this short.
    assert!(logged(Progress::new()).is_empty());
}

#[test]
fn terminate_on_nan_table() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // (why, a bad feature value at sample 100 — in batch 4 of 32 —, check every, where it stops)
    type Case = (&'static str, Option<f64>, u64, Option<(usize, usize)>);
    let cases: [Case; 5] = [
        ("NaN, checked every batch", Some(f64::NAN), 1, Some((1, 4))),
        (
            "NaN, checked every 3 batches: it stays in the running mean",
            Some(f64::NAN),
            3,
            Some((1, 6)),
        ),
        (
            "infinity makes the loss non-finite too",
            Some(f64::INFINITY),
            1,
            Some((1, 4)),
        ),
        ("a large but finite value does not stop", Some(1e6), 1, None),
        ("clean data never stops", None, 1, None),
    ];
    for (why, bad, every, want) in cases {
        tch::manual_seed(0);
        let features = Tensor::randn([320, 20], (Kind::Float, Device::Cpu));
        if let Some(bad) = bad {
            let _ = features.get(100).get(3).fill_(bad);
        }
        let data = TensorDataset::new(features, Tensor::randint(2, [320], (Kind::Int64, Device::Cpu))).unwrap();
        let (vs, model) = tutorial_model(2);
        let history = Trainer::new(&vs, &model)
            .optimizer(nn::Sgd::default(), 1e-3)
            .epochs(2)
            .shuffle(false)
            .hooks(Hooks::none())
            .with(TerminateOnNaN::new().every(every))
            .fit(&data)
            .unwrap();
        let got = history
            .stop_reason()
            .map(|s| (s.epoch, history.last().unwrap().batches()));
        assert_eq!(got, want, "{why}: {:?}", history.stop_reason());
    }
}

#[test]
fn metric_files_options_table() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    type Make = fn(std::path::PathBuf) -> MetricFiles;
    // (why, the hook on a directory, the files it writes)
    let cases: [(&str, Make, &[&str]); 5] = [
        (
            "both formats, epochs only",
            MetricFiles::new,
            &["epochs.csv", "epochs.jsonl", "status.json"],
        ),
        (
            "CSV only, with steps",
            |d| MetricFiles::new(d).jsonl(false).steps(5),
            &["epochs.csv", "status.json", "steps.csv"],
        ),
        (
            "JSONL only",
            |d| MetricFiles::new(d).csv(false),
            &["epochs.jsonl", "status.json"],
        ),
        (
            "everything",
            |d| MetricFiles::new(d).steps(1),
            &["epochs.csv", "epochs.jsonl", "status.json", "steps.csv", "steps.jsonl"],
        ),
        (
            "no status",
            |d| MetricFiles::new(d).status(false).steps(1),
            &["epochs.csv", "epochs.jsonl", "steps.csv", "steps.jsonl"],
        ),
    ];
    for (why, make, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("metrics");
        Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-3)
            .epochs(1)
            .hooks(Hooks::none())
            .with(make(dir.clone()))
            .fit(&data)
            .unwrap();
        assert_eq!(files_in(&dir), want, "{why}");
    }
}

#[test]
fn logger_and_time_limit_tables() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // (why, the logger, lines over 2 epochs of 25 batches, the first line's start)
    let cases: [(&str, Logger, usize, &str); 4] = [
        ("the tutorial's format", Logger::tutorial(), 8, "Epoch 1 starting."),
        (
            "every 10 batches and summaries",
            Logger::new(),
            6,
            "epoch 1/2 batch 10/25: loss ",
        ),
        (
            "every 25 batches",
            Logger::new().every(25),
            4,
            "epoch 1/2 batch 25/25: loss ",
        ),
        ("summaries only", Logger::new().every(0), 2, "epoch 1/2 done in "),
    ];
    for (why, logger, count, first) in cases {
        let lines = logged(logger);
        assert_eq!(lines.len(), count, "{why}: {lines:#?}");
        assert!(lines[0].starts_with(first), "{why}: {}", lines[0]);
    }

    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    // (why, the limit, whether it stops, and after how many batches of the first epoch)
    let cases: [(&str, std::time::Duration, Option<usize>); 2] = [
        (
            "a limit already past stops after the first batch",
            std::time::Duration::ZERO,
            Some(1),
        ),
        (
            "an hour does not stop 2 short epochs",
            std::time::Duration::from_secs(3600),
            None,
        ),
    ];
    for (why, limit, want) in cases {
        let history = Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-3)
            .epochs(2)
            .hooks(Hooks::none())
            .with(TimeLimit::new(limit))
            .fit(&data)
            .unwrap();
        let got = history.stop_reason().map(|_| history.last().unwrap().batches());
        assert_eq!(got, want, "{why}");
    }
}
