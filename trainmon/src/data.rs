//! Datasets: the samples `fit` trains on.

use crate::error::{Error, Result};
use tch::{Kind, Tensor};

/// Features and class labels held in two tensors: sample `i` is `features[i]`, `labels[i]`.
///
/// Features may have any shape `[N, …]`; labels are one class index per sample, shape `[N]`, of
/// an integer kind (kept as `Int64`, as the cross-entropy loss wants).
#[derive(Debug)]
pub struct TensorDataset {
    features: Tensor,
    labels: Tensor,
}

impl TensorDataset {
    /// Checks and wraps the tensors: same number of samples, at least one, integer labels.
    pub fn new(features: Tensor, labels: Tensor) -> Result<Self> {
        let fsize = features.size();
        let lsize = labels.size();
        let Some(&n) = fsize.first() else {
            return Err(Error::Data(
                "features are a scalar; they need a first dimension of samples, shape [N, …]".into(),
            ));
        };
        if lsize.len() != 1 {
            return Err(Error::Data(format!(
                "labels must hold one class index per sample, shape [N]; got shape {lsize:?}"
            )));
        }
        if lsize[0] != n {
            return Err(Error::Data(format!(
                "features and labels differ in length: {n} samples of features (shape {fsize:?}), {} labels",
                lsize[0]
            )));
        }
        if n == 0 {
            return Err(Error::Data("the dataset is empty: 0 samples".into()));
        }
        let labels = match labels.kind() {
            Kind::Int64 => labels,
            Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int => labels
                .f_to_kind(Kind::Int64)
                .map_err(|e| Error::torch("converting the labels to Int64", e))?,
            kind => {
                return Err(Error::Data(format!(
                    "labels must be class indices of an integer kind, got {kind:?}"
                )))
            }
        };
        Ok(TensorDataset { features, labels })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    /// Always `false`: an empty dataset is refused by [`TensorDataset::new`].
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The features, shape `[N, …]`.
    pub fn features(&self) -> &Tensor {
        &self.features
    }

    /// The labels, shape `[N]`, `Int64`.
    pub fn labels(&self) -> &Tensor {
        &self.labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

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
                Tensor::zeros([10, 3], opts),
                Tensor::zeros([10, 2], (Kind::Int64, Device::Cpu)),
                "shape [N]; got shape [10, 2]",
            ),
            (
                Tensor::zeros([10, 3], opts),
                Tensor::zeros([10], opts),
                "integer kind, got Float",
            ),
            (
                Tensor::from(1.0f32),
                Tensor::zeros([1], (Kind::Int64, Device::Cpu)),
                "scalar",
            ),
        ];
        for (features, labels, want) in cases {
            let err = TensorDataset::new(features, labels).unwrap_err().to_string();
            assert!(err.contains(want), "expected {want:?} in {err:?}");
        }
    }

    #[test]
    fn integer_labels_become_int64() {
        let data = TensorDataset::new(
            Tensor::zeros([4, 2], (Kind::Float, Device::Cpu)),
            Tensor::from_slice(&[0i32, 1, 1, 0]),
        )
        .unwrap();
        assert_eq!((data.len(), data.labels().kind()), (4, Kind::Int64));
    }
}
