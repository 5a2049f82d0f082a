//! A character language model with a training step of its own: an embedding, an LSTM and a
//! linear head predict each next character of text the example writes itself (sentences of a
//! small grammar, nothing downloaded). Its batches are a struct of tensors (`#[derive(Batch)]`),
//! built by its own dataset; its step computes the loss over every position and hands the
//! logits to the accuracy metric. Hooks log, checkpoint and write metric files as for any fit;
//! at the end it writes a sample of generated text into the run directory, and says where the
//! run directory is last.
//!
//! ```text
//! cargo run --release --example char_lm                 # 4 epochs
//! cargo run --release --example char_lm -- --epochs 12  # text that reads like the grammar's
//! ```

use anyhow::Result;
use clap::Parser;
use std::path::PathBuf;
use tch::nn::{self, Module, RNN};
use tch::{Device, Kind, Reduction, Tensor};
use trainmon::hooks::{Logger, MetricFiles, ModelCheckpoint, Summary};
use trainmon::output::{plot, RunDir};
use trainmon::prelude::*;
use trainmon::{Accuracy, BatchDataset, BoxError};

#[derive(Parser)]
#[command(about = "A character language model trained with its own step")]
struct Args {
    /// Epochs to train.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Characters of generated training text.
    #[arg(long, default_value_t = 40_000)]
    chars: usize,
    /// Characters a sequence sees (its context).
    #[arg(long, default_value_t = 64)]
    context: i64,
    /// Seed of the text, the initial weights and the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where run directories go (`OUT/char_lm/version_N`).
    #[arg(long, default_value = "runs")]
    out: PathBuf,
}

/// Sentences of a small grammar, drawn with a seeded generator: the text the model learns.
fn generate_text(chars: usize, seed: u64) -> String {
    const SUBJECTS: [&str; 5] = ["the cat", "a dog", "the old man", "my sister", "every bird"];
    const VERBS: [&str; 5] = ["sees", "likes", "follows", "paints", "hears"];
    const OBJECTS: [&str; 5] = ["the river", "a red kite", "the moon", "two trees", "the small house"];
    // A 64-bit linear congruential generator (Knuth's MMIX constants): enough to vary sentences.
    let mut state = seed.wrapping_mul(2862933555777941757).wrapping_add(3037000493);
    let mut pick = |n: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % n
    };
    let mut text = String::with_capacity(chars + 64);
    while text.len() < chars {
        let sentence = format!("{} {} {}. ", SUBJECTS[pick(5)], VERBS[pick(5)], OBJECTS[pick(5)]);
        text.push_str(&sentence);
    }
    text.truncate(chars);
    text
}

/// The characters of a text, as ids into its sorted alphabet.
struct Vocabulary {
    chars: Vec<char>,
}

impl Vocabulary {
    fn of(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Vocabulary { chars }
    }

    fn encode(&self, text: &str) -> Vec<i64> {
        text.chars()
            .map(|c| self.chars.binary_search(&c).expect("a character of the text") as i64)
            .collect()
    }

    fn decode(&self, ids: &[i64]) -> String {
        ids.iter().map(|&i| self.chars[i as usize]).collect()
    }
}

/// A batch: each sequence's characters, and the characters that follow each of them.
#[derive(Batch)]
struct Chars {
    input: Tensor,
    next: Tensor,
}

/// Every window of `context + 1` characters of the text, at a stride of `context`: a sample.
struct Windows {
    ids: Tensor,
    context: i64,
}

impl BatchDataset for Windows {
    type Batch = Chars;

    fn len(&self) -> usize {
        ((self.ids.size()[0] - 1) / self.context) as usize
    }

    fn batch(&self, indices: &[i64]) -> trainmon::Result<Chars> {
        let starts = Tensor::from_slice(indices) * self.context;
        let offsets = Tensor::arange(self.context + 1, (Kind::Int64, Device::Cpu));
        let windows = self
            .ids
            .index_select(0, &(starts.unsqueeze(1) + offsets.unsqueeze(0)).view([-1]));
        let windows = windows.view([indices.len() as i64, self.context + 1]);
        Ok(Chars {
            input: windows.narrow(1, 0, self.context),
            next: windows.narrow(1, 1, self.context),
        })
    }
}

