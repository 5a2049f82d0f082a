//! `Loader`: a dataset whose batches worker threads build ahead of the training step. The same
//! batches in the same order and bit-identical fits for any number of workers, built off the
//! training thread while it trains; a failing or panicking batch names its samples; a stop or
//! an error mid-epoch ends the workers; bad settings are refused before any hook runs; a fit
//! resumed within an epoch ends as the uninterrupted one.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::Duration;
use tch::nn::{self, VarStore};
use tch::{Device, Tensor};
use trainmon::prelude::*;
use trainmon::{Dataset, Error, Event, HookSpec, Hooks, Loss, Metric};
use trainmon_tests::weights;

/// One test at a time: libtorch's generator is one per process, and the tests count the
/// process's loader threads (every test of the binary that trains holds this lock).
use trainmon_tests::serial;

/// Features per sample.
const FEATURES: usize = 20;

/// A call of `Samples::batch`: the indices asked for, and the thread that asked.
#[derive(Clone, Debug)]
struct Call {
    indices: Vec<i64>,
    thread: ThreadId,
    name: Option<String>,
}

/// The calls a dataset answered, in the order its answers were ready; a condition variable
/// signalled at each.
#[derive(Default)]
struct Log {
    calls: Mutex<Vec<Call>>,
    answered: Condvar,
}

impl Log {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

/// What goes wrong with a batch.
#[derive(Clone, Copy)]
enum Fault {
    None,
    /// The batch with this sample returns an error.
    Fail(i64),
    /// The batch with this sample panics.
    Panic(i64),
    /// Every batch has one target fewer than features.
    ShortTargets,
}

/// Samples computed from their index with Rust arithmetic (the same bits on any thread):
/// features in [-1, 1], and targets `[class, index / 1024]` for an MSE loss — the second lets
/// a metric see which samples a batch holds.
struct Samples {
    len: usize,
    log: Arc<Log>,
    /// Time a batch takes (I/O, say), on top of computing it.
    delay: Duration,
    /// Whether batches take 0 to 1.5 ms more, by their first sample: workers then finish them
    /// out of order.
    jitter: bool,
    fault: Fault,
}

impl Samples {
    fn new(len: usize, log: &Arc<Log>) -> Self {
        Samples {
            len,
            log: Arc::clone(log),
            delay: Duration::ZERO,
            jitter: false,
            fault: Fault::None,
        }
    }
}

impl Dataset for Samples {
    fn len(&self) -> usize {
        self.len
    }

