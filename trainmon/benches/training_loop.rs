//! The training-loop benchmark: trainmon's `Trainer` against hand-written tch loops doing the
//! same work (and, when `TRAINMON_PYTHON` names a Python with torch, PyTorch's plain loop from
//! `peers/plain.py`), on the three workloads of the project's benchmark:
//!
//! | name | samples × features | classes | batch | model | epochs |
//! |---|---|---|---|---|---|
//! | seed | 1000 × 20 | 2 | 32 | Linear(20, 2) | 5 |
//! | tiny | 100000 × 20 | 2 | 32 | Linear(20, 2) | 2 |
//! | mlp | 60000 × 784 | 10 | 64 | Linear(784, 256) → ReLU → Linear(256, 10) | 2 |
//!
//! Every run: standard normal features, integer labels, shuffled batches, cross-entropy, Adam
//! 1e-3, a batch logger every 10 batches, an epoch logger and an early-stopping check that does
//! not trigger. The variants:
//!
//! - `trainmon`: `Trainer::fit` with the hooks below (eager reads, the CPU default);
//! - `trainmon_lazy`: the same with `lazy_reads(true)` (running sums kept on the device);
//! - `minimal`: the baseline, the fastest honest hand-written tch loop: tch's Adam, one
//!   `randperm` + `index_select` per epoch, batches by `narrow`, the loss sum and the count of
//!   right answers kept as tensors and read to the host only where the logger prints (every 10
//!   batches) and at the epoch's end;
//! - `minimal_optim`: the same loop with trainmon's own Adam (`trainmon::optim`, which the
//!   trainer runs): against `trainmon`, what the loop costs, the optimizer aside;
//! - `handwritten`: the loop of the tutorial written with tch (`Iter2`, every batch's loss and
//!   accuracy read to the host), tch's Adam;
//! - `handwritten_optim`: the same with trainmon's own Adam (`trainmon::optim`): the loop's
//!   cost alone, against `trainmon`;
//! - `trainmon_step`: `Trainer::fit_steps` with the classifier written as a training step of
//!   one's own (`TrainStep`: the forward pass and the cross-entropy, the outputs handed to an
//!   `Accuracy` metric), against the same step hand-written (`handwritten_optim`: `step_ratio`)
//!   and against the trainer's own step (`step_vs_trainmon`).
//!
//! How it measures (the default, `alternating`): one process builds the data once and each
//! variant's model once (same initial weights), then runs every variant on its own thread, all
//! pinned to one CPU (with `--threads 1`), taking turns: a turn ends at a batch the logger prints, every `--turn N`
//! such marks (3: 30 steps), and the next variant's thread runs — in cycles of one turn each,
//! the first in the order of `VARIANTS`, then each in a random order (fixed seed) that never
//! gives a variant two turns in a row (its second would find the caches warm with its own
//! data): every variant follows every other about equally often. So the
//! variants go through their segments side by side, milliseconds apart: whatever slows the
//! machine down (the other core's work thrashing shared caches and memory makes one epoch's CPU
//! time vary by ±10 % and more) slows them alike. Each variant trains *segments*, one after the
//! other: one `fit` for trainmon, the same epochs by hand for the others; the workload's whole
//! training for `seed` (5 epochs, 160 steps), one epoch for `tiny` and `mlp`
//! (`--segment-epochs N`). Segment `k` of every variant ran alongside segment `k` of the others.
//! After a warm-up (a round of segments, and at least 3 seconds), `--rounds N` rounds; by
//! default they fill `--budget` seconds (180) per workload, at least 10 and at most 400.
//!
//! - **Threads**: libtorch runs with 1 intra-op thread for every variant (`--threads N`). On a
//!   shared 2-core machine a second thread waits for whatever else the machine runs, at every
//!   parallel kernel, which makes every variant noisier and slower (several times slower while
//!   another build runs); one thread also keeps the host-side costs this benchmark is about
//!   from being hidden by parallel arithmetic.
//! - **Clock**: with 1 thread every kernel (the backward pass too) runs on the calling thread,
//!   so a segment is timed by that thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`, user and
//!   system): time the scheduler gives to another process is not counted. `--clock wall` times
//!   by the wall clock (the default with more threads, where it is the only honest clock; the
//!   turns then still keep each variant's time its own); the wall-clock medians are printed
//!   beside, in brackets.
//! - **Statistics**: per variant, the median µs/step over the rounds, the IQR (p25–p75: the
//!   spread of single segments) and the 95 % confidence interval of the median (order
//!   statistics, distribution-free: how well the median itself is known). Ratios are the same
//!   over paired ratios: segment `k` of one variant over segment `k` of the other (in
//!   `--processes` mode, over the mean of the other's runs just before and after). `--dump
//!   FILE` appends every segment (workload, round, variant, steps, CPU µs, wall µs, steady
//!   µs/step) to a CSV file.
//! - **Turns**: a thread's time is its own: CPU time goes on only while it runs, and its wall
//!   clock counts its turns only; the CPU time of handing a turn over (two system calls) is
//!   left out. The first steps of a turn find caches the other variants used: absolute figures
//!   come out somewhat above those of a variant run alone (`--only`), alike for every variant;
//!   longer turns (`--turn`) shrink that, and widen the pairing.
//! - **Steady state**: every variant marks the batches its logger prints (every 10th) at the
//!   same point of the step, and a segment's blocks of 10 steps from mark to mark within an
//!   epoch are timed (a system call every 10 steps, alike for all). A segment's steady state is
//!   its median block over 10: what a step costs, one slow moment of the machine or per-epoch
//!   work aside; its ratios (`*_steady`) compare the per-step costs alone. `beyond` is a
//!   segment's time beyond its steps at the steady rate (its time outside the blocks, less the
//!   steps there at the steady rate): the setup, the shuffles, the epoch ends.
//! - **Setup**: a trainmon segment is a whole `fit`, its setup included (the NaN check over the
//!   features, instantiating the hooks, timing the first 20 batches…); `trainmon_fit_setup_us`
//!   is the time of a `fit` stopped by a hook at `on_train_begin`, timed apart after the rounds (alone, not paired), so
//!   that it can be told apart (a workload's fit pays it once for all its epochs).
//! - **Memory**: peak memory is measured apart, by a short pass that runs each variant's whole
//!   workload once in its own process (`--memory-runs N`, 0: none); that pass also runs the
//!   Python loop, if any (its µs/step is its own wall-clock figure).
//!
//! `--processes` runs the benchmark's former way instead: every measurement in its own
//! process, the variants interleaved round after round, with peak memory per process.
//! `--only VARIANT` runs a single variant in-process, round after round (for a profiler);
//! `--variants a,b` picks variants (beside those above, `minimal_eager`: `minimal` reading the
//! loss and the right answers to the host at every batch).
//!
//! Prints per workload the medians with their spread to stderr, then one JSON line per
//! workload to stdout, last. Keys of the former benchmark keep their meaning: `ratio` =
//! trainmon / handwritten, `loop_ratio` = trainmon / handwritten_optim; new:
//! `minimal_us_per_step`, `minimal_optim_us_per_step`, `ratio_minimal` (trainmon / minimal),
//! `ratio_minimal_lazy` (trainmon_lazy / minimal), `ratio_minimal_optim` and
//! `ratio_minimal_optim_lazy` (the same against minimal_optim), `lazy_ratio` (trainmon_lazy /
//! trainmon), `step_ratio` (trainmon_step / handwritten_optim), `step_vs_trainmon`, each median with `_iqr` `[p25, p75]` and `_ci95` `[lo, hi]` keys (and those for
//! every former median), `ratio_minimal_wall`, `trainmon_steady_us_per_step` and
//! `trainmon_beyond_us_per_segment` (and the same for trainmon_lazy, minimal, minimal_optim),
//! `ratio_*_steady` (the steady state), `trainmon_fit_setup_us`, `mode`, `clock`, `threads`,
//! `segment_epochs`.
//!
//! `cargo xtask bench [--rounds N] [--workloads seed,tiny,mlp] [--budget SECONDS]
//! [--segment-epochs N] [--threads N] [--clock cpu|wall] [--memory-runs N] [--variants a,b]
//! [--turn N] [--processes] [--only VARIANT] [--dump FILE]`

