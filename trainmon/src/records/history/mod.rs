//! Per-epoch records, and what `fit` returns.

mod costs;
mod logged;
mod skipped;

pub use costs::HookCost;
pub use logged::{Histogram, Logged, LoggedValue};
pub use skipped::Skipped;

use crate::records::key::MetricKey;
use crate::schedule::event::Event;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The final logs of one epoch, as `on_validation_end` and `on_epoch_end` hooks see them and
/// the history keeps them: its metrics by name (`loss`, `accuracy`, metrics of your own, and
/// with a validation set the same prefixed `val_`), its time and size.
///
/// It serializes with serde (as the whole [`History`] does) as one flat record, a table's row:
/// `{"epoch": 1, "loss": …, "accuracy": …, "val_loss": …, "lr": …, "time_s": …,
/// "throughput": …, "batches": …, "samples": …}` — its metrics in their order between `epoch`
/// and `lr`. Every metric value round-trips exactly: NaN and the infinities as the strings
/// `"NaN"`, `"inf"` and `"-inf"`. (So a metric of your own named `epoch`, `lr`, `time_s`,
/// `throughput`, `batches` or `samples` does not survive a round trip.)
#[derive(Clone, Debug, PartialEq)]
pub struct EpochLogs {
    pub(crate) epoch: usize,
    pub(crate) time: Duration,
    pub(crate) batches: usize,
    pub(crate) samples: usize,
    pub(crate) values: Vec<(MetricKey, f64)>,
    pub(crate) learning_rate: f64,
}

/// The record's own keys, beside the metrics.
const RECORD_KEYS: [&str; 6] = ["epoch", "lr", "time_s", "throughput", "batches", "samples"];

impl Serialize for EpochLogs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.values.len() + RECORD_KEYS.len()))?;
        map.serialize_entry("epoch", &self.epoch)?;
        for (key, value) in &self.values {
            map.serialize_entry(key.as_str(), &float::repr(*value))?;
        }
        map.serialize_entry("lr", &float::repr(self.learning_rate))?;
        map.serialize_entry("time_s", &self.time.as_secs_f64())?;
        map.serialize_entry("throughput", &float::repr(self.throughput()))?;
        map.serialize_entry("batches", &self.batches)?;
        map.serialize_entry("samples", &self.samples)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for EpochLogs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Record;
        impl<'de> serde::de::Visitor<'de> for Record {
            type Value = EpochLogs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an epoch's record")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<EpochLogs, A::Error> {
                use serde::de::Error;
                let mut logs = EpochLogs {
                    epoch: 0,
                    time: Duration::ZERO,
                    batches: 0,
                    samples: 0,
                    values: Vec::new(),
                    learning_rate: f64::NAN,
                };
                let mut epoch = None;
                // In the document's order: the metrics keep theirs.
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "epoch" => epoch = Some(map.next_value()?),
                        "lr" => logs.learning_rate = float::value(map.next_value()?)?,
                        "time_s" => {
                            let seconds: f64 = map.next_value()?;
                            logs.time = Duration::try_from_secs_f64(seconds).map_err(A::Error::custom)?;
                        }
                        "throughput" => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                        "batches" => logs.batches = map.next_value()?,
                        "samples" => logs.samples = map.next_value()?,
                        _ => {
                            let value = float::value(map.next_value()?)?;
                            logs.values.push((MetricKey::parse(&key), value));
                        }
                    }
                }
                logs.epoch = epoch.ok_or_else(|| A::Error::missing_field("epoch"))?;
                Ok(logs)
            }
        }
        deserializer.deserialize_map(Record)
    }
}

impl EpochLogs {
    /// The epoch's 1-based number.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Mean of the epoch's batch losses.
    pub fn loss(&self) -> f64 {
        self.get("loss").unwrap_or(f64::NAN)
    }

    /// Share of the epoch's samples whose predicted class was right; NaN when the trainer
    /// tracks no accuracy.
    pub fn accuracy(&self) -> f64 {
        self.get("accuracy").unwrap_or(f64::NAN)
    }

