//! Where a fit's batches come from, typed: a dataset of pairs as tensors on the device (batches
//! cut out of them) or asked for each batch, or a dataset of batches of its own type (or, for
//! either, an epoch's batches ahead: a loader's workers); the order of each epoch; the NaN
//! check.

use crate::data::{Dataset, EpochBatches, Prefetched};
use crate::error::{samples, Error, Result};
use crate::records::loss::Loss;
use crate::trainer::NanPolicy;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use tch::{Device, Tensor};

/// Where a fit's batches of `B` come from.
pub(super) trait Source<B> {
    /// Samples.
    fn len(&self) -> usize;

    /// The epoch whose samples come in `order` (`None`: in order), cut in batches of
    /// `batch_size`.
    fn epoch(&self, order: Option<Vec<i64>>, batch_size: usize) -> Result<Box<dyn Epoch<B> + '_>>;
}

/// One epoch of a source: its samples in this epoch's order, cut into batches.
pub(super) trait Epoch<B> {
    /// Asks the dataset for the epoch's `batches` batches of `batch_size` ahead, from batch
    /// `first` (0-based) on, for `device`; [`Epoch::batch`] then takes them in order. A dataset
    /// that does not build batches ahead is asked for each.
    fn prefetch(&mut self, first: usize, batches: usize, batch_size: usize, device: Device) -> Result<()>;

    /// The samples `start..start + len` of this epoch's order, on `device`. Batches built ahead
    /// are taken in order: `start` is where the previous batch ended.
    fn batch(&mut self, start: usize, len: usize, device: Device) -> Result<B>;
}

/// How a dataset's targets go to the loss: as they are, or as class indices (cross-entropy's:
/// widened to `Int64`, and refused if not integers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Targets {
    AsTheyAre,
    ClassIndices,
}

impl Targets {
    /// The targets `loss` takes.
    pub fn of(loss: &Loss) -> Self {
        match loss.classifies() {
            true => Targets::ClassIndices,
            false => Targets::AsTheyAre,
        }
    }

    fn convert(self, targets: Tensor) -> std::result::Result<Tensor, String> {
        match self {
            Targets::AsTheyAre => Ok(targets),
            Targets::ClassIndices => Loss::CrossEntropy.targets(targets),
        }
    }
}

/// The samples of a [`Dataset`] of `(features, targets)`.
pub(super) enum Pairs<'d> {
    /// The whole dataset as tensors on the training device: batches are cut out of them —
    /// when shuffling, after one gather per epoch, or each gathered by itself for wide rows
    /// (see [`Pairs::epoch`]).
    Tensors { x: Tensor, y: Tensor, len: usize },
    /// A dataset asked for each batch (or for each epoch's batches ahead), which the loop
    /// moves to the device.
    Batches {
        data: Box<dyn Dataset + 'd>,
        len: usize,
        targets: Targets,
    },
}

impl<'d> Pairs<'d> {
    pub(super) fn new(
        data: Box<dyn Dataset + 'd>,
        device: Device,
        targets: Targets,
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
                let y = targets
                    .convert(to_device(y)?)
                    .map_err(|why| Error::Data(format!("{what} set: {why}")))?;
                Pairs::Tensors {
                    x: to_device(x)?,
                    y,
                    len,
                }
            }
            None => Pairs::Batches { data, len, targets },
        })
    }
}

impl Source<(Tensor, Tensor)> for Pairs<'_> {
    fn len(&self) -> usize {
        match self {
            Pairs::Tensors { len, .. } | Pairs::Batches { len, .. } => *len,
        }
    }

    /// For tensors on the CPU whose batches are large (a batch of features of
    /// [`GATHER_PER_BATCH`] bytes or more), each batch is gathered by itself; else the epoch is
    /// gathered at once and batches are views into it. Gathering a large epoch at once costs a
    /// fresh buffer the size of the set, whose pages the kernel zeroes at first touch: on the
    /// mlp workload (60000 × 784 floats) 110 ms per epoch against 30 ms gathered batch by
    /// batch; for small rows one gather beats a gather per batch, whose own call costs more
    /// than the copy. CUDA's caching allocator reuses the epoch's buffer, so one gather.
    fn epoch(&self, order: Option<Vec<i64>>, batch_size: usize) -> Result<Box<dyn Epoch<(Tensor, Tensor)> + '_>> {
        let epoch = match self {
            Pairs::Tensors { x, y, len } => {
                let whole = |x: Tensor, y: Tensor, index| PairsEpoch::Tensors { x, y, index };
                match order {
                    None => whole(x.shallow_clone(), y.shallow_clone(), None),
                    Some(order) => {
                        let index = Tensor::from_slice(&order).to_device(x.device());
                        if gathered_per_batch(x, *len, batch_size) {
                            whole(x.shallow_clone(), y.shallow_clone(), Some(index))
                        } else {
                            let pick = |t: &Tensor| {
                                t.f_index_select(0, &index)
                                    .map_err(|e| Error::torch("shuffling the dataset", e))
                            };
                            whole(pick(x)?, pick(y)?, None)
                        }
                    }
                }
            }
            Pairs::Batches { data, len, targets } => PairsEpoch::Batches {
                data: &**data,
                order: order.map_or_else(|| (0..*len as i64).collect(), Into::into),
                ahead: None,
                targets: *targets,
            },
        };
        Ok(Box::new(epoch))
    }
}