use std::cell::RefCell;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tch::nn::{self, Module, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};
use trainmon::optim::OptimizerConfig as _;
use trainmon::prelude::*;

struct Workload {
    name: &'static str,
    samples: i64,
    features: i64,
    classes: i64,
    batch: usize,
    hidden: Option<i64>,
    epochs: usize,
    /// Epochs in one segment of the alternating mode (by default).
    segment_epochs: usize,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "seed",
        samples: 1000,
        features: 20,
        classes: 2,
        batch: 32,
        hidden: None,
        epochs: 5,
        segment_epochs: 5,
    },
    Workload {
        name: "tiny",
        samples: 100_000,
        features: 20,
        classes: 2,
        batch: 32,
        hidden: None,
        epochs: 2,
        segment_epochs: 1,
    },
    Workload {
        name: "mlp",
        samples: 60_000,
        features: 784,
        classes: 10,
        batch: 64,
        hidden: Some(256),
        epochs: 2,
        segment_epochs: 1,
    },
];

/// The variants, in the order of a round before rotation.
const VARIANTS: [&str; 7] = [
    "minimal",
    "trainmon",
    "trainmon_step",
    "minimal_optim",
    "trainmon_lazy",
    "handwritten_optim",
    "handwritten",
];

/// Variants that can be asked for by name beside [`VARIANTS`]: `minimal_eager` is `minimal`
/// reading the loss and the right answers to the host at every batch, as trainmon's eager
/// reads do (to measure what that costs without trainmon around it).
const EXTRA_VARIANTS: [&str; 1] = ["minimal_eager"];

/// The pseudo-variant timing a `fit` stopped by a hook at `on_train_begin`: trainmon's per-fit
/// setup.
const SETUP: &str = "trainmon_setup";

/// Early stopping's patience: larger than the epochs, so it never triggers.
const PATIENCE: u32 = 100;

// The hooks of the benchmark, for the trainmon variants.

#[on_epoch_begin]
fn epoch_starting(state: &TrainState) {
    tracing::info!("Epoch {} starting.", state.epoch());
}

#[on_batch_end(every = 10)]
fn log_batch(batch: &BatchLogs, state: &TrainState) {
    mark(state.epoch());
    tracing::info!(
        "Batch {}: Loss = {:.4}, Accuracy = {:.4}",
        batch.number(),
        batch.loss(),
        batch.accuracy()
    );
}

#[on_epoch_end(priority = 1)]
fn epoch_finished(epoch: &EpochLogs) {
    tracing::info!(
        "Epoch {} finished in {:.2} seconds.",
        epoch.epoch(),
        epoch.time().as_secs_f64()
    );
}

#[on_epoch_end]
fn early_stopping(epoch: &EpochLogs, mut best: Local<Option<f64>>, mut counter: Local<u32>) -> Control {
    match *best {
        Some(b) if epoch.loss() >= b => {
            *counter += 1;
            if *counter >= PATIENCE {
                return Control::stop("no improvement");
            }
        }
        _ => (*best, *counter) = (Some(epoch.loss()), 0),
    }
    Control::Continue
}

