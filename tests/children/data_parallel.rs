//! `Trainer::data_parallel`: ranks of this test binary (child processes, Gloo over loopback)
//! train replicas that stay identical, match one process over the same samples (running values
//! too), stop together, refuse a model that differs, fail — not hang — when a rank dies or
//! errs, naming it, write the built-in outputs from rank 0 only, and resume, under the real
//! `torchrun --max-restarts`, after a rank was killed, to the bit.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tch::nn;
use trainmon::dist::{ProcessGroup, Rendezvous};
use trainmon::hooks::MetricFiles;
use trainmon::prelude::*;
use trainmon::{Event, HookSpec, Hooks, Loss};
use trainmon_tests::ranks::{free_port, result, Ranks};

/// The ranks of this module's tests: its `rank_process`.
const RANKS: Ranks = Ranks(module_path!());
use trainmon_tests::{poisoned_data, tutorial_data, tutorial_model, weights, ClassifierByHand, ClassifierStep};

/// Two ranks of `role`; each writes under `OUT/rank<N>` (`out`).
fn two_ranks(role: &str, out: &std::path::Path) -> Vec<Output> {
    RANKS.world(role, 2, &[("OUT", out.display().to_string())])
}

/// The tutorial fit, SGD, batches of `batch_size`, in order or shuffled.
fn trainer<'a>(vs: &'a nn::VarStore, model: &'a nn::Linear, batch_size: usize, shuffle: bool) -> Trainer<'a> {
    Trainer::new(vs, model)
        .optimizer(nn::Sgd::default(), 0.1)
        .epochs(2)
        .batch_size(batch_size)
        .shuffle(shuffle)
        .seed(3)
        .hooks(Hooks::none())
}

/// Epoch ends the `rank = 0` hook saw in this process.
static RANK_ZERO_CALLS: AtomicUsize = AtomicUsize::new(0);

#[on_epoch_end(rank = 0, group = "rank_zero")]
fn on_rank_zero_only() {
    RANK_ZERO_CALLS.fetch_add(1, Ordering::SeqCst);
}

/// The running loss and samples the `train` role's hooks saw at each batch end, and the rank
/// and world size a `Dist` parameter gave them.
static RUNNING: Mutex<Vec<(f64, usize)>> = Mutex::new(Vec::new());
static DIST: Mutex<Option<Dist>> = Mutex::new(None);

/// The global step of the first batch this process trained (a resumed fit's is past 1).
static FIRST_STEP: Mutex<Option<u64>> = Mutex::new(None);

/// Cross-entropy as a loss of one's own (which tracks no accuracy).
fn cross_entropy(outputs: &tch::Tensor, targets: &tch::Tensor) -> Result<tch::Tensor, tch::TchError> {
    outputs.f_cross_entropy_loss::<tch::Tensor>(targets, None, tch::Reduction::Mean, -100, 0.0)
}

/// The classifier as a step whose outputs on rank 1 lack a row (as unpadded sequences would
/// differ in length).
struct Ragged<'m> {
    model: &'m nn::Linear,
    rank: usize,
}

impl trainmon::TrainStep<(tch::Tensor, tch::Tensor)> for Ragged<'_> {
    fn training_step(
        &mut self,
        batch: &(tch::Tensor, tch::Tensor),
        ctx: &trainmon::StepContext<'_>,
    ) -> Result<trainmon::StepOutput, trainmon::BoxError> {
        let output = ClassifierStep { model: self.model }.training_step(batch, ctx)?;
        let n = batch.1.size()[0] - self.rank as i64;
        let (x, y) = (tch::nn::Module::forward(self.model, &batch.0), &batch.1);
        Ok(trainmon::StepOutput::loss(output.into_loss()).with_outputs(x.narrow(0, 0, n), y.narrow(0, 0, n)))
    }
}

/// The trainer of a [`ClassifierByHand`] step: SGD named `fc`, batches of `batch_size`, in order.
fn by_hand_trainer<'a>(vs: &'a nn::VarStore, batch_size: usize) -> Trainer<'a> {
    Trainer::for_steps(vs)
        .optimizer_for("fc", "fc", nn::Sgd::default(), 0.1)
        .epochs(2)
        .batch_size(batch_size)
        .shuffle(false)
        .seed(3)
        .hooks(Hooks::none())
}

/// The sample whose features are NaN in the data of the `rollback` and `scaler` roles: rank 1's
/// (odd samples) in its 4th batch of 16, in order; in the 4th batch of 32 of one process.
const POISONED: i64 = 101;

