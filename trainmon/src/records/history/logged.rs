//! What hooks log at optimizer steps ([`crate::HookContext::log`]): numbers and histograms.

use super::float;
use serde::{Deserialize, Serialize};

/// A value a hook logged at an optimizer step ([`crate::HookContext::log`],
/// [`crate::HookContext::log_histogram`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Logged {
    pub(crate) step: u64,
    pub(crate) name: String,
    pub(crate) value: LoggedValue,
}

/// A logged value: a number, or the histogram of a tensor's values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoggedValue {
    /// A number.
    Scalar(#[serde(with = "float")] f64),
    /// The histogram of a tensor's values.
    Histogram(Histogram),
}

impl Logged {
    /// The global step it was logged at.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Its name (`"grad_norm/fc1.weight"`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value.
    pub fn value(&self) -> &LoggedValue {
        &self.value
    }
}

/// The histogram of a tensor's values, as TensorBoard shows them: equal-width buckets between
/// the smallest and the largest value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) count: f64,
    pub(crate) sum: f64,
    pub(crate) sum_squares: f64,
    /// Each bucket's upper edge, and how many values fall in it.
    pub(crate) buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// The histogram of the finite values of `tensor` in `bins` buckets, computed on its
    /// device and read in two transfers; `None` when it has no finite value (NaN and infinities
    /// are left out: a histogram of exploding gradients shows what is still finite).
    pub fn of(tensor: &tch::Tensor, bins: i64) -> Result<Option<Self>, tch::TchError> {
        let _no_grad = tch::no_grad_guard();
        let values = tensor.f_detach()?.f_to_kind(tch::Kind::Double)?.f_flatten(0, -1)?;
        let values = values.f_masked_select(&values.f_isfinite()?)?;
        let count = values.size()[0];
        if count == 0 {
            return Ok(None);
        }
        let stats = tch::Tensor::f_stack(
            &[
                values.f_min()?,
                values.f_max()?,
                values.f_sum(tch::Kind::Double)?,
                values.f_square()?.f_sum(tch::Kind::Double)?,
            ],
            0,
        )?;
        let stats = Vec::<f64>::try_from(stats.f_to_device(tch::Device::Cpu)?)?;
        let (min, max) = (stats[0], stats[1]);
        let buckets = if min == max {
            vec![(max, count as f64)]
        } else {
            // Between the smallest and the largest value (histc's default range).
            let counts = values.f_histc(bins)?;
            let counts = Vec::<f64>::try_from(counts.f_to_device(tch::Device::Cpu)?)?;
            let width = (max - min) / bins as f64;
            (counts.into_iter().enumerate())
                .map(|(i, n)| {
                    (
                        if i as i64 == bins - 1 {
                            max
                        } else {
                            min + width * (i + 1) as f64
                        },
                        n,
                    )
                })
                .collect()
        };
        Ok(Some(Histogram {
            min,
            max,
            count: count as f64,
            sum: stats[2],
            sum_squares: stats[3],
            buckets,
        }))
    }

    /// The smallest value.
    pub fn min(&self) -> f64 {
        self.min
    }

    /// The largest value.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// How many values.
    pub fn count(&self) -> f64 {
        self.count
    }

    /// Their sum.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The sum of their squares.
    pub fn sum_squares(&self) -> f64 {
        self.sum_squares
    }

    /// Each bucket's upper edge and count, in order.
    pub fn buckets(&self) -> &[(f64, f64)] {
        &self.buckets
    }
}
