//! Which metric a value is: its name and the data it was measured on.

/// The data a metric was measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// The training batches.
    Training,
    /// The validation set.
    Validation,
}

/// A metric of an epoch: its name (`loss`, `accuracy`, a metric of your own) and the split it
/// was measured on. Written as the history, the files, the hooks and the peer frameworks name
/// it: `loss` for training, `val_loss` for validation ([`MetricKey::parse`] reads that back).
///
/// ```
/// use trainmon::{MetricKey, Split};
///
/// let key = MetricKey::parse("val_accuracy");
/// assert_eq!((key.split(), key.name()), (Split::Validation, "accuracy"));
/// assert_eq!(key, MetricKey::validation("accuracy"));
/// assert_eq!(key.as_str(), "val_accuracy");
/// assert_eq!(MetricKey::parse("loss"), MetricKey::training("loss"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricKey {
    split: Split,
    name: String,
    /// How it is written: `name`, or `val_name`.
    written: String,
}

/// What a validation metric's written name starts with.
const VALIDATION: &str = "val_";

impl MetricKey {
    /// The training metric `name`.
    pub fn training(name: impl Into<String>) -> Self {
        let name = name.into();
        MetricKey {
            split: Split::Training,
            written: name.clone(),
            name,
        }
    }

    /// The validation metric `name` (`val_name`).
    pub fn validation(name: impl Into<String>) -> Self {
        let name = name.into();
        MetricKey {
            split: Split::Validation,
            written: format!("{VALIDATION}{name}"),
            name,
        }
    }

    /// The key a written name stands for: `val_loss` is the validation `loss`, any other name a
    /// training metric.
    pub fn parse(written: &str) -> Self {
        match written.strip_prefix(VALIDATION) {
            Some(name) if !name.is_empty() => MetricKey::validation(name),
            _ => MetricKey::training(written),
        }
    }

    /// The split it was measured on.
    pub fn split(&self) -> Split {
        self.split
    }

    /// Its name within the split: `loss` for both `loss` and `val_loss`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same metric on the other split: `val_loss` for `loss`, and back.
    pub fn twin(&self) -> Self {
        match self.split {
            Split::Training => MetricKey::validation(&*self.name),
            Split::Validation => MetricKey::training(&*self.name),
        }
    }

    /// How it is written: `loss`, `val_loss`.
    pub fn as_str(&self) -> &str {
        &self.written
    }
}

impl std::fmt::Display for MetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.written)
    }
}

impl From<&str> for MetricKey {
    fn from(written: &str) -> Self {
        MetricKey::parse(written)
    }
}

impl From<String> for MetricKey {
    fn from(written: String) -> Self {
        MetricKey::parse(&written)
    }
}

impl From<&String> for MetricKey {
    fn from(written: &String) -> Self {
        MetricKey::parse(written)
    }
}

impl From<&MetricKey> for MetricKey {
    fn from(key: &MetricKey) -> Self {
        key.clone()
    }
}

impl PartialEq<str> for MetricKey {
    fn eq(&self, written: &str) -> bool {
        self.written == written
    }
}

impl PartialEq<&str> for MetricKey {
    fn eq(&self, written: &&str) -> bool {
        self.written == *written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_as_they_are_written() {
        for key in [
            MetricKey::training("loss"),
            MetricKey::validation("loss"),
            MetricKey::validation("top_5"),
            MetricKey::training("val"),
        ] {
            assert_eq!(MetricKey::parse(key.as_str()), key, "{key}");
        }
        assert_eq!(MetricKey::training("loss").twin(), MetricKey::validation("loss"));
        // `val_` alone names no validation metric.
        assert_eq!(MetricKey::parse("val_").split(), Split::Training);
    }
}