/// `trainer` with what the `rollback` and `scaler` roles add: rolling back over bad batches,
/// or a gradient scaler.
fn combined<'a>(role: &str, trainer: Trainer<'a>) -> Trainer<'a> {
    match role {
        "rollback" => trainer.rollback(trainmon::Rollback::new()),
        "scaler" => trainer.grad_scaler(trainmon::GradScaler::new()),
        other => panic!("no combination {other}"),
    }
}

/// What each child process does, by `TRAINMON_TEST_ROLE`; a test starts it, it is not one.
#[test]
#[ignore = "a rank of the tests below, started by them"]
fn rank_process() {
    let role = std::env::var("TRAINMON_TEST_ROLE").unwrap();
    let group = ProcessGroup::from_env().unwrap();
    let rank = group.rank();
    let out = std::path::PathBuf::from(std::env::var("OUT").unwrap()).join(format!("rank{rank}"));
    let data = match role.as_str() {
        "rollback" | "scaler" => poisoned_data(1, POISONED),
        _ => tutorial_data(1),
    };
    // Each rank starts from other weights: rank 0's are broadcast.
    let (vs, model) = if role == "mismatch" && rank == 1 {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = nn::linear(vs.root() / "fc", 20, 3, Default::default());
        (vs, model)
    } else {
        tutorial_model(10 + rank as i64)
    };
    let trainer = match role.as_str() {
        "train" => trainer(&vs, &model, 16, true).with(MetricFiles::new(&out)).add_hook(
            HookSpec::new(Event::BatchEnd, "running"),
            |logs: &BatchLogs, dist: Dist| {
                RUNNING.lock().unwrap().push((logs.loss(), logs.samples()));
                *DIST.lock().unwrap() = Some(dist);
            },
        ),
        "in_order" | "mismatch" => trainer(&vs, &model, 16, false)
            .add_hook(HookSpec::new(Event::BatchEnd, "running"), |logs: &BatchLogs| {
                RUNNING.lock().unwrap().push((logs.loss(), logs.samples()))
            }),
        "in_order_steps" => trainer(&vs, &model, 16, false)
            .metric(trainmon::Accuracy::default)
            .add_hook(HookSpec::new(Event::BatchEnd, "running"), |logs: &BatchLogs| {
                RUNNING.lock().unwrap().push((logs.loss(), logs.samples()))
            }),
        // Without metrics (a loss of one's own tracks none): only the loss is gathered.
        "in_order_loss_only" => trainer(&vs, &model, 16, false)
            .loss(Loss::custom(cross_entropy))
            .add_hook(HookSpec::new(Event::BatchEnd, "running"), |logs: &BatchLogs| {
                RUNNING.lock().unwrap().push((logs.loss(), logs.samples()))
            }),
        // Rank 1 stops in a validation hook, in epoch 1: only it knows the epoch was cut short.
        "stop_in_validation" => trainer(&vs, &model, 16, true)
            .validation_split(0.2)
            .resumable(out.join("points"))
            .add_hook(
                HookSpec::new(Event::ValidationBatchEnd, "stops_on_rank_1"),
                move |state: &TrainState| {
                    if rank == 1 && state.epoch() == 1 {
                        Control::stop("rank 1 stopped validating")
                    } else {
                        Control::Continue
                    }
                },
            ),
        // Both ranks read `OUT/points`.
        "resume_shared" => trainer(&vs, &model, 16, true)
            .resumable(std::path::PathBuf::from(std::env::var("OUT").unwrap()).join("points")),
        "steps_ragged" => trainer(&vs, &model, 16, false).metric(trainmon::Accuracy::default),
        "by_hand" => by_hand_trainer(&vs, 16)
            .metric(trainmon::Accuracy::default)
            .add_hook(HookSpec::new(Event::BatchEnd, "running"), |logs: &BatchLogs| {
                RUNNING.lock().unwrap().push((logs.loss(), logs.samples()))
            }),
        "attribute" => trainer(&vs, &model, 16, true).hooks(Hooks::groups(["rank_zero"])),
        "rollback" | "scaler" => combined(&role, trainer(&vs, &model, 16, false)),
        "stop" => trainer(&vs, &model, 16, true).add_hook(
            HookSpec::new(Event::BatchEnd, "stops_on_rank_1"),
            move |state: &TrainState| {
                if rank == 1 && state.epoch() == 1 && state.batch() == 5 {
                    Control::stop("rank 1 has seen enough")
                } else {
                    Control::Continue
                }
            },
        ),
        // A hook at `on_batch_begin` on rank 0 alone: rank 1 has none there, and still asks.
        "stop_on_rank_0_alone" => trainer(&vs, &model, 16, true).add_hook(
            HookSpec::new(Event::BatchBegin, "stops_on_rank_0").rank_zero(),
            |state: &TrainState| {
                if state.epoch() == 2 && state.batch() == 4 {
                    Control::stop("rank 0 has seen enough")
                } else {
                    Control::Continue
                }
            },
        ),
        "dies" => trainer(&vs, &model, 16, true).add_hook(
            HookSpec::new(Event::BatchEnd, "dies"),
            move |state: &TrainState| {
                if rank == 1 && state.batch() == 3 {
                    std::process::exit(7);
                }
            },
        ),
        "hook_fails" => {
            let failing: usize = std::env::var("FAILING_RANK").unwrap().parse().unwrap();
            trainer(&vs, &model, 16, true).add_hook(
                HookSpec::new(Event::BatchEnd, "breaks"),
                move |state: &TrainState| -> Result<(), trainmon::BoxError> {
                    if rank == failing && state.batch() == 3 {
                        return Err(format!("rank {rank}'s disk is full").into());
                    }
                    Ok(())
                },
            )
        }
        // Rank 1 looks for resume points where there are none (`OUT/rank1/points`).
        "resume_elsewhere" => trainer(&vs, &model, 16, true)
            .epochs(std::env::var("EPOCHS").unwrap().parse().unwrap())
            .resumable(out.join("points")),
        // Under torchrun --max-restarts: rank 1 of the first attempt kills itself (SIGKILL) at
        // step `KILL_AT_STEP`, when set; the restarted group goes on from the resume point.
        "resume" => {
            let kill_at: Option<u64> = std::env::var("KILL_AT_STEP").ok().map(|s| s.parse().unwrap());
            let first_attempt = std::env::var("TORCHELASTIC_RESTART_COUNT").as_deref() == Ok("0");
            trainer(&vs, &model, 16, true)
                .epochs(3)
                .resumable(std::path::PathBuf::from(std::env::var("OUT").unwrap()).join("points"))
                .resumable_steps(10)
                .add_hook(HookSpec::new(Event::BatchBegin, "first_step"), |state: &TrainState| {
                    FIRST_STEP.lock().unwrap().get_or_insert(state.global_step() + 1);
                })
                .add_hook(HookSpec::new(Event::BatchEnd, "killed"), move |state: &TrainState| {
                    if rank == 1 && first_attempt && Some(state.global_step()) == kill_at {
                        let pid = std::process::id().to_string();
                        let _ = Command::new("kill").args(["-KILL", &pid]).status();
                        std::thread::sleep(std::time::Duration::from_secs(60));
                    }
                })
        }
        other => panic!("unknown role {other}"),
    };
    let mut trainer = trainer.data_parallel(&group);
    let outcome = match role.as_str() {
        // The classifier as a step of one's own.
        "in_order_steps" => trainer.fit_steps(&mut ClassifierStep { model: &model }, &data, None),
        "steps_ragged" => trainer.fit_steps(&mut Ragged { model: &model, rank }, &data, None),
        "by_hand" => trainer.fit_steps(&mut ClassifierByHand { model: &model }, &data, None),
        _ => trainer.fit(&data),
    };
    let json = match outcome {
        Ok(history) => serde_json::json!({
            "rank": rank,
            "restart": std::env::var("TORCHELASTIC_RESTART_COUNT").ok(),
            "weights": weights(&vs),
            "loss": history.metric("loss"),
            "accuracy": history.metric("accuracy"),
            "samples": history.epochs().iter().map(|e| e.samples()).collect::<Vec<_>>(),
            "epochs": history.len(),
            "stop": history.stop_reason().map(|s| s.reason.clone()),
            "stop_cause": history.stop_reason().map(|s| s.cause.name()),
            "rank_zero_calls": RANK_ZERO_CALLS.load(Ordering::SeqCst),
            "running": *RUNNING.lock().unwrap(),
            "dist": DIST.lock().unwrap().map(|d| [d.rank(), d.world_size(), d.local_rank()]),
            "first_step": *FIRST_STEP.lock().unwrap(),
            "skipped": history.skipped().iter().map(|s| [s.epoch(), *s.batches().start(), *s.batches().end()]).collect::<Vec<_>>(),
            "scaler_skipped": history.scaler_skipped_steps(),
        }),
        Err(e) => serde_json::json!({
            "rank": rank,
            "restart": std::env::var("TORCHELASTIC_RESTART_COUNT").ok(),
            "error": format!("{e:#}"),
        }),
    };
    println!("RESULT {json}");
    // Under torchrun the ranks share one stdout, where long lines interleave: a file too.
    if let Ok(restart) = std::env::var("TORCHELASTIC_RESTART_COUNT") {
        let file = out.parent().unwrap().join(format!("result-{restart}-{rank}.json"));
        std::fs::write(file, json.to_string()).unwrap();
    }
}

