//! Where a fit's samples come from: the dataset as tensors on the device (batches cut out of
//! them) or asked for each batch (or for an epoch's batches ahead: a loader's workers); the
//! order of each epoch; the NaN check.

use crate::batch::Batch;
use crate::data::{BatchDataset, Dataset, EpochBatches, Prefetched};
use crate::error::{samples, Error, Result};
use crate::loss::Loss;
use crate::trainer::NanPolicy;
use std::any::Any;
use std::rc::Rc;
use std::sync::Arc;
use tch::{Device, Tensor};

/// Where a fit's samples come from.
pub(super) enum Source<'d> {
    /// The whole dataset as tensors on the training device: batches are cut out of them —
    /// when shuffling, after one gather per epoch, or each gathered by itself for wide rows
    /// (see [`Source::epoch`]).
    Tensors { x: Tensor, y: Tensor, len: usize },
    /// A dataset asked for each batch (or for each epoch's batches ahead), which the loop
    /// moves to the device.
    Batches { data: Box<dyn Dataset + 'd>, len: usize },
    /// A dataset of batches of its own type, for a step of the user's ([`crate::TrainStep`]),
    /// asked for each batch.
    Typed { data: Box<dyn TypedData + 'd>, len: usize },
}

/// A [`BatchDataset`] whose batches the loop keeps as `dyn Any` (the step it hands them to
/// knows their type).
pub(super) trait TypedData {
    /// The batch of `indices` built, checked (its tensors share a first dimension of one row
    /// per index) and moved to `device`.
    fn fetch(&self, indices: &[i64], device: Device) -> Result<Rc<dyn Any>>;
    /// Refuses settings that cannot work (a loader's).
    fn check(&self) -> Result<()>;
    /// An epoch's batches built ahead (a [`crate::BatchLoader`]'s workers), each checked and
    /// moved to the epoch's device as [`TypedData::fetch`] does.
    fn prefetched(&self, epoch: &EpochBatches) -> Result<Option<TypedBatches<'_>>>;
    /// The batch type's name, for messages.
    fn batch_type(&self) -> &'static str;
}

/// A [`TypedData`]'s batches built ahead, checked and on the training device.
pub(super) type TypedBatches<'a> = Box<dyn Iterator<Item = Result<Rc<dyn Any>>> + 'a>;

/// The samples of a [`BatchDataset`] from `start` on (all, or one side of a validation split).
pub(super) struct Typed<'d, D> {
    pub data: &'d D,
    pub start: usize,
}

impl<D: BatchDataset> TypedData for Typed<'_, D> {
    fn batch_type(&self) -> &'static str {
        std::any::type_name::<D::Batch>()
    }

    fn fetch(&self, indices: &[i64], device: Device) -> Result<Rc<dyn Any>> {
        let shifted: Vec<i64>;
        let indices = match self.start {
            0 => indices,
            start => {
                shifted = indices.iter().map(|i| i + start as i64).collect();
                &shifted
            }
        };
        ready(
            crate::data::built(indices, "", || self.data.batch(indices))?,
            indices,
            device,
        )
    }

    fn check(&self) -> Result<()> {
        self.data.check_batches()
    }

    fn prefetched(&self, epoch: &EpochBatches) -> Result<Option<TypedBatches<'_>>> {
        // The dataset's own indices: those of this part of it.
        let epoch = epoch.shifted(self.start as i64);
        let Some(batches) = self.data.prefetched_batches(&epoch)? else {
            return Ok(None);
        };
        let device = epoch.device();
        let mut position = epoch.first();
        Ok(Some(Box::new(batches.map(move |built| {
            let indices = epoch.indices(position);
            position += 1;
            ready(built?, indices, device)
        }))))
    }
}

/// A batch built for `indices`, checked (its tensors share a first dimension of one row per
/// index) and moved to `device`.
fn ready<B: Batch + 'static>(batch: B, indices: &[i64], device: Device) -> Result<Rc<dyn Any>> {
    let rows = crate::batch::samples(&batch)
        .map_err(|err| Error::Data(format!("the batch of samples {}: {err}", samples(indices))))?;
    if rows != indices.len() {
        return Err(Error::Data(format!(
            "the batch of samples {} has {rows} rows for {} indices",
            samples(indices),
            indices.len()
        )));
    }
    let batch = batch.to_device(device, false).map_err(|e| {
        Error::torch(
            format!("moving the batch of samples {} to {device:?}", samples(indices)),
            e,
        )
    })?;
    Ok(Rc::new(batch))
}