    fn batch(&self, indices: &[i64]) -> trainmon::Result<(Tensor, Tensor)> {
        let jitter = Duration::from_micros(self.jitter as u64 * (indices[0] as u64 * 7919 % 4) * 500);
        std::thread::sleep(self.delay + jitter);
        match self.fault {
            Fault::Fail(sample) if indices.contains(&sample) => {
                return Err(Error::Data(format!("sample {sample} cannot be decoded")));
            }
            Fault::Panic(sample) => assert!(!indices.contains(&sample), "sample {sample} is corrupt"),
            _ => {}
        }
        let mut features = Vec::with_capacity(indices.len() * FEATURES);
        let mut targets = Vec::with_capacity(indices.len() * 2);
        for &i in indices {
            let row: Vec<f32> = (0..FEATURES as i64)
                .map(|j| ((i * 2_654_435_761 + j * 40_503) % 10_007) as f32 / 10_007.0 * 2.0 - 1.0)
                .collect();
            targets.extend([f32::from(row[0] + row[1] > 0.0), i as f32 / 1024.0]);
            features.extend(row);
        }
        let rows = indices.len() as i64;
        let x = Tensor::from_slice(&features).view([rows, FEATURES as i64]);
        let mut y = Tensor::from_slice(&targets).view([rows, 2]);
        if let Fault::ShortTargets = self.fault {
            y = y.narrow(0, 0, rows - 1);
        }
        let thread = std::thread::current();
        let call = Call {
            indices: indices.to_vec(),
            thread: thread.id(),
            name: thread.name().map(str::to_owned),
        };
        self.log.calls.lock().unwrap().push(call);
        self.log.answered.notify_all();
        Ok((x, y))
    }
}

/// A metric that keeps the samples of each batch the loop trained (or validated) on, in order.
struct Delivered(Arc<Mutex<Vec<Vec<i64>>>>);

impl Metric for Delivered {
    fn name(&self) -> &str {
        "delivered"
    }
    fn update(&mut self, _: &Tensor, targets: &Tensor) -> Result<(), tch::TchError> {
        let ids = targets.f_select(1, 1)?.f_mul_scalar(1024.0)?.f_round()?;
        self.0
            .lock()
            .unwrap()
            .push(Vec::<f32>::try_from(&ids)?.iter().map(|&i| i as i64).collect());
        Ok(())
    }
    fn compute(&self) -> Result<f64, tch::TchError> {
        Ok(self.0.lock().unwrap().len() as f64)
    }
    fn reset(&mut self) {}
}

/// A model with dropout (libtorch's generator matters), weights drawn from seed 3.
fn model(vs: &VarStore) -> nn::SequentialT {
    tch::manual_seed(3);
    nn::seq_t()
        .add(nn::linear(vs.root() / "fc1", FEATURES as i64, 16, Default::default()))
        .add_fn(|x| x.relu())
        .add_fn_t(|x, train| x.dropout(0.2, train))
        .add(nn::linear(vs.root() / "fc2", 16, 2, Default::default()))
}

/// An epoch without its wall time: number, batches, metrics (bits).
type Epoch = (usize, usize, Vec<(String, u64)>);

/// What a fit ends with that must not depend on the workers.
#[derive(Debug, PartialEq)]
struct Outcome {
    epochs: Vec<Epoch>,
    weights: Vec<u32>,
}

fn outcome(history: &History, vs: &VarStore) -> Outcome {
    Outcome {
        epochs: history
            .epochs()
            .iter()
            .map(|e| {
                let values = e.metrics().map(|(n, v)| (n.to_owned(), v.to_bits())).collect();
                (e.epoch(), e.batches(), values)
            })
            .collect(),
        weights: weights(vs).iter().map(|w| w.to_bits()).collect(),
    }
}

/// A trainer of `model` on the MSE loss: 3 epochs of batches of 32, shuffled and seeded, a 0.2
/// validation split, no registered hook.
fn trainer<'a>(vs: &'a VarStore, model: &'a nn::SequentialT) -> Trainer<'a> {
    Trainer::new(vs, model)
        .optimizer(nn::Adam::default(), 1e-2)
        .loss(Loss::Mse)
        .epochs(3)
        .batch_size(32)
        .shuffle(true)
        .validation_split(0.2)
        .seed(7)
        .hooks(Hooks::none())
}

/// Threads of this process named as a loader's workers (`trainmon-loader-N`; the kernel keeps
/// the first 15 bytes of a name).
fn loader_threads() -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").expect("Linux's /proc");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("trainmon-loade"))
        .count()
}

/// Fits `data`; the outcome, and the batches the loop took, in order.
fn fit(data: &impl Dataset) -> (Outcome, Vec<Vec<i64>>) {
    let vs = VarStore::new(Device::Cpu);
    let model = model(&vs);
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&delivered);
    let history = trainer(&vs, &model)
        .metric(move || Delivered(Arc::clone(&seen)))
        .fit(data)
        .unwrap();
    let delivered = delivered.lock().unwrap().clone();
    (outcome(&history, &vs), delivered)
}

