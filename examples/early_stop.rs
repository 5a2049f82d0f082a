//! The classic PyTorch callbacks tutorial, with trainmon: a random 20-feature dataset, a linear
//! classifier, a batch logger every 10 batches, an epoch logger, early stopping with patience,
//! and plots of loss, accuracy and time per epoch.
//!
//! ```text
//! cargo run --example early_stop                  # 5 epochs, patience 2
//! cargo run --example early_stop -- --epochs 200  # long enough for early stopping to fire
//! ```

use anyhow::Result;
use clap::Parser;
use std::path::PathBuf;
use tch::{nn, Device, Kind, Tensor};
use trainmon::output::{plot, RunDir};
use trainmon::prelude::*;

#[derive(Parser)]
#[command(about = "The callbacks tutorial, with trainmon hooks")]
struct Args {
    /// Epochs to train at most.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Epochs without a lower loss before early stopping.
    #[arg(long, default_value_t = 2)]
    patience: u32,
    /// Seed of the data, the initial weights and the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where run directories go (`OUT/early_stop/version_N`).
    #[arg(long, default_value = "runs")]
    out: PathBuf,
}

/// The `--patience` flag, given to the trainer as a resource for the early-stopping hook.
struct Patience(u32);

// The tutorial's `TrainingLogger`: three hooks.

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

// Priority 1: the epoch's summary comes before early stopping's verdict (priority 0).
#[on_epoch_end(priority = 1)]
fn epoch_finished(epoch: &EpochLogs) {
    tracing::info!(
        "Epoch {} finished in {:.2} seconds.",
        epoch.epoch(),
        epoch.time().as_secs_f64()
    );
}

// The tutorial's `EarlyStopping(patience)`: its counters live in `Local`s, private to it.
#[on_epoch_end]
fn early_stopping(
    epoch: &EpochLogs,
    patience: Res<Patience>,
    mut best_loss: Local<Option<f64>>,
    mut counter: Local<u32>,
) -> Control {
    let patience = patience.0;
    match *best_loss {
        Some(best) if epoch.loss() >= best => {
            *counter += 1;
            if *counter >= patience {
                tracing::info!("Early stopping triggered.");
                return Control::stop(format!("loss did not improve on {best:.4} for {patience} epochs"));
            }
        }
        _ => {
            *best_loss = Some(epoch.loss());
            *counter = 0;
        }
    }
    Control::Continue
}

fn main() -> Result<()> {
    let args = Args::parse();
    // The tutorial's bare lines; `RUST_LOG` sets the level (`info` by default).
    trainmon::logging::Logging::new().bare().init()?;

    // RandomDataset(1000, 20): standard normal features, labels 0 or 1.
    tch::manual_seed(args.seed as i64);
    let features = Tensor::randn([1000, 20], (Kind::Float, Device::Cpu));
    let labels = Tensor::randint(2, [1000], (Kind::Int64, Device::Cpu));
    let data = TensorDataset::new(features, labels)?;

    // Created before training, so that an unwritable `--out` fails before any work is done.
    let run = RunDir::create(&args.out, "early_stop")?;

    // SimpleNN: one fully connected layer, 20 → 2, initialised as PyTorch's `nn.Linear` is:
    // weights and bias uniform in ±1/√fan_in. tch's default draws the weights from a wider
    // distribution (about 2.4 times), which would start the loss near 1.1 instead of the
    // tutorial's 0.7.
    let vs = nn::VarStore::new(Device::Cpu);
    let bound = 1.0 / (20f64).sqrt();
    let uniform = nn::Init::Uniform { lo: -bound, up: bound };
    let config = nn::LinearConfig {
        ws_init: uniform,
        bs_init: Some(uniform),
        bias: true,
    };
    let model = nn::linear(vs.root() / "fc", 20, 2, config);

    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(args.epochs)
        .batch_size(32)
        .shuffle(true)
        .seed(args.seed)
        .resource(Patience(args.patience))
        .fit(&data)?;

    // Step 9 of the tutorial: loss, accuracy and time per epoch.
    plot::write_all(&history, run.path())?;
    // Everything the run wrote, what `fit`'s summary listed and what came after it.
    tracing::info!("Outputs: {}", run.describe()?);
    tracing::info!("Run directory: {}", run.path().display());
    Ok(())
}