fn data(w: &Workload) -> (Tensor, Tensor) {
    tch::manual_seed(0);
    let x = Tensor::randn([w.samples, w.features], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(w.classes, [w.samples], (Kind::Int64, Device::Cpu));
    (x, y)
}

/// A variable store and its model, with the same initial weights every time.
fn model(w: &Workload) -> (nn::VarStore, nn::Sequential) {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let net = match w.hidden {
        Some(h) => nn::seq()
            .add(nn::linear(&root / "fc1", w.features, h, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(&root / "fc2", h, w.classes, Default::default())),
        None => nn::seq().add(nn::linear(&root / "fc", w.features, w.classes, Default::default())),
    };
    (vs, net)
}

/// The early-stopping check of the hand-written loops: whether to stop after an epoch.
#[derive(Default)]
struct EarlyStop {
    best: Option<f64>,
    counter: u32,
}

impl EarlyStop {
    fn stop(&mut self, loss: f64) -> bool {
        match self.best {
            Some(b) if loss >= b => {
                self.counter += 1;
                self.counter >= PATIENCE
            }
            _ => {
                (self.best, self.counter) = (Some(loss), 0);
                false
            }
        }
    }
}

/// The optimizer step of the `handwritten` loops: tch's Adam, or the one the trainer runs.
enum Step {
    Tch(nn::Optimizer),
    Own(Box<dyn trainmon::optim::Optimizer>),
}

impl Step {
    fn backward_step(&mut self, loss: &Tensor) {
        match self {
            Step::Tch(opt) => opt.backward_step(loss),
            Step::Own(opt) => {
                opt.zero_grad().unwrap();
                loss.backward();
                opt.step().unwrap();
            }
        }
    }
}

/// A mark: the epoch, this thread's CPU seconds at the mark and after its turn came back
/// (the same without turns), and its own wall-clock seconds ([`own_wall`]).
type Mark = (usize, f64, f64, f64);

thread_local! {
    /// The marks of the current segment, on this thread.
    static MARKS: RefCell<Vec<Mark>> = const { RefCell::new(Vec::new()) };
    /// This thread's place in the turns of the alternating mode, if it takes turns.
    static TURNS: RefCell<Option<Turns>> = const { RefCell::new(None) };
}

/// The alternating mode's turns: one thread per variant, only the one whose turn it is runs.
struct Baton {
    state: Mutex<BatonState>,
    /// One per variant: only the thread whose turn comes is woken.
    turned: Vec<Condvar>,
}

/// Whose turn it is, and which variants are done.
struct BatonState {
    /// The variants in this cycle's order of turns, and the place in it.
    order: Vec<usize>,
    place: usize,
    done: Vec<bool>,
    /// Draws each cycle's order (xorshift64, fixed seed: the same sequence every run).
    rng: u64,
}

impl BatonState {
    fn whose(&self) -> usize {
        self.order[self.place]
    }

    /// The next turn; after the last of a cycle, a new cycle in a new order.
    fn advance(&mut self) {
        self.place += 1;
        if self.place < self.order.len() {
            return;
        }
        self.place = 0;
        let last = *self.order.last().expect("at least one variant");
        let n = self.order.len();
        for i in (1..n).rev() {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            self.order.swap(i, (self.rng % (i as u64 + 1)) as usize);
        }
        if n > 1 && self.order[0] == last {
            self.order.swap(0, 1 + (self.rng % (n as u64 - 1)) as usize);
        }
    }
}

impl Baton {
    /// Turns in cycles: every variant once per cycle, each cycle in a random order (the first
    /// cycle in the given one), never the same variant twice in a row. So every variant
    /// follows every other about equally often (the caches a turn starts with are those the
    /// previous variant left), and none gets two turns back to back, whose second would start
    /// with its own data in the caches.
    fn new(variants: usize) -> Self {
        Baton {
            state: Mutex::new(BatonState {
                order: (0..variants).collect(),
                place: 0,
                done: vec![false; variants],
                rng: 0x9E37_79B9_7F4A_7C15,
            }),
            turned: (0..variants).map(|_| Condvar::new()).collect(),
        }
    }

    /// Waits for variant `me`'s turn.
    fn wait(&self, me: usize) {
        let mut state = self.state.lock().unwrap();
        while state.whose() != me {
            state = self.turned[me].wait(state).unwrap();
        }
    }

    /// Ends the current turn (and, with `done`, that variant's part), giving the next turn to
    /// the next variant that is not done.
    fn pass(&self, done: Option<usize>) {
        let mut state = self.state.lock().unwrap();
        if let Some(me) = done {
            state.done[me] = true;
        }
        if state.done.iter().all(|&d| d) {
            return;
        }
        // The next variant not done, not the one that just ran while another is left.
        let previous = state.whose();
        let others = (0..state.done.len()).any(|v| v != previous && !state.done[v]);
        loop {
            state.advance();
            let next = state.whose();
            if !state.done[next] && (next != previous || !others) {
                break;
            }
        }
        let next = state.whose();
        drop(state);
        self.turned[next].notify_one();
    }
}

/// A thread's place in the turns.
struct Turns {
    baton: Arc<Baton>,
    me: usize,
    /// Marks per turn.
    turn: usize,
    marks: usize,
    /// Wall-clock time of its turns before the current one, and when the current one began.
    held: Duration,
    resumed: Instant,
    /// CPU seconds spent handing turns over (system calls), left out of its segments' time.
    handing: f64,
}

/// CPU seconds this thread has spent handing turns over.
fn handing_seconds() -> f64 {
    TURNS.with(|t| t.borrow().as_ref().map_or(0.0, |t| t.handing))
}

/// This thread's own wall-clock seconds: the time of its turns only, when it takes turns.
fn own_wall() -> f64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    TURNS.with(|t| match &*t.borrow() {
        Some(t) => (t.held + t.resumed.elapsed()).as_secs_f64(),
        None => start.elapsed().as_secs_f64(),
    })
}

/// Marks a batch the batch logger prints (every 10th), in every variant at the same point of
/// the step (before the logger reads the running values): the *steady state* is timed from
/// mark to mark within an epoch, 10 whole steps (one of them logging) at a time. In the
/// alternating mode a turn ends at a mark. It costs a system call every 10 batches (and the
/// hand-over, in that mode), alike in every variant.
fn mark(epoch: usize) {
    let cpu = thread_cpu_seconds();
    let wall = own_wall();
    let after = TURNS.with(|t| {
        let mut t = t.borrow_mut();
        let Some(t) = t.as_mut() else { return cpu };
        t.marks += 1;
        if t.marks % t.turn != 0 {
            return cpu;
        }
        t.held += t.resumed.elapsed();
        t.baton.pass(None);
        t.baton.wait(t.me);
        t.resumed = Instant::now();
        let after = thread_cpu_seconds();
        t.handing += after - cpu;
        after
    });
    MARKS.with(|m| m.borrow_mut().push((epoch, cpu, after, wall)));
}

/// One variant, ready to train segment after segment on its own model.
enum Runner<'a> {
    Trainmon {
        trainer: Box<Trainer<'a>>,
        data: &'a TensorDataset,
    },
    /// `fit_steps` with the classifier written as a step of one's own.
    TrainmonStep {
        trainer: Box<Trainer<'a>>,
        step: ClassifierStep<'a>,
        data: &'a TensorDataset,
    },
    Handwritten {
        net: &'a nn::Sequential,
        step: Step,
    },
    Minimal {
        net: &'a nn::Sequential,
        step: Step,
        eager: bool,
    },
}

/// What a segment did.
struct Segment {
    steps: usize,
    /// Wall-clock seconds.
    seconds: f64,
    /// CPU seconds of this thread (where libtorch does all the work with 1 intra-op thread).
    cpu_seconds: f64,
    /// `(CPU seconds, wall seconds)` of each block of 10 steps from a logged batch to the next
    /// one in the same epoch.
    blocks: Vec<(f64, f64)>,
}

impl Segment {
    /// Seconds by `clock`.
    fn time(&self, clock: Clock) -> f64 {
        match clock {
            Clock::Wall => self.seconds,
            Clock::Cpu => self.cpu_seconds,
        }
    }

    /// The steady state: µs per step of the median 10-step block, by `clock` (NaN without
    /// blocks).
    fn steady(&self, clock: Clock) -> f64 {
        let times: Vec<f64> = self
            .blocks
            .iter()
            .map(|&(cpu, wall)| if clock == Clock::Cpu { cpu } else { wall })
            .collect();
        1e6 * quantile(&times, 0.5) / 10.0
    }

    /// µs of the segment beyond its steps at the steady rate: its time outside the blocks, less
    /// the steps there (before an epoch's first mark, after its last) at the steady rate. The
    /// setup, the shuffles, the epoch ends, by `clock`.
    fn overhead(&self, clock: Clock) -> f64 {
        let pick = |&(cpu, wall): &(f64, f64)| if clock == Clock::Cpu { cpu } else { wall };
        let in_blocks: f64 = self.blocks.iter().map(pick).sum();
        let outside = self.time(clock) - in_blocks;
        let steps_outside = self.steps as f64 - 10.0 * self.blocks.len() as f64;
        1e6 * outside - steps_outside * self.steady(clock)
    }
}

/// What a segment's time is.
#[derive(Clone, Copy, PartialEq)]
enum Clock {
    /// Wall-clock time.
    Wall,
    /// The CPU time of the training thread: time the scheduler gave to another process is not
    /// counted. Faithful only with 1 intra-op thread (every kernel then runs on the calling
    /// thread, the backward pass too).
    Cpu,
}

/// CPU seconds this thread has run (user and system).
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a valid pointer to a timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

struct Ctx<'a> {
    w: &'a Workload,
    x: &'a Tensor,
    y: &'a Tensor,
    /// Epochs per segment.
    epochs: usize,
}

