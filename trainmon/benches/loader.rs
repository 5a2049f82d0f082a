//! The loader benchmark: a dataset whose batches cost about as much CPU time to build as the
//! training step, trained on with no worker (each batch built on the training thread, before
//! its step) and with a `Loader` of 1 and 2 workers (batches built while the model trains).
//!
//! - **Data**: 28 × 28 "images" kept encoded (bytes, made up from their index); a batch
//!   decodes each of its samples into 784 floats: to float, `rounds` passes of a 3 × 3 box blur,
//!   standardised — real arithmetic on the CPU, no sleep. `rounds` is calibrated at the start
//!   (a batch timed at 1 and 5 passes) so that building a batch costs about a training step.
//! - **Model**: an MLP 784 → 128 → 10, cross-entropy, Adam, batches of 64; libtorch with 1
//!   intra-op thread (`tch::set_num_threads(1)`): each thread of the run is one busy core.
//! - **What is timed**, in one process, each round in turn (rotated order), over an epoch of
//!   `--batches` batches: `step` — a fit on the decoded data preloaded as tensors (the step
//!   alone); `build` — the epoch's batches built one after the other on one thread (the
//!   building alone); `workers0`, `workers1`, `workers2` — a fit on the encoded data, by
//!   itself (`workers0`) and in a `Loader` with 1 and 2 workers, prefetch 2 per worker. A fit is
//!   timed by its epoch's wall time (`EpochLogs::time`: its setup aside), per batch.
//! - **Figures**: the median µs per batch of each over the rounds, and, per round then its
//!   median, `workers1 / max(step, build)` (the overlap limit: 1.0 is a perfect overlap; the
//!   issue's target is ≤ 1.15), `workers0 / (step + build)` (no overlap: 1.0), and
//!   `workers2 / max(step, build)`. With 2 cores, 1 worker and the training thread fill them;
//!   a second worker adds a third busy thread: no faster, and it takes turns with the others.
//!
//! - **The machine**: the load average before and after, and the cores the process gets (a spin
//!   on 1 thread, then on 2 at once: 2.0 when both run as fast as one, 1.0 when another
//!   process holds a core): on a shared machine, figures taken with less than 2 mean little.
//!
//! Prints the figures to stderr, then one JSON line to stdout, last.
//! Run: `eval "$(cargo xtask env)"; cargo bench -p trainmon --bench loader [-- --rounds N
//! --batches N]`.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::nn::{self, VarStore};
use tch::{Device, Tensor};
use trainmon::{Dataset, Hooks, Loader, TensorDataset, Trainer};

const SIDE: usize = 28;
const PIXELS: usize = SIDE * SIDE;
const CLASSES: i64 = 10;
const BATCH: usize = 64;
const HIDDEN: i64 = 128;

/// Samples kept encoded: a byte per pixel; decoded batch by batch. Cloned cheaply (shared).
#[derive(Clone)]
struct Encoded {
    images: Arc<[u8]>,
    labels: Arc<[i64]>,
    /// Blur passes per decoded image: the cost of a batch.
    rounds: usize,
}

impl Encoded {
    fn new(samples: usize, rounds: usize) -> Self {
        let mut images = Vec::with_capacity(samples * PIXELS);
        for i in 0..samples as u64 {
            // A blob whose place and brightness depend on the sample, and some noise.
            let (cx, cy) = ((i * 7) % 20 + 4, (i * 13) % 20 + 4);
            for p in 0..PIXELS as u64 {
                let (x, y) = (p % SIDE as u64, p / SIDE as u64);
                let d = x.abs_diff(cx).pow(2) + y.abs_diff(cy).pow(2);
                let noise = (i.wrapping_mul(2_654_435_761) ^ p.wrapping_mul(40_503)) % 32;
                images.push((255u64.saturating_sub(d * 4) / 2 + noise).min(255) as u8);
            }
        }
        let labels = (0..samples as i64).map(|i| (i * 7) % 20 / 2 % CLASSES).collect();
        Encoded {
            images: images.into(),
            labels,
            rounds,
        }
    }

