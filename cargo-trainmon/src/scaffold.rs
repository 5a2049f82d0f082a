//! `cargo trainmon new NAME`: a project that trains, laid out as most will grow — a binary, and
//! the hooks in a library crate of the same workspace (`hooks/`), configured by the binary
//! through a resource. The README's "Use trainmon in your project" shows these same files.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Where the project gets trainmon from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A checkout of trainmon's repository.
    Path(PathBuf),
    /// trainmon's git repository.
    Git(String),
}

impl Source {
    /// The checkout this program was built from, if it is still there (`cargo install --path`,
    /// or `--git`, whose checkout cargo keeps).
    pub fn built_from() -> Option<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
        root.join("trainmon/Cargo.toml")
            .is_file()
            .then(|| Source::Path(root.to_owned()))
    }

    /// The dependency line's value for trainmon.
    fn dependency(&self) -> String {
        match self {
            Source::Path(root) => format!("{{ path = \"{}\" }}", root.join("trainmon").display()),
            Source::Git(url) => format!("{{ git = \"{url}\" }}"),
        }
    }
}

/// The files of a new project named `name`, as (path in the project, contents).
pub fn files(name: &str, source: &Source) -> Vec<(&'static str, String)> {
    let krate = name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{name}", name)
            .replace("{crate}", &krate)
            .replace("{trainmon}", &source.dependency())
    };
    vec![
        ("Cargo.toml", fill(MANIFEST)),
        ("src/main.rs", fill(MAIN)),
        ("hooks/Cargo.toml", fill(HOOKS_MANIFEST)),
        ("hooks/src/lib.rs", fill(HOOKS)),
    ]
}

/// Writes the project into `dir`, which must not exist; nothing is left half-written: the
/// files go to a temporary directory beside it, renamed into place at the end.
pub fn write(dir: &Path, name: &str, source: &Source) -> Result<()> {
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphabetic());
    if !valid {
        bail!("`{name}` cannot name a crate: use letters, digits, `_` and `-`, starting with a letter");
    }
    if dir.exists() {
        bail!("{} exists already: choose another name", dir.display());
    }
    if let Source::Path(root) = source {
        if !root.join("trainmon/Cargo.toml").is_file() {
            bail!(
                "{} is not a checkout of trainmon (no trainmon/Cargo.toml in it)",
                root.display()
            );
        }
    }
    let parent = dir.parent().context("a project directory has a parent")?;
    let tmp = parent.join(format!(".{name}.trainmon-new"));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| -> std::io::Result<()> {
        for (path, text) in files(name, source) {
            let file = tmp.join(path);
            std::fs::create_dir_all(file.parent().expect("files are in directories"))?;
            std::fs::write(file, text)?;
        }
        std::fs::rename(&tmp, dir)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e).with_context(|| format!("could not write the project into {}", dir.display()));
    }
    Ok(())
}

const MANIFEST: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"

[workspace]
members = ["hooks"]

[dependencies]
{name}-hooks = { path = "hooks" }
trainmon = {trainmon}
# trainmon's tch is built against libtorch 2.11.0 exactly: keep this pin.
tch = "=0.24.0"
tracing = "0.1"
"#;

const HOOKS_MANIFEST: &str = r#"[package]
name = "{name}-hooks"
version = "0.1.0"
edition = "2021"

[dependencies]
trainmon = {trainmon}
tracing = "0.1"

[dev-dependencies]
tch = "=0.24.0"
"#;

const HOOKS: &str = r#"//! The hooks of {name}: plain functions with an attribute. Every binary that links this crate
//! runs them.

use trainmon::prelude::*;

/// Epochs without a lower loss before training stops. The binary gives it to the trainer
/// (`.resource(Patience(2))`); the hooks take it as a `Res<Patience>` parameter.
pub struct Patience(pub u32);

#[on_train_begin]
fn announce(patience: Res<Patience>) {
    tracing::info!("Early stopping after {} epochs without progress.", patience.0);
}

#[on_batch_end(every = 10)]
fn log_batch(batch: &BatchLogs) {
    tracing::info!("Batch {}: Loss = {:.4}, Accuracy = {:.4}", batch.number(), batch.loss(), batch.accuracy());
}

#[on_epoch_end]
fn early_stopping(
    epoch: &EpochLogs,
    patience: Res<Patience>,
    mut best: Local<Option<f64>>,
    mut bad_epochs: Local<u32>,
) -> Control {
    match *best {
        Some(best) if epoch.loss() >= best => *bad_epochs += 1,
        _ => (*best, *bad_epochs) = (Some(epoch.loss()), 0),
    }
    if *bad_epochs >= patience.0 {
        Control::stop(format!("loss did not improve for {} epochs", patience.0))
    } else {
        Control::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind, Tensor};

    #[test]
    fn training_stops_when_the_loss_stays() {
        let data = TensorDataset::new(
            Tensor::randn([64, 4], (Kind::Float, Device::Cpu)),
            Tensor::randint(2, [64], (Kind::Int64, Device::Cpu)),
        )
        .unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = nn::linear(vs.root(), 4, 2, Default::default());
        // A learning rate of 0: the loss never falls, so training stops after 1 + 2 epochs.
        let history = Trainer::new(&vs, &model)
            .optimizer(nn::Sgd::default(), 0.0)
            .epochs(10)
            .shuffle(false)
            .resource(Patience(2))
            .fit(&data)
            .unwrap();
        assert_eq!(history.len(), 3);
    }
}
"#;

const MAIN: &str = r#"use tch::{nn, Device, Kind, Tensor};
use trainmon::prelude::*;
// Using the hooks crate links it, and so its hooks run.
use {crate}_hooks::Patience;

// A hook of the binary itself.
#[on_epoch_end]
fn epoch_finished(epoch: &EpochLogs) {
    tracing::info!("Epoch {} finished in {:.2} seconds.", epoch.epoch(), epoch.time().as_secs_f64());
}

fn main() -> trainmon::Result<()> {
    // Log lines on stdout: RUST_LOG sets the level (info by default), NO_COLOR the colours.
    trainmon::logging::init()?;

    tch::manual_seed(0);
    let data = TensorDataset::new(
        Tensor::randn([1000, 20], (Kind::Float, Device::Cpu)),
        Tensor::randint(2, [1000], (Kind::Int64, Device::Cpu)),
    )?;

    // A model of your own: anything that implements tch's `nn::ModuleT`.
    let vs = nn::VarStore::new(Device::cuda_if_available());
    let model = nn::seq()
        .add(nn::linear(vs.root() / "fc1", 20, 32, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(vs.root() / "fc2", 32, 2, Default::default()));

    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(5)
        .batch_size(32)
        .seed(0)
        .resource(Patience(2))
        .fit(&data)?;
    tracing::info!("Trained {} epochs on {:?}.", history.len(), vs.device());
    Ok(())
}
"#;