    /// Wall time of the epoch: from its `on_epoch_begin` hooks to the end of its training and
    /// validation batches and their hooks (the `on_validation_end` and `on_epoch_end` hooks are
    /// not in it).
    pub fn time(&self) -> Duration {
        self.time
    }

    /// Batches trained in the epoch (fewer than planned when a batch hook stopped training).
    pub fn batches(&self) -> usize {
        self.batches
    }

    /// Samples trained in the epoch.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Mean loss over the validation set, if the trainer has one.
    pub fn val_loss(&self) -> Option<f64> {
        self.get("val_loss")
    }

    /// Accuracy over the validation set, if the trainer has one and tracks accuracy.
    pub fn val_accuracy(&self) -> Option<f64> {
        self.get("val_accuracy")
    }

    /// The learning rate the epoch trained with (at its last step).
    pub fn learning_rate(&self) -> f64 {
        self.learning_rate
    }

    /// Samples trained per second of the epoch's time.
    pub fn throughput(&self) -> f64 {
        self.samples as f64 / self.time.as_secs_f64()
    }

    /// A value by name: a metric (`"loss"`, `"accuracy"`, `"val_loss"`, one of your own…),
    /// `"time"` (seconds), `"lr"` or `"throughput"` (samples/s); `None` for a name the epoch
    /// does not have.
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "time" => Some(self.time.as_secs_f64()),
            "lr" => Some(self.learning_rate),
            "throughput" => Some(self.throughput()),
            _ => self.values.iter().find(|(key, _)| key == name).map(|(_, v)| *v),
        }
    }

    /// The value of the metric `key` (`MetricKey::validation("loss")`), if the epoch has it.
    pub fn metric(&self, key: &MetricKey) -> Option<f64> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The epoch's metrics, by name as written (`loss`, `val_loss`), training ones first, then
    /// validation ones (not the time).
    pub fn metrics(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.values.iter().map(|(key, v)| (key.as_str(), *v))
    }

    /// The epoch's metrics by key — name and split —, in the order of [`EpochLogs::metrics`].
    pub fn keyed(&self) -> impl Iterator<Item = (&MetricKey, f64)> + '_ {
        self.values.iter().map(|(key, v)| (key, *v))
    }
}

/// Why training stopped before its last epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopReason {
    /// What kind of stop it was.
    #[serde(default)]
    pub cause: crate::control::StopCause,
    /// The reason the hook gave.
    pub reason: String,
    /// The hook that asked to stop: its function name (or the name of a run-time hook).
    pub hook: String,
    /// The event it ran at.
    pub event: Event,
    /// The epoch it was in (1-based; 0 before the first).
    pub epoch: usize,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (hook `{}` at {}, epoch {})",
            self.reason, self.hook, self.event, self.epoch
        )
    }
}

/// Every finished epoch of a fit, and why it stopped; what [`crate::Trainer::fit`] returns.
///
/// It serializes with serde as `history.json` is best read: `epochs`, a list of flat records
/// ([`EpochLogs`]: `pandas.json_normalize(h["epochs"])` is the table); the stop as plain fields
/// (`stop_cause` — [`crate::StopCause::name`] —, `stop_reason`, `stop_hook`, `stop_event` — the
/// attribute's name, `on_epoch_end` —,
/// `stop_epoch`; `null` when every epoch ran); `elapsed_s`; `scaler_skipped_steps`, a plain
/// number; then `hook_costs`, `skipped`, `logged`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub(crate) epochs: Vec<EpochLogs>,
    pub(crate) stop: Option<StopReason>,
    pub(crate) elapsed: Duration,
    /// What each hook of the fit cost, the costliest first.
    pub(crate) hook_costs: Vec<HookCost>,
    /// The batches a rollback skipped, in order.
    pub(crate) skipped: Vec<Skipped>,
    /// What hooks logged ([`crate::HookContext::log`]), in order.
    pub(crate) logged: Vec<Logged>,
    /// Optimizer steps the gradient scaler skipped (gradients not finite).
    pub(crate) scaler_skipped_steps: u64,
}

