//! A state kept in resume points ([`HookState`]).

use crate::error::BoxError;

/// A state kept in resume points — a hook's, a metric's, an optimizer's: a plain value
/// (anything serde serializes) and, for what is best kept as tensors (a copy of the best
/// weights, Adam's moments), named tensors.
#[derive(Debug, Default)]
pub struct HookState {
    /// The state's plain part.
    pub(crate) value: serde_json::Value,
    /// Its tensors, by name (saved bit for bit, restored on the CPU).
    pub(crate) tensors: Vec<(String, tch::Tensor)>,
}

impl HookState {
    /// A state of a plain value (anything `serde` serializes).
    pub fn new(value: impl serde::Serialize) -> Result<Self, BoxError> {
        Ok(HookState {
            value: serde_json::to_value(value)?,
            tensors: Vec::new(),
        })
    }

    /// The plain part, read back as `T`.
    pub fn value<T: serde::de::DeserializeOwned>(&self) -> Result<T, BoxError> {
        Ok(T::deserialize(&self.value)?)
    }

    /// Adds a tensor, kept bit for bit under `name`.
    pub fn with_tensor(mut self, name: impl Into<String>, tensor: tch::Tensor) -> Self {
        self.tensors.push((name.into(), tensor));
        self
    }

    /// The tensors, by name, in the order they were added (restored on the CPU).
    pub fn tensors(&self) -> &[(String, tch::Tensor)] {
        &self.tensors
    }

    /// Takes the tensors out.
    pub fn take_tensors(&mut self) -> Vec<(String, tch::Tensor)> {
        std::mem::take(&mut self.tensors)
    }
}

/// The `Local` parameters of a function hook, kept as marks in the plain part (a JSON object:
/// `"name: Type"` → `"kept"` or why not) and tensors of CBOR bytes named by the same keys.
impl HookState {
    /// A state with no marks yet.
    pub(crate) fn marks() -> Self {
        HookState {
            value: serde_json::Value::Object(Default::default()),
            tensors: Vec::new(),
        }
    }

    /// Records what became of the `Local` `key`.
    pub(crate) fn mark(&mut self, key: &str, what: String) {
        if let serde_json::Value::Object(marks) = &mut self.value {
            marks.insert(key.to_owned(), what.into());
        }
    }

    /// Takes the mark of `key` (and its bytes), if any.
    pub(crate) fn take_mark(&mut self, key: &str) -> Option<(String, Option<tch::Tensor>)> {
        let serde_json::Value::Object(marks) = &mut self.value else {
            return None;
        };
        let mark = marks.remove(key)?;
        let tensor = self
            .tensors
            .iter()
            .position(|(name, _)| name == key)
            .map(|i| self.tensors.remove(i).1);
        Some((mark.as_str().unwrap_or_default().to_owned(), tensor))
    }

    /// Whether there is no mark.
    pub(crate) fn no_marks(&self) -> bool {
        self.value.as_object().is_none_or(|marks| marks.is_empty())
    }

    /// The marks no parameter took.
    pub(crate) fn take_marks(&mut self) -> Vec<(String, String)> {
        match &mut self.value {
            serde_json::Value::Object(marks) => std::mem::take(marks)
                .into_iter()
                .map(|(key, mark)| (key, mark.as_str().unwrap_or_default().to_owned()))
                .collect(),
            _ => Vec::new(),
        }
    }
}
