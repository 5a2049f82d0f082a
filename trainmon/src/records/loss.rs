//! Losses: what the optimizer minimises, computed from the model's outputs and the targets.

use std::fmt;
use tch::{Kind, Reduction, TchError, Tensor};

/// A loss of your own: `(outputs, targets)` to a scalar tensor.
pub type LossFn = Box<dyn Fn(&Tensor, &Tensor) -> Result<Tensor, TchError> + Send>;

/// The loss the trainer minimises; cross-entropy by default.
#[derive(Default)]
pub enum Loss {
    /// Cross-entropy of `[batch, classes]` logits against class indices (`[batch]`, an
    /// integer kind). The trainer then tracks accuracy too.
    #[default]
    CrossEntropy,
    /// Mean squared error between outputs and targets of the same shape (targets of an integer
    /// kind are converted to the outputs' kind).
    Mse,
    /// A loss of your own: a scalar tensor from `(outputs, targets)`.
    Custom(LossFn),
}

impl Loss {
    /// A loss of your own, from `(outputs, targets)` to a scalar tensor.
    ///
    /// ```
    /// use tch::Reduction;
    /// use trainmon::Loss;
    ///
    /// let huber = Loss::custom(|outputs, targets| outputs.f_huber_loss(targets, Reduction::Mean, 1.0));
    /// # let _ = huber;
    /// ```
    pub fn custom(f: impl Fn(&Tensor, &Tensor) -> Result<Tensor, TchError> + Send + 'static) -> Self {
        Loss::Custom(Box::new(f))
    }

    /// Whether the targets are class indices, so that accuracy means something.
    pub(crate) fn classifies(&self) -> bool {
        matches!(self, Loss::CrossEntropy)
    }

    /// The targets as the loss wants them, or why they can't be.
    pub(crate) fn targets(&self, targets: Tensor) -> Result<Tensor, String> {
        match self {
            Loss::CrossEntropy => match targets.kind() {
                Kind::Int64 => Ok(targets),
                Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int => {
                    targets.f_to_kind(Kind::Int64).map_err(|e| e.to_string())
                }
                kind => Err(format!(
                    "cross-entropy wants class indices of an integer kind as targets, got {kind:?} (for \
                     regression use `Loss::Mse` or `Loss::custom`)"
                )),
            },
            Loss::Mse | Loss::Custom(_) => Ok(targets),
        }
    }

    /// The loss of a batch.
    pub(crate) fn compute(&self, outputs: &Tensor, targets: &Tensor) -> Result<Tensor, TchError> {
        match self {
            Loss::CrossEntropy => outputs.f_cross_entropy_loss::<Tensor>(targets, None, Reduction::Mean, -100, 0.0),
            Loss::Mse => outputs.f_mse_loss(&targets.f_to_kind(outputs.kind())?, Reduction::Mean),
            Loss::Custom(f) => f(outputs, targets),
        }
    }

    /// What the loss needs of the shapes, for error messages.
    pub(crate) fn expects(&self) -> &'static str {
        match self {
            Loss::CrossEntropy => "the output must be [batch, classes] and every label below `classes`",
            Loss::Mse => "outputs and targets must have the same shape",
            Loss::Custom(_) => "see the custom loss",
        }
    }
}

impl fmt::Debug for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Loss::CrossEntropy => "CrossEntropy",
            Loss::Mse => "Mse",
            Loss::Custom(_) => "Custom",
        })
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Loss::CrossEntropy => "cross-entropy loss",
            Loss::Mse => "MSE loss",
            Loss::Custom(_) => "custom loss",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn targets_are_checked_for_the_loss() {
        let float = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        let int = Tensor::zeros([3], (Kind::Int, Device::Cpu));
        assert!(Loss::CrossEntropy
            .targets(float.shallow_clone())
            .unwrap_err()
            .contains("got Float"));
        assert_eq!(
            Loss::CrossEntropy.targets(int).unwrap().kind(),
            Kind::Int64,
            "widened to Int64"
        );
        assert_eq!(Loss::Mse.targets(float).unwrap().kind(), Kind::Float);
    }

    #[test]
    fn mse_matches_its_definition() {
        let out = Tensor::from_slice(&[1.0f32, 2.0, 4.0]);
        let target = Tensor::from_slice(&[1i64, 0, 1]);
        let loss = Loss::Mse.compute(&out, &target).unwrap().double_value(&[]);
        assert_eq!(
            loss,
            f64::from((0.0f32 + 4.0 + 9.0) / 3.0),
            "mean of squared differences, in Float"
        );
    }
}