#[test]
fn two_ranks_end_with_the_same_weights_and_only_rank_0_writes() {
    let out = tempfile::tempdir().unwrap();
    let results: Vec<_> = two_ranks("train", out.path()).iter().map(result).collect();
    assert_eq!(results[0]["weights"], results[1]["weights"], "replicas stay identical");
    // The epoch metrics are averaged over the ranks: the same on both.
    assert_eq!(results[0]["loss"], results[1]["loss"]);
    assert_eq!(results[0]["epochs"], 2);
    assert!(
        out.path().join("rank0/epochs.csv").exists(),
        "rank 0 writes its metric files"
    );
    assert!(!out.path().join("rank1").exists(), "rank 1 writes none");
    // A `Dist` parameter tells each hook its rank.
    assert_eq!(results[0]["dist"], serde_json::json!([0, 2, 0]));
    assert_eq!(results[1]["dist"], serde_json::json!([1, 2, 0]));
    // The running values are those of both ranks' batches: the same on both, 32 samples a
    // batch (the last one's 2 × 4); an epoch counts all 1000 samples.
    assert_eq!(results[0]["running"], results[1]["running"]);
    let running = results[0]["running"].as_array().unwrap();
    assert_eq!(running.len(), 2 * 32);
    assert_eq!(running[0][1], 32);
    assert_eq!(running[31][1], 1000);
    assert_eq!(results[0]["samples"], serde_json::json!([1000, 1000]));
}