/// [`History`] as it serializes (see there), read back.
#[derive(Deserialize)]
struct HistoryRecord {
    epochs: Vec<EpochLogs>,
    /// Absent in histories written before stops had a cause: a hook's.
    #[serde(default)]
    stop_cause: Option<crate::control::StopCause>,
    stop_reason: Option<String>,
    stop_hook: Option<String>,
    stop_event: Option<String>,
    stop_epoch: Option<usize>,
    elapsed_s: f64,
    #[serde(default)]
    scaler_skipped_steps: u64,
    #[serde(default)]
    hook_costs: Vec<HookCost>,
    #[serde(default)]
    skipped: Vec<Skipped>,
    #[serde(default)]
    logged: Vec<Logged>,
}

/// [`HistoryRecord`] borrowing what it writes (a resume point writes the history often).
#[derive(Serialize)]
struct HistoryRecordRef<'h> {
    epochs: &'h [EpochLogs],
    stop_cause: Option<crate::control::StopCause>,
    stop_reason: Option<&'h str>,
    stop_hook: Option<&'h str>,
    stop_event: Option<&'static str>,
    stop_epoch: Option<usize>,
    elapsed_s: f64,
    scaler_skipped_steps: u64,
    hook_costs: &'h [HookCost],
    skipped: &'h [Skipped],
    logged: &'h [Logged],
}

impl Serialize for History {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let stop = self.stop.as_ref();
        HistoryRecordRef {
            epochs: &self.epochs,
            stop_cause: stop.map(|s| s.cause),
            stop_reason: stop.map(|s| s.reason.as_str()),
            stop_hook: stop.map(|s| s.hook.as_str()),
            stop_event: stop.map(|s| s.event.attribute()),
            stop_epoch: stop.map(|s| s.epoch),
            elapsed_s: self.elapsed.as_secs_f64(),
            scaler_skipped_steps: self.scaler_skipped_steps,
            hook_costs: &self.hook_costs,
            skipped: &self.skipped,
            logged: &self.logged,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for History {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let record = HistoryRecord::deserialize(deserializer)?;
        let stop = match (
            record.stop_reason,
            record.stop_hook,
            record.stop_event,
            record.stop_epoch,
        ) {
            (Some(reason), Some(hook), Some(event), Some(epoch)) => Some(StopReason {
                cause: record.stop_cause.unwrap_or_default(),
                reason,
                hook,
                event: Event::ALL
                    .into_iter()
                    .find(|e| e.attribute() == event)
                    .ok_or_else(|| D::Error::custom(format!("`{event}` is not an event")))?,
                epoch,
            }),
            (None, None, None, None) => None,
            _ => {
                return Err(D::Error::custom(
                    "a stop needs stop_reason, stop_hook, stop_event and stop_epoch",
                ))
            }
        };
        Ok(History {
            epochs: record.epochs,
            stop,
            elapsed: Duration::try_from_secs_f64(record.elapsed_s).map_err(D::Error::custom)?,
            hook_costs: record.hook_costs,
            skipped: record.skipped,
            logged: record.logged,
            scaler_skipped_steps: record.scaler_skipped_steps,
        })
    }
}

impl History {
    /// The finished epochs, in order.
    pub fn epochs(&self) -> &[EpochLogs] {
        &self.epochs
    }

    /// The last finished epoch.
    pub fn last(&self) -> Option<&EpochLogs> {
        self.epochs.last()
    }

    /// Finished epochs.
    pub fn len(&self) -> usize {
        self.epochs.len()
    }

    /// Whether no epoch finished.
    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }

    /// Why training stopped early; `None` when every planned epoch ran.
    pub fn stop_reason(&self) -> Option<&StopReason> {
        self.stop.as_ref()
    }

    /// A metric of every epoch, by name (see [`EpochLogs::get`]); empty for an unknown name.
    pub fn metric(&self, name: &str) -> Vec<f64> {
        self.epochs.iter().filter_map(|e| e.get(name)).collect()
    }

