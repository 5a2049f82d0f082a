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

/// Writes the weights to `path` atomically and durably.
pub(crate) fn save(vs: &tch::nn::VarStore, path: &Path) -> Result<(), BoxError> {
    durably(path, |temp| {
        vs.save(temp)
            .map_err(|e| Error::torch(format!("saving the weights to {}", temp.display()), e))
    })?;
    Ok(())
}

/// Writes named tensors to `path` as safetensors (what `VarStore::save` writes for a model's
/// variables), atomically and durably: the averaged weights of [`crate::hooks::Ema`].
pub(crate) fn save_tensors(named: &[(&str, &tch::Tensor)], path: &Path) -> crate::Result<()> {
    durably(path, |temp| {
        tch::Tensor::write_safetensors(named, temp)
            .map_err(|e| Error::torch(format!("saving the weights to {}", temp.display()), e))
    })
}
