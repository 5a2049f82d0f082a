//! Data-parallel training ([`crate::Trainer::data_parallel`]): what the loop does differently
//! when every rank of a [`ProcessGroup`] trains a replica of the model on its share of each
//! epoch, as PyTorch's `DistributedDataParallel` with a `DistributedSampler` does.

use crate::dist::ProcessGroup;
use crate::error::{Error, Result};
use crate::schedule::event::{Event, EVENTS};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// Gradients are averaged in buckets of about this many bytes (PyTorch DDP's `bucket_cap_mb`):
/// a large model makes few collectives, a small one a single one.
pub(crate) const BUCKET_BYTES: usize = 25 * 1024 * 1024;

/// The loop's view of the group.
pub(crate) struct Parallel<'g> {
    pub(crate) group: &'g ProcessGroup,
    /// The events at which a hook runs on some rank (`Event::index`): only after those can a
    /// rank have stopped, and the ranks ask each other.
    hooked: [bool; EVENTS],
}

impl<'g> Parallel<'g> {
    pub(crate) fn new(group: &'g ProcessGroup) -> Self {
        Parallel {
            group,
            hooked: [true; EVENTS],
        }
    }

    pub(crate) fn rank(&self) -> usize {
        self.group.rank()
    }

    pub(crate) fn world(&self) -> usize {
        self.group.world_size()
    }

    /// Before the first batch: the ranks agree on the model (variable names, shapes, kinds),
    /// take rank 0's weights, and learn at which events some rank runs hooks (`hooked_here`:
    /// whether this one does, by `Event::index`).
    pub(crate) fn prepare(&mut self, vs: &VarStore, hooked_here: [bool; EVENTS]) -> Result<()> {
        let mask: Vec<f32> = hooked_here.iter().map(|h| f32::from(u8::from(*h))).collect();
        let mask = Tensor::from_slice(&mask);
        self.group.all_reduce_sum(&[&mask])?;
        let mask = Vec::<f32>::try_from(&mask).map_err(|e| Error::torch("reading the ranks' hooked events", e))?;
        for (hooked, ranks) in self.hooked.iter_mut().zip(mask) {
            *hooked = ranks > 0.0;
        }
        let variables = crate::context::variables_by_name(vs);
        let described: Vec<String> = variables
            .iter()
            .map(|(name, t)| format!("{name} {:?} {:?}", t.size(), t.kind()))
            .collect();
        self.group.agree("the model's variables", &described.join("\n"))?;
        let _no_grad = tch::no_grad_guard();
        let tensors: Vec<&Tensor> = variables.iter().map(|(_, t)| t).collect();
        if let tch::Device::Cuda(gpu) = vs.device() {
            let own = self.group.device();
            if own != tch::Device::Cuda(gpu) {
                return Err(Error::config(
                    "data_parallel",
                    format!(
                        "rank {} (local rank {}) has its model on cuda:{gpu}: data-parallel training takes one rank \
                     per GPU, the GPU of its local rank ({own:?}: `ProcessGroup::device()`)",
                        self.rank(),
                        self.group.local_rank()
                    ),
                ));
            }
            if !crate::dist::has_nccl() {
                return Err(Error::config(
                    "data_parallel",
                    "the model is on CUDA, and this trainmon was built without NCCL: it is built with NCCL where \
                     libtorch has CUDA and CUDA's and NCCL's headers are found (the bootstrap's venv has them)"
                        .into(),
                ));
            }
        }
        self.group.broadcast(&tensors, 0)
    }

    /// The number of samples each rank trains on per epoch: the set divided evenly, rounded
    /// up (the last ranks repeat the first samples, as `DistributedSampler` does).
    pub(crate) fn share(&self, len: usize) -> usize {
        len.div_ceil(self.world())
    }