/// Two ranks × batches of 16, in order, average their gradients: the same steps as one process
/// with batches of 32 over the same samples (rank 0 takes the even samples, rank 1 the odd).
#[test]
fn two_ranks_of_16_match_one_process_of_32() {
    for role in ["in_order", "in_order_steps"] {
        let out = tempfile::tempdir().unwrap();
        let results: Vec<_> = two_ranks(role, out.path()).iter().map(result).collect();
        matches_one_process_of_32(&results);
    }
}

/// `results` of two ranks × batches of 16 in order: the weights and metrics of one process
/// with batches of 32.
fn matches_one_process_of_32(results: &[serde_json::Value]) {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    // Rank 0's initial weights.
    let (vs, model) = tutorial_model(10);
    trainer(&vs, &model, 32, false).fit(&data).unwrap();
    let alone = weights(&vs);
    for r in results {
        let theirs: Vec<f64> = serde_json::from_value(r["weights"].clone()).unwrap();
        assert_eq!(theirs.len(), alone.len());
        for (a, b) in theirs.iter().zip(&alone) {
            assert!((a - *b as f64).abs() < 1e-5, "{a} against {b}: {r}");
        }
    }
    // And the metrics, running and per epoch, are those of the batches of 32.
    // The running values this process's fit sees (the tests run in parallel threads).
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let (vs, model) = tutorial_model(10);
    let history = trainer(&vs, &model, 32, false)
        .add_hook(HookSpec::new(Event::BatchEnd, "running"), move |logs: &BatchLogs| {
            record.lock().unwrap().push((logs.loss(), logs.samples()))
        })
        .fit(&data)
        .unwrap();
    let close = |a: &serde_json::Value, b: f64| (a.as_f64().unwrap() - b).abs() < 1e-5;
    let running = seen.lock().unwrap().clone();
    for r in results {
        let theirs = r["running"].as_array().unwrap();
        assert_eq!(theirs.len(), running.len());
        for (t, (loss, samples)) in theirs.iter().zip(&running) {
            assert!(close(&t[0], *loss), "running loss {} against {loss}", t[0]);
            assert_eq!(t[1], *samples);
        }
        for (name, mine) in [
            ("loss", history.metric("loss")),
            ("accuracy", history.metric("accuracy")),
        ] {
            let theirs = r[name].as_array().unwrap();
            assert_eq!(theirs.len(), mine.len(), "{name}");
            assert!(
                theirs.iter().zip(&mine).all(|(t, m)| close(t, *m)),
                "{name}: {theirs:?} against {mine:?}"
            );
        }
    }
}

