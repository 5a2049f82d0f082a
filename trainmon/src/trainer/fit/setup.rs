//! Before any work: the settings checked, the data sources made (typed by the batch), the
//! numbers of a fit decided.

use super::source::{Pairs, Source, Targets};
use super::typed::{is_pairs, PairsAs, Typed};
use crate::data::{BatchDataset, Dataset, Subset};
use crate::error::{Error, Result};
use crate::records::metrics::{Accuracy, BatchLogs, Metric};
use crate::trainer::{Clip, DataSetup, OptimizerSetting, TrainSetup, Validation};
use std::hash::{BuildHasher, RandomState};
use std::time::Instant;
use tch::Device;

/// What a fit trains on, in batches of `B`, and how, once everything that can refuse it has
/// been checked.
pub(super) struct Plan<'d, B> {
    pub train: Box<dyn Source<B> + 'd>,
    pub valid: Option<Box<dyn Source<B> + 'd>>,
    /// Training batches per epoch.
    pub batches: usize,
    /// Whether running values stay on the device until read.
    pub lazy: bool,
    /// The shuffling generator's seed (the given one, or a random one).
    pub seed: u64,
    /// Whether a seed was given: libtorch's generator is then seeded per epoch (and batch).
    pub seeded: bool,
}

/// A source's samples, boxed.
type Sources<'d, B> = (Box<dyn Source<B> + 'd>, Option<Box<dyn Source<B> + 'd>>);

impl<'d> Plan<'d, (tch::Tensor, tch::Tensor)> {
    /// The plan of a fit with the trainer's own step, on a dataset of pairs (and the
    /// validation set or split the trainer was given).
    pub fn new(settings: &TrainSetup, setup: &DataSetup<'d>, data: &'d dyn Dataset, device: Device) -> Result<Self> {
        check(settings, device)?;
        let (train, valid) = sources(data, setup, device, settings)?;
        let boxed = |pairs: Pairs<'d>| Box::new(pairs) as Box<dyn Source<_> + 'd>;
        Plan::of(settings, (boxed(train), valid.map(boxed)), device)
    }
}

impl<'d, B: 'static> Plan<'d, B> {
    /// The plan of a fit with the user's step, on a [`BatchDataset`] (`valid`, or a validation
    /// split of `train`, for validation). A dataset of `(features, targets)` is taken as
    /// [`Plan::new`] takes it, its targets as they are (the step's loss takes them).
    pub fn typed<D: BatchDataset<Batch = B>>(
        settings: &TrainSetup,
        setup: &DataSetup<'_>,
        train: &'d D,
        valid: Option<&'d D>,
        device: Device,
    ) -> Result<Self> {
        check(settings, device)?;
        if let Validation::Data(_) = setup.validation {
            return Err(Error::config(
                "validation",
                "a fit with your step takes its validation set as an argument: `fit_steps(&mut step, &train, \
                 Some(&valid))`, not `validation(&valid)`"
                    .into(),
            ));
        }
        let split = match (&setup.validation, valid) {
            (Validation::Split(_), Some(_)) => {
                return Err(Error::config(
                    "validation_split",
                    "both a validation set and a `validation_split`: give one".into(),
                ))
            }
            (Validation::Split(fraction), None) => Some(split_at(BatchDataset::len(train), *fraction)?),
            _ => None,
        };
        let sources = match train.as_pairs().filter(|_| is_pairs::<B>()) {
            Some(pairs) => pair_sources(pairs, valid.and_then(BatchDataset::as_pairs), split, device, settings)?,
            None => None,
        };
        let sources = match sources {
            Some(sources) => sources,
            None => typed_sources(train, valid, split)?,
        };
        Plan::of(settings, sources, device)
    }
}

impl<'d, B> Plan<'d, B> {
    /// The plan over the sources `train` and `valid`.
    fn of(settings: &TrainSetup, (train, valid): Sources<'d, B>, device: Device) -> Result<Self> {
        let batches = batches(train.len(), settings)?;
        if settings.resume.is_none() && settings.resume_steps > 0 {
            return Err(Error::config(
                "resumable_steps",
                "`resumable_steps` keeps resume points in the directory of `resumable(dir)`, which is not set".into(),
            ));
        }
        if let Some(seed) = settings.seed {
            tch::manual_seed(seed as i64);
        }
        Ok(Plan {
            train,
            valid,
            batches,
            lazy: settings.lazy_reads.unwrap_or(device.is_cuda()),
            seed: settings
                .seed
                .unwrap_or_else(|| RandomState::new().hash_one(Instant::now())),
            seeded: settings.seed.is_some(),
        })
    }
}

