//! Resume points: what a fit needs to go on, exactly, after its process died.
//!
//! One safetensors file, `resume.safetensors`, replaced atomically at the end of every epoch:
//! the model's variables (`model/<name>`), the optimizer's state tensors (`optimizer/<name>`),
//! the hooks' tensors (`hooks/<n>/<i>`), and a JSON document (the `__trainmon__` tensor, UTF-8
//! bytes) with the counters, the shuffling generator, the learning rate, the history, every
//! hook's state and the gradient scaler's.

use crate::error::{Error, Result};
use crate::output::durably;
use crate::records::history::{float, History, StopReason};
use crate::records::metrics::SavedLogs;
use crate::records::saved::HookState;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// The file a resumable trainer keeps in its directory.
pub(crate) const FILE_NAME: &str = "resume.safetensors";
/// The name of the tensor holding the JSON document.
const DOCUMENT: &str = "__trainmon__";
/// The document's format; a point of another format is refused.
const FORMAT: u32 = 3;

/// The gradient scaler's state in a resume point: the scale (exact: an fp32 value in an f64)
/// and the good steps since it last changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ScalerState {
    #[serde(with = "float")]
    pub scale: f64,
    pub growth_tracker: i64,
}

/// Where training is, in a resume point.
#[derive(Serialize, Deserialize)]
pub(crate) struct Position<'h> {
    /// Epochs finished.
    pub epoch: usize,
    pub global_step: u64,
    #[serde(with = "float")]
    pub learning_rate: f64,
    /// The shuffling generator: its seed, stream and position.
    pub seed: u64,
    pub rng_stream: u64,
    pub rng_word_pos: String,
    /// Wall time of the fit so far (over every process that ran it).
    pub elapsed: Duration,
    /// The training set's size and batches per epoch, to warn when they changed.
    pub samples: usize,
    pub batches: usize,
    /// Borrowed when written (a point every few steps need not copy it), owned when read.
    pub history: Cow<'h, History>,
    /// A stop a hook asked for at this epoch's end (the fit is over).
    pub stop: Option<StopReason>,
    /// For a point taken within an epoch (the one after `epoch`): where in it.
    pub within: Option<InEpoch>,
    /// Hooks disabled after a tolerated failure, by their key.
    #[serde(default)]
    pub disabled: Vec<String>,
    /// The rollback guard's losses and recent rollbacks, when the fit rolls back.
    #[serde(default)]
    pub rollback: Option<crate::trainer::rollback::GuardState>,
    /// The gradient scaler's scale and count of good steps, when the fit scales (a point
    /// written before trainmon had one reads as without).
    #[serde(default)]
    pub grad_scaler: Option<ScalerState>,
    /// The ranks that trained (1: one process): each trains on its share of an epoch, so a
    /// point within an epoch goes on only with as many.
    #[serde(default = "one")]
    pub world_size: usize,
}

fn one() -> usize {
    1
}

/// Where a resume point taken within an epoch is in it.
#[derive(Serialize, Deserialize)]
pub(crate) struct InEpoch {
    /// Batches done.
    pub batch: usize,
    /// The shuffling generator's position at the epoch's start, before its shuffle: the
    /// resumed fit shuffles the epoch again, alike.
    pub epoch_rng_word_pos: String,
    /// Wall time of the epoch so far.
    pub epoch_elapsed: Duration,
    /// The running loss and counters (each metric's state is beside them).
    pub logs: SavedLogs,
}

#[derive(Serialize, Deserialize)]
struct Document<'h> {
    format: u32,
    progress: Position<'h>,
    optimizer: serde_json::Value,
    /// Each hook's plain state and the file names of its tensors (by the hook's name in the
    /// state, in the file).
    hooks: BTreeMap<String, SavedHook>,
    /// The running metrics' states of a point taken within an epoch, by metric name.
    #[serde(default)]
    metrics: BTreeMap<String, SavedHook>,
}

#[derive(Serialize, Deserialize)]
struct SavedHook {
    value: serde_json::Value,
    tensors: Vec<(String, String)>,
}

/// A resume point read back.
pub(crate) struct Point {
    pub position: Position<'static>,
    pub model: BTreeMap<String, Tensor>,
    pub optimizer: (BTreeMap<String, Tensor>, serde_json::Value),
    pub hooks: BTreeMap<String, HookState>,
    pub metrics: BTreeMap<String, HookState>,
}

