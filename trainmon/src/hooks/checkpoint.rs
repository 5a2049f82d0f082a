//! Model checkpoints: the weights, as safetensors files, written atomically.

use super::monitor::Mode;
use crate::context::HookContext;
use crate::control::Control;
use crate::error::{BoxError, Error};
use crate::hook::{Hook, Plugin};
use crate::output::weights;
use crate::records::key::MetricKey;
use crate::records::saved::HookState;
use crate::schedule::event::Event;
use crate::schedule::filter::{Counter, Filter};
use crate::schedule::priority;
use crate::schedule::spec::HookSpec;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Weights that a [`ModelCheckpoint`] saves besides, or instead of, the model's, through a handle
/// on them that another hook keeps up to date — an [`crate::hooks::Ema`]'s average
/// ([`crate::hooks::Averaged`]). The checkpoint writes them and knows nothing of how they are
/// made.
pub trait WeightsHandle: Send + 'static {
    /// What names the file written beside a checkpoint: `"ema"` → `<name>.ema.safetensors`.
    fn suffix(&self) -> &str;
    /// Why there are no weights to save in this fit, if there are none (the hook that keeps
    /// them does not run in it), naming what to do.
    fn missing(&self) -> Option<String>;
    /// Writes them to `path` as a safetensors file named as the model's variables, with
    /// `metadata` in its header, atomically and durably.
    fn save_with(&self, path: &Path, metadata: &std::collections::BTreeMap<String, String>) -> crate::Result<()>;
}

/// Where a [`ModelCheckpoint`] puts the weights of a [`WeightsHandle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The raw weights in each checkpoint file, and the others beside it, in
    /// `<name>.<suffix>.safetensors` ([`beside`]).
    Also,
    /// The others in each checkpoint file, instead of the raw weights.
    Instead,
}

/// Where a checkpoint's other weights go with [`Placement::Also`]: `<name>.<suffix>.safetensors`
/// beside `<name>.safetensors`.
///
/// ```
/// use std::path::Path;
/// use trainmon::hooks::beside;
///
/// assert_eq!(beside("ckpt/epoch=3-step=96.safetensors", "ema"), Path::new("ckpt/epoch=3-step=96.ema.safetensors"));
/// ```
pub fn beside(checkpoint: impl AsRef<Path>, suffix: &str) -> PathBuf {
    let checkpoint = checkpoint.as_ref();
    let name = checkpoint
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".safetensors").unwrap_or(&name);
    checkpoint.with_file_name(format!("{stem}.{suffix}.safetensors"))
}

/// Saves the model's weights (`VarStore::save`, safetensors) as Lightning's `ModelCheckpoint`
/// and Keras's `ModelCheckpoint` do: into a directory, named from a template, every `n` epochs
/// or steps, keeping the `k` best by a monitored metric (or the `k` latest without one), plus
/// `last.safetensors` and a checkpoint when training fails. Every file is written to a
/// temporary name, flushed to disk and renamed, and an old checkpoint is removed only after its
/// replacement exists, so a crash never leaves a half-written or missing best checkpoint.
///
/// Given other weights to save — a handle on weights another hook keeps, an
/// [`crate::hooks::Ema`]'s average ([`ModelCheckpoint::weights`]) — each file it writes, kept
/// checkpoints, `last`, the one on failure, holds them as well as (`<name>.<suffix>.safetensors`
/// beside it: `<name>.ema.safetensors`) or instead of the raw weights.
///
/// Runs at `on_epoch_end` (or every n steps at `on_batch_end`) and `on_exception`, priority
/// [`priority::CHECKPOINT`]: after early stopping has decided.
///
/// ```
/// use trainmon::hooks::ModelCheckpoint;
///
/// let checkpoints = ModelCheckpoint::new("runs/demo/checkpoints")
///     .filename("{epoch:03d}-{val_loss:.4f}")
///     .monitor("val_loss")
///     .save_top_k(3)
///     .save_last(true);
/// let saved = checkpoints.saved(); // read after `fit`: `saved.best()`, `saved.kept()`
/// # let _ = (checkpoints, saved);
/// ```
pub struct ModelCheckpoint {
    dir: PathBuf,
    template: String,
    monitor: Option<(MetricKey, Mode)>,
    top_k: Option<usize>,
    save_last: bool,
    every_epochs: u64,
    every_steps: u64,
    on_exception: bool,
    weights: Option<(Box<dyn WeightsHandle>, Placement)>,
    saved: Saved,
}

/// What a [`ModelCheckpoint`] has saved, readable after (and during) `fit`.
#[derive(Clone, Default, Debug)]
pub struct Saved(Arc<Mutex<SavedFiles>>);