    /// This rank's share of an epoch's `order` (`None`: in order) of `len` samples: every
    /// `world`-th sample from this rank's, after padding with the order's first samples to a
    /// multiple of the world size.
    pub(crate) fn shard(&self, order: Option<Vec<i64>>, len: usize) -> Vec<i64> {
        let order = order.unwrap_or_else(|| (0..len as i64).collect());
        let total = self.share(len) * self.world();
        order
            .iter()
            .cycle()
            .take(total)
            .skip(self.rank())
            .step_by(self.world())
            .copied()
            .collect()
    }

    /// Averages `grads` over the ranks, in buckets of [`BUCKET_BYTES`]: each bucket's gradients
    /// are averaged in one collective (flattened into one buffer by
    /// [`ProcessGroup::all_reduce_mean`]). Every rank gives the same variables' gradients, in
    /// the same order.
    pub(crate) fn average(&self, grads: &[Tensor]) -> Result<()> {
        let _no_grad = tch::no_grad_guard();
        let mut start = 0;
        while start < grads.len() {
            let (kind, mut bytes, mut end) = (grads[start].kind(), 0, start);
            while end < grads.len() && grads[end].kind() == kind && (end == start || bytes < BUCKET_BYTES) {
                bytes += grads[end].numel() * grads[end].kind().elt_size_in_bytes();
                end += 1;
            }
            let bucket: Vec<&Tensor> = grads[start..end].iter().collect();
            self.group.all_reduce_mean(&bucket)?;
            start = end;
        }
        Ok(())
    }

    /// The ranks' mean batch loss: the running loss of a fit without metrics is the global one
    /// at the cost of one scalar's all-reduce (no outputs cross).
    pub(crate) fn mean_loss(&self, loss: &Tensor) -> Result<Tensor> {
        let _no_grad = tch::no_grad_guard();
        let mean = loss
            .f_detach()
            .and_then(|l| l.f_to_kind(Kind::Double))
            .and_then(|l| l.f_reshape([1]))
            .map_err(|e| Error::torch("gathering the ranks' losses", e))?;
        self.group.all_reduce_mean(&[&mean])?;
        mean.f_to_kind(loss.kind())
            .and_then(|l| l.f_reshape([]))
            .map_err(|e| Error::torch("gathering the ranks' losses", e))
    }

    /// The ranks' mean of a one-element `value` (a batch's loss), read to the host: what every
    /// rank judges alike (the rollback guard's rule).
    pub(crate) fn mean_value(&self, value: &Tensor) -> Result<f64> {
        let mean = self.mean_loss(value)?;
        mean.f_double_value(&[])
            .map_err(|e| Error::torch("reading the ranks' mean loss", e))
    }

    /// Whether `here` holds on every rank (one all-reduce): a decision every rank must take
    /// alike, e.g. whether an epoch ended whole and gets a resume point.
    pub(crate) fn all(&self, here: bool) -> Result<bool> {
        let t = Tensor::from_slice(&[f32::from(u8::from(!here))]);
        self.group.all_reduce_sum(&[&t])?;
        let not = f32::try_from(&t).map_err(|e| Error::torch("reading the ranks' answers", e))?;
        Ok(not == 0.0)
    }

    /// Whether every rank's `outputs` and `targets` have as many values as this rank's (one
    /// all-reduce): a step's outputs of unpadded sequences may not, and the ranks' batches
    /// cannot be gathered then. An error on every rank, naming the first rank that differs.
    pub(crate) fn same_sizes(&self, outputs: &Tensor, targets: &Tensor) -> Result<()> {
        let mut sizes = vec![0f64; 2 * self.world()];
        sizes[2 * self.rank()] = outputs.numel() as f64;
        sizes[2 * self.rank() + 1] = targets.numel() as f64;
        let t = Tensor::from_slice(&sizes);
        self.group.all_reduce_sum(&[&t])?;
        let sizes = Vec::<f64>::try_from(&t).map_err(|e| Error::torch("reading the ranks' output sizes", e))?;
        let ranks: Vec<&[f64]> = sizes.chunks(2).collect();
        match ranks.iter().position(|r| *r != ranks[0]) {
            None => Ok(()),
            Some(rank) => Err(Error::Data(format!(
                "the step's outputs and targets differ in size between the ranks: rank 0 has {} and {} values, rank \
                 {rank} {} and {}; data-parallel metrics gather every rank's, which must be of one size (pad them)",
                ranks[0][0], ranks[0][1], ranks[rank][0], ranks[rank][1]
            ))),
        }
    }