/// Without metrics the ranks gather their losses alone: the running loss and samples are still
/// those of one process with batches of 32.
#[test]
fn without_metrics_the_running_loss_is_still_global() {
    let out = tempfile::tempdir().unwrap();
    let results: Vec<_> = two_ranks("in_order_loss_only", out.path()).iter().map(result).collect();
    let _serial = trainmon_tests::serial();
    // The running values this process's fit sees (the tests run in parallel threads).
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(10);
    let history = trainer(&vs, &model, 32, false)
        .loss(Loss::custom(cross_entropy))
        .add_hook(HookSpec::new(Event::BatchEnd, "running"), move |logs: &BatchLogs| {
            record.lock().unwrap().push((logs.loss(), logs.samples()))
        })
        .fit(&data)
        .unwrap();
    assert!(history.metric("accuracy").is_empty(), "no metric is tracked");
    let running = seen.lock().unwrap().clone();
    for r in &results {
        let theirs = r["running"].as_array().unwrap();
        assert_eq!(theirs.len(), running.len(), "{r}");
        for (t, (loss, samples)) in theirs.iter().zip(&running) {
            assert!(
                (t[0].as_f64().unwrap() - loss).abs() < 1e-5,
                "running loss {} against {loss}",
                t[0]
            );
            assert_eq!(t[1], *samples);
        }
        let losses = r["loss"].as_array().unwrap();
        for (t, m) in losses.iter().zip(history.metric("loss")) {
            assert!((t.as_f64().unwrap() - m).abs() < 1e-5, "epoch loss {t} against {m}");
        }
    }
}

/// Rank 1 alone stops within its validation: every rank knows the epoch was not whole and
/// takes no resume point of it (a rank taking one alone would wait for the other forever).
#[test]
fn a_stop_in_validation_on_one_rank_ends_both_without_a_point() {
    let out = tempfile::tempdir().unwrap();
    let results: Vec<_> = two_ranks("stop_in_validation", out.path()).iter().map(result).collect();
    assert_eq!(results[1]["stop"], "rank 1 stopped validating", "{}", results[1]);
    assert_eq!(results[0]["stop"], "rank 1 of 2 stopped", "{}", results[0]);
    assert_eq!(results[0]["epochs"], 1);
    assert_eq!(results[0]["weights"], results[1]["weights"]);
    // Rank 0 stopped for rank 1's reason: it heard of it, where waiting for rank 1 until the
    // timeout would have ended it with an error.
    assert!(!out.path().join("rank0/points/resume.safetensors").exists());
}

/// A rank that fails while the others wait in the store for its value (here: its resume point
/// is not one, and rank 0 waits to compare where they go on from) ends their wait at once, with
/// its error, not at the timeout.
#[test]
fn a_rank_failing_before_the_ranks_agree_ends_the_others_wait() {
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(out.path().join("rank1/points")).unwrap();
    std::fs::write(
        out.path().join("rank1/points/resume.safetensors"),
        b"not a resume point",
    )
    .unwrap();
    let outs = RANKS.world(
        "resume_elsewhere",
        2,
        &[("OUT", out.path().display().to_string()), ("EPOCHS", "1".into())],
    );
    let results: Vec<_> = outs.iter().map(result).collect();
    let own = results[1]["error"].as_str().unwrap();
    assert!(own.contains("resume.safetensors"), "{own}");
    let other = results[0]["error"].as_str().unwrap();
    assert!(
        other.starts_with("distributed training: rank 1 of 2 failed: "),
        "{other}"
    );
    // Rank 1's own error, not a timeout's ("not there within…"): rank 0's wait ended with it.
    assert!(other.contains("resume.safetensors"), "{other}");
    assert!(!other.contains("within"), "{other}");
}

/// A point taken within an epoch by one process is refused by two ranks: each rank's share of
/// the epoch is not what the point's order was.
#[test]
fn a_point_within_an_epoch_is_refused_by_another_world_size() {
    let out = tempfile::tempdir().unwrap();
    let serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(10);
    let history = trainer(&vs, &model, 16, true)
        .resumable(out.path().join("points"))
        .resumable_steps(10)
        .add_hook(HookSpec::new(Event::BatchEnd, "stops"), |state: &TrainState| {
            if state.global_step() == 15 {
                Control::stop("interrupted")
            } else {
                Control::Continue
            }
        })
        .fit(&data)
        .unwrap();
    assert!(history.stop_reason().is_some());
    drop(serial);
    for r in two_ranks("resume_shared", out.path()).iter().map(result) {
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains("it was taken within an epoch by 1 rank, and this fit has 2"),
            "{error}"
        );
    }
}