#[test]
fn any_number_of_workers_trains_on_the_same_batches_to_the_same_bits() {
    let _serial = serial();
    let log = Arc::new(Log::default());
    let (reference, delivered) = fit(&Samples::new(500, &log));
    let calls = log.calls();
    // 400 training samples in 13 batches, 100 validation samples in 4, over 3 epochs.
    assert_eq!(delivered.len(), 3 * (13 + 4));
    assert_eq!(reference.epochs[0].1, 13);
    let me = std::thread::current().id();
    assert!(
        calls.iter().all(|c| c.thread == me),
        "no worker: built on the training thread"
    );
    let asked: Vec<Vec<i64>> = calls.iter().map(|c| c.indices.clone()).collect();
    assert_eq!(asked, delivered, "asked for each batch when needed, in order");
    let mut first: Vec<i64> = delivered[..13].concat();
    first.sort_unstable();
    assert_eq!(
        first,
        (0..400).collect::<Vec<_>>(),
        "an epoch: each training sample once"
    );
    assert_ne!(delivered[..13].concat(), (0..400).collect::<Vec<_>>(), "shuffled");

    for workers in 1..=3 {
        let log = Arc::new(Log::default());
        let mut samples = Samples::new(500, &log);
        samples.jitter = true;
        let loader = Loader::new(samples).workers(workers);
        let (outcome, got) = fit(&loader);
        assert_eq!(got, delivered, "{workers} workers: the same batches in the same order");
        assert_eq!(
            outcome, reference,
            "{workers} workers: bit-identical history and weights"
        );
        let calls = log.calls();
        let mut built: Vec<Vec<i64>> = calls.iter().map(|c| c.indices.clone()).collect();
        let mut want = delivered.clone();
        built.sort();
        want.sort();
        assert_eq!(built, want, "{workers} workers: each batch built once");
        let names: Vec<String> = (1..=workers).map(|w| format!("trainmon-loader-{w}")).collect();
        for call in &calls {
            assert_ne!(call.thread, me, "{workers} workers: built off the training thread");
            assert!(
                call.name.as_ref().is_some_and(|name| names.contains(name)),
                "{workers} workers: built on {:?}",
                call.name
            );
        }
        assert_eq!(loader_threads(), 0, "the workers ended with their epochs");
    }
}

/// Whether, at the end of each training batch's step, the next batch of the epoch was built
/// already. With a loader, the step waits for it (up to 10 s, a failure): it must come without
/// the training thread moving on. Without, it says whether it was there.
fn built_during_the_step(data: &impl Dataset, log: &Arc<Log>, wait: bool) -> Vec<bool> {
    let vs = VarStore::new(Device::Cpu);
    let model = model(&vs);
    let answers = Arc::new(Mutex::new(Vec::new()));
    let (log, kept) = (Arc::clone(log), Arc::clone(&answers));
    // 192 samples, batches of 32: 6 an epoch, in order.
    trainer(&vs, &model)
        .epochs(2)
        .shuffle(false)
        .validation(&Samples::new(32, &Arc::new(Log::default())))
        .add_hook(
            HookSpec::new(Event::BatchEnd, "next_built"),
            move |state: &TrainState| {
                if state.batch() == 6 {
                    return;
                }
                // Built so far: the earlier epochs' batches and this epoch's up to the next one.
                let next = (state.epoch() - 1) * 6 + state.batch() + 1;
                let calls = log.calls.lock().unwrap();
                let deadline = Duration::from_secs(if wait { 10 } else { 0 });
                let (calls, _) = log
                    .answered
                    .wait_timeout_while(calls, deadline, |calls| calls.len() < next)
                    .unwrap();
                kept.lock().unwrap().push(calls.len() >= next);
            },
        )
        .fit(data)
        .unwrap();
    let answers = answers.lock().unwrap().clone();
    answers
}

#[test]
fn batches_are_built_while_the_training_thread_trains() {
    let _serial = serial();
    let log = Arc::new(Log::default());
    let answers = built_during_the_step(&Samples::new(192, &log), &log, false);
    assert_eq!(
        answers, [false; 10],
        "no worker: the next batch is built after the step"
    );
    let log = Arc::new(Log::default());
    let mut slow = Samples::new(192, &log);
    slow.delay = Duration::from_millis(5);
    let loader = Loader::new(slow).workers(1).prefetch(1);
    let answers = built_during_the_step(&loader, &log, true);
    assert_eq!(
        answers, [true; 10],
        "one worker: the next batch is built during the step"
    );
    let me = std::thread::current().id();
    assert!(log.calls().iter().all(|c| c.thread != me));
}