    /// Every rank's batch — its mean loss, outputs and targets — so that the running logs,
    /// updated with them, are the global ones, the same on every rank (and any metric sees the
    /// whole batch, as one process would). Returns the ranks' mean loss, and their outputs and
    /// targets concatenated in rank order. The ranks' batches are of one size (each rank's share
    /// is; `DistributedSampler`'s padding sees to it), and so are the classifier's outputs.
    ///
    /// One all-reduce: each rank writes its part, in double precision (exact for every float
    /// kind and for integer targets below 2^53), into its slot of a buffer of zeros.
    pub(crate) fn gather_batch(
        &self,
        loss: &Tensor,
        outputs: &Tensor,
        targets: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let _no_grad = tch::no_grad_guard();
        let failed = |e| Error::torch("gathering the ranks' batches for the running metrics", e);
        let flat = |t: &Tensor| {
            t.f_detach()
                .and_then(|t| t.f_reshape([-1]))
                .and_then(|t| t.f_to_kind(Kind::Double))
        };
        let part = Tensor::f_cat(
            &[
                flat(loss).map_err(failed)?,
                flat(outputs).map_err(failed)?,
                flat(targets).map_err(failed)?,
            ],
            0,
        )
        .map_err(failed)?;
        let n = part.size()[0];
        let (world, rank) = (self.world() as i64, self.rank() as i64);
        // On the training device: NCCL's, for a model on CUDA.
        let buffer = Tensor::f_zeros([world, n], (Kind::Double, outputs.device())).map_err(failed)?;
        buffer
            .f_select(0, rank)
            .and_then(|mut slot| slot.f_copy_(&part))
            .map_err(failed)?;
        self.group.all_reduce_sum(&[&buffer])?;
        let (outputs_n, targets_n) = (outputs.numel() as i64, targets.numel() as i64);
        let stacked = |t: &Tensor, from: i64, len: i64| -> std::result::Result<Tensor, tch::TchError> {
            let mut shape = t.size();
            if let Some(first) = shape.first_mut() {
                *first *= world;
            } else {
                shape = vec![world];
            }
            buffer
                .f_narrow(1, from, len)?
                .f_reshape(shape.as_slice())?
                .f_to_kind(t.kind())
        };
        let gathered = (|| {
            let loss = buffer.f_select(1, 0)?.f_mean(Kind::Double)?.f_to_kind(loss.kind())?;
            Ok((
                loss,
                stacked(outputs, 1, outputs_n)?,
                stacked(targets, 1 + outputs_n, targets_n)?,
            ))
        })();
        gathered.map_err(failed)
    }

    /// Whether a hook runs at any of `events` on some rank: otherwise no rank can have stopped
    /// there, and [`Self::who_stopped`] need not ask.
    pub(crate) fn hooked(&self, events: &[Event]) -> bool {
        events.iter().any(|e| self.hooked[e.index()])
    }

    /// Whether any rank stopped: every rank says whether it did; the lowest rank that did, if
    /// one did.
    pub(crate) fn who_stopped(&self, stopped: bool) -> Result<Option<usize>> {
        let mut flags = vec![0f32; self.world()];
        flags[self.rank()] = if stopped { 1.0 } else { 0.0 };
        let t = Tensor::from_slice(&flags);
        self.group.all_reduce_sum(&[&t])?;
        let flags = Vec::<f32>::try_from(&t).map_err(|e| Error::torch("reading the ranks' stops", e))?;
        Ok(flags.iter().position(|f| *f > 0.0))
    }
}
