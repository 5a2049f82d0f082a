//! The data-parallel benchmark: what averaging the gradients over 2 processes (c10d, Gloo over
//! loopback) costs per step on the mlp workload, against 1 process with the same threads.
//!
//! - **Workload**: an MLP 784 → 256 → 10 (203 530 parameters, 0.81 MB of fp32 gradients),
//!   cross-entropy, Adam, batches of 64 per process, synthetic data; libtorch with 1 intra-op
//!   thread in every process (`tch::set_num_threads(1)`).
//! - **Timed**, each round in turn: `single` — one process, a fit of 2 epochs; `ranks` — two
//!   processes of this binary (ranks of a group over loopback), the same fit with
//!   `data_parallel` (each rank on half of every epoch: half the steps, each averaging the
//!   gradients of 2 × 64 samples); `all_reduce` — in the same two processes, the mean of one
//!   0.81 MB buffer, alone, 200 times, and of a 2-float flag (a collective's latency). Per
//!   step: an epoch's wall time (`EpochLogs::time`) over its batches; medians over epochs and
//!   rounds.
//! - **Figures**: µs per step of each; `all_reduce / single` (the collective's share of a
//!   step); samples per second of both and their ratio (the scaling of 2 processes on this
//!   machine's 2 cores); and, on paper, what a second machine adds: a ring all-reduce sends and
//!   receives 2 (n − 1) / n of the gradients per rank and step.
//!
//! Prints the figures to stderr, then one JSON line to stdout, last.
//! Run: `eval "$(cargo xtask env)"; cargo bench -p trainmon --bench data_parallel [-- --rounds N]`.

use std::process::{Command, Stdio};
use std::time::Instant;
use tch::nn;
use tch::{Device, Kind, Tensor};
use trainmon::dist::ProcessGroup;
use trainmon::{Hooks, TensorDataset, Trainer};

const SAMPLES: i64 = 16384;
const BATCH: usize = 64;
const EPOCHS: usize = 2;
const REDUCES: usize = 200;

fn data() -> TensorDataset {
    tch::manual_seed(0);
    let x = Tensor::randn([SAMPLES, 784], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [SAMPLES], (Kind::Int64, Device::Cpu));
    TensorDataset::new(x, y).unwrap()
}

/// µs per step of each epoch of a fit (with `group`: data-parallel).
fn fit(group: Option<&ProcessGroup>) -> (Vec<f64>, usize) {
    let data = data();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = nn::seq()
        .add(nn::linear(vs.root() / "fc1", 784, 256, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(vs.root() / "fc2", 256, 10, Default::default()));
    let params: usize = vs.trainable_variables().iter().map(|t| t.numel()).sum();
    let mut trainer = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(EPOCHS)
        .batch_size(BATCH)
        .seed(0)
        .hooks(Hooks::none());
    if let Some(group) = group {
        trainer = trainer.data_parallel(group);
    }
    let history = trainer.fit(&data).unwrap();
    let per_step = history
        .epochs()
        .iter()
        .map(|e| e.time().as_secs_f64() * 1e6 / e.batches() as f64)
        .collect();
    (per_step, params)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A rank: the data-parallel fit, then the all-reduce alone; a JSON line.
fn rank() {
    let group = ProcessGroup::from_env().unwrap();
    let grads = Tensor::ones([203_530], (Kind::Float, Device::Cpu));
    let mut reduces = Vec::new();
    for _ in 0..REDUCES {
        let started = Instant::now();
        group.all_reduce_mean(&[&grads]).unwrap();
        reduces.push(started.elapsed().as_secs_f64() * 1e6);
    }
    // A flag's worth: the latency of a collective (the loop's stop check after a batch's hooks,
    // where some rank has hooks, is one).
    let flag = Tensor::zeros([2], (Kind::Float, Device::Cpu));
    let mut tiny = Vec::new();
    for _ in 0..REDUCES {
        let started = Instant::now();
        group.all_reduce_sum(&[&flag]).unwrap();
        tiny.push(started.elapsed().as_secs_f64() * 1e6);
    }
    let (steps, _) = fit(Some(&group));
    println!(
        "{}",
        serde_json::json!({ "steps": steps, "all_reduce": median(reduces), "flag": median(tiny) })
    );
}

fn two_ranks() -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let children: Vec<_> = (0..2)
        .map(|r| {
            Command::new(std::env::current_exe().unwrap())
                .env("TRAINMON_BENCH_RANK", "1")
                .env("RANK", r.to_string())
                .env("WORLD_SIZE", "2")
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut steps, mut reduces, mut flags) = (Vec::new(), Vec::new(), Vec::new());
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        steps.extend(line["steps"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()));
        reduces.push(line["all_reduce"].as_f64().unwrap());
        flags.push(line["flag"].as_f64().unwrap());
    }
    (steps, reduces, flags)
}

fn main() {
    tch::set_num_threads(1);
    if std::env::var_os("TRAINMON_BENCH_RANK").is_some() {
        return rank();
    }
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map_or(5, |n| n.parse().expect("--rounds N"));
    let (mut single, mut ranks, mut reduces, mut flags, mut params) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0);
    for round in 0..rounds {
        // Alternate which goes first.
        for which in [round % 2, 1 - round % 2] {
            if which == 0 {
                let (steps, p) = fit(None);
                single.extend(steps);
                params = p;
            } else {
                let (steps, r, f) = two_ranks();
                ranks.extend(steps);
                reduces.extend(r);
                flags.extend(f);
            }
        }
    }
    let (single, ranks, all_reduce, flag) = (median(single), median(ranks), median(reduces), median(flags));
    let bytes = params * 4;
    let single_rate = BATCH as f64 / single * 1e6;
    let ranks_rate = 2.0 * BATCH as f64 / ranks * 1e6;
    eprintln!("data-parallel, mlp (784-256-10, {params} parameters, {bytes} bytes of gradients), batch {BATCH} a process, 1 thread each, {rounds} rounds");
    eprintln!("  µs per step: 1 process {single:.1}; 2 ranks {ranks:.1} (each step averages 2 × {BATCH} samples)");
    eprintln!(
        "  all-reduce of the gradients alone: {all_reduce:.1} µs = {:.1} % of a 1-process step",
        100.0 * all_reduce / single
    );
    eprintln!(
        "  a collective's latency (a stop flag, 2 floats): {flag:.1} µs; beside the gradients' the loop makes one a batch (the batch's loss, outputs and targets gathered, {} doubles), and a stop check after the batch's begin and end hooks where some rank has hooks (none here)",
        2 * (1 + BATCH * 11)
    );
    eprintln!(
        "  samples/s: 1 process {single_rate:.0}; 2 ranks {ranks_rate:.0} ({:.2}× on this machine's 2 cores)",
        ranks_rate / single_rate
    );
    eprintln!(
        "  on a network, a ring all-reduce sends and receives 2 (n − 1) / n × {bytes} bytes per rank and step: {:.2} MB at n = 2 ({:.2} ms at 10 Gb/s)",
        bytes as f64 / 1e6,
        bytes as f64 * 8.0 / 10e9 * 1e3
    );
    println!(
        "{}",
        serde_json::json!({
            "params": params, "single_us_per_step": single, "ranks_us_per_step": ranks,
            "all_reduce_us": all_reduce, "all_reduce_share": all_reduce / single, "flag_us": flag,
            "scaling": ranks_rate / single_rate, "rounds": rounds,
        })
    );
}