/// A step's dataset of pairs taken as the trainer's own step takes one (tensors cut on the
/// device, a loader's workers), its targets as they are: `None` if the step's batch type is not
/// `(Tensor, Tensor)` (`as_pairs` is hidden, not checked).
fn pair_sources<'d, B: 'static>(
    pairs: &'d dyn Dataset,
    valid: Option<&'d dyn Dataset>,
    split: Option<usize>,
    device: Device,
    settings: &TrainSetup,
) -> Result<Option<Sources<'d, B>>> {
    let (train, valid): (Box<dyn Dataset + 'd>, Option<Box<dyn Dataset + 'd>>) = match split {
        Some(at) => {
            let (train, valid) = halves(pairs, at);
            (Box::new(train), Some(Box::new(valid)))
        }
        None => (Box::new(pairs), valid.map(|v| Box::new(v) as _)),
    };
    let nan = settings.nan_policy;
    let typed = |data, what| -> Result<Option<Box<dyn Source<B> + 'd>>> {
        let pairs = Pairs::new(data, device, Targets::AsTheyAre, nan, what)?;
        Ok(PairsAs::new(pairs).map(|source| Box::new(source) as _))
    };
    let Some(train) = typed(train, "training")? else {
        return Ok(None);
    };
    let valid = match valid {
        Some(valid) => typed(valid, "validation")?,
        None => None,
    };
    Ok(Some((train, valid)))
}

/// A [`BatchDataset`]'s samples (and its validation set's, or split's), in batches of its own.
fn typed_sources<'d, D: BatchDataset>(
    train: &'d D,
    valid: Option<&'d D>,
    split: Option<usize>,
) -> Result<Sources<'d, D::Batch>> {
    let len = BatchDataset::len(train);
    let (train_len, valid) = match (split, valid) {
        (Some(at), _) => (at, Some((train, at, len - at))),
        (None, Some(valid)) => (len, Some((valid, 0, BatchDataset::len(valid)))),
        (None, None) => (len, None),
    };
    let typed = |data: &'d D, start: usize, len: usize, what: &str| -> Result<Box<dyn Source<D::Batch> + 'd>> {
        if len == 0 {
            return Err(Error::Data(format!("the {what} set is empty: 0 samples")));
        }
        data.check_batches()?;
        Ok(Box::new(Typed { data, start, len }))
    };
    let valid = valid
        .map(|(data, start, len)| typed(data, start, len, "validation"))
        .transpose()?;
    Ok((typed(train, 0, train_len, "training")?, valid))
}

/// Training batches per epoch over `len` samples.
pub(super) fn batches(len: usize, settings: &TrainSetup) -> Result<usize> {
    let batch_size = settings.batch_size;
    let batches = if settings.drop_last {
        len / batch_size
    } else {
        len.div_ceil(batch_size)
    };
    if batches == 0 {
        return Err(Error::config(
            "drop_last",
            format!("`drop_last` with batches of {batch_size} leaves no batch of the {len} training samples"),
        ));
    }
    Ok(batches)
}

/// The running logs of the training batches, and of the validation batches if any.
pub(super) struct Logs {
    pub train: BatchLogs,
    pub valid: Option<BatchLogs>,
}

impl Logs {
    /// Fresh logs with fresh metrics: accuracy for a classifying loss (`classifies`), then the
    /// user's own.
    pub fn new(setup: &DataSetup<'_>, classifies: bool, lazy: bool, validates: bool) -> Self {
        let logs = || {
            let mut list: Vec<Box<dyn Metric>> = Vec::new();
            if classifies {
                list.push(Box::new(Accuracy::with_reads(lazy)));
            }
            list.extend(setup.metrics.iter().map(|make| {
                let mut metric = make();
                metric.lazy_reads(lazy);
                metric
            }));
            BatchLogs::new(lazy, list, !setup.metrics.is_empty())
        };
        Logs {
            train: logs(),
            valid: validates.then(logs),
        }
    }
}

