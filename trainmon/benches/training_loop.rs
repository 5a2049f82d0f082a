//! The training-loop benchmark: trainmon's `Trainer` against a hand-written tch loop doing the
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
//! not trigger. Each measurement runs in its own process (so peak memory is its own), the
//! variants interleaved round after round; the time is training only (process start and data
//! generation excluded). Prints a line per workload, then one JSON line per workload, last:
//! medians over the rounds, `ratio` = trainmon / hand-written with tch's Adam (what a user of a
//! hand-written loop gets by switching), `loop_ratio` = trainmon / hand-written with trainmon's
//! own Adam (`trainmon::optim`, which the trainer runs): the loop's cost alone.
//!
//! `cargo xtask bench [--rounds N] [--workloads seed,tiny,mlp]`

use std::path::Path;
use std::process::Command;
use std::time::Instant;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};
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
    },
    Workload {
        name: "tiny",
        samples: 100_000,
        features: 20,
        classes: 2,
        batch: 32,
        hidden: None,
        epochs: 2,
    },
    Workload {
        name: "mlp",
        samples: 60_000,
        features: 784,
        classes: 10,
        batch: 64,
        hidden: Some(256),
        epochs: 2,
    },
];

/// Early stopping's patience: larger than the epochs, so it never triggers.
const PATIENCE: u32 = 100;

// The hooks of the benchmark, for the trainmon variant.

#[on_epoch_begin]
fn epoch_starting(state: &TrainState) {
    tracing::info!("Epoch {} starting.", state.epoch());
}