/// The error of a fit of `data` that must fail.
fn fit_error(data: &impl Dataset) -> Error {
    let vs = VarStore::new(Device::Cpu);
    let model = model(&vs);
    trainer(&vs, &model).fit(data).expect_err("the fit fails")
}

#[test]
fn a_batch_failing_or_panicking_on_a_worker_is_an_error_naming_its_samples() {
    let _serial = serial();
    for (fault, workers, cause) in [
        (
            Fault::Fail(123),
            2,
            "(32 samples): invalid dataset: sample 123 cannot be decoded",
        ),
        (Fault::Panic(77), 2, "(32 samples): panicked on loader worker "),
        (
            Fault::Fail(123),
            0,
            "(32 samples): invalid dataset: sample 123 cannot be decoded",
        ),
        (Fault::Panic(77), 0, "(32 samples): panicked: sample 77 is corrupt"),
    ] {
        let log = Arc::new(Log::default());
        let mut samples = Samples::new(500, &log);
        samples.fault = fault;
        let err = fit_error(&Loader::new(samples).workers(workers));
        let message = format!("{err:#}");
        let sample = match fault {
            Fault::Fail(sample) | Fault::Panic(sample) => sample,
            _ => unreachable!(),
        };
        let Error::Batch { indices, .. } = &err else {
            panic!("{workers} workers: a batch error, not {err:?}");
        };
        assert!(indices.contains(&sample), "{workers} workers: {indices:?}");
        assert_eq!(indices.len(), 32, "{workers} workers: {indices:?}");
        let named = format!(
            "the dataset could not build the batch of samples [{}, …] (32 samples)",
            indices[..6].iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
        );
        assert!(message.starts_with(&named), "{workers} workers: {message}");
        assert!(message.contains(cause), "{workers} workers: {cause:?} in {message}");
        if let Fault::Panic(sample) = fault {
            assert!(message.ends_with(&format!(": sample {sample} is corrupt")), "{message}");
        }
        assert_eq!(loader_threads(), 0, "{workers} workers: ended");
    }
}

#[test]
fn a_stop_or_an_error_mid_epoch_ends_the_workers_at_once() {
    let _serial = serial();
    for stop in [true, false] {
        let log = Arc::new(Log::default());
        let mut slow = Samples::new(16_000, &log);
        // 400 batches of 100 ms an epoch: 20 s for 2 workers.
        slow.delay = Duration::from_millis(100);
        let loader = Loader::new(slow).workers(2).prefetch(4);
        let vs = VarStore::new(Device::Cpu);
        let model = model(&vs);
        let fit = trainer(&vs, &model)
            .validation(&Samples::new(32, &Arc::default()))
            .add_hook(
                HookSpec::new(Event::BatchEnd, "enough"),
                move |state: &TrainState| match (state.batch(), stop) {
                    (2, true) => Ok(Control::stop("two batches are enough")),
                    (2, false) => Err("the step failed".to_owned()),
                    _ => Ok(Control::Continue),
                },
            )
            .fit(&loader);
        match fit {
            Ok(history) => assert!(stop && history.stop_reason().is_some()),
            Err(err) => assert!(!stop && format!("{err:#}").contains("the step failed"), "{err:#}"),
        }
        let built = log.calls().len();
        // The fit ended at once, not after the epoch's 400 batches (20 s): the workers built
        // the 2 taken and at most 4 ahead, and were joined.
        assert!(built <= 2 + 4, "the 2 taken and at most 4 ahead: {built}");
        assert_eq!(loader_threads(), 0, "joined");
    }
}