    /// Wall time of the whole fit, hooks included (so far, while training).
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// What each hook cost, the costliest first: every hook that ran in this process (a
    /// resumed fit counts from where it went on). Filled when the epochs are over, before the
    /// `on_train_end` hooks run (which see it without their own last calls), and again after.
    pub fn hook_costs(&self) -> &[HookCost] {
        &self.hook_costs
    }

    /// The numbers hooks logged under `name` ([`crate::HookContext::log`]): `(step, value)`,
    /// in order.
    pub fn logged(&self, name: &str) -> Vec<(u64, f64)> {
        (self.logged.iter())
            .filter(|l| l.name == name)
            .filter_map(|l| match l.value {
                LoggedValue::Scalar(value) => Some((l.step, value)),
                LoggedValue::Histogram(_) => None,
            })
            .collect()
    }

    /// Everything hooks logged, numbers and histograms, in order.
    pub fn logged_all(&self) -> &[Logged] {
        &self.logged
    }

    /// The batches rollbacks skipped ([`crate::Rollback`]), in order.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Optimizer steps the gradient scaler skipped because their gradients were not finite
    /// ([`crate::GradScaler`]; 0 without one). Kept up to date during the fit: a batch hook sees
    /// the step just skipped counted.
    pub fn scaler_skipped_steps(&self) -> u64 {
        self.scaler_skipped_steps
    }
}

/// Serde for `f64` values that may be NaN or infinite, which JSON numbers cannot be: those are
/// written as the strings `"NaN"`, `"inf"`, `"-inf"`; every finite value round-trips exactly.
pub(crate) mod float {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    pub(crate) enum Repr<'a> {
        Number(f64),
        Text(std::borrow::Cow<'a, str>),
    }

