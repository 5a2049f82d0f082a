//! What each hook cost over a fit, as the history keeps it.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What one hook cost over a fit (in this process): its calls, at all its events, and the
/// values kept on the device that it read through trainmon's logs and metrics.
///
/// Every call is timed (two clock reads, tens of nanoseconds). On CUDA, each read of a value
/// kept on the device (the running loss or accuracy under lazy reads, a metric's sum) is a
/// host synchronisation: the host waits for the device's queued work. What a hook reads of
/// its own tensors (`double_value` on the weights, say) goes past trainmon and is not counted.
///
/// It serializes as `name`, `location`, `calls`, `total_s`, `mean_s` (derived), `device_reads`,
/// `share`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct HookCost {
    pub(crate) name: String,
    pub(crate) location: String,
    pub(crate) calls: u64,
    #[serde(rename = "total_s", deserialize_with = "seconds")]
    pub(crate) total: Duration,
    pub(crate) device_reads: u64,
    /// Its total over the fit's wall time.
    pub(crate) share: f64,
}

impl Serialize for HookCost {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Record<'c> {
            name: &'c str,
            location: &'c str,
            calls: u64,
            total_s: f64,
            mean_s: f64,
            device_reads: u64,
            share: f64,
        }
        Record {
            name: &self.name,
            location: &self.location,
            calls: self.calls,
            total_s: self.total.as_secs_f64(),
            mean_s: self.mean().as_secs_f64(),
            device_reads: self.device_reads,
            share: self.share,
        }
        .serialize(serializer)
    }
}

impl HookCost {
    /// The hook's name (its function's, or the name a run-time hook or built-in was given).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it was defined (`file:line`), or how it was added.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Its calls over the fit, at all its events (filtered-out events are not calls).
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// The time spent in it.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// Its mean time per call.
    pub fn mean(&self) -> Duration {
        self.total / u32::try_from(self.calls.max(1)).unwrap_or(u32::MAX)
    }

    /// Its share of the fit's wall time (0 to 1). After a resume the wall time counts the
    /// interrupted processes too, the hook's time only this one's.
    pub fn share(&self) -> f64 {
        self.share
    }

    /// How many values kept on the device it read through trainmon's logs and metrics: on
    /// CUDA, each a host synchronisation (on the CPU none is).
    pub fn device_reads(&self) -> u64 {
        self.device_reads
    }
}

impl std::fmt::Display for HookCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` {:.1} % of the fit ({} call{}, {:.3} s, {:.1} µs per call, {} device reads)",
            self.name,
            self.share * 100.0,
            self.calls,
            if self.calls == 1 { "" } else { "s" },
            self.total.as_secs_f64(),
            self.mean().as_secs_f64() * 1e6,
            self.device_reads
        )
    }
}

/// A `Duration` read from seconds (a plain number).
fn seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let seconds = f64::deserialize(deserializer)?;
    Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
}
