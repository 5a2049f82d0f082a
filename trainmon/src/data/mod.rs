//! Datasets: the samples `fit` trains and validates on.

pub(crate) mod batch;
pub(crate) mod loader;

use crate::data::batch::Batch;
use crate::error::{Error, Result};
use std::sync::Arc;
use tch::{Device, Tensor};

/// Samples a [`crate::Trainer`] can train on: a length, and batches by sample indices. Bring
/// your own data by implementing it, as the tutorial subclasses PyTorch's `Dataset`.
///
/// ```
/// use tch::{Device, Kind, Tensor};
/// use trainmon::Dataset;
///
/// /// Points on two interleaved spirals, made on the fly.
/// struct Spirals(usize);
///
/// impl Dataset for Spirals {
///     fn len(&self) -> usize {
///         self.0
///     }
///     fn batch(&self, indices: &[i64]) -> trainmon::Result<(Tensor, Tensor)> {
///         let t = Tensor::from_slice(indices).to_kind(Kind::Float) / self.0 as f64 * 12.0;
///         let class = Tensor::from_slice(indices).remainder(2);
///         let sign = &class * 2 - 1;
///         let xy = Tensor::stack(&[t.cos() * &t * &sign, t.sin() * &t * &sign], 1);
///         Ok((xy, class))
///     }
/// }
/// ```
pub trait Dataset {
    /// Number of samples.
    fn len(&self) -> usize;

    /// The samples at `indices` (0-based, each below [`Dataset::len`]): features and targets,
    /// stacked along a first batch dimension of `indices.len()`. The loop moves them to the
    /// training device. An error (or a panic) ends the fit with an [`Error::Batch`] naming the
    /// samples.
    ///
    /// For a fit to be reproducible, and the same with a [`crate::Loader`]'s workers as
    /// without, a batch must depend only on its indices: no state changed from call to call, no
    /// random generator shared between calls (libtorch's global one included; seed any
    /// augmentation from the indices).
    fn batch(&self, indices: &[i64]) -> Result<(Tensor, Tensor)>;

    /// Whether there is no sample.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole dataset as two tensors, if it has them: the loop then moves them to the device
    /// once and cuts batches out of them, instead of asking for each batch.
    fn tensors(&self) -> Option<(Tensor, Tensor)> {
        None
    }

    /// Refuses settings of the dataset that cannot work; called when a fit starts, before any
    /// hook runs (a [`crate::Loader`] with prefetch and no worker). The default accepts.
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// The batches of an epoch, built ahead of the loop (on worker threads, as
    /// [`crate::Loader`] does), or `None` (the default): the loop then asks [`Dataset::batch`]
    /// for each batch when it needs it.
    ///
    /// The iterator yields, in order, what `self.batch(epoch.indices(b))` returns for each batch
    /// `b` from [`EpochBatches::first`] to the epoch's last. The loop asks for it on the training
    /// thread at the start of each epoch (and validation pass), and drops it when the epoch ends
    /// or stops early (a hook's stop, an error): dropping it must stop the work.
    fn prefetched(&self, epoch: &EpochBatches) -> Result<Option<Prefetched<'_>>> {
        let _ = epoch;
        Ok(None)
    }
}

/// A dataset whose batches are of any [`Batch`] type — a struct of tensors, a tuple, a map by
/// name —, for a training step of your own ([`crate::TrainStep`], [`crate::Trainer::fit_steps`]).
/// Every [`Dataset`] is one, of `(features, targets)` batches.
///
/// As for [`Dataset::batch`], a batch must depend only on its indices for a fit to be
/// reproducible; the loop checks that its tensors share a first dimension of one row per index,
/// and moves them to the training device.
pub trait BatchDataset {
    /// The batch it builds.
    type Batch: Batch + 'static;

    /// Number of samples.
    fn len(&self) -> usize;

    /// The samples at `indices` (0-based, each below [`BatchDataset::len`]), as one batch. An
    /// error (or a panic) ends the fit with an [`Error::Batch`] naming the samples.
    fn batch(&self, indices: &[i64]) -> Result<Self::Batch>;

    /// Whether there is no sample.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses settings of the dataset that cannot work (see [`Dataset::check`]).
    #[doc(hidden)]
    fn check_batches(&self) -> Result<()> {
        Ok(())
    }

    /// An epoch's batches built ahead (see [`Dataset::prefetched`]): a [`crate::BatchLoader`]'s.
    #[doc(hidden)]
    fn prefetched_batches(&self, epoch: &EpochBatches) -> Result<Option<PrefetchedBatches<'_, Self::Batch>>> {
        let _ = epoch;
        Ok(None)
    }

    /// The dataset as a [`Dataset`] of `(features, targets)`, when it is one: the loop then
    /// takes its batches as for its own step (tensors cut on the device, a [`crate::Loader`]'s
    /// workers).
    #[doc(hidden)]
    fn as_pairs(&self) -> Option<&dyn Dataset> {
        None
    }
}

