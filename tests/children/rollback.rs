//! `Trainer::rollback`: batches whose loss is NaN or spikes are rolled back over and skipped;
//! the run ends as a run over the data without them; too many rollbacks stop training; a fit
//! resumed after a failure skips the same batches and ends bit-identical.

use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};
use trainmon::hooks::{MetricFiles, Summary};
use trainmon::{Error, Event, HookSpec, Hooks, Rollback, TensorDataset, Trainer};
use trainmon_tests::{capture_logs, weights};

/// libtorch's random generator is one per process: the tests draw from it one at a time.
use trainmon_tests::SERIAL as GLOBAL_RNG;

/// 1000 samples of 20 features in batches of 20 (unshuffled): 50 batches an epoch.
const BATCH: usize = 20;

/// The clean samples, and their copy with planted bad ones: a NaN in sample 105 (batch 6) and
/// samples 400–419 (batch 21) scaled by 10⁴ (a loss hundreds of times the others').
fn data() -> (Tensor, Tensor, Tensor) {
    let _rng = GLOBAL_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::manual_seed(21);
    let x = Tensor::randn([1000, 20], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(2, [1000], (Kind::Int64, Device::Cpu));
    let planted = x.copy();
    let _ = planted.get(105).get(3).fill_(f64::NAN);
    let _ = planted.narrow(0, 400, 20).g_mul_scalar_(1e4);
    (x, planted, y)
}

/// The clean samples without those of batches 6 and 21.
fn without_bad_batches(x: &Tensor, y: &Tensor) -> TensorDataset {
    let keep: Vec<i64> = (0..1000)
        .filter(|i| !(100..120).contains(i) && !(400..420).contains(i))
        .collect();
    let keep = Tensor::from_slice(&keep);
    TensorDataset::new(x.index_select(0, &keep), y.index_select(0, &keep)).unwrap()
}

/// Trains a fresh two-layer model (weights drawn from seed 5) for `epochs`, unshuffled.
fn train(
    data: &TensorDataset,
    epochs: usize,
    rollback: Option<Rollback>,
    more: impl FnOnce(Trainer<'_>) -> Trainer<'_>,
) -> (trainmon::Result<trainmon::History>, Vec<f32>) {
    let _rng = GLOBAL_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::manual_seed(5);
    let vs = VarStore::new(Device::Cpu);
    let model = nn::seq()
        .add(nn::linear(vs.root() / "fc1", 20, 16, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(vs.root() / "fc2", 16, 2, Default::default()));
    let mut trainer = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-2)
        .epochs(epochs)
        .batch_size(BATCH)
        .shuffle(false)
        .hooks(Hooks::none());
    if let Some(rollback) = rollback {
        trainer = trainer.rollback(rollback);
    }
    let history = more(trainer).fit(data);
    (history, weights(&vs))
}

/// Each epoch's batches and metrics.
fn epochs(history: &trainmon::History) -> Vec<(usize, Vec<(String, f64)>)> {
    (history.epochs().iter())
        .map(|e| (e.batches(), e.metrics().map(|(n, v)| (n.to_owned(), v)).collect()))
        .collect()
}

#[test]
fn planted_bad_batches_are_skipped_and_the_run_equals_one_without_them() {
    let (x, planted, y) = data();
    let bad = TensorDataset::new(planted, y.shallow_clone()).unwrap();
    let rollback = Rollback::new().spike(6.0, 10).give_up_after(10, 1000);
    let files = tempfile::tempdir().unwrap();
    let (history, rolled) = train(&bad, 3, Some(rollback), |t| t.with(MetricFiles::new(files.path())));
    let history = history.unwrap();
    let skipped: Vec<(usize, Vec<usize>, Vec<i64>)> = (history.skipped().iter())
        .map(|s| (s.epoch(), s.batches().collect(), s.samples().to_vec()))
        .collect();
    let nan: Vec<i64> = (100..120).collect();
    let huge: Vec<i64> = (400..420).collect();
    let want: Vec<(usize, Vec<usize>, Vec<i64>)> = (1..=3)
        .flat_map(|e| [(e, vec![6], nan.clone()), (e, vec![21], huge.clone())])
        .collect();
    assert_eq!(skipped, want, "{:#?}", history.skipped());
    assert!(
        history.skipped()[0].reason().contains("NaN"),
        "{}",
        history.skipped()[0].reason()
    );
    assert!(
        history.skipped()[1].reason().contains("above the mean"),
        "{}",
        history.skipped()[1].reason()
    );
    assert!(history.stop_reason().is_none());

    let (clean, reference) = train(&without_bad_batches(&x, &y), 3, None, |t| t);
    let clean = clean.unwrap();
    assert_eq!(
        rolled, reference,
        "the same weights, bit for bit, as training without those batches"
    );
    assert_eq!(
        epochs(&history),
        epochs(&clean),
        "the same epoch logs: 48 batches, the same means"
    );

    let json = serde_json::to_value(&history).unwrap();
    assert_eq!(json["skipped"][1]["samples"][0], 400, "history.json keeps them");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(files.path().join("skipped.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "skipped.jsonl: a line per skip");
    assert_eq!((&lines[0]["epoch"], &lines[0]["samples"][5]), (&1.into(), &105.into()));
}

#[test]
fn too_many_rollbacks_stop_training_with_each_listed() {
    let (_, planted, y) = data();
    let bad = TensorDataset::new(planted, y).unwrap();
    // Batch 6 of every epoch is NaN: the third rollback, in epoch 3, is one too many.
    let ((history, _), logged) = capture_logs(|| {
        train(&bad, 5, Some(Rollback::new().give_up_after(3, 1000)), |t| {
            t.with(Summary::new())
        })
    });
    let history = history.unwrap();
    assert!(
        logged.iter().any(|(_, line)| line
            == "summary: 3 rollbacks skipped 3 batches: batch 6 of epoch 1 (the loss is NaN); batch 6 of epoch 2 \
                (the loss is NaN); batch 6 of epoch 3 (the loss is NaN)"),
        "{logged:?}"
    );

    assert_eq!(
        history.len(),
        3,
        "epochs 1 and 2 finished; epoch 3 stopped at its batch 6"
    );
    assert_eq!(history.last().unwrap().batches(), 5, "its batches before the 6th");
    let stop = history.stop_reason().expect("a stop");
    assert_eq!(stop.hook, "Rollback");
    assert_eq!(stop.cause, trainmon::StopCause::Rollbacks);
    assert_eq!(stop.epoch, 3);
    assert!(
        stop.reason.starts_with("3 rollbacks within 1000 steps: "),
        "{}",
        stop.reason
    );
    for epoch in 1..=3 {
        assert!(
            stop.reason
                .contains(&format!("batch 6 of epoch {epoch} (the loss is NaN)")),
            "{}",
            stop.reason
        );
    }
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let (x, _, y) = data();
    let data = TensorDataset::new(x, y).unwrap();
    for (rollback, says) in [
        (Rollback::new().snapshot_every(0), "snapshot_every must be at least 1"),
        (Rollback::new().spike(3.0, 1), "a window of at least 2"),
        (Rollback::new().spike(f64::NAN, 10), "sigmas above 0, not NaN"),
        (Rollback::new().give_up_after(0, 10), "at least 1 rollback"),
    ] {
        let (history, _) = train(&data, 1, Some(rollback), |t| t);
        match history {
            Err(Error::Config {
                setting: "rollback",
                message,
            }) => assert!(message.contains(says), "{message}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_fit_resumed_after_a_failure_skips_the_same_batches_bit_identically() {
    let (_, planted, y) = data();
    let bad = TensorDataset::new(planted, y).unwrap();
    // Snapshots every 4 steps, resume points every 3: the failure at step 70 (batch 20 of
    // epoch 2) comes after the point at step 69, within a snapshot window, and with the spike
    // rule's window of losses to restore.
    let rollback = windowed;
    // The uninterrupted fit with the same settings (a resume point is a snapshot too).
    let once = tempfile::tempdir().unwrap();
    let (whole, reference) = train(&bad, 3, Some(rollback()), |t| {
        t.resumable(once.path()).resumable_steps(3)
    });
    let whole = whole.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (failed, _) = train(&bad, 3, Some(rollback()), |t| {
        t.resumable(dir.path()).resumable_steps(3).add_hook(
            HookSpec::new(Event::BatchEnd, "crash"),
            |state: &trainmon::TrainState| {
                if state.global_step() == 70 {
                    Err("a crash at step 70".to_string())
                } else {
                    Ok(())
                }
            },
        )
    });
    assert!(matches!(failed, Err(Error::Hook { .. })), "{failed:?}");
    let (resumed, weights) = train(&bad, 3, Some(rollback()), |t| {
        t.resumable(dir.path()).resumable_steps(3)
    });
    let resumed = resumed.unwrap();
    assert_eq!(resumed.skipped(), whole.skipped(), "the same batches skipped");
    assert_eq!(epochs(&resumed), epochs(&whole));
    assert_eq!(weights, reference, "bit-identical to the uninterrupted fit");
    // A rollback skips the batches since the last snapshot: every 4 steps, and at each resume
    // point (every 3 steps).
    let first = &whole.skipped()[0];
    assert_eq!((first.epoch(), first.batches()), (1, 5..=6), "snapshot after batch 4");
    let (without_points, _) = train(&bad, 3, Some(rollback()), |t| t);
    let without_points = without_points.unwrap();
    let second = &without_points.skipped()[1];
    assert_eq!(
        (second.epoch(), second.batches()),
        (1, 19..=21),
        "snapshots every 4 steps: the last before batch 21 after batch 18 (step 16)"
    );
    assert_eq!(whole.skipped()[1].batches(), 21..=21, "a resume point after batch 20");
}

/// Snapshots every 4 steps and a spike rule, as the resume tests use them.
fn windowed() -> Rollback {
    Rollback::new().snapshot_every(4).spike(6.0, 10).give_up_after(10, 1000)
}

/// The step at which the child process of the SIGKILL test stalls, to be killed: after the
/// resume point at step 69, before the snapshot at step 72, after the spike of epoch 2.
const KILLED_AT: u64 = 70;

/// The child of `a_fit_killed_mid_window_with_sigkill_resumes_bit_identically`: trains with
/// resume points until step 70, says so in a file, and waits there to be killed. Does
/// nothing unless that test starts it.
#[test]
#[ignore = "a child process of another test"]
fn child_trains_until_killed() {
    let Some(dir) = std::env::var_os("TRAINMON_ROLLBACK_CHILD") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let (_, planted, y) = data();
    let bad = TensorDataset::new(planted, y).unwrap();
    let marker = dir.join("stalled");
    let _ = train(&bad, 3, Some(windowed()), |t| {
        t.resumable(dir.join("resume")).resumable_steps(3).add_hook(
            HookSpec::new(Event::BatchEnd, "stall"),
            move |state: &trainmon::TrainState| {
                if state.global_step() == KILLED_AT {
                    std::fs::write(&marker, b"").unwrap();
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                }
            },
        )
    });
    panic!("the child was to be killed at step {KILLED_AT}");
}

#[test]
fn a_fit_killed_mid_window_with_sigkill_resumes_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            trainmon_tests::test_name(module_path!(), "child_trains_until_killed").as_str(),
            "--ignored",
            "--test-threads",
            "1",
        ])
        .env("TRAINMON_ROLLBACK_CHILD", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !dir.path().join("stalled").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child ended before step {KILLED_AT}"
        );
        assert!(
            started.elapsed().as_secs() < 300,
            "the child did not reach step {KILLED_AT}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    assert!(!child.wait().unwrap().success());

    let (_, planted, y) = data();
    let bad = TensorDataset::new(planted, y).unwrap();
    let (resumed, weights) = train(&bad, 3, Some(windowed()), |t| {
        t.resumable(dir.path().join("resume")).resumable_steps(3)
    });
    let once = tempfile::tempdir().unwrap();
    let (whole, reference) = train(&bad, 3, Some(windowed()), |t| {
        t.resumable(once.path()).resumable_steps(3)
    });
    let (resumed, whole) = (resumed.unwrap(), whole.unwrap());
    assert_eq!(resumed.skipped(), whole.skipped(), "the same batches skipped");
    assert_eq!(epochs(&resumed), epochs(&whole));
    assert_eq!(weights, reference, "bit-identical to the uninterrupted fit");
    assert_eq!(
        resumed.skipped().len(),
        6,
        "two skips an epoch, before and after the kill"
    );
}

#[test]
fn consecutive_bad_batches_are_each_skipped_once() {
    let (_, planted, y) = data();
    // A NaN in batch 7 too, next to batch 6's.
    let _ = planted.get(125).get(0).fill_(f64::NAN);
    let bad = TensorDataset::new(planted.shallow_clone(), y.shallow_clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rollback = Rollback::new().give_up_after(10, 1000);
    let (history, rolled) = train(&bad, 2, Some(rollback), |t| t.resumable(dir.path()));
    let history = history.unwrap();
    let skipped: Vec<(usize, Vec<usize>)> = (history.skipped().iter())
        .map(|s| (s.epoch(), s.batches().collect()))
        .collect();
    assert_eq!(skipped, [(1, vec![6]), (1, vec![7]), (2, vec![6]), (2, vec![7])]);
    assert!(
        dir.path().join("resume.safetensors").exists(),
        "the epochs count as whole: their end wrote a resume point"
    );

    let keep: Vec<i64> = (0..1000).filter(|i| !(100..140).contains(i)).collect();
    let keep = Tensor::from_slice(&keep);
    let without = TensorDataset::new(planted.index_select(0, &keep), y.index_select(0, &keep)).unwrap();
    let (clean, reference) = train(&without, 2, None, |t| t);
    assert_eq!(rolled, reference, "bit-identical to training without batches 6 and 7");
    assert_eq!(epochs(&history), epochs(&clean.unwrap()));
}

#[test]
fn a_learning_rate_set_at_the_bad_batch_stays_after_the_rollback() {
    let (x, planted, y) = data();
    let bad = TensorDataset::new(planted.shallow_clone(), y.shallow_clone()).unwrap();
    // At the 6th batch of epoch 1 a hook raises the learning rate. There batch 6 is bad: the
    // rollback goes back to a snapshot taken before, at the old rate; the rate the hook set
    // must still apply from batch 7 on, as in the fit whose 6th batch is the next one.
    let rollback = Rollback::new().spike(6.0, 10).give_up_after(10, 1000);
    let (history, rolled) = train(&bad, 1, Some(rollback), raise_at_batch_6);
    let history = history.unwrap();
    assert_eq!(history.skipped().len(), 2, "batches 6 and 21");
    assert_eq!(history.epochs()[0].learning_rate(), 5e-2);
    let (clean, reference) = train(&without_bad_batches(&x, &y), 1, None, raise_at_batch_6);
    assert_eq!(epochs(&history), epochs(&clean.unwrap()));
    assert_eq!(
        rolled, reference,
        "bit-identical: the raised rate from the same batch on"
    );
}

/// A hook raising the learning rate at the 6th batch of epoch 1.
fn raise_at_batch_6(trainer: Trainer<'_>) -> Trainer<'_> {
    trainer.add_hook(
        HookSpec::new(Event::BatchBegin, "raise").filter(trainmon::Filter::ALWAYS.once(&[6][..])),
        |lr: trainmon::LearningRate, state: &trainmon::TrainState| {
            if state.epoch() == 1 {
                lr.set(5e-2)
            }
        },
    )
}