#[derive(Default, Debug)]
struct SavedFiles {
    /// Kept checkpoints with their monitored value, best first (latest first without a monitor).
    kept: Vec<(PathBuf, Option<f64>)>,
    last: Option<PathBuf>,
}

impl Saved {
    /// The best checkpoint kept (the latest one without a monitor).
    pub fn best(&self) -> Option<PathBuf> {
        self.lock().kept.first().map(|(p, _)| p.clone())
    }

    /// Every checkpoint kept, best first, with its monitored value.
    pub fn kept(&self) -> Vec<(PathBuf, Option<f64>)> {
        self.lock().kept.clone()
    }

    /// `last.safetensors`, once written.
    pub fn last(&self) -> Option<PathBuf> {
        self.lock().last.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SavedFiles> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ModelCheckpoint {
    /// Checkpoints into `dir` (created if need be), named `epoch={epoch}-step={step}` by
    /// default, after every epoch, all kept, no `last`, one on failure.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ModelCheckpoint {
            dir: dir.into(),
            template: "epoch={epoch}-step={step}".into(),
            monitor: None,
            top_k: None,
            save_last: false,
            every_epochs: 1,
            every_steps: 0,
            on_exception: true,
            weights: None,
            saved: Saved::default(),
        }
    }

    /// The file name (without `.safetensors`): `{epoch}`, `{step}` and any metric of the epoch
    /// in braces, with an optional format: `{epoch:03d}` zero-pads, `{val_loss:.4f}` fixes the
    /// decimals.
    pub fn filename(mut self, template: impl Into<String>) -> Self {
        self.template = template.into();
        self
    }

    /// Ranks checkpoints by this metric (mode auto: higher is better for an accuracy).
    pub fn monitor(mut self, metric: impl Into<MetricKey>) -> Self {
        self.monitor = Some((metric.into(), Mode::Auto));
        self
    }

    /// Whether lower or higher values of the monitored metric are better.
    pub fn mode(mut self, mode: Mode) -> Self {
        if let Some((_, m)) = &mut self.monitor {
            *m = mode;
        }
        self
    }

    /// Keeps the `k` best checkpoints (the `k` latest without a monitor); others are removed.
    pub fn save_top_k(mut self, k: usize) -> Self {
        self.top_k = Some(k);
        self
    }

    /// Also (re)writes `last.safetensors` at every save point.
    pub fn save_last(mut self, save_last: bool) -> Self {
        self.save_last = save_last;
        self
    }

    /// Saves every `n` epochs (default 1; `0`: not at epoch ends).
    pub fn every_epochs(mut self, n: u64) -> Self {
        self.every_epochs = n;
        self
    }

    /// Saves every `n` optimizer steps too (default 0: never).
    pub fn every_steps(mut self, n: u64) -> Self {
        self.every_steps = n;
        self
    }

    /// Whether to save `exception.safetensors` when training fails (default `true`).
    pub fn save_on_exception(mut self, save: bool) -> Self {
        self.on_exception = save;
        self
    }

    /// Saves other weights too, through a handle on them ([`WeightsHandle`]: an
    /// [`crate::hooks::Ema`]'s average, [`crate::hooks::Ema::averaged`]): [`Placement::Also`]
    /// writes them beside every file, as `<name>.<suffix>.safetensors` ([`beside`]; removed with
    /// its checkpoint when `save_top_k` drops it); [`Placement::Instead`] writes them in the file
    /// in place of the raw weights. The hook that keeps them must run in the same fit: `fit`
    /// fails at `on_train_begin` otherwise. Either file loads with
    /// [`crate::hooks::load_checkpoint`].
    ///
    /// ```
    /// use trainmon::hooks::{Ema, ModelCheckpoint, Placement};
    ///
    /// let ema = Ema::new(0.999);
    /// let checkpoints = ModelCheckpoint::new("runs/demo/checkpoints").weights(ema.averaged(), Placement::Also);
    /// # let _ = (ema, checkpoints);
    /// ```
    pub fn weights(mut self, handle: impl WeightsHandle, placement: Placement) -> Self {
        self.weights = Some((Box::new(handle), placement));
        self
    }

    /// A handle on what gets saved, to read after `fit`.
    pub fn saved(&self) -> Saved {
        self.saved.clone()
    }

    fn maximises(&self) -> bool {
        self.monitor.as_ref().is_some_and(|(name, mode)| mode.maximises(name))
    }