impl<'a> Runner<'a> {
    fn new(variant: &str, ctx: &Ctx<'a>, model: &'a (nn::VarStore, nn::Sequential), data: &'a TensorDataset) -> Self {
        let (vs, net) = model;
        match variant {
            "trainmon" | "trainmon_lazy" | SETUP => {
                let trainer = Trainer::new(vs, net)
                    .optimizer(nn::Adam::default(), 1e-3)
                    .epochs(ctx.epochs)
                    .batch_size(ctx.w.batch)
                    .shuffle(true)
                    .seed(2)
                    .lazy_reads(variant == "trainmon_lazy");
                // The setup alone: a hook stops the fit as it begins, before any epoch.
                let trainer = if variant == SETUP {
                    trainer.add_hook(
                        trainmon::HookSpec::new(trainmon::Event::TrainBegin, "setup_only"),
                        || Control::stop("the setup alone"),
                    )
                } else {
                    trainer
                };
                Runner::Trainmon {
                    trainer: Box::new(trainer),
                    data,
                }
            }
            "trainmon_step" => Runner::TrainmonStep {
                trainer: Box::new(
                    Trainer::for_steps(vs)
                        .optimizer(nn::Adam::default(), 1e-3)
                        .epochs(ctx.epochs)
                        .batch_size(ctx.w.batch)
                        .shuffle(true)
                        .seed(2)
                        .metric(trainmon::Accuracy::default),
                ),
                step: ClassifierStep { net },
                data,
            },
            "handwritten" => Runner::Handwritten {
                net,
                step: Step::Tch(nn::Adam::default().build(vs, 1e-3).unwrap()),
            },
            "handwritten_optim" => Runner::Handwritten {
                net,
                step: Step::Own(nn::Adam::default().build_optimizer(vs, 1e-3).unwrap()),
            },
            "minimal" | "minimal_eager" => Runner::Minimal {
                net,
                step: Step::Tch(nn::Adam::default().build(vs, 1e-3).unwrap()),
                eager: variant == "minimal_eager",
            },
            "minimal_optim" => Runner::Minimal {
                net,
                step: Step::Own(nn::Adam::default().build_optimizer(vs, 1e-3).unwrap()),
                eager: false,
            },
            other => panic!("unknown variant {other}"),
        }
    }

    /// Trains one segment and times it (training only).
    fn segment(&mut self, ctx: &Ctx<'_>) -> Segment {
        MARKS.with(|m| m.borrow_mut().clear());
        let cpu_started = thread_cpu_seconds() - handing_seconds();
        let started = own_wall();
        let steps = match self {
            Runner::Trainmon { trainer, data } => {
                let history = trainer.fit(*data).unwrap();
                history.epochs().iter().map(|e| e.batches()).sum()
            }
            Runner::TrainmonStep { trainer, step, data } => {
                let history = trainer.fit_steps(step, *data, None).unwrap();
                history.epochs().iter().map(|e| e.batches()).sum()
            }
            Runner::Handwritten { net, step } => handwritten(net, step, ctx),
            Runner::Minimal { net, step, eager } => minimal(net, step, *eager, ctx),
        };
        let cpu_seconds = thread_cpu_seconds() - handing_seconds() - cpu_started;
        let seconds = own_wall() - started;
        let marks = MARKS.with(|m| std::mem::take(&mut *m.borrow_mut()));
        // From after a mark's hand-over (if any) to the next mark, in the same epoch.
        let blocks = marks
            .windows(2)
            .filter(|pair| pair[0].0 == pair[1].0)
            .map(|pair| (pair[1].1 - pair[0].2, pair[1].3 - pair[0].3))
            .collect();
        Segment {
            steps,
            seconds,
            cpu_seconds,
            blocks,
        }
    }
}

/// The classifier as a training step of one's own (`trainmon_step`): the forward pass and the
/// cross-entropy the trainer's own step computes, the outputs handed to an accuracy metric.
struct ClassifierStep<'a> {
    net: &'a nn::Sequential,
}

impl TrainStep<(Tensor, Tensor)> for ClassifierStep<'_> {
    fn training_step(
        &mut self,
        (x, y): &(Tensor, Tensor),
        ctx: &StepContext<'_>,
    ) -> Result<StepOutput, trainmon::BoxError> {
        let outputs = self.net.forward_t(x, ctx.training());
        let loss = outputs.f_cross_entropy_loss::<Tensor>(y, None, tch::Reduction::Mean, -100, 0.0)?;
        Ok(StepOutput::loss(loss).with_outputs(outputs, y.shallow_clone()))
    }
}

/// The tutorial's loop written with tch: `Iter2` batches, every batch's loss and accuracy read
/// to the host. Returns the steps.
fn handwritten(net: &nn::Sequential, step: &mut Step, ctx: &Ctx<'_>) -> usize {
    let (mut early, mut steps) = (EarlyStop::default(), 0);
    for epoch in 1..=ctx.epochs {
        let epoch_started = Instant::now();
        tracing::info!("Epoch {epoch} starting.");
        let (mut run_loss, mut correct, mut total, mut batches) = (0.0, 0i64, 0i64, 0usize);
        for (b, (xb, yb)) in tch::data::Iter2::new(ctx.x, ctx.y, ctx.w.batch as i64)
            .shuffle()
            .return_smaller_last_batch()
            .enumerate()
        {
            let out = net.forward(&xb);
            let loss = out.cross_entropy_for_logits(&yb);
            step.backward_step(&loss);
            run_loss += loss.double_value(&[]);
            correct += out.argmax(-1, false).eq_tensor(&yb).sum(Kind::Int64).int64_value(&[]);
            total += yb.size()[0];
            steps += 1;
            batches = b + 1;
            if (b + 1) % 10 == 0 {
                mark(epoch);
                tracing::info!(
                    "Batch {}: Loss = {:.4}, Accuracy = {:.4}",
                    b + 1,
                    run_loss / (b + 1) as f64,
                    correct as f64 / total as f64
                );
            }
        }
        let epoch_loss = run_loss / batches as f64;
        tracing::info!(
            "Epoch {epoch} finished in {:.2} seconds.",
            epoch_started.elapsed().as_secs_f64()
        );
        if early.stop(epoch_loss) {
            break;
        }
    }
    steps
}

/// The fastest honest hand-written loop: tch's Adam; per epoch one `randperm` and one
/// `index_select` of the features and the labels; batches by `narrow`; the loss sum and the
/// count of right answers accumulated as tensors, read to the host only where the logger prints
/// and at the epoch's end (`eager`: at every batch instead, as trainmon's eager reads).
/// Prints what the trainmon variant prints. Returns the steps.
fn minimal(net: &nn::Sequential, step: &mut Step, eager: bool, ctx: &Ctx<'_>) -> usize {
    let n = ctx.x.size()[0];
    let batch = ctx.w.batch as i64;
    let batches = (n + batch - 1) / batch;
    let device = ctx.x.device();
    let (mut early, mut steps) = (EarlyStop::default(), 0);
    for epoch in 1..=ctx.epochs {
        let epoch_started = Instant::now();
        tracing::info!("Epoch {epoch} starting.");
        let perm = Tensor::randperm(n, (Kind::Int64, device));
        let (xs, ys) = (ctx.x.index_select(0, &perm), ctx.y.index_select(0, &perm));
        let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
        let mut correct = Tensor::zeros([], (Kind::Int64, device));
        let (mut host_loss, mut host_correct) = (0.0, 0i64);
        let mut seen = 0i64;
        for b in 0..batches {
            let start = b * batch;
            let len = batch.min(n - start);
            let (xb, yb) = (xs.narrow(0, start, len), ys.narrow(0, start, len));
            let out = net.forward(&xb);
            let loss = out.cross_entropy_loss::<Tensor>(&yb, None, Reduction::Mean, -100, 0.0);
            step.backward_step(&loss);
            let right = out.argmax(-1, false).eq_tensor(&yb).sum(Kind::Int64);
            if eager {
                host_loss += loss.double_value(&[]);
                host_correct += right.int64_value(&[]);
            } else {
                loss_sum += loss.detach();
                correct += right;
            }
            seen += len;
            steps += 1;
            if (b + 1) % 10 == 0 {
                mark(epoch);
                let (l, c) = if eager {
                    (host_loss, host_correct)
                } else {
                    (loss_sum.double_value(&[]), correct.int64_value(&[]))
                };
                tracing::info!(
                    "Batch {}: Loss = {:.4}, Accuracy = {:.4}",
                    b + 1,
                    l / (b + 1) as f64,
                    c as f64 / seen as f64
                );
            }
        }
        let (l, c) = if eager {
            (host_loss, host_correct)
        } else {
            (loss_sum.double_value(&[]), correct.int64_value(&[]))
        };
        let epoch_loss = l / batches as f64;
        let _epoch_accuracy = c as f64 / seen as f64;
        tracing::info!(
            "Epoch {epoch} finished in {:.2} seconds.",
            epoch_started.elapsed().as_secs_f64()
        );
        if early.stop(epoch_loss) {
            break;
        }
    }
    steps
}