/// Embedding → LSTM → linear head over the alphabet.
struct CharModel {
    embed: nn::Embedding,
    lstm: nn::LSTM,
    head: nn::Linear,
    alphabet: i64,
}

impl CharModel {
    fn new(vs: &nn::VarStore, alphabet: i64) -> Self {
        let root = vs.root();
        CharModel {
            embed: nn::embedding(&root / "embed", alphabet, 32, Default::default()),
            lstm: nn::lstm(&root / "lstm", 32, 128, Default::default()),
            head: nn::linear(&root / "head", 128, alphabet, Default::default()),
            alphabet,
        }
    }

    /// Logits `[batch, time, alphabet]` of sequences `[batch, time]`.
    fn logits(&self, input: &Tensor) -> Tensor {
        let (hidden, _) = self.lstm.seq(&self.embed.forward(input));
        self.head.forward(&hidden)
    }

    /// `chars` characters after `prompt`, each drawn from the model's distribution.
    fn generate(&self, vocabulary: &Vocabulary, prompt: &str, chars: usize) -> String {
        let _no_grad = tch::no_grad_guard();
        let mut ids = vocabulary.encode(prompt);
        for _ in 0..chars {
            let input = Tensor::from_slice(&ids).unsqueeze(0).to_device(self.head.ws.device());
            let last = self.logits(&input).select(1, -1);
            let next = last.softmax(-1, Kind::Float).multinomial(1, true);
            ids.push(next.int64_value(&[0, 0]));
        }
        vocabulary.decode(&ids)
    }
}

/// The training step: mean cross-entropy over every position of every sequence; the logits and
/// next characters go to the accuracy metric.
impl TrainStep<Chars> for CharModel {
    fn training_step(&mut self, batch: &Chars, _: &StepContext<'_>) -> Result<StepOutput, BoxError> {
        let logits = self.logits(&batch.input).f_reshape([-1, self.alphabet])?;
        let next = batch.next.f_reshape([-1])?;
        let loss = logits.f_cross_entropy_loss::<Tensor>(&next, None, Reduction::Mean, -100, 0.0)?;
        Ok(StepOutput::loss(loss).with_outputs(logits, next))
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    trainmon::logging::init()?;
    let run = RunDir::create(&args.out, "char_lm")?;

    let text = generate_text(args.chars, args.seed);
    let vocabulary = Vocabulary::of(&text);
    let data = Windows {
        ids: Tensor::from_slice(&vocabulary.encode(&text)),
        context: args.context,
    };
    tracing::info!(
        "{} characters of {} kinds, {} sequences of {}",
        text.len(),
        vocabulary.chars.len(),
        data.len(),
        args.context
    );

    tch::manual_seed(args.seed as i64);
    let vs = nn::VarStore::new(Device::cuda_if_available());
    let mut model = CharModel::new(&vs, vocabulary.chars.len() as i64);
    let history = Trainer::for_steps(&vs)
        .optimizer(nn::Adam::default(), 3e-3)
        .epochs(args.epochs)
        .batch_size(32)
        .seed(args.seed)
        .validation_split(0.1)
        .clip_grad_norm(1.0)
        .metric(Accuracy::default)
        .with(Logger::new().every(50))
        .with(ModelCheckpoint::new(run.path().join("checkpoints")).monitor("val_loss"))
        .with(MetricFiles::new(run.path().join("metrics")).monitor("val_loss"))
        .with(Summary::new().monitor("val_loss").outputs(run.path()))
        .fit_steps(&mut model, &data, None)?;

    plot::write_all(&history, run.path())?;
    let sample = model.generate(&vocabulary, "the ", 160);
    std::fs::write(run.path().join("sample.txt"), &sample)?;
    tracing::info!("sample: {sample}");
    // Everything the run wrote, what `fit`'s summary listed and what came after it.
    tracing::info!("Outputs: {}", run.describe()?);
    tracing::info!("Run directory: {}", run.path().display());
    Ok(())
}
