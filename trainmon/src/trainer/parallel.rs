//! Data-parallel training ([`crate::Trainer::data_parallel`]): what the loop does differently
//! when every rank of a [`ProcessGroup`] trains a replica of the model on its share of each
//! epoch, as PyTorch's `DistributedDataParallel` with a `DistributedSampler` does.

use crate::dist::ProcessGroup;
use crate::error::{Error, Result};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// Gradients are averaged in buckets of about this many bytes (PyTorch DDP's `bucket_cap_mb`):
/// a large model makes few collectives, a small one a single one.
pub(crate) const BUCKET_BYTES: usize = 25 * 1024 * 1024;

/// The loop's view of the group.
pub(crate) struct Parallel<'g> {
    pub(crate) group: &'g ProcessGroup,
}

impl Parallel<'_> {
    pub(crate) fn rank(&self) -> usize {
        self.group.rank()
    }

    pub(crate) fn world(&self) -> usize {
        self.group.world_size()
    }

    /// Before the first batch: the ranks agree on the model (variable names, shapes, kinds) and
    /// take rank 0's weights.
    pub(crate) fn prepare(&self, vs: &VarStore) -> Result<()> {
        let variables = crate::context::variables_by_name(vs);
        let described: Vec<String> = variables
            .iter()
            .map(|(name, t)| format!("{name} {:?} {:?}", t.size(), t.kind()))
            .collect();
        self.group.agree("the model's variables", &described.join("\n"))?;
        let _no_grad = tch::no_grad_guard();
        let tensors: Vec<&Tensor> = variables.iter().map(|(_, t)| t).collect();
        if tensors.iter().any(|t| t.device() != tch::Device::Cpu) {
            return Err(Error::Config(
                "data-parallel training runs on the CPU (Gloo) for now: NCCL, for a model on CUDA, is not built yet"
                    .into(),
            ));
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

    /// Averages the trainable variables' gradients over the ranks, in buckets of
    /// [`BUCKET_BYTES`]: each bucket's gradients are averaged in one collective (flattened into
    /// one buffer by [`ProcessGroup::all_reduce_mean`]).
    pub(crate) fn average_gradients(&self, vs: &VarStore) -> Result<()> {
        let _no_grad = tch::no_grad_guard();
        let grads = crate::context::defined_grads(vs);
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

    /// Averages named values (an epoch's metrics) over the ranks.
    pub(crate) fn average_values(&self, values: &mut [(String, f64)]) -> Result<()> {
        let numbers: Vec<f64> = values.iter().map(|(_, v)| *v).collect();
        let t = Tensor::from_slice(&numbers).to_kind(Kind::Double);
        self.group.all_reduce_mean(&[&t])?;
        let averaged = Vec::<f64>::try_from(&t).map_err(|e| Error::torch("reading averaged metrics", e))?;
        for ((_, v), a) in values.iter_mut().zip(averaged) {
            *v = a;
        }
        Ok(())
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