    fn save_point(&mut self, ctx: &HookContext<'_>) -> Result<(), BoxError> {
        let state = ctx.state();
        let epoch = ctx.epoch().or_else(|| ctx.history().last());
        let value = |name: &str| -> Option<f64> {
            match name {
                "epoch" => Some(state.epoch() as f64),
                "step" => Some(state.global_step() as f64),
                _ => epoch
                    .and_then(|e| e.get(name))
                    .or_else(|| ctx.batch().and_then(|b| b.get(name))),
            }
        };
        let monitored = match &self.monitor {
            Some((name, _)) => Some(value(name.as_str()).ok_or_else(|| match epoch {
                Some(e) => super::monitored(e, name, "ModelCheckpoint").unwrap_err(),
                None => format!("ModelCheckpoint monitors `{name}`, which no epoch has yet").into(),
            })?),
            None => None,
        };
        let name = format_name(&self.template, &value)?;
        let path = self.dir.join(format!("{name}.safetensors"));
        let keep = match (self.top_k, monitored) {
            (Some(0), _) => false,
            (Some(k), Some(v)) => {
                let kept = self.saved.lock();
                kept.kept.len() < k
                    || kept
                        .kept
                        .last()
                        .and_then(|(_, w)| *w)
                        .is_some_and(|w| self.better(v, w))
            }
            _ => true,
        };
        if keep {
            self.write(ctx, &path, monitored)?;
            self.record(path, monitored)?;
        }
        if self.save_last {
            let last = self.dir.join("last.safetensors");
            self.write(ctx, &last, monitored)?;
            self.saved.lock().last = Some(last);
        }
        Ok(())
    }

    /// Writes a checkpoint file: the raw weights, the other weights, or both (the other beside);
    /// its header says the epoch, the global step and the monitored value.
    fn write(&self, ctx: &HookContext<'_>, path: &Path, monitored: Option<f64>) -> Result<(), BoxError> {
        let metadata = self.metadata(ctx, monitored);
        match &self.weights {
            None => weights::save(ctx.var_store(), path, &metadata)?,
            Some((handle, Placement::Also)) => {
                weights::save(ctx.var_store(), path, &metadata)?;
                handle.save_with(&beside(path, handle.suffix()), &metadata)?;
            }
            Some((handle, Placement::Instead)) => handle.save_with(path, &metadata)?,
        }
        Ok(())
    }

    /// A checkpoint's header: `epoch` (finished epochs, or the one under way within an epoch),
    /// `global_step`, and the monitored metric's name and value (`monitor`, `monitor_value`).
    fn metadata(&self, ctx: &HookContext<'_>, monitored: Option<f64>) -> weights::Metadata {
        let state = ctx.state();
        let mut metadata = weights::Metadata::from([
            ("epoch".to_owned(), state.epoch().to_string()),
            ("global_step".to_owned(), state.global_step().to_string()),
        ]);
        if let (Some((name, _)), Some(value)) = (&self.monitor, monitored) {
            metadata.insert("monitor".into(), name.to_string());
            metadata.insert("monitor_value".into(), value.to_string());
        }
        metadata
    }

    fn better(&self, a: f64, b: f64) -> bool {
        if a.is_nan() {
            false
        } else if b.is_nan() {
            true
        } else if self.maximises() {
            a > b
        } else {
            a < b
        }
    }

    /// Adds a saved checkpoint to the kept list in rank order, then removes the ones past `k`.
    fn record(&mut self, path: PathBuf, value: Option<f64>) -> Result<(), BoxError> {
        let mut saved = self.saved.lock();
        saved.kept.retain(|(p, _)| *p != path);
        let at = match value {
            Some(v) => saved
                .kept
                .iter()
                .position(|(_, w)| w.is_none_or(|w| self.better(v, w)))
                .unwrap_or(saved.kept.len()),
            None => 0,
        };
        saved.kept.insert(at, (path, value));
        if let Some(k) = self.top_k {
            // Removed only now that the new checkpoint exists.
            let keep = k.min(saved.kept.len());
            for (old, _) in saved.kept.split_off(keep) {
                let other = match &self.weights {
                    Some((handle, Placement::Also)) => Some(beside(&old, handle.suffix())),
                    _ => None,
                };
                for old in std::iter::once(old).chain(other) {
                    match std::fs::remove_file(&old) {
                        // Already gone: a run resumed after a crash prunes what the crashed one had.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        other => other.map_err(Error::io("remove the old checkpoint", &old))?,
                    }
                }
            }
        }
        Ok(())
    }
}