/// A step that optimizes by hand, data-parallel: its optimizer step averages the gradients over
/// the ranks; two ranks of 16 end as one process of 32.
#[test]
fn a_step_by_hand_averages_its_gradients_over_the_ranks() {
    let out = tempfile::tempdir().unwrap();
    let results: Vec<_> = two_ranks("by_hand", out.path()).iter().map(result).collect();
    assert_eq!(results[0]["weights"], results[1]["weights"], "{}", results[0]);
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(10);
    by_hand_trainer(&vs, 32)
        .fit_steps(&mut ClassifierByHand { model: &model }, &data, None)
        .unwrap();
    let alone = weights(&vs);
    let theirs: Vec<f64> = serde_json::from_value(results[0]["weights"].clone()).unwrap();
    for (a, b) in theirs.iter().zip(&alone) {
        assert!((a - *b as f64).abs() < 1e-5, "{a} against {b}");
    }
}

/// A step whose outputs differ in size between the ranks: refused on every rank, naming the
/// sizes, not a collective on buffers of different sizes.
#[test]
fn outputs_of_other_sizes_on_the_ranks_are_refused() {
    let out = tempfile::tempdir().unwrap();
    for r in two_ranks("steps_ragged", out.path()).iter().map(result) {
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains("the step's outputs and targets differ in size between the ranks: rank 0 has 32 and 16 values, rank 1 30 and 15"),
            "{error}"
        );
    }
}

#[test]
fn a_stop_on_rank_1_stops_both_at_the_same_batch() {
    let out = tempfile::tempdir().unwrap();
    let results: Vec<_> = two_ranks("stop", out.path()).iter().map(result).collect();
    assert_eq!(results[1]["stop"], "rank 1 has seen enough");
    assert_eq!(results[0]["stop"], "rank 1 of 2 stopped");
    // Both stopped after batch 5 of epoch 1: the same weights.
    assert_eq!(results[0]["weights"], results[1]["weights"]);
    assert_eq!(results[0]["epochs"], 1);
}

/// The ranks ask each other whether one stopped only after events where some rank has hooks:
/// a hook on rank 0 alone is enough for rank 1 to ask.
#[test]
fn a_stop_by_a_hook_only_rank_0_runs_stops_both() {
    let out = tempfile::tempdir().unwrap();
    let results: Vec<_> = two_ranks("stop_on_rank_0_alone", out.path())
        .iter()
        .map(result)
        .collect();
    assert_eq!(results[0]["stop"], "rank 0 has seen enough");
    assert_eq!(results[1]["stop"], "rank 0 of 2 stopped");
    assert_eq!(results[0]["weights"], results[1]["weights"]);
    // Stopped in epoch 2, before its batch 4: the history ends with its first 3 batches.
    assert_eq!(results[0]["epochs"], 2);
    assert_eq!(results[1]["epochs"], 2);
}

#[test]
fn a_rank_that_dies_fails_the_other_with_an_error() {
    let out = tempfile::tempdir().unwrap();
    let outs = two_ranks("dies", out.path());
    assert_eq!(outs[1].status.code(), Some(7));
    let error = result(&outs[0])["error"].as_str().unwrap().to_owned();
    assert!(error.starts_with("distributed training: "), "{error}");
    assert!(
        error.contains(
            "rank 1 of 2 said nothing within 2s of the failure (killed, its machine or network lost, or too busy to answer)"
        ),
        "{error}"
    );
    assert!(error.contains("failed on rank 0 of 2"), "{error}");
}

/// A hook that fails on one rank ends the other with that rank's error — rank 1's, and rank
/// 0's (the store's host, which keeps the store up until rank 1 has read it).
#[test]
fn a_hook_error_on_one_rank_ends_the_other_with_it() {
    for failing in [1, 0] {
        let out = tempfile::tempdir().unwrap();
        let outs = RANKS.world(
            "hook_fails",
            2,
            &[
                ("OUT", out.path().display().to_string()),
                ("FAILING_RANK", failing.to_string()),
            ],
        );
        let results: Vec<_> = outs.iter().map(result).collect();
        let own = results[failing]["error"].as_str().unwrap();
        assert!(own.contains(&format!("rank {failing}'s disk is full")), "{own}");
        let other = results[1 - failing]["error"].as_str().unwrap();
        assert!(
            other.starts_with(&format!(
                "distributed training: rank {failing} of 2 failed: hook `breaks`"
            )),
            "{other}"
        );
        // The failing rank's own error, not a timeout's ("not there within…").
        assert!(other.contains(&format!("rank {failing}'s disk is full")), "{other}");
        assert!(!other.contains("within"), "{other}");
    }
}

