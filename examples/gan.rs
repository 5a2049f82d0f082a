//! A tiny GAN with two optimizers: a generator learns to draw points of a 2-D distribution —
//! eight Gaussians on a ring — against a discriminator, each with its own Adam, stepped in turn
//! by a training step that optimizes by hand (`TrainStep::manual_optimization`). Both models
//! live in one `VarStore`, under `generator` and `discriminator`; the hooks log, write metric
//! files and checkpoint them as for any fit, and a resume point would keep both optimizers'
//! states. It writes samples of the generator before and after training and how close they
//! are to the ring's modes into its run directory, and says where that is last.
//!
//! ```text
//! cargo run --release --example gan                  # 60 epochs, a few seconds
//! cargo run --release --example gan -- --epochs 200  # closer to every mode
//! ```

use anyhow::Result;
use clap::Parser;
use std::path::PathBuf;
use tch::nn::{self, Module};
use tch::{Device, Kind, Reduction, Tensor};
use trainmon::hooks::{Logger, MetricFiles, ModelCheckpoint, Summary};
use trainmon::output::{plot, RunDir};
use trainmon::prelude::*;
use trainmon::{BatchDataset, BoxError};

#[derive(Parser)]
#[command(about = "A tiny GAN on eight Gaussians, two optimizers stepped by hand")]
struct Args {
    /// Epochs to train.
    #[arg(long, default_value_t = 60)]
    epochs: usize,
    /// Samples of the distribution to learn from.
    #[arg(long, default_value_t = 8192)]
    samples: i64,
    /// Seed of the data, the initial weights, the noise and the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where run directories go (`OUT/gan/version_N`).
    #[arg(long, default_value = "runs")]
    out: PathBuf,
}

/// Modes of the distribution: eight points on a circle of radius 2.
const MODES: i64 = 8;
const RADIUS: f64 = 2.0;
/// The spread of each Gaussian around its mode.
const SPREAD: f64 = 0.05;
/// Noise the generator draws from.
const NOISE: i64 = 4;

/// The modes, `[8, 2]`.
fn modes() -> Tensor {
    let angles = Tensor::arange(MODES, (Kind::Float, Device::Cpu)) * (2.0 * std::f64::consts::PI / MODES as f64);
    Tensor::stack(&[angles.cos(), angles.sin()], 1) * RADIUS
}

/// Points of the distribution: a mode each, with Gaussian noise around it.
struct Ring {
    points: Tensor,
}

impl Ring {
    fn new(samples: i64) -> Self {
        let which = Tensor::randint(MODES, [samples], (Kind::Int64, Device::Cpu));
        let points = modes().index_select(0, &which) + Tensor::randn([samples, 2], (Kind::Float, Device::Cpu)) * SPREAD;
        Ring { points }
    }
}

impl BatchDataset for Ring {
    /// A batch is the points alone: a tensor is a batch.
    type Batch = Tensor;

    fn len(&self) -> usize {
        self.points.size()[0] as usize
    }

    fn batch(&self, indices: &[i64]) -> trainmon::Result<Tensor> {
        Ok(self.points.index_select(0, &Tensor::from_slice(indices)))
    }
}

fn mlp(path: nn::Path<'_>, inputs: i64, outputs: i64) -> nn::Sequential {
    nn::seq()
        .add(nn::linear(&path / "l1", inputs, 64, Default::default()))
        .add_fn(|x| x.leaky_relu())
        .add(nn::linear(&path / "l2", 64, 64, Default::default()))
        .add_fn(|x| x.leaky_relu())
        .add(nn::linear(&path / "l3", 64, outputs, Default::default()))
}

struct Gan {
    generator: nn::Sequential,
    discriminator: nn::Sequential,
}

impl Gan {
    /// `n` points drawn by the generator.
    fn sample(&self, n: i64, device: Device) -> Tensor {
        self.generator
            .forward(&Tensor::randn([n, NOISE], (Kind::Float, device)))
    }
}

fn bce(logits: &Tensor, real: bool) -> Result<Tensor, tch::TchError> {
    let target = if real { logits.ones_like() } else { logits.zeros_like() };
    logits.f_binary_cross_entropy_with_logits::<Tensor>(&target, None, None, Reduction::Mean)
}

/// One batch: a step of the discriminator (real points against the generator's, detached),
/// then one of the generator (its points judged real). The generator's loss is the one logged.
impl TrainStep<Tensor> for Gan {
    fn manual_optimization(&self) -> bool {
        true
    }