/// One epoch of [`Pairs`].
enum PairsEpoch<'s, 'd> {
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
        targets: Targets,
    },
}

/// An epoch's batches built ahead by the dataset, and the first sample of the next one due.
pub(super) struct Ahead<I> {
    batches: I,
    next: usize,
}

impl<T, I: Iterator<Item = Result<T>>> Ahead<I> {
    /// The batches from `first` (0-based) on, of `batch_size`.
    pub(super) fn new(batches: I, first: usize, batch_size: usize) -> Self {
        Ahead {
            batches,
            next: first * batch_size,
        }
    }

    /// The next batch built, which must be of the samples `indices`, from `start` in the
    /// epoch's order: the loop takes them in the order they were built.
    pub(super) fn take(&mut self, start: usize, indices: &[i64]) -> Result<T> {
        if start != self.next {
            return Err(Error::config(
                "Loader",
                format!(
                "the loop asked for the batch at sample {start} of the epoch's order, but the batches built ahead go \
                 on at sample {}",
                self.next
            ),
            ));
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

/// The type of a [`Dataset`]'s batches, for messages.
pub(super) const PAIRS: &str = "(tch::Tensor, tch::Tensor)";

/// Bytes of a batch's features from which an epoch's tensors on the CPU are gathered batch by
/// batch rather than at once (see [`Pairs::epoch`]): where a batch's copy costs more than the
/// few microseconds of a gather's call.
const GATHER_PER_BATCH: usize = 64 * 1024;

/// Whether a shuffled epoch of the features `x` (`len` samples) in batches of `batch_size` is
/// gathered batch by batch (see [`Pairs::epoch`]).
fn gathered_per_batch(x: &Tensor, len: usize, batch_size: usize) -> bool {
    let row_bytes = x.numel() / len * x.kind().elt_size_in_bytes();
    x.device() == Device::Cpu && batch_size * row_bytes >= GATHER_PER_BATCH
}

impl Epoch<(Tensor, Tensor)> for PairsEpoch<'_, '_> {
    fn prefetch(&mut self, first: usize, batches: usize, batch_size: usize, device: Device) -> Result<()> {
        if let PairsEpoch::Batches { data, order, ahead, .. } = self {
            let epoch = EpochBatches::new(Arc::clone(order), batch_size, batches, first, device);
            *ahead = data
                .prefetched(&epoch)?
                .map(|batches| Ahead::new(batches, first, batch_size));
        }
        Ok(())
    }

    fn batch(&mut self, start: usize, len: usize, device: Device) -> Result<(Tensor, Tensor)> {
        let (data, order, ahead, targets) = match self {
            PairsEpoch::Tensors { x, y, index } => {
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
            PairsEpoch::Batches {
                data,
                order,
                ahead,
                targets,
            } => (data, order, ahead, *targets),
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
        let y = targets.convert(to_device(&y)?).map_err(Error::Data)?;
        Ok((to_device(&x)?, y))
    }
}

/// The generator that shuffles the epochs, and libtorch's generator's seeding.
pub(super) struct Shuffling {
    pub rng: ChaCha8Rng,
    /// The generator's seed.
    pub seed: u64,
    /// Whether a seed was given: libtorch's generator is then seeded per epoch (and, in a
    /// resumable fit, per batch) from it.
    pub seeded: bool,
}

impl Shuffling {
    pub fn new(seed: u64, seeded: bool) -> Self {
        Shuffling {
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            seeded,
        }
    }

    /// Seeds libtorch's generator from the seed, the epoch and the batch (0: the epoch's
    /// start), when a seed was given: so that a fit resumed within an epoch draws what the
    /// uninterrupted one did (dropout masks).
    pub fn reseed(&self, epoch: usize, batch: usize) {
        if self.seeded {
            let mix =
                (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (batch as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
            tch::manual_seed((self.seed ^ mix) as i64);
        }
    }

    /// This epoch's order of `samples` samples (`None`: in order, unshuffled).
    pub fn order(&mut self, shuffle: bool, samples: usize) -> Option<Vec<i64>> {
        shuffle.then(|| {
            let mut order: Vec<i64> = (0..samples as i64).collect();
            order.shuffle(&mut self.rng);
            order
        })
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

    /// Whether a shuffled epoch of `features` floats a sample, in batches of 32, is gathered
    /// batch by batch.
    fn batch_by_batch(features: i64) -> bool {
        let x = Tensor::zeros([100, features], tch::kind::FLOAT_CPU);
        gathered_per_batch(&x, 100, 32)
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