/// Fills `{name}`, `{name:0Nd}` and `{name:.Nf}` from `value`.
fn format_name(template: &str, value: &dyn Fn(&str) -> Option<f64>) -> Result<String, BoxError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in the file name template `{template}`"))?;
        let field = &rest[open + 1..open + close];
        let (name, spec) = field.split_once(':').unwrap_or((field, ""));
        let v = value(name).ok_or_else(|| {
            format!("the file name template `{template}` names `{name}`, which this save point does not have")
        })?;
        let text = if let Some(width) = spec.strip_suffix('d') {
            let width: usize = width.trim_start_matches('0').parse().unwrap_or(0);
            format!("{:0width$}", v as i64)
        } else if let Some(decimals) = spec.strip_prefix('.').and_then(|s| s.strip_suffix('f')) {
            let decimals: usize = decimals
                .parse()
                .map_err(|_| format!("bad format `{spec}` in `{template}`"))?;
            format!("{v:.decimals$}")
        } else if spec.is_empty() {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                format!("{}", v as i64)
            } else {
                format!("{v}")
            }
        } else {
            return Err(format!("bad format `{spec}` in `{template}`: use `0Nd` or `.Nf`").into());
        };
        out.push_str(&text);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What a resume point keeps of a [`ModelCheckpoint`]: the checkpoints it keeps, ranked.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedList {
    kept: Vec<KeptFile>,
    last: Option<PathBuf>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeptFile {
    path: PathBuf,
    #[serde(with = "crate::records::history::float::option")]
    value: Option<f64>,
}

impl Hook for ModelCheckpoint {
    fn state(&self) -> Result<Option<HookState>, BoxError> {
        let saved = self.saved.lock();
        let kept = saved
            .kept
            .iter()
            .map(|(path, value)| KeptFile {
                path: path.clone(),
                value: *value,
            })
            .collect();
        Ok(Some(HookState::new(SavedList {
            kept,
            last: saved.last.clone(),
        })?))
    }

    fn restore(&mut self, state: HookState) -> Result<(), BoxError> {
        let list: SavedList = state.value()?;
        let mut saved = self.saved.lock();
        saved.kept = list.kept.into_iter().map(|f| (f.path, f.value)).collect();
        saved.last = list.last;
        Ok(())
    }

    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        match ctx.event() {
            Event::TrainBegin => {
                std::fs::create_dir_all(&self.dir).map_err(Error::io("create the checkpoint directory", &self.dir))?;
                crate::output::remove_leftovers(&self.dir);
                if let Some(why) = self.weights.as_ref().and_then(|(handle, _)| handle.missing()) {
                    return Err(format!("ModelCheckpoint was given weights to save (`.weights(…)`): {why}").into());
                }
            }
            Event::EpochEnd | Event::BatchEnd => self.save_point(ctx)?,
            Event::Exception => {
                let path = self.dir.join("exception.safetensors");
                match &self.weights {
                    // A failure before the other weights were there: the raw weights only.
                    Some((handle, _)) if handle.missing().is_some() => {
                        weights::save(ctx.var_store(), &path, &self.metadata(ctx, None))?
                    }
                    _ => self.write(ctx, &path, None)?,
                }
                tracing::info!("ModelCheckpoint saved the weights at the failure to {}", path.display());
            }
            _ => {}
        }
        Ok(Control::Continue)
    }
}

impl Plugin for ModelCheckpoint {
    fn specs(&self) -> Vec<HookSpec> {
        let at = |event| {
            HookSpec::new(event, "ModelCheckpoint")
                .priority(priority::CHECKPOINT)
                .rank_zero()
        };
        let mut specs = vec![at(Event::TrainBegin)];
        if self.every_epochs > 0 {
            specs.push(at(Event::EpochEnd).filter(Filter::ALWAYS.every(self.every_epochs)));
        }
        if self.every_steps > 0 {
            specs.push(at(Event::BatchEnd).filter(Filter::ALWAYS.every(self.every_steps).counter(Counter::GlobalStep)));
        }
        if self.on_exception {
            specs.push(at(Event::Exception));
        }
        specs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_from_templates() {
        let value = |name: &str| match name {
            "epoch" => Some(7.0),
            "step" => Some(224.0),
            "val_loss" => Some(0.123456),
            _ => None,
        };
        let cases = [
            ("epoch={epoch}-step={step}", Ok("epoch=7-step=224"), "the default"),
            ("{epoch:03d}-{val_loss:.4f}", Ok("007-0.1235"), "padding and decimals"),
            ("best", Ok("best"), "no field"),
            ("{val_los}", Err("names `val_los`"), "an unknown name"),
            ("{epoch:x}", Err("bad format `x`"), "an unknown format"),
            ("{epoch", Err("unclosed"), "no closing brace"),
        ];
        for (template, want, why) in cases {
            match (format_name(template, &value), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{why}"),
                (Err(err), Err(want)) => assert!(err.to_string().contains(want), "{why}: {err}"),
                (got, want) => panic!("{why}: {got:?} vs {want:?}"),
            }
        }
    }
}