#[test]
fn bad_settings_and_bad_batches_are_errors_before_or_at_the_first_batch() {
    let _serial = serial();
    let cases: [(Loader<Samples>, &str); 2] = [
        (
            Loader::new(Samples::new(500, &Arc::default())).workers(0).prefetch(4),
            "prefetch needs at least one worker",
        ),
        (
            Loader::new(Samples::new(500, &Arc::default())).workers(2).prefetch(0),
            "prefetch must be at least 1 with `workers(2)`, got 0",
        ),
    ];
    for (loader, want) in cases {
        let vs = VarStore::new(Device::Cpu);
        let model = model(&vs);
        let before = weights(&vs);
        let began = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&began);
        let err = trainer(&vs, &model)
            .add_hook(HookSpec::new(Event::TrainBegin, "began"), move || {
                flag.store(true, Ordering::SeqCst)
            })
            .fit(&loader)
            .unwrap_err();
        assert!(
            matches!(err, Error::Config { setting, .. } if setting.starts_with("Loader::")),
            "{err:?}"
        );
        assert!(err.to_string().contains(want), "{want:?} in {err}");
        assert!(!began.load(Ordering::SeqCst), "refused before any hook ran");
        assert_eq!(weights(&vs), before);
        assert!(loader.dataset().log.calls().is_empty(), "no batch built");
    }
    for workers in [0, 2] {
        let log = Arc::new(Log::default());
        let mut short = Samples::new(500, &log);
        short.fault = Fault::ShortTargets;
        let err = fit_error(&Loader::new(short).workers(workers));
        let message = err.to_string();
        assert!(matches!(err, Error::Data(_)), "{err:?}");
        assert!(
            message.contains("the batch of samples [")
                && message.contains(
                    "(32 samples) has features and targets that differ in their first dimension: 32 \
                     (features of shape [32, 20]) and 31 (targets of shape [31, 2])"
                ),
            "{workers} workers: {message}"
        );
        assert_eq!(loader_threads(), 0);
    }
}

/// Fits `data` resumably into `dir` (a point every 3 steps), failing after batch `crash` =
/// (epoch, batch) when given.
fn fit_resumably(data: &impl Dataset, dir: &Path, crash: Option<(usize, usize)>) -> trainmon::Result<Outcome> {
    let vs = VarStore::new(Device::Cpu);
    let model = model(&vs);
    let history = trainer(&vs, &model)
        .epochs(4)
        .resumable(dir)
        .resumable_steps(3)
        .add_hook(
            HookSpec::new(Event::BatchEnd, "crash"),
            move |state: &TrainState| match crash == Some((state.epoch(), state.batch())) {
                true => Err(format!("the process dies after batch {}", state.batch())),
                false => Ok(()),
            },
        )
        .fit(data)?;
    Ok(outcome(&history, &vs))
}

#[test]
fn a_fit_resumed_within_an_epoch_ends_as_the_uninterrupted_one() {
    let _serial = serial();
    let loader = Loader::new(Samples::new(500, &Arc::default())).workers(2);
    let whole = tempfile::tempdir().unwrap();
    let reference = fit_resumably(&loader, whole.path(), None).unwrap();
    let plain = tempfile::tempdir().unwrap();
    assert_eq!(
        fit_resumably(loader.dataset(), plain.path(), None).unwrap(),
        reference,
        "the same as without workers"
    );
    // 13 batches an epoch: after batch 8 of epoch 2 (step 21), the last point is after step 18,
    // batch 5 of epoch 2; the resumed fit builds from batch 6 of the same order on.
    let dir = tempfile::tempdir().unwrap();
    let err = fit_resumably(&loader, dir.path(), Some((2, 8))).unwrap_err();
    assert!(format!("{err:#}").contains("dies after batch 8"), "{err:#}");
    let calls = loader.dataset().log.calls().len();
    let resumed = fit_resumably(&loader, dir.path(), None).unwrap();
    assert_eq!(resumed, reference, "bit-identical to the uninterrupted fit");
    let built = loader.dataset().log.calls().len() - calls;
    assert_eq!(
        built,
        (13 - 5) + 4 + 2 * (13 + 4),
        "the rest of epoch 2 and its validation, then epochs 3 and 4"
    );
}
