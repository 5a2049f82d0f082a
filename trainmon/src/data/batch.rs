//! Batches of any shape: a tensor, a tuple, a `Vec`, a map by name, or a struct of your own
//! (`#[derive(Batch)]`) — anything made of tensors that the loop can move to the training
//! device and count the samples of.
//!
//! ```
//! use tch::{Kind, Tensor};
//! use trainmon::Batch;
//!
//! #[derive(Batch)]
//! struct LmBatch {
//!     input_ids: Tensor,
//!     attention_mask: Tensor,
//!     labels: Tensor,
//!     /// Not a tensor: cloned as it is, not moved.
//!     #[batch(keep)]
//!     lengths: Vec<usize>,
//! }
//!
//! let ids = Tensor::zeros([8, 16], (Kind::Int64, tch::Device::Cpu));
//! let batch = LmBatch {
//!     input_ids: ids.shallow_clone(),
//!     attention_mask: ids.ones_like(),
//!     labels: ids.shallow_clone(),
//!     lengths: vec![16; 8],
//! };
//! assert_eq!(batch.samples()?, 8);
//! let on_device = batch.to_device(tch::Device::Cpu, false).expect("on the CPU already");
//! assert_eq!(on_device.lengths, batch.lengths);
//! # Ok::<(), trainmon::Error>(())
//! ```

use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use tch::{Device, TchError, Tensor};

/// A batch of samples: tensors in some structure, each with the samples along its first
/// dimension. Implemented for [`Tensor`], tuples of up to four batches, `Vec`, `Option`,
/// `HashMap<String, _>` and `BTreeMap<String, _>` of batches, and derived for a struct of them
/// with `#[derive(Batch)]` (a field marked `#[batch(keep)]` is cloned as it is: lengths, ids,
/// strings).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a batch",
    label = "not made of tensors",
    note = "a batch is a `Tensor`, a tuple, `Vec`, `Option` or `HashMap<String, _>` of batches, or a struct with `#[derive(Batch)]`; mark a field that is not moved to the device with `#[batch(keep)]`"
)]
pub trait Batch: Sized {
    /// Calls `visit` with each tensor of the batch and its name in it (`input_ids`, `0`,
    /// `images[2]`), in a fixed order; `name` is the batch's own name (empty at the top).
    fn for_each_tensor<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&str, &'a Tensor));

    /// The batch with each tensor on `device` (a tensor there already is not copied);
    /// `non_blocking`: copies from pinned memory to a GPU do not wait.
    fn to_device(&self, device: Device, non_blocking: bool) -> std::result::Result<Self, TchError>;

    /// The number of samples in the batch: the first dimension its tensors share. An error
    /// names a tensor without one (a scalar), or two tensors that disagree; or says that there
    /// is no tensor at all.
    fn samples(&self) -> Result<usize> {
        samples(self)
    }
}

/// The name of a part `part` of a batch named `name`: `name.part`, or `part` at the top.
#[doc(hidden)]
pub fn part_name(name: &str, part: &str) -> String {
    if name.is_empty() {
        part.to_owned()
    } else if part.starts_with('[') {
        format!("{name}{part}")
    } else {
        format!("{name}.{part}")
    }
}

/// [`Batch::samples`].
fn samples<B: Batch>(batch: &B) -> Result<usize> {
    let mut first: Option<(String, i64)> = None;
    let mut wrong: Option<String> = None;
    batch.for_each_tensor("", &mut |name, t| {
        if wrong.is_some() {
            return;
        }
        let shown = if name.is_empty() { "the batch" } else { name };
        let Some(&n) = t.size().first() else {
            wrong = Some(format!(
                "`{shown}` is a scalar: every tensor of a batch has the samples along its first dimension"
            ));
            return;
        };
        match &first {
            None => first = Some((shown.to_owned(), n)),
            Some((other, m)) if *m != n => {
                wrong = Some(format!(
                    "the batch's tensors disagree in their first dimension (the samples): `{other}` has {m}, `{shown}` has {n} ({:?})",
                    t.size()
                ));
            }
            Some(_) => {}
        }
    });
    if let Some(message) = wrong {
        return Err(Error::Data(message));
    }
    match first {
        Some((_, n)) => Ok(n as usize),
        None => Err(Error::Data("the batch holds no tensor".into())),
    }
}

impl Batch for Tensor {
    fn for_each_tensor<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&str, &'a Tensor)) {
        visit(name, self);
    }

    fn to_device(&self, device: Device, non_blocking: bool) -> std::result::Result<Self, TchError> {
        if self.device() == device {
            Ok(self.shallow_clone())
        } else {
            self.f_to_device_(device, self.kind(), non_blocking, false)
        }
    }
}