/// Both ranks under the real `torchrun` with `--max-restarts 1`, in `out`, with `extra`
/// environment; the results of attempt `attempt` (torchrun's restart count), in rank order.
fn under_torchrun(role: &str, out: &std::path::Path, extra: &[(&str, &str)], attempt: &str) -> Vec<serde_json::Value> {
    let torchrun = trainmon_tests::bootstrap_python().with_file_name("torchrun");
    let mut cmd = Command::new(&torchrun);
    cmd.args([
        "--no-python",
        "--nproc-per-node",
        "2",
        "--max-restarts",
        "1",
        "--monitor-interval",
        "0.1",
    ])
    .arg("--master-port")
    .arg(free_port().to_string())
    .arg(std::env::current_exe().unwrap())
    .args(RANKS.args())
    .env("TRAINMON_TEST_ROLE", role)
    .env("OUT", out)
    .env("OMP_NUM_THREADS", "1")
    .env("TRAINMON_DIST_TIMEOUT_S", "30")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let run = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", torchrun.display()));
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "{log}");
    (0..2)
        .map(|rank| {
            let file = out.join(format!("result-{attempt}-{rank}.json"));
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}\n{log}", file.display()));
            serde_json::from_str(&text).unwrap()
        })
        .collect()
}

/// Ranks that found different resume points (rank 1's directory, not shared, has none) are
/// refused, naming where each would go on from.
#[test]
fn ranks_that_read_different_resume_points_are_refused() {
    let out = tempfile::tempdir().unwrap();
    let one = |epochs: &str| {
        RANKS.world(
            "resume_elsewhere",
            2,
            &[("OUT", out.path().display().to_string()), ("EPOCHS", epochs.to_owned())],
        )
    };
    for r in one("1").iter().map(result) {
        assert!(r.get("error").is_none(), "{r}");
    }
    // Rank 0 wrote its point after epoch 1 (step 32); rank 1 wrote none.
    assert!(out.path().join("rank0/points/resume.safetensors").exists());
    assert!(!out.path().join("rank1/points/resume.safetensors").exists());
    for r in one("2").iter().map(result) {
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains("the ranks disagree on where to go on from (the resume point): rank 0 has `1 epochs done, step 32` where rank 1 has `0 epochs done, step 0`"),
            "{error}"
        );
    }
}

/// `torchrun --max-restarts 1`: rank 1 is killed (SIGKILL) at step 45, past the resume point
/// of step 40 (within epoch 2); torchrun restarts the group, which goes on from the point and
/// ends with the weights and history of a run never interrupted, to the bit.
#[test]
fn killed_under_torchrun_the_group_restarts_from_the_resume_point_to_the_bit() {
    let out = tempfile::tempdir().unwrap();
    let killed = under_torchrun("resume", out.path(), &[("KILL_AT_STEP", "45")], "1");
    let whole = tempfile::tempdir().unwrap();
    let uninterrupted = under_torchrun("resume", whole.path(), &[], "0");
    for (k, u) in killed.iter().zip(&uninterrupted) {
        assert!(k.get("error").is_none(), "{k}");
        assert_eq!(
            k["first_step"], 41,
            "the restarted group went on after the point of step 40: {k}"
        );
        assert_eq!(u["first_step"], 1);
        assert_eq!(k["weights"], u["weights"], "rank {}: the weights differ", k["rank"]);
        for name in ["loss", "accuracy", "samples", "epochs"] {
            assert_eq!(k[name], u[name], "{name}");
        }
    }
    assert_eq!(killed[0]["weights"], killed[1]["weights"]);
    assert_eq!(killed[0]["epochs"], 3);
}

#[test]
fn a_hook_with_rank_0_runs_on_rank_0_alone() {
    let out = tempfile::tempdir().unwrap();
    let results: Vec<_> = two_ranks("attribute", out.path()).iter().map(result).collect();
    assert_eq!(results[0]["rank_zero_calls"], 2, "{}", results[0]);
    assert_eq!(results[1]["rank_zero_calls"], 0, "{}", results[1]);
    // Outside a data-parallel fit (rank 0 of none), the hook runs as any other.
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(1);
    let before = RANK_ZERO_CALLS.load(Ordering::SeqCst);
    trainer(&vs, &model, 16, true)
        .hooks(Hooks::groups(["rank_zero"]))
        .fit(&data)
        .unwrap();
    assert_eq!(
        RANK_ZERO_CALLS.load(Ordering::SeqCst),
        before + 2,
        "a fit of one process runs it"
    );
}

