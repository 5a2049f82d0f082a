//! Weight files: a model's variables saved as safetensors, written atomically, and loaded back
//! all or nothing.

use super::durably;
use crate::error::{BoxError, Error};
use std::collections::BTreeMap;
use std::path::Path;

/// Loads a checkpoint (safetensors, as [`crate::hooks::ModelCheckpoint`] writes them) into the model's
/// variables, all or nothing: a file that is truncated or not safetensors, or that was made for
/// another model — a variable missing, one too many, or another shape —, is an
/// [`Error::Checkpoint`] that says which, and leaves the weights as they were.
pub fn load_checkpoint(vs: &tch::nn::VarStore, path: impl AsRef<Path>) -> crate::Result<()> {
    let path = path.as_ref();
    let saved = tch::Tensor::read_safetensors(path).map_err(|e| Error::Checkpoint {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    copy(vs, &saved.into_iter().collect(), path)
}

/// Copies saved variables into the model's, all or nothing: those of another model (a variable
/// missing, one too many, another shape) are an [`Error::Checkpoint`] naming `path` that leaves
/// the weights as they were.
pub(crate) fn copy(vs: &tch::nn::VarStore, saved: &BTreeMap<String, tch::Tensor>, path: &Path) -> crate::Result<()> {
    check(vs, saved, path)?;
    let variables = vs.variables();
    let _no_grad = tch::no_grad_guard();
    for (name, tensor) in saved {
        variables[name]
            .shallow_clone()
            .f_copy_(tensor)
            .map_err(|e| Error::Checkpoint {
                path: path.to_owned(),
                message: format!("copying `{name}`: {e}"),
            })?;
    }
    Ok(())
}

/// Whether saved variables fit the model's: the same names and shapes; an
/// [`Error::Checkpoint`] naming `path` that says what differs otherwise.
pub(crate) fn check(vs: &tch::nn::VarStore, saved: &BTreeMap<String, tch::Tensor>, path: &Path) -> crate::Result<()> {
    let failed = |message: String| Error::Checkpoint {
        path: path.to_owned(),
        message,
    };
    let variables = vs.variables();
    let mut problems = Vec::new();
    for (name, variable) in &variables {
        match saved.get(name) {
            None => problems.push(format!("`{name}` is missing")),
            Some(t) if t.size() != variable.size() => problems.push(format!(
                "`{name}` has shape {:?}, the model's {:?}",
                t.size(),
                variable.size()
            )),
            Some(_) => {}
        }
    }
    problems.extend(
        saved
            .keys()
            .filter(|name| !variables.contains_key(*name))
            .map(|name| format!("`{name}` is not a variable of the model")),
    );
    if !problems.is_empty() {
        problems.sort();
        return Err(failed(format!(
            "it was made for another model: {}",
            problems.join("; ")
        )));
    }
    Ok(())
}

/// What a weight file's header keeps beside the tensors (safetensors' `__metadata__`: strings
/// by name). Every file trainmon writes also has `format` = `pt` (what `safetensors.torch`
/// writes, so PyTorch tools take it) and `trainmon_version`.
pub(crate) type Metadata = BTreeMap<String, String>;

/// Writes the model's variables to `path` atomically and durably, with `metadata`.
pub(crate) fn save(vs: &tch::nn::VarStore, path: &Path, metadata: &Metadata) -> Result<(), BoxError> {
    let variables = crate::context::variables_by_name(vs);
    let named: Vec<(&str, &tch::Tensor)> = variables.iter().map(|(n, t)| (n.as_str(), t)).collect();
    save_tensors(&named, path, metadata)?;
    Ok(())
}

/// Writes named tensors to `path` as safetensors, with `metadata`, atomically and durably.
pub(crate) fn save_tensors(named: &[(&str, &tch::Tensor)], path: &Path, metadata: &Metadata) -> crate::Result<()> {
    durably(path, |temp| {
        let failed = |e: String| Error::Checkpoint {
            path: temp.to_owned(),
            message: e,
        };
        let views = named
            .iter()
            .map(|(name, tensor)| Ok((*name, Bytes::of(tensor).map_err(|e| failed(format!("`{name}`: {e}")))?)))
            .collect::<crate::Result<Vec<_>>>()?;
        let mut header: std::collections::HashMap<String, String> = metadata.clone().into_iter().collect();
        header.insert("format".into(), "pt".into());
        header.insert("trainmon_version".into(), env!("CARGO_PKG_VERSION").into());
        safetensors::tensor::serialize_to_file(views, &Some(header), temp).map_err(|e| failed(format!("{e:?}")))
    })
}

/// A tensor's bytes on the host, as safetensors writes them.
struct Bytes {
    data: Vec<u8>,
    shape: Vec<usize>,
    dtype: safetensors::Dtype,
}

impl Bytes {
    fn of(tensor: &tch::Tensor) -> Result<Self, tch::TchError> {
        let host = tensor.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
        let numel = host.numel();
        let mut data = vec![0; numel * host.kind().elt_size_in_bytes()];
        host.f_copy_data_u8(&mut data, numel)?;
        Ok(Bytes {
            data,
            shape: host.size().iter().map(|&d| d as usize).collect(),
            dtype: host.kind().try_into()?,
        })
    }
}

impl safetensors::View for Bytes {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// The `__metadata__` of a safetensors file (empty when it has none).
pub fn checkpoint_metadata(path: impl AsRef<Path>) -> crate::Result<BTreeMap<String, String>> {
    let path = path.as_ref();
    let failed = |message: String| Error::Checkpoint {
        path: path.to_owned(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| failed(format!("{e:?}")))?;
    Ok(header.metadata().clone().unwrap_or_default().into_iter().collect())
}
