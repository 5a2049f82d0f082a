//! Mixed precision on the CPU: `Trainer::precision(Precision::Bf16Mixed)` against fp32 on the
//! `mlp` workload of the training-loop benchmark (`training_loop.rs`): 60000 × 784 standard
//! normal features, 10 classes (integer labels drawn at random), batches of 64,
//! Linear(784, 256) → ReLU → Linear(256, 10), cross-entropy, Adam 1e-3, 2 epochs, no hooks.
//!
//! How it measures, as `training_loop.rs` does in spirit: one process builds the data once and
//! the model's initial weights once; a *segment* is one whole fit of the workload (2 epochs)
//! from those weights with a fresh optimizer, so every segment of a variant computes the same
//! thing and ends with the same loss. Each round runs one segment of each variant back to back,
//! the order alternating from round to round (fp32 first, then bf16 first…), so that whatever
//! slows the machine slows both alike; a round's ratio pairs its two segments. libtorch runs
//! with 1 intra-op thread (`--threads N`), and a segment is timed by the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`: time the scheduler gives to other processes is not counted)
//! and by the wall clock. After a warm-up round, `--rounds N` rounds (default 5).
//!
//! Prints per round the times, then the medians (ms per epoch, µs per step), the median of the
//! paired ratios bf16 / fp32 with its range, and the final losses to stderr; one JSON line to
//! stdout, last.
//!
//! `OMP_NUM_THREADS=1 cargo bench -p trainmon --bench precision -- [--rounds N] [--threads N]
//! [--epochs N] [--samples N]`

use std::time::{Duration, Instant};
use tch::nn;
use tch::{Device, Kind, Tensor};
use trainmon::{Hooks, Precision, TensorDataset, Trainer};

const FEATURES: i64 = 784;
const HIDDEN: i64 = 256;
const CLASSES: i64 = 10;
const BATCH: usize = 64;

/// The variants, in a round's order when it starts with the first.
const VARIANTS: [(&str, Precision); 2] = [("fp32", Precision::Fp32), ("bf16", Precision::Bf16Mixed)];

struct Args {
    rounds: usize,
    threads: i32,
    epochs: usize,
    samples: i64,
}