macro_rules! tuple_batch {
    ($($part:ident $index:tt),+) => {
        impl<$($part: Batch),+> Batch for ($($part,)+) {
            fn for_each_tensor<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&str, &'a Tensor)) {
                $(self.$index.for_each_tensor(&part_name(name, stringify!($index)), visit);)+
            }

            fn to_device(&self, device: Device, non_blocking: bool) -> std::result::Result<Self, TchError> {
                Ok(($(self.$index.to_device(device, non_blocking)?,)+))
            }
        }
    };
}

tuple_batch!(A 0);
tuple_batch!(A 0, B 1);
tuple_batch!(A 0, B 1, C 2);
tuple_batch!(A 0, B 1, C 2, D 3);

impl<B: Batch> Batch for Vec<B> {
    fn for_each_tensor<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&str, &'a Tensor)) {
        for (i, part) in self.iter().enumerate() {
            part.for_each_tensor(&part_name(name, &format!("[{i}]")), visit);
        }
    }

    fn to_device(&self, device: Device, non_blocking: bool) -> std::result::Result<Self, TchError> {
        self.iter().map(|part| part.to_device(device, non_blocking)).collect()
    }
}

impl<B: Batch> Batch for Option<B> {
    fn for_each_tensor<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&str, &'a Tensor)) {
        if let Some(part) = self {
            part.for_each_tensor(name, visit);
        }
    }

    fn to_device(&self, device: Device, non_blocking: bool) -> std::result::Result<Self, TchError> {
        self.as_ref()
            .map(|part| part.to_device(device, non_blocking))
            .transpose()
    }
}

impl<B: Batch> Batch for BTreeMap<String, B> {
    fn for_each_tensor<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&str, &'a Tensor)) {
        for (key, part) in self {
            part.for_each_tensor(&part_name(name, key), visit);
        }
    }

    fn to_device(&self, device: Device, non_blocking: bool) -> std::result::Result<Self, TchError> {
        self.iter()
            .map(|(key, part)| Ok((key.clone(), part.to_device(device, non_blocking)?)))
            .collect()
    }
}

impl<B: Batch, S: std::hash::BuildHasher + Default> Batch for HashMap<String, B, S> {
    /// In the order of the keys (a `HashMap`'s own order changes from run to run).
    fn for_each_tensor<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&str, &'a Tensor)) {
        let mut keys: Vec<&String> = self.keys().collect();
        keys.sort();
        for key in keys {
            self[key].for_each_tensor(&part_name(name, key), visit);
        }
    }

    fn to_device(&self, device: Device, non_blocking: bool) -> std::result::Result<Self, TchError> {
        self.iter()
            .map(|(key, part)| Ok((key.clone(), part.to_device(device, non_blocking)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn t(shape: &[i64]) -> Tensor {
        Tensor::zeros(shape, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn samples_are_the_shared_first_dimension() {
        assert_eq!(samples(&t(&[5, 3])).unwrap(), 5);
        assert_eq!(samples(&(t(&[4, 2]), t(&[4]))).unwrap(), 4);
        let mut map = HashMap::new();
        map.insert("input_ids".to_owned(), t(&[2, 7]));
        map.insert("labels".to_owned(), t(&[2]));
        assert_eq!(samples(&map).unwrap(), 2);
        assert_eq!(samples(&vec![t(&[3]), t(&[3, 1])]).unwrap(), 3);
    }

    #[test]
    fn tensors_that_disagree_are_named() {
        let err = samples(&(t(&[4, 2]), t(&[5]))).unwrap_err().to_string();
        assert!(
            err.contains(
                "the batch's tensors disagree in their first dimension (the samples): `0` has 4, `1` has 5 ([5])"
            ),
            "{err}"
        );
        let mut map = BTreeMap::new();
        map.insert("mask".to_owned(), vec![t(&[3, 2]), t(&[2, 2])]);
        let err = samples(&map).unwrap_err().to_string();
        assert!(err.contains("`mask[0]` has 3, `mask[1]` has 2"), "{err}");
        let err = samples(&(t(&[4]), Tensor::from(1.0f32))).unwrap_err().to_string();
        assert!(err.contains("`1` is a scalar"), "{err}");
        let empty: Vec<Tensor> = Vec::new();
        assert!(samples(&empty).unwrap_err().to_string().contains("holds no tensor"));
    }

    #[test]
    fn moving_keeps_the_structure() {
        let batch = (t(&[2, 3]), Some(vec![t(&[2])]), None::<Tensor>);
        let moved = batch.to_device(Device::Cpu, false).unwrap();
        assert_eq!(moved.0.size(), [2, 3]);
        assert_eq!(moved.1.unwrap()[0].size(), [2]);
        assert!(moved.2.is_none());
    }
}
