//! Data-parallel training on PyTorch's own distributed engine (c10d: Gloo on the CPU, NCCL on
//! GPUs, one per process): every process trains a replica of an MLP on its share of each epoch,
//! the gradients averaged over the processes at every step. Rank 0 writes the outputs and
//! prints its run directory last.
//!
//! ```text
//! torchrun --no-python --nproc-per-node 2 target/release/examples/data_parallel
//! cargo xtask run --release --example data_parallel -- --nproc 2     # launches torchrun itself
//! ```
//!
//! With `--nproc N` and no `RANK` in the environment, the example starts `torchrun` on itself
//! (the bootstrap venv's, next to `TRAINMON_PYTHON`, or the one on `PATH`).

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::path::PathBuf;
use tch::nn;
use tch::{Device, Kind, Tensor};
use trainmon::dist::ProcessGroup;
use trainmon::hooks::{Logger, MetricFiles, Summary};
use trainmon::output::RunDir;
use trainmon::prelude::*;

#[derive(Parser)]
#[command(about = "Data-parallel training of an MLP on c10d (Gloo, NCCL), launched by torchrun")]
struct Args {
    /// Launch this many processes with torchrun (when not launched by it already).
    #[arg(long)]
    nproc: Option<usize>,
    /// Epochs to train.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Samples of the synthetic task.
    #[arg(long, default_value_t = 16384)]
    samples: i64,
    /// Batch size of each process (the step averages over `nproc` times as many samples).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Where run directories go (`OUT/data_parallel/version_N`).
    #[arg(long, default_value = "runs")]
    out: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let (Some(nproc), None) = (args.nproc, std::env::var_os("RANK")) {
        return launch(nproc);
    }
    trainmon::logging::init()?;
    let group = ProcessGroup::from_env()?;
    let rank = group.rank();
    let world = group.world_size();

    // The same data on every rank (the same seed); each trains on its share.
    tch::manual_seed(0);
    let features = Tensor::randn([args.samples, 256], (Kind::Float, Device::Cpu));
    let rule = Tensor::randn([256, 10], (Kind::Float, Device::Cpu));
    let labels = features.matmul(&rule).argmax(1, false);
    let data = TensorDataset::new(features, labels)?;

    // Rank 0's initial weights are broadcast to the others when the fit starts.
    tch::manual_seed(rank as i64 + 1);
    // Its local rank's GPU where there are GPUs, else the CPU.
    let vs = nn::VarStore::new(group.device());
    let model = nn::seq()
        .add(nn::linear(vs.root() / "fc1", 256, 1024, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(vs.root() / "fc2", 1024, 1024, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(vs.root() / "fc3", 1024, 10, Default::default()));

    // Only rank 0 writes: the outputs are rank-0 hooks, and only it makes a run directory.
    let run = if rank == 0 {
        Some(RunDir::create(&args.out, "data_parallel")?)
    } else {
        None
    };
    let metrics = run.as_ref().map_or_else(PathBuf::new, |r| r.path().join("metrics"));
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(args.epochs)
        .batch_size(args.batch_size)
        .seed(0)
        .validation_split(0.1)
        .with(Logger::new().every(50))
        .with(MetricFiles::new(metrics))
        .with(Summary::new().monitor("val_accuracy"))
        .data_parallel(&group)
        .fit(&data)?;

    if let Some(run) = run {
        vs.save(run.path().join("final.safetensors"))?;
        std::fs::write(run.path().join("history.json"), serde_json::to_string_pretty(&history)?)?;
        tracing::info!("{world} processes, {} samples a step", world * args.batch_size);
        tracing::info!("Outputs: {}", run.describe()?);
        tracing::info!("Run directory: {}", run.path().display());
    }
    Ok(())
}

/// Starts `torchrun --no-python --nproc-per-node N` on this binary with the same arguments.
fn launch(nproc: usize) -> Result<()> {
    let torchrun = std::env::var_os("TRAINMON_PYTHON")
        .map(|python| PathBuf::from(python).with_file_name("torchrun"))
        .filter(|t| t.exists())
        .unwrap_or_else(|| PathBuf::from("torchrun"));
    let me = std::env::current_exe()?;
    let rest: Vec<String> = std::env::args()
        .skip(1)
        .scan(false, |skip, a| {
            let keep = !(*skip || a == "--nproc" || a.starts_with("--nproc="));
            *skip = a == "--nproc";
            Some(keep.then_some(a))
        })
        .flatten()
        .collect();
    let status = std::process::Command::new(&torchrun)
        .args(["--no-python", "--nproc-per-node", &nproc.to_string()])
        .arg(&me)
        .args(&rest)
        .status()
        .with_context(|| {
            format!(
                "could not start {} (it comes with PyTorch: run through `cargo xtask run`, which sets \
                 TRAINMON_PYTHON, or put a torchrun on PATH)",
                torchrun.display()
            )
        })?;
    if !status.success() {
        bail!("torchrun ended with {status}");
    }
    Ok(())
}