/// One epoch of a source: its samples in this epoch's order, cut into batches.
pub(super) enum Epoch<'s, 'd> {
    /// The tensors, in this epoch's order when `index` is `None` (gathered once); else in
    /// their own order, each batch gathered by its slice of `index`.
    Tensors {
        x: Tensor,
        y: Tensor,
        index: Option<Tensor>,
    },
    /// The dataset, the sample indices in this epoch's order, and the batches it builds
    /// ahead, if it does (see [`Epoch::prefetch`]).
    Batches {
        data: &'s (dyn Dataset + 'd),
        order: Arc<[i64]>,
        ahead: Option<Ahead<Prefetched<'s>>>,
    },
    /// A dataset of batches of its own type, and the sample indices in this epoch's order.
    Typed {
        data: &'s (dyn TypedData + 'd),
        order: Arc<[i64]>,
        /// The batches built ahead, if the dataset does.
        ahead: Option<Ahead<TypedBatches<'s>>>,
    },
}

/// An epoch's batches built ahead by the dataset, and the first sample of the next one due.
pub(super) struct Ahead<I> {
    batches: I,
    next: usize,
}

impl<T, I: Iterator<Item = Result<T>>> Ahead<I> {
    /// The batches from `first` (0-based) on, of `batch_size`.
    fn new(batches: I, first: usize, batch_size: usize) -> Self {
        Ahead {
            batches,
            next: first * batch_size,
        }
    }

    /// The next batch built, which must be of the samples `indices`, from `start` in the
    /// epoch's order: the loop takes them in the order they were built.
    fn take(&mut self, start: usize, indices: &[i64]) -> Result<T> {
        if start != self.next {
            return Err(Error::Config(format!(
                "the loop asked for the batch at sample {start} of the epoch's order, but the batches built ahead go \
                 on at sample {}",
                self.next
            )));
        }
        self.next = start + indices.len();
        self.batches.next().unwrap_or_else(|| {
            Err(Error::Data(format!(
                "the batches built ahead ended before the batch of samples {}",
                samples(indices)
            )))
        })
    }
}

impl<'d> Source<'d> {
    pub(super) fn new(
        data: Box<dyn Dataset + 'd>,
        device: Device,
        loss: &Loss,
        nan: NanPolicy,
        what: &str,
    ) -> Result<Self> {
        data.check()?;
        let len = Dataset::len(&*data);
        if len == 0 {
            return Err(Error::Data(format!("the {what} set is empty: 0 samples")));
        }
        Ok(match data.tensors() {
            Some((x, y)) => {
                check_nan(&x, nan, what)?;
                let to_device = |t: Tensor| {
                    t.f_to_device(device)
                        .map_err(|e| Error::torch(format!("moving the {what} set to {device:?}"), e))
                };
                let y = loss
                    .targets(to_device(y)?)
                    .map_err(|why| Error::Data(format!("{what} set: {why}")))?;
                Source::Tensors {
                    x: to_device(x)?,
                    y,
                    len,
                }
            }
            None => Source::Batches { data, len },
        })
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Source::Tensors { len, .. } | Source::Batches { len, .. } | Source::Typed { len, .. } => *len,
        }
    }

    /// The epoch whose samples come in `order` (`None`: in order), cut in batches of
    /// `batch_size`. For tensors on the CPU whose batches are large (a batch of features of
    /// [`GATHER_PER_BATCH`] bytes or more), each batch is gathered by itself; else the epoch is
    /// gathered at once and batches are views into it. Gathering a large epoch at once costs a
    /// fresh buffer the size of the set, whose pages the kernel zeroes at first touch: on the
    /// mlp workload (60000 × 784 floats) 110 ms per epoch against 30 ms gathered batch by
    /// batch; for small rows one gather beats a gather per batch, whose own call costs more
    /// than the copy. CUDA's caching allocator reuses the epoch's buffer, so one gather.
    pub(super) fn epoch(&self, order: Option<Vec<i64>>, batch_size: usize) -> Result<Epoch<'_, 'd>> {
        match self {
            Source::Tensors { x, y, len } => {
                let Some(order) = order else {
                    return Ok(Epoch::Tensors {
                        x: x.shallow_clone(),
                        y: y.shallow_clone(),
                        index: None,
                    });
                };
                let index = Tensor::from_slice(&order).to_device(x.device());
                let row_bytes = x.numel() / *len * x.kind().elt_size_in_bytes();
                if x.device() == Device::Cpu && batch_size * row_bytes >= GATHER_PER_BATCH {
                    return Ok(Epoch::Tensors {
                        x: x.shallow_clone(),
                        y: y.shallow_clone(),
                        index: Some(index),
                    });
                }
                let pick = |t: &Tensor| {
                    t.f_index_select(0, &index)
                        .map_err(|e| Error::torch("shuffling the dataset", e))
                };
                Ok(Epoch::Tensors {
                    x: pick(x)?,
                    y: pick(y)?,
                    index: None,
                })
            }
            Source::Batches { data, len } => Ok(Epoch::Batches {
                data: &**data,
                order: order.map_or_else(|| (0..*len as i64).collect(), Into::into),
                ahead: None,
            }),
            Source::Typed { data, len } => Ok(Epoch::Typed {
                data: &**data,
                order: order.map_or_else(|| (0..*len as i64).collect(), Into::into),
                ahead: None,
            }),
        }
    }
}