    pub(crate) fn repr(value: f64) -> Repr<'static> {
        match value {
            v if v.is_finite() => Repr::Number(v),
            v if v.is_nan() => Repr::Text("NaN".into()),
            v if v > 0.0 => Repr::Text("inf".into()),
            _ => Repr::Text("-inf".into()),
        }
    }

    pub(crate) fn value<E: serde::de::Error>(repr: Repr<'_>) -> Result<f64, E> {
        match repr {
            Repr::Number(v) => Ok(v),
            Repr::Text(text) => match &*text {
                "NaN" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                other => Err(E::custom(format!("`{other}` is not a number"))),
            },
        }
    }

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        repr(*value).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        value(Repr::deserialize(deserializer)?)
    }

    /// For `Option<f64>`.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
            value.map(repr).serialize(serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
            Option::<Repr<'_>>::deserialize(deserializer)?.map(value).transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_the_finite_values() {
        let t = tch::Tensor::from_slice(&[0.0f32, 1.0, 2.0, 3.0, f32::NAN, f32::INFINITY]);
        let h = Histogram::of(&t, 3).unwrap().unwrap();
        assert_eq!(
            (h.min(), h.max(), h.count(), h.sum(), h.sum_squares()),
            (0.0, 3.0, 4.0, 6.0, 14.0)
        );
        assert_eq!(h.buckets(), [(1.0, 1.0), (2.0, 1.0), (3.0, 2.0)]);
        let constant = Histogram::of(&tch::Tensor::zeros([5], tch::kind::FLOAT_CPU), 30)
            .unwrap()
            .unwrap();
        assert_eq!(constant.buckets(), [(0.0, 5.0)], "one bucket at the value");
        let nothing = tch::Tensor::from_slice(&[f32::NAN, f32::NEG_INFINITY]);
        assert!(Histogram::of(&nothing, 30).unwrap().is_none());
        assert!(Histogram::of(&tch::Tensor::zeros([0], tch::kind::FLOAT_CPU), 30)
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_history_round_trips_through_json_exactly() {
        let history = History {
            epochs: vec![EpochLogs {
                epoch: 1,
                time: Duration::from_nanos(1_234_567_891),
                batches: 32,
                samples: 1000,
                values: vec![
                    ("loss".into(), 0.1 + 0.2),
                    ("accuracy".into(), 1.0 / 3.0),
                    ("val_loss".into(), f64::NAN),
                    ("big".into(), f64::INFINITY),
                    ("small".into(), f64::NEG_INFINITY),
                    ("tiny".into(), f64::MIN_POSITIVE / 3.0),
                ],
                learning_rate: 1e-3,
            }],
            stop: Some(StopReason {
                cause: crate::control::StopCause::EarlyStopping,
                reason: "patience".into(),
                hook: "EarlyStopping".into(),
                event: Event::EpochEnd,
                epoch: 1,
            }),
            elapsed: Duration::from_millis(1500),
            hook_costs: vec![HookCost {
                name: "plot".into(),
                location: "src/main.rs:12".into(),
                calls: 3,
                total: Duration::from_nanos(1_500_000_001),
                device_reads: 2,
                share: 0.25,
            }],
            skipped: Vec::new(),
            logged: Vec::new(),
            scaler_skipped_steps: 3,
        };
        let json = serde_json::to_string(&history).unwrap();
        // Flat records, keys in order; the stop as plain fields.
        assert!(
            json.starts_with(
                r#"{"epochs":[{"epoch":1,"loss":0.30000000000000004,"accuracy":0.3333333333333333,"val_loss":"NaN","#
            ),
            "{json}"
        );
        assert!(
            json.contains(
                r#""lr":0.001,"time_s":1.234567891,"throughput":810.0000067149001,"batches":32,"samples":1000}]"#
            ),
            "{json}"
        );
        assert!(
            json.contains(r#""stop_cause":"early_stopping","stop_reason":"patience","stop_hook":"EarlyStopping","stop_event":"on_epoch_end","stop_epoch":1,"elapsed_s":1.5,"scaler_skipped_steps":3,"#),
            "{json}"
        );
        let back: History = serde_json::from_str(&json).unwrap();
        let bits = |h: &History| -> Vec<u64> { h.epochs[0].values.iter().map(|(_, v)| v.to_bits()).collect() };
        assert_eq!(bits(&back), bits(&history), "{json}");
        assert_eq!(back.stop, history.stop);
        assert_eq!(back.epochs[0].time, history.epochs[0].time);
        assert_eq!(
            back.hook_costs, history.hook_costs,
            "seconds as a plain number, to the nanosecond"
        );
        assert!(json.contains(r#""total_s":1.500000001"#), "{json}");
        // A history written before hook costs were kept reads back, with none.
        let mut older: serde_json::Value = serde_json::from_str(&json).unwrap();
        older.as_object_mut().unwrap().remove("hook_costs").unwrap();
        let older: History = serde_json::from_value(older).unwrap();
        assert!(older.hook_costs.is_empty() && older.epochs.len() == 1);
        assert_eq!(back.scaler_skipped_steps, 3);
        let mut older: serde_json::Value = serde_json::from_str(&json).unwrap();
        older.as_object_mut().unwrap().remove("scaler_skipped_steps").unwrap();
        let older: History = serde_json::from_value(older).unwrap();
        assert_eq!(
            older.scaler_skipped_steps, 0,
            "a history written before the scaler reads back"
        );
        assert!(json.contains(r#""NaN""#) && json.contains(r#""-inf""#), "{json}");
        // Every finite value, not only friendly ones: 100 000 bit patterns from a fixed sequence.
        let mut bits = 0x9E37_79B9_7F4A_7C15u64;
        let values: Vec<f64> = std::iter::repeat_with(|| {
            bits = bits.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            f64::from_bits(bits)
        })
        .filter(|v| v.is_finite())
        .take(100_000)
        .collect();
        let epoch = EpochLogs {
            values: values.iter().map(|v| (MetricKey::training(""), *v)).collect(),
            ..history.epochs[0].clone()
        };
        let back: EpochLogs = serde_json::from_str(&serde_json::to_string(&epoch).unwrap()).unwrap();
        let same = back
            .values
            .iter()
            .zip(&values)
            .filter(|((_, a), b)| a.to_bits() == b.to_bits());
        assert_eq!(same.count(), values.len(), "every value reads back to the bit");
        let bad = json.replace(r#""NaN""#, r#""nope""#);
        assert!(serde_json::from_str::<History>(&bad)
            .unwrap_err()
            .to_string()
            .contains("`nope`"));
    }
}