#[test]
fn ranks_with_other_models_are_refused_naming_the_difference() {
    let out = tempfile::tempdir().unwrap();
    for r in two_ranks("mismatch", out.path()).iter().map(result) {
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains("the ranks disagree on the model's variables: rank 0 has `fc.bias [2] Float` where rank 1 has `fc.bias [3] Float`"),
            "{error}"
        );
    }
}

/// A world of one, in this process, trains as one process does (a `Dist` parameter: rank 0 of
/// 1); the group is borrowed, and a second fit runs on it after the first (train, then
/// fine-tune, in one launch).
#[test]
fn a_world_of_one_trains_as_one_process_and_runs_several_fits() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(1);
    let group = ProcessGroup::join(Rendezvous::new("127.0.0.1", free_port(), 0, 1).unwrap()).unwrap();
    // A world of one trains as one process does.
    let before = weights(&vs);
    let seen = std::sync::Arc::new(Mutex::new(None));
    let record = seen.clone();
    let history = trainer(&vs, &model, 16, true)
        .add_hook(HookSpec::new(Event::TrainBegin, "dist"), move |dist: Dist| {
            *record.lock().unwrap() = Some(dist)
        })
        .data_parallel(&group)
        .fit(&data)
        .unwrap();
    let dist = seen.lock().unwrap().unwrap();
    assert_eq!((dist.rank(), dist.world_size(), dist.is_main()), (0, 1, true));
    let (vs2, model2) = tutorial_model(1);
    let alone = trainer(&vs2, &model2, 16, true).fit(&data).unwrap();
    assert_ne!(weights(&vs), before);
    assert_eq!(weights(&vs), weights(&vs2));
    assert_eq!(history.metric("loss"), alone.metric("loss"));
    // A second fit on the same group goes on from the first one's weights, as one process does.
    let tuned = trainer(&vs, &model, 16, true).data_parallel(&group).fit(&data).unwrap();
    let tuned_alone = trainer(&vs2, &model2, 16, true).fit(&data).unwrap();
    assert_eq!(weights(&vs), weights(&vs2));
    assert_eq!(tuned.metric("loss"), tuned_alone.metric("loss"));
}

/// A batch bad on one rank alone (NaN in rank 1's features) rolls both ranks back to the same
/// snapshot; with a gradient scaler, both ranks skip the step whose gradients are not finite on
/// one of them, and keep one scale: two ranks of 16 end as one process of 32 over the same data
/// with the same setting, their replicas identical.
#[test]
fn two_ranks_roll_back_and_scale_together_as_one_process_of_32() {
    let data = {
        let _serial = trainmon_tests::serial();
        poisoned_data(1, POISONED)
    };
    for role in ["rollback", "scaler"] {
        let out = tempfile::tempdir().unwrap();
        let results: Vec<_> = two_ranks(role, out.path()).iter().map(result).collect();
        assert_eq!(
            results[0]["weights"], results[1]["weights"],
            "{role}: identical replicas"
        );
        let _serial = trainmon_tests::serial();
        let (vs, model) = tutorial_model(10);
        let alone = combined(role, trainer(&vs, &model, 32, false)).fit(&data).unwrap();
        let alone_weights = weights(&vs);
        assert!(alone_weights.iter().all(|w| w.is_finite()), "{role}");
        let skipped: Vec<[usize; 3]> = (alone.skipped().iter())
            .map(|s| [s.epoch(), *s.batches().start(), *s.batches().end()])
            .collect();
        match role {
            "rollback" => assert_eq!(skipped, [[1, 4, 4], [2, 4, 4]], "the poisoned batch, each epoch"),
            _ => assert_eq!(alone.scaler_skipped_steps(), 2, "the poisoned batch's step, each epoch"),
        }
        for r in &results {
            let theirs: Vec<f64> = serde_json::from_value(r["weights"].clone()).unwrap();
            for (a, b) in theirs.iter().zip(&alone_weights) {
                assert!((a - *b as f64).abs() < 1e-5, "{role}: {a} against {b}: {r}");
            }
            assert_eq!(r["skipped"], serde_json::json!(skipped), "{role}: {r}");
            assert_eq!(r["scaler_skipped"], alone.scaler_skipped_steps(), "{role}: {r}");
        }
    }
}