impl<D: Dataset> BatchDataset for D {
    type Batch = (Tensor, Tensor);

    fn len(&self) -> usize {
        Dataset::len(self)
    }

    fn batch(&self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        Dataset::batch(self, indices)
    }

    fn as_pairs(&self) -> Option<&dyn Dataset> {
        Some(self)
    }
}

/// The batch `build` makes of the samples `indices`; its error or panic an [`Error::Batch`]
/// naming them, a panic's message saying where (`thread`: "", " on loader worker 2").
pub(crate) fn built<T>(indices: &[i64], thread: &str, build: impl FnOnce() -> Result<T>) -> Result<T> {
    match crate::panics::caught(build) {
        Ok(built) => built.map_err(|err| Error::batch(indices, err)),
        Err(panic) => Err(Error::batch_panic(indices, &panic, thread)),
    }
}

/// Batches of a [`BatchDataset`] built ahead of the loop, in an epoch's order.
pub type PrefetchedBatches<'a, B> = Box<dyn Iterator<Item = Result<B>> + 'a>;

/// Batches built ahead of the loop, in an epoch's order: what [`Dataset::prefetched`] returns.
pub type Prefetched<'a> = Box<dyn Iterator<Item = Result<(Tensor, Tensor)>> + 'a>;

/// An epoch's batches as the loop takes them, for [`Dataset::prefetched`]: the sample indices
/// in the epoch's order cut into batches, the batch the loop starts at, and the device it moves
/// the batches to.
#[derive(Clone, Debug)]
pub struct EpochBatches {
    order: Arc<[i64]>,
    batch_size: usize,
    batches: usize,
    first: usize,
    device: Device,
}

impl EpochBatches {
    /// `batches` batches of `batch_size` samples of `order` (the last one shorter, if `order`
    /// runs out), taken from batch `first` (0-based) on.
    pub(crate) fn new(order: Arc<[i64]>, batch_size: usize, batches: usize, first: usize, device: Device) -> Self {
        debug_assert!(batches <= order.len().div_ceil(batch_size) && first <= batches);
        EpochBatches {
            order,
            batch_size,
            batches,
            first,
            device,
        }
    }

    /// Batches in the epoch, those before [`EpochBatches::first`] included.
    pub fn batches(&self) -> usize {
        self.batches
    }

    /// The first batch the loop takes (0-based): 0, or where a fit resumed within the epoch
    /// goes on.
    pub fn first(&self) -> usize {
        self.first
    }

    /// The sample indices of batch `batch` (0-based, below [`EpochBatches::batches`]).
    pub fn indices(&self, batch: usize) -> &[i64] {
        let start = batch * self.batch_size;
        &self.order[start..(start + self.batch_size).min(self.order.len())]
    }

    /// The device the loop moves the batches to: a loader pins their memory for CUDA.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The same batches with every index moved by `by` (a subset's samples in its dataset).
    pub(crate) fn shifted(&self, by: i64) -> Self {
        EpochBatches {
            order: self.order.iter().map(|i| i + by).collect(),
            ..self.clone()
        }
    }
}

impl<D: Dataset + ?Sized> Dataset for &D {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn batch(&self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        (**self).batch(indices)
    }
    fn tensors(&self) -> Option<(Tensor, Tensor)> {
        (**self).tensors()
    }
    fn check(&self) -> Result<()> {
        (**self).check()
    }
    fn prefetched(&self, epoch: &EpochBatches) -> Result<Option<Prefetched<'_>>> {
        (**self).prefetched(epoch)
    }
}

impl<D: Dataset + ?Sized> Dataset for Box<D> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn batch(&self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        (**self).batch(indices)
    }
    fn tensors(&self) -> Option<(Tensor, Tensor)> {
        (**self).tensors()
    }
    fn check(&self) -> Result<()> {
        (**self).check()
    }
    fn prefetched(&self, epoch: &EpochBatches) -> Result<Option<Prefetched<'_>>> {
        (**self).prefetched(epoch)
    }
}

/// Features and targets held in two tensors: sample `i` is `features[i]`, `targets[i]`.
///
/// Both have a first dimension of samples; the rest is the model's and the loss's business
/// (class indices of an integer kind for cross-entropy, values for MSE).
#[derive(Debug)]
pub struct TensorDataset {
    features: Tensor,
    labels: Tensor,
}