/// The path of the resume point in `dir`.
pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Writes a resume point to `path`, atomically and durably.
pub(crate) fn write(
    path: &Path,
    position: Position<'_>,
    vs: &VarStore,
    optimizer: (Vec<(String, Tensor)>, serde_json::Value),
    hooks: Vec<(String, HookState)>,
    metrics: Vec<(String, HookState)>,
) -> Result<()> {
    let torch = |e| Error::torch(format!("writing the resume point {}", path.display()), e);
    let on_cpu = |t: &Tensor| t.f_to_device(Device::Cpu).and_then(|t| t.f_contiguous()).map_err(torch);
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (name, variable) in crate::context::variables_by_name(vs) {
        tensors.push((format!("model/{name}"), on_cpu(&variable)?));
    }
    let (optimizer_tensors, optimizer) = optimizer;
    for (name, tensor) in optimizer_tensors {
        tensors.push((format!("optimizer/{name}"), on_cpu(&tensor)?));
    }
    // States: their values in the document, their tensors in the file as `<kind>/<n>/<i>`.
    let mut states = |kind: &str, states: Vec<(String, HookState)>| -> Result<BTreeMap<String, SavedHook>> {
        let mut saved = BTreeMap::new();
        for (index, (key, state)) in states.into_iter().enumerate() {
            let mut names = Vec::new();
            for (i, (name, tensor)) in state.tensors.into_iter().enumerate() {
                let file_name = format!("{kind}/{index}/{i}");
                tensors.push((file_name.clone(), on_cpu(&tensor)?));
                names.push((name, file_name));
            }
            saved.insert(
                key,
                SavedHook {
                    value: state.value,
                    tensors: names,
                },
            );
        }
        Ok(saved)
    };
    let hooks = states("hooks", hooks)?;
    let metrics = states("metrics", metrics)?;
    let document = Document {
        format: FORMAT,
        progress: position,
        optimizer,
        hooks,
        metrics,
    };
    let json = serde_json::to_vec(&document).map_err(|e| Error::Checkpoint {
        path: path.to_owned(),
        message: format!("the training state cannot be written as JSON: {e}"),
    })?;
    tensors.push((DOCUMENT.to_owned(), Tensor::from_slice(&json)));
    durably(path, |temp| Tensor::write_safetensors(&tensors, temp).map_err(torch))
}

/// Reads the resume point at `path`.
pub(crate) fn read(path: &Path) -> Result<Point> {
    let failed = |message: String| Error::Checkpoint {
        path: path.to_owned(),
        message,
    };
    let mut tensors: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
        .map_err(|e| failed(format!("it cannot be read: {e}")))?
        .into_iter()
        .collect();
    let document = tensors
        .remove(DOCUMENT)
        .ok_or_else(|| failed("it is not a resume point: it has no training state".into()))?;
    let bytes = Vec::<u8>::try_from(&document.to_kind(Kind::Uint8))
        .map_err(|e| failed(format!("its training state cannot be read: {e}")))?;
    let document: Document<'static> =
        serde_json::from_slice(&bytes).map_err(|e| failed(format!("its training state cannot be read: {e}")))?;
    if document.format != FORMAT {
        return Err(failed(format!(
            "it is of format {}, this version of trainmon reads format {FORMAT}",
            document.format
        )));
    }
    let mut take = |prefix: &str| -> BTreeMap<String, Tensor> {
        let names: Vec<String> = tensors.keys().filter(|n| n.starts_with(prefix)).cloned().collect();
        names
            .into_iter()
            .map(|name| {
                let tensor = tensors.remove(&name).expect("listed above");
                (name[prefix.len()..].to_owned(), tensor)
            })
            .collect()
    };
    let model = take("model/");
    let optimizer = take("optimizer/");
    let mut rest = take("");
    let mut states = |saved: BTreeMap<String, SavedHook>| -> Result<BTreeMap<String, HookState>> {
        let mut states = BTreeMap::new();
        for (key, saved) in saved {
            let mut state = HookState {
                value: saved.value,
                tensors: Vec::new(),
            };
            for (name, file_name) in saved.tensors {
                let tensor = rest
                    .remove(&file_name)
                    .ok_or_else(|| failed(format!("the tensor `{file_name}` of `{key}` is missing")))?;
                state.tensors.push((name, tensor));
            }
            states.insert(key, state);
        }
        Ok(states)
    };
    let hooks = states(document.hooks)?;
    let metrics = states(document.metrics)?;
    Ok(Point {
        position: document.progress,
        model,
        optimizer: (optimizer, document.optimizer),
        hooks,
        metrics,
    })
}