fn args() -> Args {
    let mut args = Args {
        rounds: 5,
        threads: 1,
        epochs: 2,
        samples: 60_000,
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        let mut value = || {
            given
                .next()
                .unwrap_or_else(|| panic!("{arg} needs a value"))
                .parse::<i64>()
                .unwrap_or_else(|e| panic!("{arg}: {e}"))
        };
        match arg.as_str() {
            "--rounds" => args.rounds = value() as usize,
            "--threads" => args.threads = value() as i32,
            "--epochs" => args.epochs = value() as usize,
            "--samples" => args.samples = value(),
            // What cargo bench passes to every harness.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// The calling thread's CPU time (user and system).
fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: fills the timespec; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn model(vs: &nn::VarStore) -> nn::Sequential {
    nn::seq()
        .add(nn::linear(vs.root() / "fc1", FEATURES, HIDDEN, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(vs.root() / "fc2", HIDDEN, CLASSES, Default::default()))
}

/// One segment: a whole fit from the initial weights; its CPU time, wall time and final loss.
fn segment(
    precision: Precision,
    initial: &nn::VarStore,
    data: &TensorDataset,
    epochs: usize,
) -> (Duration, Duration, f64) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = model(&vs);
    vs.copy(initial).expect("the same variables");
    let (cpu, wall) = (thread_cpu_time(), Instant::now());
    let history = Trainer::new(&vs, &net)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(epochs)
        .batch_size(BATCH)
        .seed(7)
        .precision(precision)
        .hooks(Hooks::none())
        .fit(data)
        .expect("the benchmark trains");
    let (cpu, wall) = (thread_cpu_time() - cpu, wall.elapsed());
    (cpu, wall, history.last().expect("an epoch").loss())
}

/// The value a `q` of the way through `sorted` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn main() {
    let args = args();
    tch::set_num_threads(args.threads);
    tch::manual_seed(1);
    let data = TensorDataset::new(
        Tensor::randn([args.samples, FEATURES], (Kind::Float, Device::Cpu)),
        Tensor::randint(CLASSES, [args.samples], (Kind::Int64, Device::Cpu)),
    )
    .expect("a valid dataset");
    let initial = nn::VarStore::new(Device::Cpu);
    let _ = model(&initial);
    let steps = (args.samples as usize).div_ceil(BATCH) * args.epochs;
    eprintln!(
        "mlp: {} samples, {} epochs ({steps} steps) per segment, {} thread(s), {} rounds after a warm-up",
        args.samples, args.epochs, args.threads, args.rounds
    );

    // (cpu, wall) per variant, per round; the losses.
    let mut times: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    let mut losses = [f64::NAN; 2];
    for round in 0..=args.rounds {
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut line = format!("round {round}{}:", if round == 0 { " (warm-up)" } else { "" });
        for v in order {
            let (name, precision) = VARIANTS[v];
            let (cpu, wall, loss) = segment(precision, &initial, &data, args.epochs);
            line += &format!(
                " {name} {:.2} s cpu ({:.2} s wall), loss {loss:.5};",
                cpu.as_secs_f64(),
                wall.as_secs_f64()
            );
            if round > 0 {
                times[v].push((cpu.as_secs_f64(), wall.as_secs_f64()));
            }
            losses[v] = loss;
        }
        eprintln!("{line}");
    }

    let spread = |v: usize| {
        let mut values: Vec<f64> = times[v].iter().map(|t| t.0 * 1e3 / args.epochs as f64).collect();
        values.sort_by(f64::total_cmp);
        (values[0], quantile(&values, 0.25), quantile(&values, 0.75))
    };
    let per_epoch_ms = |v: usize, wall: bool| {
        let mut values: Vec<f64> = times[v]
            .iter()
            .map(|t| if wall { t.1 } else { t.0 } * 1e3 / args.epochs as f64)
            .collect();
        median(&mut values)
    };
    let mut ratios: Vec<f64> = times[1].iter().zip(&times[0]).map(|(b, f)| b.0 / f.0).collect();
    let mut wall_ratios: Vec<f64> = times[1].iter().zip(&times[0]).map(|(b, f)| b.1 / f.1).collect();
    let ratio = median(&mut ratios);
    let wall_ratio = median(&mut wall_ratios);
    let (fp32, bf16) = (per_epoch_ms(0, false), per_epoch_ms(1, false));
    let us_per_step = |ms_per_epoch: f64| ms_per_epoch * 1e3 * args.epochs as f64 / steps as f64;
    eprintln!(
        "fp32: {fp32:.0} ms/epoch ({:.1} µs/step) [wall {:.0}]; bf16: {bf16:.0} ms/epoch ({:.1} µs/step) [wall {:.0}]",
        us_per_step(fp32),
        per_epoch_ms(0, true),
        us_per_step(bf16),
        per_epoch_ms(1, true)
    );
    for (v, (name, _)) in VARIANTS.iter().enumerate() {
        let (min, p25, p75) = spread(v);
        eprintln!("{name}: ms/epoch min {min:.0}, p25–p75 {p25:.0}–{p75:.0}");
    }
    eprintln!(
        "bf16 / fp32: {ratio:.3} (paired, range {:.3}–{:.3}) [wall {wall_ratio:.3}]; final loss fp32 {:.5}, bf16 {:.5}",
        ratios[0],
        ratios[ratios.len() - 1],
        losses[0],
        losses[1]
    );
    println!(
        "{{\"workload\":\"mlp\",\"threads\":{},\"rounds\":{},\"epochs\":{},\"fp32_ms_per_epoch\":{fp32:.1},\
         \"bf16_ms_per_epoch\":{bf16:.1},\"ratio_bf16_fp32\":{ratio:.4},\"ratio_bf16_fp32_range\":[{:.4},{:.4}],\
         \"ratio_bf16_fp32_wall\":{wall_ratio:.4},\"fp32_final_loss\":{:.6},\"bf16_final_loss\":{:.6}}}",
        args.threads,
        args.rounds,
        args.epochs,
        ratios[0],
        ratios[ratios.len() - 1],
        losses[0],
        losses[1]
    );
}