#[on_batch_end(every = 10)]
fn log_batch(batch: &BatchLogs) {
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

fn model(w: &Workload, vs: &nn::VarStore) -> nn::Sequential {
    let root = vs.root();
    match w.hidden {
        Some(h) => nn::seq()
            .add(nn::linear(&root / "fc1", w.features, h, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(&root / "fc2", h, w.classes, Default::default())),
        None => nn::seq().add(nn::linear(&root / "fc", w.features, w.classes, Default::default())),
    }
}

/// One measurement, in this process: (steps, seconds of training).
fn measure(variant: &str, w: &Workload) -> (usize, f64) {
    let (x, y) = data(w);
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = model(w, &vs);
    match variant {
        "trainmon" | "trainmon_lazy" => {
            let data = TensorDataset::new(x, y).unwrap();
            let mut trainer = Trainer::new(&vs, &net)
                .optimizer(nn::Adam::default(), 1e-3)
                .epochs(w.epochs)
                .batch_size(w.batch)
                .shuffle(true)
                .seed(2)
                .lazy_reads(variant == "trainmon_lazy");
            let started = Instant::now();
            let history = trainer.fit(&data).unwrap();
            let seconds = started.elapsed().as_secs_f64();
            (history.epochs().iter().map(|e| e.batches()).sum(), seconds)
        }
        "handwritten" | "handwritten_optim" => {
            // tch's Adam, or the one the trainer runs.
            let mut step: Box<dyn FnMut(&Tensor)> = if variant == "handwritten" {
                let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
                Box::new(move |loss| opt.backward_step(loss))
            } else {
                let mut opt = nn::Adam::default().build_optimizer(&vs, 1e-3).unwrap();
                Box::new(move |loss| {
                    opt.zero_grad().unwrap();
                    loss.backward();
                    opt.step().unwrap();
                })
            };
            let (mut best, mut counter, mut steps) = (None::<f64>, 0, 0);
            let started = Instant::now();
            for epoch in 1..=w.epochs {
                let epoch_started = Instant::now();
                tracing::info!("Epoch {epoch} starting.");
                let (mut run_loss, mut correct, mut total, mut batches) = (0.0, 0i64, 0i64, 0usize);
                for (b, (xb, yb)) in tch::data::Iter2::new(&x, &y, w.batch as i64)
                    .shuffle()
                    .return_smaller_last_batch()
                    .enumerate()
                {
                    let out = net.forward(&xb);
                    let loss = out.cross_entropy_for_logits(&yb);
                    step(&loss);
                    run_loss += loss.double_value(&[]);
                    correct += out.argmax(-1, false).eq_tensor(&yb).sum(Kind::Int64).int64_value(&[]);
                    total += yb.size()[0];
                    steps += 1;
                    batches = b + 1;
                    if (b + 1) % 10 == 0 {
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
                match best {
                    Some(b) if epoch_loss >= b => {
                        counter += 1;
                        if counter >= PATIENCE {
                            break;
                        }
                    }
                    _ => (best, counter) = (Some(epoch_loss), 0),
                }
            }
            (steps, started.elapsed().as_secs_f64())
        }
        other => panic!("unknown variant {other}"),
    }
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
    peak_mib: f64,
}

/// Runs one measurement in a fresh process.
fn spawn(variant: &str, w: &Workload) -> Run {
    if variant == "python" {
        let python = std::env::var("TRAINMON_PYTHON").unwrap();
        let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers");
        let out = Command::new(python)
            .arg(peers.join("plain.py"))
            .arg(w.name)
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
            peak_mib: f64::NAN,
        };
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--child", variant, w.name])
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("--child") {
        tracing_subscriber::fmt().with_writer(std::io::sink).init();
        let w = WORKLOADS.iter().find(|w| w.name == args[2]).expect("a workload");
        let (steps, seconds) = measure(&args[1], w);
        println!(
            "{{\"steps\":{steps},\"seconds\":{seconds},\"us_per_step\":{},\"peak_mib\":{}}}",
            1e6 * seconds / steps as f64,
            peak_rss_mib()
        );
        return;
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let rounds: usize = value("--rounds").map_or(5, |r| r.parse().expect("--rounds N"));
    let names = value("--workloads").unwrap_or_else(|| "seed,tiny,mlp".into());
    let python = std::env::var_os("TRAINMON_PYTHON").is_some();
    // `trainmon_lazy`: the same with running values kept on the device (what CUDA gets), to
    // measure which way of reading is cheaper on the CPU.
    let mut variants = vec!["trainmon", "handwritten", "trainmon_lazy", "handwritten_optim"];
    if python {
        variants.push("python");
    }
    let mut lines = Vec::new();
    for w in WORKLOADS.iter().filter(|w| names.split(',').any(|n| n == w.name)) {
        let mut runs: Vec<Vec<Run>> = variants.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            // Interleaved, in a rotating order, so that drifts of the machine hit all alike.
            for k in 0..variants.len() {
                let i = (k + round) % variants.len();
                runs[i].push(spawn(variants[i], w));
            }
        }
        let us: Vec<f64> = runs
            .iter()
            .map(|r| median(r.iter().map(|r| r.us_per_step).collect()))
            .collect();
        let mib: Vec<f64> = runs
            .iter()
            .map(|r| median(r.iter().map(|r| r.peak_mib).collect()))
            .collect();
        let ratio = us[0] / us[1];
        let loop_ratio = us[0] / us[3];
        let python_part = if python {
            format!(" | python plain {:8.2} µs/step", us[4])
        } else {
            String::new()
        };
        eprintln!(
            "{:5} trainmon {:8.2} µs/step {:7.1} MiB | hand-written {:8.2} µs/step {:7.1} MiB | ratio {:.3} | \
             trainmon with lazy reads {:8.2} µs/step | hand-written, trainmon's Adam {:8.2} µs/step, loop ratio {:.3}\
             {python_part}",
            w.name, us[0], mib[0], us[1], mib[1], ratio, us[2], us[3], loop_ratio,
        );
        let mut line = format!(
            "{{\"workload\":\"{}\",\"trainmon_us_per_step\":{:.3},\"handwritten_us_per_step\":{:.3},\"ratio\":{:.4},\"rounds\":{rounds},\"trainmon_peak_mib\":{:.1},\"handwritten_peak_mib\":{:.1},\"memory_ratio\":{:.4}",
            w.name, us[0], us[1], ratio, mib[0], mib[1], mib[0] / mib[1]
        );
        line.push_str(&format!(",\"trainmon_lazy_us_per_step\":{:.3}", us[2]));
        line.push_str(&format!(
            ",\"handwritten_optim_us_per_step\":{:.3},\"loop_ratio\":{loop_ratio:.4}",
            us[3]
        ));
        if python {
            line.push_str(&format!(",\"python_plain_us_per_step\":{:.3}", us[4]));
        }
        line.push('}');
        lines.push(line);
    }
    for line in lines {
        println!("{line}");
    }
}
