//! A step's batches of its own type: a [`BatchDataset`]'s (each checked and moved to the
//! device), or a dataset of pairs' when the step's batch type is `(Tensor, Tensor)`.

use super::source::{Ahead, Epoch, Pairs, Source};
use crate::data::batch::Batch;
use crate::data::{BatchDataset, EpochBatches, PrefetchedBatches};
use crate::error::{samples, Error, Result};
use std::any::{Any, TypeId};
use std::marker::PhantomData;
use std::sync::Arc;
use tch::{Device, Tensor};

/// The samples `start..start + len` of a [`BatchDataset`] (all, or one side of a validation
/// split), in batches of its own type.
pub(super) struct Typed<'d, D> {
    pub data: &'d D,
    pub start: usize,
    pub len: usize,
}

impl<D: BatchDataset> Source<D::Batch> for Typed<'_, D> {
    fn len(&self) -> usize {
        self.len
    }

    fn epoch(&self, order: Option<Vec<i64>>, _: usize) -> Result<Box<dyn Epoch<D::Batch> + '_>> {
        // The dataset's own indices: those of this part of it.
        let start = self.start as i64;
        let order: Arc<[i64]> = match order {
            Some(order) => order.into_iter().map(|i| i + start).collect(),
            None => (start..start + self.len as i64).collect(),
        };
        Ok(Box::new(TypedEpoch {
            data: self.data,
            order,
            ahead: None,
        }))
    }
}

/// One epoch of a [`Typed`] source: the sample indices (the dataset's own) in this epoch's
/// order, and the batches built ahead, if the dataset does.
struct TypedEpoch<'s, D: BatchDataset> {
    data: &'s D,
    order: Arc<[i64]>,
    ahead: Option<Ahead<PrefetchedBatches<'s, D::Batch>>>,
}

impl<D: BatchDataset> Epoch<D::Batch> for TypedEpoch<'_, D> {
    fn prefetch(&mut self, first: usize, batches: usize, batch_size: usize, device: Device) -> Result<()> {
        let epoch = EpochBatches::new(Arc::clone(&self.order), batch_size, batches, first, device);
        self.ahead = (self.data.prefetched_batches(&epoch)?).map(|batches| Ahead::new(batches, first, batch_size));
        Ok(())
    }

    fn batch(&mut self, start: usize, len: usize, device: Device) -> Result<D::Batch> {
        let indices = &self.order[start..start + len];
        let built = match &mut self.ahead {
            Some(ahead) => ahead.take(start, indices)?,
            None => crate::data::built(indices, "", || self.data.batch(indices))?,
        };
        ready(built, indices, device)
    }
}

/// A batch built for `indices`, checked (its tensors share a first dimension of one row per
/// index) and moved to `device`.
fn ready<B: Batch>(batch: B, indices: &[i64], device: Device) -> Result<B> {
    let rows = batch
        .samples()
        .map_err(|err| Error::Data(format!("the batch of samples {}: {err}", samples(indices))))?;
    if rows != indices.len() {
        return Err(Error::Data(format!(
            "the batch of samples {} has {rows} rows for {} indices",
            samples(indices),
            indices.len()
        )));
    }
    batch.to_device(device, false).map_err(|e| {
        Error::torch(
            format!("moving the batch of samples {} to {device:?}", samples(indices)),
            e,
        )
    })
}

/// Whether `B` is `(Tensor, Tensor)`, a dataset of pairs' batch.
pub(super) fn is_pairs<B: 'static>() -> bool {
    TypeId::of::<B>() == TypeId::of::<(Tensor, Tensor)>()
}

/// [`Pairs`] as a source of batches of `B`, a type the fit knows to be `(Tensor, Tensor)`
/// (a step's dataset of pairs): the one place the loop's batch type is taken on trust, checked
/// once, when the source is made.
pub(super) struct PairsAs<'d, B> {
    pairs: Pairs<'d>,
    batch: PhantomData<fn() -> B>,
}

impl<'d, B: 'static> PairsAs<'d, B> {
    /// `pairs` as batches of `B`, if `B` is `(Tensor, Tensor)`.
    pub fn new(pairs: Pairs<'d>) -> Option<Self> {
        is_pairs::<B>().then_some(PairsAs {
            pairs,
            batch: PhantomData,
        })
    }
}

impl<B: 'static> Source<B> for PairsAs<'_, B> {
    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn epoch(&self, order: Option<Vec<i64>>, batch_size: usize) -> Result<Box<dyn Epoch<B> + '_>> {
        Ok(Box::new(PairsAsEpoch {
            epoch: self.pairs.epoch(order, batch_size)?,
            batch: PhantomData,
        }))
    }
}

/// One epoch of [`PairsAs`].
struct PairsAsEpoch<'s, B> {
    epoch: Box<dyn Epoch<(Tensor, Tensor)> + 's>,
    batch: PhantomData<fn() -> B>,
}

impl<B: 'static> Epoch<B> for PairsAsEpoch<'_, B> {
    fn prefetch(&mut self, first: usize, batches: usize, batch_size: usize, device: Device) -> Result<()> {
        self.epoch.prefetch(first, batches, batch_size, device)
    }

    fn batch(&mut self, start: usize, len: usize, device: Device) -> Result<B> {
        let mut pair = Some(self.epoch.batch(start, len, device)?);
        let pair: &mut dyn Any = &mut pair;
        Ok(pair
            .downcast_mut::<Option<B>>()
            .and_then(Option::take)
            .expect("checked when the source was made: the batch type is (Tensor, Tensor)"))
    }
}