/// One measurement in this process (`--child`): the workload's whole training, as one segment.
fn measure(variant: &str, w: &Workload) -> Segment {
    let (x, y) = data(w);
    let dataset = TensorDataset::new(x.shallow_clone(), y.shallow_clone()).unwrap();
    let model = model(w);
    let ctx = Ctx {
        w,
        x: &x,
        y: &y,
        epochs: w.epochs,
    };
    Runner::new(variant, &ctx, &model, &dataset).segment(&ctx)
}

/// Peak resident memory of this process, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

struct Run {
    us_per_step: f64,
    wall_us_per_step: f64,
    steady_us_per_step: f64,
    peak_mib: f64,
}

/// Runs one measurement in a fresh process.
fn spawn(variant: &str, w: &Workload, opts: &Options) -> Run {
    let threads = opts.threads;
    if variant == "python" {
        let python = std::env::var("TRAINMON_PYTHON").unwrap();
        let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers");
        let out = Command::new(python)
            .arg(peers.join("plain.py"))
            .arg(w.name)
            // The same intra-op threads as the Rust variants.
            .env("OMP_NUM_THREADS", threads.to_string())
            .env("MKL_NUM_THREADS", threads.to_string())
            .output()
            .expect("run plain.py");
        assert!(
            out.status.success(),
            "plain.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        let us = json_number(line, "us_per_step").unwrap_or_else(|| panic!("no us_per_step in {line}"));
        return Run {
            us_per_step: us,
            wall_us_per_step: us,
            steady_us_per_step: f64::NAN,
            peak_mib: f64::NAN,
        };
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--child", variant, w.name, "--threads", &threads.to_string()])
        .args(["--clock", if opts.clock == Clock::Cpu { "cpu" } else { "wall" }])
        .output()
        .expect("run a measurement");
    assert!(
        out.status.success(),
        "{variant} {} failed: {}",
        w.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    Run {
        us_per_step: json_number(line, "us_per_step").unwrap(),
        wall_us_per_step: json_number(line, "wall_us_per_step").unwrap(),
        steady_us_per_step: json_number(line, "steady_us_per_step").unwrap_or(f64::NAN),
        peak_mib: json_number(line, "peak_mib").unwrap(),
    }
}

/// The number after `"key":` in a flat JSON line.
fn json_number(line: &str, key: &str) -> Option<f64> {
    let rest = &line[line.find(&format!("\"{key}\""))? + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// The `q` quantile (0 to 1) of `values`, interpolated linearly between order statistics.
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let at = q * (v.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (at - lo as f64)
}

/// The 95 % confidence interval of the median of `values`, distribution-free: the order
/// statistics `n/2 ∓ 0.98·√n` (1-based, rounded outwards).
fn median_ci95(values: &[f64]) -> (f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let half = 0.98 * n.sqrt();
    let lo = ((n / 2.0 - half).floor().max(1.0) as usize).min(v.len());
    let hi = ((n / 2.0 + half + 1.0).ceil().max(1.0) as usize).min(v.len());
    (v[lo - 1], v[hi - 1])
}

/// Median, p25 and p75 (the spread of single measurements), and the 95 % confidence interval
/// of the median (how well the median itself is known).
#[derive(Clone, Copy)]
struct Spread {
    median: f64,
    p25: f64,
    p75: f64,
    ci: (f64, f64),
}

impl Spread {
    const NAN: Spread = Spread {
        median: f64::NAN,
        p25: f64::NAN,
        p75: f64::NAN,
        ci: (f64::NAN, f64::NAN),
    };

    fn of(values: &[f64]) -> Self {
        Spread {
            median: quantile(values, 0.5),
            p25: quantile(values, 0.25),
            p75: quantile(values, 0.75),
            ci: median_ci95(values),
        }
    }

    /// `median (IQR p25–p75, CI lo–hi)`, with `digits` decimals.
    fn show(&self, digits: usize) -> String {
        let d = digits;
        format!(
            "{:.*} (IQR {:.*}–{:.*}; median's 95% CI {:.*}–{:.*})",
            d, self.median, d, self.p25, d, self.p75, d, self.ci.0, d, self.ci.1
        )
    }

    /// `"key":median,"key_iqr":[p25,p75],"key_ci95":[lo,hi]`.
    fn json(&self, key: &str, digits: usize) -> String {
        format!("\"{key}\":{:.*}{}", digits, self.median, self.iqr(key, digits))
    }

    /// `,"key_iqr":[p25,p75],"key_ci95":[lo,hi]`.
    fn iqr(&self, key: &str, digits: usize) -> String {
        let d = digits;
        format!(
            ",\"{key}_iqr\":[{:.*},{:.*}],\"{key}_ci95\":[{:.*},{:.*}]",
            d, self.p25, d, self.p75, d, self.ci.0, d, self.ci.1
        )
    }
}

/// What a figure of a segment is.
#[derive(Clone, Copy, PartialEq)]
enum Measure {
    /// µs per step over the whole segment, by the benchmark's clock (µs per fit for the setup
    /// pseudo-variant).
    Segment,
    /// The same by the wall clock.
    Wall,
    /// µs per step of the segment's median 10-step block (the steady state), by the
    /// benchmark's clock.
    Steady,
    /// µs per segment beyond its steps at the steady rate ([`Segment::overhead`]).
    Overhead,
}

/// Every variant's measurements, round by round.
struct Results {
    variants: Vec<String>,
    /// `[variant][round]`: each segment's figures, by [`Measure`] (in its order).
    figures: Vec<Vec<[f64; 4]>>,
    /// `[variant][round]`: where the measurement came in the sequence of all of them.
    at: Vec<Vec<usize>>,
    /// Measurements so far.
    count: usize,
}

impl Results {
    fn new(variants: &[String]) -> Self {
        Results {
            variants: variants.to_vec(),
            figures: variants.iter().map(|_| Vec::new()).collect(),
            at: variants.iter().map(|_| Vec::new()).collect(),
            count: 0,
        }
    }

    /// Adds the next measurement of variant `i`.
    fn push(&mut self, i: usize, figures: [f64; 4]) {
        self.push_at(i, self.count, figures);
        self.count += 1;
    }

    /// Adds a measurement of variant `i` made at `at` (alongside the others' at `at`).
    fn push_at(&mut self, i: usize, at: usize, figures: [f64; 4]) {
        self.figures[i].push(figures);
        self.at[i].push(at);
    }

    fn index(&mut self, variant: &str) -> usize {
        match self.variants.iter().position(|v| v == variant) {
            Some(i) => i,
            None => {
                self.variants.push(variant.to_owned());
                self.figures.push(Vec::new());
                self.at.push(Vec::new());
                self.variants.len() - 1
            }
        }
    }

    fn rounds(&self) -> usize {
        self.figures.first().map_or(0, Vec::len)
    }

    fn of(&self, variant: &str, measure: Measure) -> Option<Vec<f64>> {
        let i = self.variants.iter().position(|v| v == variant)?;
        Some(self.figures[i].iter().map(|f| f[measure as usize]).collect())
    }

    fn spread(&self, variant: &str, measure: Measure) -> Option<Spread> {
        let values = self.of(variant, measure)?;
        (!values.iter().all(|v| v.is_nan())).then(|| Spread::of(&values))
    }

    /// The ratio `a / b`, measurement by measurement: each measurement of `a` over the one of
    /// `b` made alongside it, or else over the mean of those just before and just after it (one
    /// of them at the ends), so that a drift of the machine linear over the three cancels out.
    fn ratio(&self, a: &str, b: &str, measure: Measure) -> Option<Spread> {
        let (ia, ib) = (
            self.variants.iter().position(|v| v == a)?,
            self.variants.iter().position(|v| v == b)?,
        );
        let (va, vb) = (self.of(a, measure)?, self.of(b, measure)?);
        let (at_a, at_b) = (&self.at[ia], &self.at[ib]);
        let ratios: Vec<f64> = va
            .iter()
            .zip(at_a)
            .filter_map(|(value, &at)| {
                let next = at_b.partition_point(|&p| p < at);
                if at_b.get(next) == Some(&at) {
                    return Some(value / vb[next]);
                }
                let around: Vec<f64> = [next.checked_sub(1), Some(next)]
                    .into_iter()
                    .flatten()
                    .filter_map(|j| vb.get(j).copied())
                    .collect();
                (!around.is_empty()).then(|| value / (around.iter().sum::<f64>() / around.len() as f64))
            })
            .filter(|r| !r.is_nan())
            .collect();
        (!ratios.is_empty()).then(|| Spread::of(&ratios))
    }
}

struct Options {
    rounds: Option<usize>,
    budget: f64,
    segment_epochs: Option<usize>,
    threads: i32,
    clock: Clock,
    memory_runs: usize,
    variants: Vec<String>,
    processes: bool,
    only: Option<String>,
    python: bool,
    /// A CSV file to append every segment to.
    dump: Option<String>,
    /// Marks (of 10 steps) per turn in the alternating mode.
    turn: usize,
}

/// µs per step of a segment (µs per fit for one without steps: the setup pseudo-variant).
fn us_per_step(seconds: f64, steps: usize) -> f64 {
    1e6 * seconds / steps.max(1) as f64
}

/// Keeps this thread on `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and sched_setaffinity get valid
    // pointers to it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        if rc != 0 {
            eprintln!(
                "could not pin a thread to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// The alternating mode: every variant in this process, each on its own thread, taking turns
/// of `--turn` marks (10 steps each): the variants go through their segments side by side, a
/// few milliseconds apart, so that whatever slows the machine down slows them all alike.
fn alternate(w: &Workload, opts: &Options, variants: &[String]) -> (Results, usize) {
    let (x, y) = data(w);
    let epochs = opts.segment_epochs.unwrap_or(w.segment_epochs);
    // Built here, one after the other: the same initial weights for all.
    let models: Vec<(nn::VarStore, nn::Sequential)> = variants.iter().map(|_| model(w)).collect();
    let baton = Arc::new(Baton::new(variants.len()));
    // All on the CPU this thread is on: a turn handed to a thread on the other core would find
    // that core's caches cold (and the threads would migrate at every turn).
    // SAFETY: no arguments.
    let cpu = unsafe { libc::sched_getcpu() }.max(0) as usize;
    // Segments to run (warm-up included), set after the first round; and of the warm-up.
    let (target, warm) = (AtomicUsize::new(usize::MAX), AtomicUsize::new(1));
    let started = Instant::now();
    let segments: Vec<Vec<Segment>> = std::thread::scope(|scope| {
        let threads: Vec<_> = variants
            .iter()
            .zip(models)
            .enumerate()
            .map(|(me, (variant, model))| {
                let (x, y) = (x.shallow_clone(), y.shallow_clone());
                let baton = Arc::clone(&baton);
                let (target, warm, started) = (&target, &warm, &started);
                scope.spawn(move || {
                    // Whatever happens, the others go on without this one.
                    struct Done(Arc<Baton>, usize);
                    impl Drop for Done {
                        fn drop(&mut self) {
                            TURNS.with(|t| t.borrow_mut().take());
                            self.0.pass(Some(self.1));
                        }
                    }
                    let _done = Done(Arc::clone(&baton), me);
                    if opts.threads == 1 {
                        // With more threads, libtorch's own would be pinned there too.
                        pin_to(cpu);
                    }
                    let dataset = TensorDataset::new(x.shallow_clone(), y.shallow_clone()).unwrap();
                    let ctx = Ctx {
                        w,
                        x: &x,
                        y: &y,
                        epochs,
                    };
                    let mut runner = Runner::new(variant, &ctx, &model, &dataset);
                    baton.wait(me);
                    TURNS.with(|t| {
                        *t.borrow_mut() = Some(Turns {
                            baton: Arc::clone(&baton),
                            me,
                            turn: opts.turn,
                            marks: 0,
                            held: Duration::ZERO,
                            resumed: Instant::now(),
                            handing: 0.0,
                        })
                    });
                    let mut segments = Vec::new();
                    while segments.len() < target.load(Ordering::SeqCst) {
                        segments.push(runner.segment(&ctx));
                        if me == 0 && segments.len() == 1 {
                            // One round done (all variants side by side): the warm-up lasts a
                            // round and at least 3 seconds, the rounds fill the budget.
                            let round = started.elapsed().as_secs_f64();
                            let warm_rounds = ((3.0 / round).ceil() as usize).max(1);
                            let rounds = opts
                                .rounds
                                .unwrap_or_else(|| ((opts.budget / round) as usize).clamp(10, 400));
                            warm.store(warm_rounds, Ordering::SeqCst);
                            target.store(warm_rounds + rounds, Ordering::SeqCst);
                        }
                    }
                    segments
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let warm = warm.load(Ordering::SeqCst);
    let mut results = Results::new(variants);
    let mut dump = opts.dump.as_ref().map(|path| {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("--dump {path}: {e}"));
        std::io::BufWriter::new(file)
    });
    for (i, segments) in segments.iter().enumerate() {
        for (round, segment) in segments.iter().enumerate().skip(warm) {
            let figures = [
                us_per_step(segment.time(opts.clock), segment.steps),
                us_per_step(segment.seconds, segment.steps),
                segment.steady(opts.clock),
                segment.overhead(opts.clock),
            ];
            if let Some(dump) = &mut dump {
                use std::io::Write;
                writeln!(
                    dump,
                    "{},{},{},{},{:.1},{:.1},{:.3}",
                    w.name,
                    round - warm,
                    variants[i],
                    segment.steps,
                    1e6 * segment.cpu_seconds,
                    1e6 * segment.seconds,
                    figures[2]
                )
                .unwrap();
            }
            results.push_at(i, round - warm, figures);
        }
    }
    // trainmon's setup, a `fit` stopped as it begins, timed apart (it has no marks to take turns at).
    if variants.iter().any(|v| v.starts_with("trainmon")) {
        let (model, dataset) = (model(w), TensorDataset::new(x.shallow_clone(), y).unwrap());
        let ctx = Ctx {
            w,
            x: &x,
            y: &dataset.labels().shallow_clone(),
            epochs,
        };
        let mut runner = Runner::new(SETUP, &ctx, &model, &dataset);
        let i = results.index(SETUP);
        let fits = results.rounds().clamp(10, 50);
        runner.segment(&ctx);
        for round in 0..fits {
            let segment = runner.segment(&ctx);
            let us = 1e6 * segment.time(opts.clock);
            results.push_at(i, round, [us, 1e6 * segment.seconds, f64::NAN, f64::NAN]);
        }
    }
    (results, epochs)
}

/// The former mode: every measurement in its own process, variants interleaved.
fn processes(w: &Workload, opts: &Options, variants: &[String]) -> (Results, Vec<Vec<f64>>) {
    let rounds = opts.rounds.unwrap_or(5);
    let mut results = Results::new(variants);
    let mut mib: Vec<Vec<f64>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        // Interleaved, in a rotating order, so that drifts of the machine hit all alike.
        for k in 0..variants.len() {
            let i = (k + round) % variants.len();
            let run = spawn(&variants[i], w, opts);
            results.push(
                i,
                [run.us_per_step, run.wall_us_per_step, run.steady_us_per_step, f64::NAN],
            );
            mib[i].push(run.peak_mib);
        }
    }
    (results, mib)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let threads: i32 = value("--threads").map_or(1, |t| t.parse().expect("--threads N"));
    tch::set_num_threads(threads);
    // The thread's CPU time counts all the work only when libtorch runs it all on this thread.
    let clock = match value("--clock").as_deref() {
        Some("wall") => Clock::Wall,
        Some("cpu") => Clock::Cpu,
        None if threads == 1 => Clock::Cpu,
        None => Clock::Wall,
        Some(other) => panic!("--clock wall|cpu, not {other}"),
    };
    tracing_subscriber::fmt().with_writer(std::io::sink).init();
    if args.first().map(String::as_str) == Some("--child") {
        let w = WORKLOADS.iter().find(|w| w.name == args[2]).expect("a workload");
        let segment = measure(&args[1], w);
        println!(
            "{{\"steps\":{},\"seconds\":{},\"cpu_seconds\":{},\"us_per_step\":{},\"wall_us_per_step\":{},\"steady_us_per_step\":{},\"peak_mib\":{}}}",
            segment.steps,
            segment.seconds,
            segment.cpu_seconds,
            us_per_step(segment.time(clock), segment.steps),
            us_per_step(segment.seconds, segment.steps),
            segment.steady(clock),
            peak_rss_mib()
        );
        return;
    }
    let only = value("--only");
    let variants: Vec<String> = match (&only, value("--variants")) {
        (Some(only), _) => vec![only.clone()],
        (None, Some(list)) => list.split(',').map(str::to_owned).collect(),
        (None, None) => VARIANTS.iter().map(|v| v.to_string()).collect(),
    };
    for v in &variants {
        assert!(
            VARIANTS.contains(&v.as_str()) || EXTRA_VARIANTS.contains(&v.as_str()) || v == SETUP,
            "unknown variant {v}: one of {VARIANTS:?}, {EXTRA_VARIANTS:?}, {SETUP}"
        );
    }
    let opts = Options {
        rounds: value("--rounds").map(|r| r.parse().expect("--rounds N")),
        budget: value("--budget").map_or(180.0, |b| b.parse().expect("--budget SECONDS")),
        segment_epochs: value("--segment-epochs").map(|e| e.parse().expect("--segment-epochs N")),
        threads,
        clock,
        memory_runs: value("--memory-runs").map_or(1, |n| n.parse().expect("--memory-runs N")),
        variants,
        processes: args.iter().any(|a| a == "--processes"),
        only,
        python: std::env::var_os("TRAINMON_PYTHON").is_some(),
        dump: value("--dump"),
        turn: value("--turn").map_or(3, |t| t.parse().expect("--turn N")).max(1),
    };
    let clock_name = match clock {
        Clock::Wall => "wall",
        Clock::Cpu => "cpu",
    };
    let names = value("--workloads").unwrap_or_else(|| "seed,tiny,mlp".into());
    let mut lines = Vec::new();
    for w in WORKLOADS.iter().filter(|w| names.split(',').any(|n| n == w.name)) {
        if let Some(only) = &opts.only {
            let started = Instant::now();
            let (results, epochs) = alternate(w, &opts, &opts.variants);
            let get = |m| results.spread(only, m).unwrap_or(Spread::NAN);
            eprintln!(
                "{:5} {only} alone: {} µs/step ({clock_name} clock), wall {:.2}, steady state {:.2}, {} rounds of \
                 {epochs}-epoch segments in {:.1} s",
                w.name,
                get(Measure::Segment).show(2),
                get(Measure::Wall).median,
                get(Measure::Steady).median,
                results.rounds(),
                started.elapsed().as_secs_f64()
            );
            continue;
        }
        let (results, mib, mode, epochs) = if opts.processes {
            let mut variants = opts.variants.clone();
            if opts.python {
                variants.push("python".into());
            }
            let (results, mib) = processes(w, &opts, &variants);
            (results, mib, "processes", w.epochs)
        } else {
            let (mut results, epochs) = alternate(w, &opts, &opts.variants);
            // Peak memory, and the Python loop: each in its own process.
            let mut memory_variants = opts.variants.clone();
            if opts.python {
                memory_variants.push("python".into());
            }
            let mut mib: Vec<Vec<f64>> = Vec::new();
            for _ in 0..opts.memory_runs {
                for v in &memory_variants {
                    let run = spawn(v, w, &opts);
                    let i = results.index(v);
                    mib.resize(results.variants.len(), Vec::new());
                    mib[i].push(run.peak_mib);
                    if v == "python" {
                        results.push(i, [run.us_per_step, run.wall_us_per_step, f64::NAN, f64::NAN]);
                    }
                }
            }
            mib.resize(results.variants.len(), Vec::new());
            (results, mib, "alternating", epochs)
        };
        let rounds = results.rounds();
        let peak = |v: &str| {
            let i = results.variants.iter().position(|x| x == v)?;
            Some(quantile(&mib[i], 0.5)).filter(|m| !m.is_nan())
        };
        let get = |v: &str, m| results.spread(v, m).unwrap_or(Spread::NAN);
        let ratio = |a: &str, b: &str, m| results.ratio(a, b, m).unwrap_or(Spread::NAN);
        let segment_steps = (w.samples as f64 / w.batch as f64).ceil() * epochs as f64;

        // Human-readable, to stderr.
        let what = if mode == "processes" {
            format!("each measurement in its own process, {} epochs", w.epochs)
        } else {
            format!("in one process, segments of {epochs} epoch(s), {segment_steps} steps")
        };
        eprintln!(
            "{} ({mode}: {rounds} rounds, {what}, {threads} thread(s), {clock_name} clock)",
            w.name
        );
        eprintln!("  µs/step over whole segments: median (IQR; median's 95% CI) [wall-clock median]");
        let shown = || results.variants.iter().filter(|v| *v != SETUP);
        for v in shown() {
            let memory = peak(v).map_or(String::new(), |m| format!("; peak {m:.1} MiB"));
            let note = if v == "python" && mode == "alternating" {
                " (own process, whole workload, wall clock)"
            } else {
                ""
            };
            eprintln!(
                "    {v:18} {} [wall {:.2}]{memory}{note}",
                get(v, Measure::Segment).show(2),
                get(v, Measure::Wall).median
            );
        }
        eprintln!(
            "  steady state, µs/step of the median 10-step block within epochs: median over segments (IQR; CI); \
             beyond: µs per segment beyond its steps at the steady rate (setup, shuffles, epoch ends)"
        );
        for v in shown().filter(|v| *v != "python") {
            eprintln!(
                "    {v:18} {}; beyond {}",
                get(v, Measure::Steady).show(2),
                get(v, Measure::Overhead).show(0)
            );
        }
        eprintln!("  ratios, paired (whole segments | steady state) [wall-clock median, whole segments]");
        for (a, b, label) in [
            ("trainmon", "minimal", "ratio_minimal            trainmon / minimal"),
            (
                "trainmon_lazy",
                "minimal",
                "ratio_minimal_lazy       trainmon_lazy / minimal",
            ),
            (
                "trainmon",
                "minimal_optim",
                "ratio_minimal_optim      trainmon / minimal_optim",
            ),
            (
                "trainmon_lazy",
                "minimal_optim",
                "ratio_minimal_optim_lazy trainmon_lazy / minimal_optim",
            ),
            (
                "minimal",
                "minimal_optim",
                "minimal / minimal_optim (tch's Adam / trainmon's)",
            ),
            (
                "trainmon",
                "handwritten",
                "ratio                    trainmon / handwritten",
            ),
            (
                "trainmon",
                "handwritten_optim",
                "loop_ratio               trainmon / handwritten_optim",
            ),
            (
                "trainmon_lazy",
                "trainmon",
                "lazy_ratio               trainmon_lazy / trainmon",
            ),
            (
                "trainmon_step",
                "handwritten_optim",
                "step_ratio               trainmon_step / handwritten_optim",
            ),
            ("trainmon_step", "trainmon", "trainmon_step / trainmon"),
            ("minimal_eager", "minimal", "minimal_eager / minimal"),
        ] {
            if let Some(r) = results.ratio(a, b, Measure::Segment) {
                eprintln!(
                    "    {label:56} {} | {} [wall {:.4}]",
                    r.show(4),
                    ratio(a, b, Measure::Steady).show(4),
                    ratio(a, b, Measure::Wall).median
                );
            }
        }
        let setup = results.spread(SETUP, Measure::Segment);
        if let Some(s) = setup {
            let t = get("trainmon", Measure::Segment);
            let steps_per_epoch = segment_steps / epochs as f64;
            eprintln!(
                "  trainmon fit setup (a fit stopped at on_train_begin): {} µs per fit = {:.2} µs/step over a {epochs}-epoch \
                 segment ({:.2} % of trainmon's), {:.2} µs/step over the workload's {}-epoch fit",
                s.show(0),
                s.median / segment_steps,
                100.0 * s.median / segment_steps / t.median,
                s.median / (steps_per_epoch * w.epochs as f64),
                w.epochs
            );
        }

        // JSON, to stdout at the end.
        let seg = |v: &str| get(v, Measure::Segment);
        let (t, h) = (seg("trainmon"), seg("handwritten"));
        let nan = f64::NAN;
        let mut line = format!(
            "{{\"workload\":\"{}\",\"trainmon_us_per_step\":{:.3},\"handwritten_us_per_step\":{:.3},\"ratio\":{:.4},\"rounds\":{rounds},\"trainmon_peak_mib\":{:.1},\"handwritten_peak_mib\":{:.1},\"memory_ratio\":{:.4}",
            w.name,
            t.median,
            h.median,
            ratio("trainmon", "handwritten", Measure::Segment).median,
            peak("trainmon").unwrap_or(nan),
            peak("handwritten").unwrap_or(nan),
            peak("trainmon").unwrap_or(nan) / peak("handwritten").unwrap_or(nan)
        );
        line.push_str(&format!(
            ",\"trainmon_lazy_us_per_step\":{:.3}",
            seg("trainmon_lazy").median
        ));
        line.push_str(&format!(
            ",\"handwritten_optim_us_per_step\":{:.3},\"loop_ratio\":{:.4}",
            seg("handwritten_optim").median,
            ratio("trainmon", "handwritten_optim", Measure::Segment).median
        ));
        if opts.python {
            line.push_str(&format!(",\"python_plain_us_per_step\":{:.3}", seg("python").median));
        }
        line.push_str(&format!(
            ",\"mode\":\"{mode}\",\"clock\":\"{clock_name}\",\"threads\":{threads},\"segment_epochs\":{epochs}"
        ));
        for v in ["minimal", "minimal_optim"] {
            line.push(',');
            line.push_str(&seg(v).json(&format!("{v}_us_per_step"), 3));
        }
        let ratios = [
            ("ratio_minimal", "trainmon", "minimal"),
            ("ratio_minimal_lazy", "trainmon_lazy", "minimal"),
            ("ratio_minimal_optim", "trainmon", "minimal_optim"),
            ("ratio_minimal_optim_lazy", "trainmon_lazy", "minimal_optim"),
            ("lazy_ratio", "trainmon_lazy", "trainmon"),
            ("step_ratio", "trainmon_step", "handwritten_optim"),
            ("step_vs_trainmon", "trainmon_step", "trainmon"),
        ];
        for (key, a, b) in ratios {
            line.push(',');
            line.push_str(&ratio(a, b, Measure::Segment).json(key, 4));
        }
        for v in ["trainmon", "handwritten", "trainmon_lazy", "handwritten_optim"] {
            line.push_str(&seg(v).iqr(&format!("{v}_us_per_step"), 3));
        }
        line.push_str(&ratio("trainmon", "handwritten", Measure::Segment).iqr("ratio", 4));
        line.push_str(&ratio("trainmon", "handwritten_optim", Measure::Segment).iqr("loop_ratio", 4));
        line.push_str(&format!(
            ",\"ratio_minimal_wall\":{:.4}",
            ratio("trainmon", "minimal", Measure::Wall).median
        ));
        for v in ["trainmon", "trainmon_lazy", "minimal", "minimal_optim"] {
            line.push(',');
            line.push_str(&get(v, Measure::Steady).json(&format!("{v}_steady_us_per_step"), 3));
            line.push(',');
            line.push_str(&get(v, Measure::Overhead).json(&format!("{v}_beyond_us_per_segment"), 0));
        }
        for (key, a, b) in ratios {
            line.push(',');
            line.push_str(&ratio(a, b, Measure::Steady).json(&format!("{key}_steady"), 4));
        }
        for v in ["trainmon_lazy", "minimal", "minimal_optim", "handwritten_optim"] {
            if let Some(m) = peak(v) {
                line.push_str(&format!(",\"{v}_peak_mib\":{m:.1}"));
            }
        }
        if let Some(s) = setup {
            line.push(',');
            line.push_str(&s.json("trainmon_fit_setup_us", 1));
        }
        line.push('}');
        // A value not measured (no memory pass, no Python) is null, as JSON has no NaN.
        lines.push(line.replace("NaN", "null"));
    }
    for line in lines {
        println!("{line}");
    }
}