impl TensorDataset {
    /// Checks and wraps the tensors: the same number of samples, at least one.
    pub fn new(features: Tensor, labels: Tensor) -> Result<Self> {
        let fsize = features.size();
        let lsize = labels.size();
        let Some(&n) = fsize.first() else {
            return Err(Error::Data(
                "features are a scalar; they need a first dimension of samples, shape [N, …]".into(),
            ));
        };
        let Some(&m) = lsize.first() else {
            return Err(Error::Data(
                "labels are a scalar; they need a first dimension of samples, shape [N, …]".into(),
            ));
        };
        if m != n {
            return Err(Error::Data(format!(
                "features and labels differ in length: {n} samples of features (shape {fsize:?}), {m} labels (shape {lsize:?})"
            )));
        }
        if n == 0 {
            return Err(Error::Data("the dataset is empty: 0 samples".into()));
        }
        Ok(TensorDataset { features, labels })
    }

    /// The features, shape `[N, …]`.
    pub fn features(&self) -> &Tensor {
        &self.features
    }

    /// The labels (targets), shape `[N, …]`.
    pub fn labels(&self) -> &Tensor {
        &self.labels
    }
}

impl Dataset for TensorDataset {
    fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    fn batch(&self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        let index = Tensor::from_slice(indices).to_device(self.features.device());
        let pick = |t: &Tensor| {
            t.f_index_select(0, &index)
                .map_err(|e| Error::torch("selecting a batch", e))
        };
        Ok((pick(&self.features)?, pick(&self.labels)?))
    }

    fn tensors(&self) -> Option<(Tensor, Tensor)> {
        Some((self.features.shallow_clone(), self.labels.shallow_clone()))
    }
}

/// The samples `start..start + len` of another dataset (what a validation split cuts).
pub(crate) struct Subset<'d> {
    pub(crate) data: &'d dyn Dataset,
    pub(crate) start: usize,
    pub(crate) len: usize,
}

impl Dataset for Subset<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn batch(&self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        let shifted: Vec<i64> = indices.iter().map(|i| i + self.start as i64).collect();
        self.data.batch(&shifted)
    }

    fn tensors(&self) -> Option<(Tensor, Tensor)> {
        let (x, y) = self.data.tensors()?;
        let cut = |t: Tensor| t.f_narrow(0, self.start as i64, self.len as i64).ok();
        Some((cut(x)?, cut(y)?))
    }

    fn check(&self) -> Result<()> {
        self.data.check()
    }

    fn prefetched(&self, epoch: &EpochBatches) -> Result<Option<Prefetched<'_>>> {
        self.data.prefetched(&epoch.shifted(self.start as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn bad_datasets_are_refused_with_their_cause() {
        let opts = (Kind::Float, Device::Cpu);
        let cases: Vec<(Tensor, Tensor, &str)> = vec![
            (
                Tensor::zeros([10, 3], opts),
                Tensor::zeros([9], (Kind::Int64, Device::Cpu)),
                "differ in length: 10 samples",
            ),
            (
                Tensor::zeros([0, 3], opts),
                Tensor::zeros([0], (Kind::Int64, Device::Cpu)),
                "empty: 0 samples",
            ),
            (
                Tensor::from(1.0f32),
                Tensor::zeros([1], (Kind::Int64, Device::Cpu)),
                "features are a scalar",
            ),
            (Tensor::zeros([1], opts), Tensor::from(1i64), "labels are a scalar"),
        ];
        for (features, labels, want) in cases {
            let err = TensorDataset::new(features, labels).unwrap_err().to_string();
            assert!(err.contains(want), "expected {want:?} in {err:?}");
        }
    }

    #[test]
    fn batches_and_subsets_pick_their_samples() {
        let data = TensorDataset::new(
            Tensor::arange(10, (Kind::Float, Device::Cpu)).view([5, 2]),
            Tensor::arange(5, (Kind::Int64, Device::Cpu)),
        )
        .unwrap();
        let (x, y) = Dataset::batch(&data, &[4, 0]).unwrap();
        assert_eq!(Vec::<i64>::try_from(&y).unwrap(), [4, 0]);
        assert_eq!(Vec::<f32>::try_from(x.flatten(0, -1)).unwrap(), [8.0, 9.0, 0.0, 1.0]);
        let tail = Subset {
            data: &data,
            start: 3,
            len: 2,
        };
        assert_eq!(Dataset::len(&tail), 2);
        assert_eq!(
            Vec::<i64>::try_from(&Dataset::batch(&tail, &[1, 0]).unwrap().1).unwrap(),
            [4, 3],
            "indices shifted"
        );
        let (_, y) = tail.tensors().unwrap();
        assert_eq!(Vec::<i64>::try_from(&y).unwrap(), [3, 4], "tensors cut");
    }
}