    /// Sample `i` decoded into `out` (784 floats).
    fn decode(&self, i: usize, out: &mut [f32]) {
        let image = &self.images[i * PIXELS..(i + 1) * PIXELS];
        let mut a: Vec<f32> = image.iter().map(|&b| f32::from(b) / 255.0).collect();
        let mut b = vec![0.0f32; PIXELS];
        for _ in 0..self.rounds {
            for y in 0..SIDE {
                for x in 0..SIDE {
                    let mut sum = 0.0;
                    for dy in [-1isize, 0, 1] {
                        for dx in [-1isize, 0, 1] {
                            let yy = (y as isize + dy).clamp(0, SIDE as isize - 1) as usize;
                            let xx = (x as isize + dx).clamp(0, SIDE as isize - 1) as usize;
                            sum += a[yy * SIDE + xx];
                        }
                    }
                    b[y * SIDE + x] = sum / 9.0;
                }
            }
            std::mem::swap(&mut a, &mut b);
        }
        let mean = a.iter().sum::<f32>() / PIXELS as f32;
        let var = a.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / PIXELS as f32;
        let scale = 1.0 / (var.sqrt() + 1e-6);
        for (o, v) in out.iter_mut().zip(&a) {
            *o = (v - mean) * scale;
        }
    }
}

impl Dataset for Encoded {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn batch(&self, indices: &[i64]) -> trainmon::Result<(Tensor, Tensor)> {
        let mut x = vec![0.0f32; indices.len() * PIXELS];
        for (row, &i) in x.chunks_mut(PIXELS).zip(indices) {
            self.decode(i as usize, row);
        }
        let y: Vec<i64> = indices.iter().map(|&i| self.labels[i as usize]).collect();
        Ok((
            Tensor::from_slice(&x).view([indices.len() as i64, PIXELS as i64]),
            Tensor::from_slice(&y),
        ))
    }
}

/// The MLP, its weights drawn alike every time.
fn model(vs: &VarStore) -> nn::Sequential {
    tch::manual_seed(0);
    nn::seq()
        .add(nn::linear(vs.root() / "fc1", PIXELS as i64, HIDDEN, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(vs.root() / "fc2", HIDDEN, CLASSES, Default::default()))
}

/// One epoch's fit of `data`: its wall time per batch (the fit's setup aside).
fn fit(data: &impl Dataset) -> Duration {
    let vs = VarStore::new(Device::Cpu);
    let model = model(&vs);
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(1)
        .batch_size(BATCH)
        .seed(1)
        .hooks(Hooks::none())
        .fit(data)
        .expect("the benchmark's fit");
    let epoch = &history.epochs()[0];
    epoch.time() / epoch.batches() as u32
}

/// An epoch's batches of `data` built one after the other on this thread, in a shuffled
/// order: the time per batch.
fn build(data: &Encoded) -> Duration {
    let n = data.len() as i64;
    let order: Vec<i64> = (0..n).map(|i| (i * 7919) % n).collect();
    let started = Instant::now();
    let mut batches = 0;
    for indices in order.chunks(BATCH) {
        let _batch = std::hint::black_box(data.batch(indices).unwrap());
        batches += 1;
    }
    started.elapsed() / batches
}

/// The decoded data as tensors: a fit on it is the step alone.
fn preloaded(data: &Encoded) -> TensorDataset {
    let all: Vec<i64> = (0..data.len() as i64).collect();
    let (x, y) = data.batch(&all).unwrap();
    TensorDataset::new(x, y).unwrap()
}

/// The cores this process gets now: a fixed spin on 1 thread, then on 2 at once; 2 when both
/// run as fast as one alone, 1 when they take turns (another process holds a core).
fn cores() -> f64 {
    let spin = || {
        let started = Instant::now();
        let mut x = 0u64;
        for i in 0..60_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
        }
        std::hint::black_box(x);
        started.elapsed().as_secs_f64()
    };
    let one = spin();
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(spin);
        spin();
    });
    2.0 * one / started.elapsed().as_secs_f64()
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse().unwrap_or_else(|_| panic!("{name} takes a number, got {v}"))
        })
}

const VARIANTS: [&str; 5] = ["step", "build", "workers0", "workers1", "workers2"];