impl OptimizerSetting {
    /// The optimizer and its learning rate, or why there is none.
    pub(super) fn ready(&mut self) -> Result<(&mut dyn crate::optim::Optimizer, f64)> {
        match self {
            OptimizerSetting::Ready(optimizer, lr) => Ok((&mut **optimizer, *lr)),
            OptimizerSetting::Named(optimizers, lr) => Ok((optimizers, *lr)),
            OptimizerSetting::Missing => Err(Error::config(
                "optimizer",
                "no optimizer: call `.optimizer(nn::Adam::default(), 1e-3)` (or another) before `fit`".into(),
            )),
            OptimizerSetting::Failed(err) => Err(Error::config(
                "optimizer",
                format!("the optimizer could not be built: {err}"),
            )),
        }
    }
}

/// Settings that cannot train, found before any work is done.
fn check(settings: &TrainSetup, device: Device) -> Result<()> {
    if settings.epochs == 0 {
        return Err(Error::config(
            "epochs",
            "epochs must be at least 1, got 0 (to run only the setup and the `on_train_begin` hooks, stop there with \
             a hook returning `Control::stop`)"
                .into(),
        ));
    }
    if settings.batch_size == 0 {
        return Err(Error::config(
            "batch_size",
            "batch size must be at least 1, got 0".into(),
        ));
    }
    if settings.accumulate == 0 {
        return Err(Error::config(
            "accumulate_gradients",
            "gradients must accumulate over at least 1 batch, got 0".into(),
        ));
    }
    if let Some(Clip::Norm(max) | Clip::Value(max)) = settings.clip {
        if !(max.is_finite() && max > 0.0) {
            return Err(Error::config(
                "clip_grad_norm",
                format!("a gradient clip must be positive and finite, got {max}"),
            ));
        }
    }
    if let Some(rollback) = &settings.rollback {
        rollback.check().map_err(|why| Error::config("rollback", why))?;
    }
    settings
        .precision
        .check(device)
        .map_err(|why| Error::config("precision", why))?;
    if let Some(scaler) = &settings.grad_scaler {
        scaler.check().map_err(|why| Error::config("grad_scaler", why))?;
    }
    Ok(())
}

/// The training samples and the validation samples, if any, of a fit with the trainer's own
/// step.
fn sources<'d>(
    data: &'d dyn Dataset,
    setup: &DataSetup<'d>,
    device: Device,
    settings: &TrainSetup,
) -> Result<(Pairs<'d>, Option<Pairs<'d>>)> {
    let (train, valid): (Box<dyn Dataset + 'd>, Option<Box<dyn Dataset + 'd>>) = match setup.validation {
        Validation::None => (Box::new(data), None),
        Validation::Data(valid) => (Box::new(data), Some(Box::new(valid))),
        Validation::Split(fraction) => {
            let (train, valid) = halves(data, split_at(data.len(), fraction)?);
            (Box::new(train), Some(Box::new(valid)))
        }
    };
    let (nan, targets) = (settings.nan_policy, Targets::of(&setup.loss));
    let train = Pairs::new(train, device, targets, nan, "training")?;
    let valid = valid
        .map(|valid| Pairs::new(valid, device, targets, nan, "validation"))
        .transpose()?;
    Ok((train, valid))
}

/// The first `at` samples of `data` for training, the rest for validation.
fn halves(data: &dyn Dataset, at: usize) -> (Subset<'_>, Subset<'_>) {
    let len = data.len();
    (
        Subset {
            data,
            start: 0,
            len: at,
        },
        Subset {
            data,
            start: at,
            len: len - at,
        },
    )
}

/// Where a validation split of `fraction` cuts `len` samples: the number of training samples
/// (the first ones).
fn split_at(len: usize, fraction: f64) -> Result<usize> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::config(
            "validation_split",
            format!("a validation split must be between 0 and 1 (exclusive), got {fraction}"),
        ));
    }
    let valid = (len as f64 * fraction).round() as usize;
    if valid == 0 || valid == len {
        return Err(Error::Data(format!(
            "a validation split of {fraction} of {len} samples leaves {} for validation and {} for training",
            valid,
            len - valid
        )));
    }
    Ok(len - valid)
}
