//! Every built-in hook at once, with a validation set: logging, progress bars, Ctrl-C handling, NaN and time guards, early
//! stopping with the best weights restored, checkpoints, a learning-rate schedule and monitor,
//! throughput, CSV/JSONL metric files (with `status.json`, which `cargo trainmon watch` reads
//! live), TensorBoard event files and plots — all written into one run directory, with the
//! final weights (`final.safetensors`) and the history (`history.json`).
//!
//! With `--resume DIR` the run directory is `DIR` and training is resumable: kill the process
//! (even with SIGKILL) and run the same command again, and it goes on from the end of the last
//! epoch it finished (or its last step point, with `--resume-steps N`), ending as if it had
//! never stopped.
//!
//! ```text
//! cargo run --example full_monitoring
//! cargo run --example full_monitoring -- --epochs 100 --out /tmp/runs
//! cargo run --example full_monitoring -- --epochs 100 --resume /tmp/runs/long
//! cargo run --example full_monitoring -- --epochs 100 --resume /tmp/runs/long --resume-steps 20
//! ```

use anyhow::Result;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use tch::nn;
use tch::{Device, Kind, Tensor};
use trainmon::hooks::{
    EarlyStopping, Interrupt, Logger, LrMonitor, LrScheduler, MetricFiles, ModelCheckpoint, Plots, Progress, Summary,
    TensorBoard, TerminateOnNaN, Throughput, TimeLimit,
};
use trainmon::output::RunDir;
use trainmon::prelude::*;
use trainmon::{Event, HookSpec};

#[derive(Parser)]
#[command(about = "Every built-in hook of trainmon, with a validation set")]
struct Args {
    /// Epochs to train at most.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Seed of the data, the initial weights and the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Epochs without a better `val_loss` before early stopping.
    #[arg(long, default_value_t = 5)]
    patience: usize,
    /// Where run directories go (`OUT/full_monitoring/version_N`).
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Train in this run directory, resumably: run again after a crash to go on.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// With `--resume`: also a resume point every this many steps, within epochs.
    #[arg(long, default_value_t = 0)]
    resume_steps: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Log lines on stdout (`RUST_LOG`, default `info`), progress bars on a terminal's stderr.
    trainmon::logging::init()?;
    let run = match &args.resume {
        Some(dir) => RunDir::open(dir)?,
        None => RunDir::create(&args.out, "full_monitoring")?,
    };

    // 4000 samples of 20 features; the class follows a hidden linear rule, with noise.
    tch::manual_seed(args.seed as i64);
    let features = Tensor::randn([4000, 20], (Kind::Float, Device::Cpu));
    let rule = Tensor::randn([20, 1], (Kind::Float, Device::Cpu));
    let noise = Tensor::randn([4000, 1], (Kind::Float, Device::Cpu)) * 2.0;
    let labels = (features.matmul(&rule) + noise)
        .gt(0.0)
        .to_kind(Kind::Int64)
        .squeeze_dim(1);
    let data = TensorDataset::new(features, labels)?;

    let vs = nn::VarStore::new(Device::cuda_if_available());
    let model = nn::seq()
        .add(nn::linear(vs.root() / "fc1", 20, 64, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(vs.root() / "fc2", 64, 2, Default::default()));

    let checkpoints = ModelCheckpoint::new(run.path().join("checkpoints"))
        .filename("{epoch:03d}-{val_loss:.4f}")
        .monitor("val_loss")
        .save_top_k(3)
        .save_last(true);
    let saved = checkpoints.saved();
    let mut trainer = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-2)
        .epochs(args.epochs)
        .batch_size(64)
        .seed(args.seed)
        .validation_split(0.2)
        .with(Interrupt::install()?)
        .with(Logger::new().every(20))
        .with(Progress::new())
        .with(TerminateOnNaN::new())
        .with(TimeLimit::new(Duration::from_secs(600)))
        .with(
            EarlyStopping::new("val_loss")
                .patience(args.patience)
                .restore_best_weights(true),
        )
        .with(checkpoints)
        .with(LrScheduler::cosine(args.epochs, 1e-4))
        .with(LrMonitor)
        .with(Throughput::new().every(0))
        .with(
            MetricFiles::new(run.path().join("metrics"))
                .steps(10)
                .monitor("val_loss"),
        )
        .with(TensorBoard::new(run.path().join("tensorboard")).steps(10))
        .with(Plots::new(run.path().join("plots")).svg(true))
        .with(Summary::new().monitor("val_loss").outputs(run.path()));
    if args.resume.is_some() {
        trainer = trainer
            .resumable(run.path().join("resume"))
            .resumable_steps(args.resume_steps);
    }
    // Once the fit has begun (a fit refused at its setup does not send anyone to watch it).
    let watched = run.path().display().to_string();
    trainer = trainer.add_hook(HookSpec::new(Event::TrainBegin, "watch_hint"), move || {
        tracing::info!("Watch it live: cargo trainmon watch {watched}")
    });
    let history = trainer.fit(&data)?;
    vs.save(run.path().join("final.safetensors"))?;
    std::fs::write(run.path().join("history.json"), serde_json::to_string_pretty(&history)?)?;

    if let Some(best) = saved.best() {
        tracing::info!("best checkpoint: {}", best.display());
    }
    // Everything the run wrote, what `fit`'s summary listed and what came after it.
    tracing::info!("Outputs: {}", run.describe()?);
    tracing::info!("Run directory: {}", run.path().display());
    Ok(())
}