fn main() {
    tch::set_num_threads(1);
    let rounds = arg("--rounds", 9);
    let batches = arg("--batches", 150);
    let samples = batches * BATCH;

    // Calibration: the step's time, and a batch's at 1 and 5 blur passes (a fixed cost, and
    // one per pass), so that a batch costs about a step.
    let probe = Encoded::new(samples, 1);
    let step = (0..3).map(|_| fit(&preloaded(&probe))).min().unwrap().as_secs_f64();
    let cost = |passes| {
        let small = Encoded::new(BATCH * 20, passes);
        (0..3).map(|_| build(&small)).min().unwrap().as_secs_f64()
    };
    let (one, five) = (cost(1), cost(5));
    let per_pass = (five - one) / 4.0;
    let rounds_per_image = (((step - one) / per_pass).round() as i64 + 1).max(1) as usize;
    eprintln!(
        "calibration: step {:.0} µs; a batch: {:.0} µs with 1 blur pass, {:.0} µs a pass more: {rounds_per_image} passes",
        step * 1e6,
        one * 1e6,
        per_pass * 1e6
    );
    let data = Encoded::new(samples, rounds_per_image);
    let tensors = preloaded(&data);
    let loaders = [
        Loader::new(data.clone()).workers(1),
        Loader::new(data.clone()).workers(2),
    ];
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let load_before = load();
    let cores_before = cores();
    eprintln!(
        "load before: {load_before}, cores available: {cores_before:.2}; {batches} batches of {BATCH} an epoch, \
         {rounds} rounds"
    );
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    // Round 0 warms up, not counted.
    for round in 0..=rounds {
        let mut order: Vec<usize> = (0..VARIANTS.len()).collect();
        order.rotate_left(round % VARIANTS.len());
        let mut took = [0.0; VARIANTS.len()];
        for v in order {
            let per_batch = match VARIANTS[v] {
                "step" => fit(&tensors),
                "build" => build(&data),
                "workers0" => fit(&data),
                "workers1" => fit(&loaders[0]),
                _ => fit(&loaders[1]),
            };
            took[v] = per_batch.as_secs_f64() * 1e6;
        }
        if round == 0 {
            continue;
        }
        for (v, t) in took.iter().enumerate() {
            times[v].push(*t);
        }
        let shown: Vec<String> = VARIANTS.iter().zip(took).map(|(n, t)| format!("{n} {t:.0}")).collect();
        eprintln!("round {round} (µs/batch): {}", shown.join(", "));
    }
    let load_after = load();
    let cores_after = cores();
    let at = |name: &str| VARIANTS.iter().position(|v| *v == name).unwrap();
    let (step, build) = (&times[at("step")], &times[at("build")]);
    let paired = |name: &str, over: fn(f64, f64) -> f64| -> f64 {
        let ratios: Vec<f64> = (0..rounds)
            .map(|r| times[at(name)][r] / over(step[r], build[r]))
            .collect();
        median(&ratios)
    };
    let overlap1 = paired("workers1", f64::max);
    let overlap2 = paired("workers2", f64::max);
    let serial0 = paired("workers0", |a, b| a + b);
    let speedup1 = median(
        &(0..rounds)
            .map(|r| times[at("workers0")][r] / times[at("workers1")][r])
            .collect::<Vec<_>>(),
    );
    eprintln!();
    for (name, t) in VARIANTS.iter().zip(&times) {
        eprintln!("{name:>9}: {:8.0} µs/batch (median of {rounds})", median(t));
    }
    eprintln!("workers1 / max(step, build): {overlap1:.3} (target ≤ 1.15)");
    eprintln!("workers2 / max(step, build): {overlap2:.3}");
    eprintln!("workers0 / (step + build):   {serial0:.3}");
    eprintln!("workers0 / workers1:         {speedup1:.3}");
    eprintln!("load after: {load_after}, cores available: {cores_after:.2}");
    let medians: Vec<String> = VARIANTS
        .iter()
        .zip(&times)
        .map(|(name, t)| format!("\"{name}_us_per_batch\": {:.1}", median(t)))
        .collect();
    println!(
        "{{{}, \"overlap_ratio_workers1\": {overlap1:.4}, \"overlap_ratio_workers2\": {overlap2:.4}, \
         \"serial_ratio_workers0\": {serial0:.4}, \"speedup_workers1\": {speedup1:.4}, \"blur_passes\": \
         {rounds_per_image}, \"batches\": {batches}, \"rounds\": {rounds}, \"load_before\": \"{load_before}\", \
         \"load_after\": \"{load_after}\", \"cores_before\": {cores_before:.2}, \"cores_after\": \
         {cores_after:.2}}}",
        medians.join(", ")
    );
}