    fn training_step(&mut self, real: &Tensor, ctx: &StepContext<'_>) -> Result<StepOutput, BoxError> {
        let n = real.size()[0];

        ctx.zero_grad("discriminator")?;
        let fake = self.sample(n, ctx.device()).detach();
        let d_loss =
            (bce(&self.discriminator.forward(real), true)? + bce(&self.discriminator.forward(&fake), false)?) / 2;
        ctx.backward(&d_loss)?;
        ctx.optimizer_step("discriminator")?;

        ctx.zero_grad("generator")?;
        let g_loss = bce(&self.discriminator.forward(&self.sample(n, ctx.device())), true)?;
        ctx.backward(&g_loss)?;
        ctx.optimizer_step("generator")?;

        Ok(StepOutput::loss(g_loss.detach()))
    }
}

/// How close `points` are to the distribution: their mean distance to the nearest mode, and how
/// many modes hold at least 5 % of them (within 0.5 of the mode).
fn quality(points: &Tensor) -> serde_json::Value {
    let points = points.to_device(Device::Cpu);
    let distances = points
        .unsqueeze(1)
        .f_sub(&modes().unsqueeze(0))
        .unwrap()
        .square()
        .sum_dim_intlist(2, false, Kind::Float)
        .sqrt();
    let (nearest, mode) = distances.min_dim(1, false);
    let n = points.size()[0] as f64;
    let covered = (0..MODES)
        .filter(|m| {
            let near = mode.eq(*m).logical_and(&nearest.lt(0.5));
            near.sum(Kind::Int64).int64_value(&[]) as f64 / n >= 0.05
        })
        .count();
    serde_json::json!({
        "mean_distance_to_nearest_mode": nearest.mean(Kind::Float).double_value(&[]),
        "modes_covered": covered,
    })
}

fn write_points(path: &std::path::Path, points: &Tensor) -> Result<()> {
    let values = Vec::<f32>::try_from(points.to_device(Device::Cpu).reshape([-1]))?;
    let mut csv = String::from("x,y\n");
    for xy in values.chunks(2) {
        csv.push_str(&format!("{},{}\n", xy[0], xy[1]));
    }
    std::fs::write(path, csv)?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    trainmon::logging::init()?;
    let run = RunDir::create(&args.out, "gan")?;

    tch::manual_seed(args.seed as i64);
    let data = Ring::new(args.samples);
    let vs = nn::VarStore::new(Device::cuda_if_available());
    let mut gan = Gan {
        generator: mlp(vs.root() / "generator", NOISE, 2),
        discriminator: mlp(vs.root() / "discriminator", 2, 1),
    };
    let before = tch::no_grad(|| gan.sample(2000, vs.device()));

    let history = Trainer::for_steps(&vs)
        .optimizer_for(
            "discriminator",
            "discriminator",
            nn::Adam {
                beta1: 0.5,
                ..Default::default()
            },
            1e-3,
        )
        .optimizer_for(
            "generator",
            "generator",
            nn::Adam {
                beta1: 0.5,
                ..Default::default()
            },
            1e-3,
        )
        .epochs(args.epochs)
        .batch_size(256)
        .seed(args.seed)
        .with(Logger::new().every(0))
        // The 2 latest, and `last`: a GAN's losses do not rank its generators.
        .with(
            ModelCheckpoint::new(run.path().join("checkpoints"))
                .save_top_k(2)
                .save_last(true),
        )
        .with(MetricFiles::new(run.path().join("metrics")))
        .with(Summary::new().outputs(run.path()))
        .fit_steps(&mut gan, &data, None)?;

    let after = tch::no_grad(|| gan.sample(2000, vs.device()));
    write_points(&run.path().join("samples_before.csv"), &before)?;
    write_points(&run.path().join("samples_after.csv"), &after)?;
    let report = serde_json::json!({ "before": quality(&before), "after": quality(&after) });
    std::fs::write(run.path().join("quality.json"), serde_json::to_string_pretty(&report)?)?;
    tracing::info!("generator's samples, before and after: {report}");
    plot::write_all(&history, run.path())?;
    // Everything the run wrote, what `fit`'s summary listed and what came after it.
    tracing::info!("Outputs: {}", run.describe()?);
    tracing::info!("Run directory: {}", run.path().display());
    Ok(())
}