/// The type of a [`Dataset`]'s batches, for messages.
pub(super) const PAIRS: &str = "(tch::Tensor, tch::Tensor)";

/// Bytes of a batch's features from which an epoch's tensors on the CPU are gathered batch by
/// batch rather than at once (see [`Source::epoch`]): where a batch's copy costs more than the
/// few microseconds of a gather's call.
const GATHER_PER_BATCH: usize = 64 * 1024;

impl Epoch<'_, '_> {
    /// Asks a dataset for the epoch's `batches` batches of `batch_size` ahead, from batch
    /// `first` (0-based) on, for `device`; [`Epoch::batch`] then takes them in order. A dataset
    /// that does not build batches ahead ([`Dataset::prefetched`] is `None`) is asked for each.
    pub(super) fn prefetch(&mut self, first: usize, batches: usize, batch_size: usize, device: Device) -> Result<()> {
        match self {
            Epoch::Batches { data, order, ahead } => {
                let epoch = EpochBatches::new(Arc::clone(order), batch_size, batches, first, device);
                *ahead = data
                    .prefetched(&epoch)?
                    .map(|batches| Ahead::new(batches, first, batch_size));
            }
            Epoch::Typed { data, order, ahead } => {
                let epoch = EpochBatches::new(Arc::clone(order), batch_size, batches, first, device);
                *ahead = data
                    .prefetched(&epoch)?
                    .map(|batches| Ahead::new(batches, first, batch_size));
            }
            Epoch::Tensors { .. } => {}
        }
        Ok(())
    }

    /// The samples `start..start + len` of this epoch's order, on `device`, as a batch for a
    /// step of the user's: the batch the dataset builds, or (a [`Dataset`] of pairs) the
    /// features and targets as a `(Tensor, Tensor)`.
    pub(super) fn fetch(
        &mut self,
        start: usize,
        len: usize,
        device: Device,
        loss: &Loss,
    ) -> Result<(Rc<dyn Any>, &'static str)> {
        match self {
            Epoch::Typed { data, order, ahead } => {
                let indices = &order[start..start + len];
                let batch = match ahead {
                    Some(ahead) => ahead.take(start, indices)?,
                    None => data.fetch(indices, device)?,
                };
                Ok((batch, data.batch_type()))
            }
            _ => Ok((Rc::new(self.batch(start, len, device, loss)?), PAIRS)),
        }
    }

    /// The samples `start..start + len` of this epoch's order, on `device`. Batches built
    /// ahead are taken in order: `start` is where the previous batch ended.
    pub(super) fn batch(&mut self, start: usize, len: usize, device: Device, loss: &Loss) -> Result<(Tensor, Tensor)> {
        let (data, order, ahead) = match self {
            Epoch::Tensors { x, y, index } => {
                let (x, y, index) = (&*x, &*y, &*index);
                let batch = || -> std::result::Result<(Tensor, Tensor), tch::TchError> {
                    match index {
                        Some(index) => {
                            let index = index.f_narrow(0, start as i64, len as i64)?;
                            Ok((x.f_index_select(0, &index)?, y.f_index_select(0, &index)?))
                        }
                        None => Ok((
                            x.f_narrow(0, start as i64, len as i64)?,
                            y.f_narrow(0, start as i64, len as i64)?,
                        )),
                    }
                };
                return batch().map_err(|e| Error::torch("batching", e));
            }
            Epoch::Batches { data, order, ahead } => (data, order, ahead),
            Epoch::Typed { .. } => {
                return Err(Error::Config(
                    "a dataset of batches of its own type trains with a step of yours: `fit_steps`".into(),
                ))
            }
        };
        let indices = &order[start..start + len];
        let built = match ahead {
            Some(ahead) => ahead.take(start, indices),
            None => crate::data::built(indices, "", || data.batch(indices)),
        };
        let (x, y) = built.map_err(|err| Error::batch(indices, err))?;
        check_batch(&x, &y, indices)?;
        // Batches built ahead are pinned for CUDA (see `Loader`): their copy need not block.
        let non_blocking = ahead.is_some() && device.is_cuda();
        let to_device = |t: &Tensor| {
            let moved = match non_blocking {
                true => t.f_to_device_(device, t.kind(), true, false),
                false => t.f_to_device(device),
            };
            moved.map_err(|e| Error::torch(format!("moving a batch to {device:?}"), e))
        };
        let y = loss.targets(to_device(&y)?).map_err(Error::Data)?;
        Ok((to_device(&x)?, y))
    }
}

