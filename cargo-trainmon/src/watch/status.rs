//! `status.json`: where a fit is, as the training process last wrote it (replaced atomically,
//! at most every 0.5 s by trainmon's `MetricFiles`). Every key may be missing or `null`, and
//! keys this version does not know are ignored: later formats add keys.

use super::records::{Field, Ordered};
use super::tail::Stamp;
use serde::Deserialize;
use std::path::Path;

/// The file's contents. Numbers that were not finite are `None`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    pub format: Option<u64>,
    /// `running`, `finished` or `failed`.
    pub state: Option<String>,
    pub pid: Option<u32>,
    pub host: Option<String>,
    pub started_unix_s: Option<f64>,
    pub updated_unix_s: Option<f64>,
    pub elapsed_s: Option<f64>,
    /// The epoch being trained (1-based; the last one trained once the fit ended).
    pub epoch: Option<u64>,
    pub epochs: Option<u64>,
    /// Batches done in this epoch.
    pub batch: Option<u64>,
    pub batches_per_epoch: Option<u64>,
    pub global_step: Option<u64>,
    pub epoch_elapsed_s: Option<f64>,
    pub samples_per_s: Option<f64>,
    pub lr: Option<f64>,
    /// The epoch's running values at the last batch, in column order.
    pub running: Option<Ordered>,
    pub monitor: Option<Monitor>,
    pub stop_reason: Option<String>,
    pub error: Option<String>,
    pub world_size: Option<u64>,
}

/// The metric whose best value the dashboard shows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Monitor {
    pub metric: Option<String>,
    /// `min` or `max`.
    pub mode: Option<String>,
}

impl Status {
    /// The running values that are numbers.
    pub fn running_values(&self) -> impl Iterator<Item = (&str, f64)> {
        self.running
            .iter()
            .flat_map(|r| &r.0)
            .filter_map(|(name, field)| match field {
                Field::Num(Some(v)) => Some((name.as_str(), *v)),
                _ => None,
            })
    }
}

/// `status.json` of a run, read again when it changed.
#[derive(Debug, Default)]
pub struct StatusFile {
    stamp: Option<Stamp>,
    /// The last contents that could be read.
    pub status: Option<Status>,
    /// Why the file as it is now could not be read (e.g. cut short).
    pub problem: Option<String>,
}

impl StatusFile {
    /// Reads `dir/status.json` if it changed since the last call. A file that is not there
    /// leaves what was read (none at first); one that cannot be parsed keeps the last good
    /// contents and says why.
    pub fn update(&mut self, dir: &Path) {
        let path = dir.join("status.json");
        let Ok(meta) = std::fs::metadata(&path) else { return };
        let stamp = Stamp::of(&meta);
        if self.stamp == Some(stamp) {
            return;
        }
        self.stamp = Some(stamp);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Status>(&bytes) {
                Ok(status) => {
                    self.status = Some(status);
                    self.problem = None;
                }
                Err(e) => self.problem = Some(format!("status.json could not be read: {e}")),
            },
            Err(e) => self.problem = Some(format!("status.json could not be read: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_spec_example_and_ignores_unknown_keys() {
        let text = r#"{"format":1,"state":"running","pid":12345,"host":"trainbox","started_unix_s":1764570000.123,
            "updated_unix_s":1764570005.456,"elapsed_s":5.33,"epoch":3,"epochs":30,"batch":17,"batches_per_epoch":50,
            "global_step":117,"epoch_elapsed_s":1.21,"samples_per_s":null,"lr":0.001,
            "running":{"loss":0.52,"accuracy":0.75},"monitor":{"metric":"val_loss","mode":"min"},
            "stop_reason":null,"error":null,"world_size":1,"later_key":[1,2]}"#;
        let status: Status = serde_json::from_str(text).unwrap();
        assert_eq!(status.state.as_deref(), Some("running"));
        assert_eq!(
            (status.epoch, status.batch, status.batches_per_epoch),
            (Some(3), Some(17), Some(50))
        );
        assert_eq!(status.samples_per_s, None);
        assert_eq!(
            status.running_values().collect::<Vec<_>>(),
            [("loss", 0.52), ("accuracy", 0.75)]
        );
        assert_eq!(status.monitor.and_then(|m| m.metric).as_deref(), Some("val_loss"));
    }

    #[test]
    fn a_cut_file_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        std::fs::write(&path, r#"{"state":"running","epoch":2}"#).unwrap();
        let mut file = StatusFile::default();
        file.update(dir.path());
        assert_eq!(file.status.as_ref().and_then(|s| s.epoch), Some(2));
        std::fs::write(&path, r#"{"state":"finished","epoch":"#).unwrap();
        file.update(dir.path());
        assert_eq!(file.status.as_ref().and_then(|s| s.epoch), Some(2));
        let problem = file.problem.unwrap();
        assert!(problem.starts_with("status.json could not be read: EOF"), "{problem}");
    }
}