/// Refuses a batch from a dataset whose features and targets do not have a first dimension of
/// one row per index.
fn check_batch(x: &Tensor, y: &Tensor, indices: &[i64]) -> Result<()> {
    let (x, y) = (x.size(), y.size());
    let at = || format!("the batch of samples {}", samples(indices));
    let problem = match (x.first(), y.first()) {
        (None, _) | (_, None) => {
            let what = if x.is_empty() { "features" } else { "targets" };
            format!(
                "{} has scalar {what}: features of shape {x:?}, targets of shape {y:?}",
                at()
            )
        }
        (Some(rows), Some(targets)) if rows != targets => format!(
            "{} has features and targets that differ in their first dimension: {rows} (features of shape {x:?}) and \
             {targets} (targets of shape {y:?})",
            at()
        ),
        (Some(&rows), _) if rows != indices.len() as i64 => format!(
            "{} has {rows} rows (features of shape {x:?}, targets of shape {y:?}) for {} indices",
            at(),
            indices.len()
        ),
        _ => return Ok(()),
    };
    Err(Error::Data(problem))
}

/// Looks for NaN in a set's features, once, and acts as `policy` says.
pub(super) fn check_nan(features: &Tensor, policy: NanPolicy, what: &str) -> Result<()> {
    if policy == NanPolicy::Ignore || !features.is_floating_point() {
        return Ok(());
    }
    let read = |e| Error::torch(format!("looking for NaN in the {what} features"), e);
    // One pass first: a finite sum means no NaN (a NaN makes any sum NaN). Only a sum that is
    // not finite (a NaN, or values that add up to an infinity) pays for the row-by-row scan
    // that names the samples. The sum is kept in the features' own kind: no converted copy.
    let sum = features
        .f_sum(features.kind())
        .and_then(|sum| sum.f_double_value(&[]))
        .map_err(read)?;
    if sum.is_finite() {
        return Ok(());
    }
    let rows = features
        .f_isnan()
        .and_then(|nan| nan.f_reshape([features.size()[0], -1]))
        .map_err(read)?;
    let bad = rows.f_any_dim(1, false).and_then(|any| any.f_nonzero()).map_err(read)?;
    let count = bad.size()[0];
    if count == 0 {
        return Ok(());
    }
    let first = bad.f_int64_value(&[0, 0]).map_err(read)?;
    let message = format!("the {what} features have NaN in {count} samples (the first: sample {first})");
    match policy {
        NanPolicy::Error => Err(Error::Data(message)),
        _ => {
            tracing::warn!("{message}; training goes on (`Trainer::nan_policy` makes this an error)");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::TensorDataset;

    /// Whether a shuffled epoch of `features` floats a sample, in batches of 32, is gathered
    /// batch by batch.
    fn batch_by_batch(features: i64) -> bool {
        let x = Tensor::zeros([100, features], tch::kind::FLOAT_CPU);
        let y = Tensor::zeros([100], tch::kind::INT64_CPU);
        let data = TensorDataset::new(x, y).unwrap();
        let source = Source::new(
            Box::new(data),
            Device::Cpu,
            &Loss::CrossEntropy,
            NanPolicy::Ignore,
            "test",
        )
        .unwrap();
        let epoch = source.epoch(Some((0..100).rev().collect()), 32).unwrap();
        matches!(epoch, Epoch::Tensors { index: Some(_), .. })
    }

    #[test]
    fn wide_rows_are_gathered_batch_by_batch() {
        assert!(
            !batch_by_batch(20),
            "the tutorial's rows: 2.5 kB batches, one gather an epoch"
        );
        assert!(!batch_by_batch(511), "just under 64 KiB");
        assert!(batch_by_batch(512), "64 KiB batches");
        assert!(
            batch_by_batch(600),
            "tests/determinism.rs's wide rows (76.8 kB batches)"
        );
    }
}
