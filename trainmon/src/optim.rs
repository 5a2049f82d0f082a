//! Optimizers whose state can be saved and restored, so that a run resumes exactly.
//!
//! tch's `nn::Optimizer` keeps its state (Adam's moments, SGD's momentum) inside libtorch, out
//! of reach: a run resumed with it would restart the moments from zero. The trainer therefore
//! runs its own implementations of the same algorithms, built from tch's configurations —
//! `nn::Sgd`, `nn::Adam`, `nn::AdamW`, `nn::RmsProp`, with all their fields — and their state is
//! part of every resume point ([`crate::Trainer::resumable`]). They follow PyTorch's
//! formulas; against tch's own optimizers they agree to float rounding (tested), not bit for bit.
//!
//! Implement [`OptimizerConfig`] and [`Optimizer`] for an algorithm of your own.

use crate::error::{Error, Result};
use crate::records::saved::HookState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::nn::{self, VarStore};
use tch::{TchError, Tensor};

/// How to build an optimizer over a model's variables; implemented for tch's configurations.
pub trait OptimizerConfig {
    /// The optimizer over the trainable variables of `vs`, with learning rate `lr`.
    fn build_optimizer(self, vs: &VarStore, lr: f64) -> Result<Box<dyn Optimizer>>;

    /// The optimizer over the variables of `vs` under `path` alone (`"generator"`: the
    /// variables named `generator.…`, made under `vs.root() / "generator"`), for a trainer with
    /// several ([`crate::Trainer::optimizer_for`]). By default refused: an algorithm of your
    /// own builds over a whole `VarStore` unless it says how to build over a part.
    fn build_optimizer_for(self, vs: &VarStore, path: &str, lr: f64) -> Result<Box<dyn Optimizer>>
    where
        Self: Sized,
    {
        let _ = (vs, lr);
        Err(Error::config(
            "optimizer_for",
            format!(
                "this optimizer builds over a whole VarStore, not over its part `{path}`: implement \
             `OptimizerConfig::build_optimizer_for`"
            ),
        ))
    }
}

/// What an optimizer is: its algorithm and the settings that shape its updates, each by name
/// (the learning rate aside). A resume point keeps it; one made by another optimizer is refused,
/// naming the setting that differs. Shown as `Adam { beta1: 0.9, beta2: 0.999, wd: 0.0, eps:
/// 1e-8, amsgrad: false }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerKind {
    /// `"Adam"`, `"AdamW"`, `"Sgd"`, `"RmsProp"`, `"Parts"` (a trainer's optimizers over parts,
    /// [`crate::Trainer::optimizer_for`]), or your own algorithm's name.
    pub algorithm: String,
    /// Its settings, in the order they are shown.
    pub settings: Vec<(String, Hyper)>,
}

/// The value of an optimizer's setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Hyper {
    /// A switch (`amsgrad`, `nesterov`).
    Flag(bool),
    /// A number (`beta1`, `wd`).
    Number(f64),
    /// An optimizer of its own (one part's, under `Parts`).
    Kind(Box<OptimizerKind>),
}

impl OptimizerKind {
    /// `algorithm` with `settings`, in their order.
    pub fn new<K: Into<String>>(algorithm: &str, settings: impl IntoIterator<Item = (K, Hyper)>) -> Self {
        OptimizerKind {
            algorithm: algorithm.to_owned(),
            settings: settings.into_iter().map(|(name, value)| (name.into(), value)).collect(),
        }
    }

    /// What differs from `other`, this one's value first: `"the algorithm: Adam against AdamW"`,
    /// `"wd: 0.0 against 0.01"`, `"generator: beta1: 0.5 against 0.9"`; empty when they are the
    /// same.
    pub fn differences(&self, other: &OptimizerKind) -> Vec<String> {
        if self.algorithm != other.algorithm {
            return vec![format!("the algorithm: {} against {}", self.algorithm, other.algorithm)];
        }
        let mut found = Vec::new();
        for (name, value) in &self.settings {
            match (value, other.settings.iter().find(|(n, _)| n == name).map(|(_, v)| v)) {
                (_, None) => found.push(format!("{name}: {value} against none")),
                (Hyper::Kind(ours), Some(Hyper::Kind(theirs))) => {
                    found.extend(ours.differences(theirs).into_iter().map(|d| format!("{name}: {d}")));
                }
                (_, Some(theirs)) if theirs != value => found.push(format!("{name}: {value} against {theirs}")),
                (_, Some(_)) => {}
            }
        }
        for (name, value) in &other.settings {
            if !self.settings.iter().any(|(n, _)| n == name) {
                found.push(format!("{name}: none against {value}"));
            }
        }
        found
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.algorithm)?;
        for (i, (name, value)) in self.settings.iter().enumerate() {
            let sep = if i == 0 { " { " } else { ", " };
            write!(f, "{sep}{name}: {value}")?;
        }
        if !self.settings.is_empty() {
            f.write_str(" }")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Hyper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hyper::Flag(flag) => write!(f, "{flag}"),
            Hyper::Number(number) => write!(f, "{number:?}"),
            Hyper::Kind(kind) => write!(f, "{kind}"),
        }
    }
}

/// The optimizer a state was saved by: described, or (resume points of trainmon before
/// [`OptimizerKind`]) its text, which is the description's.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum SavedKind {
    Typed(OptimizerKind),
    Text(String),
}

impl SavedKind {
    /// Refuses a state saved by another optimizer than `mine`, naming what differs.
    fn check(&self, mine: &OptimizerKind) -> Result<()> {
        let differences = match self {
            SavedKind::Typed(saved) => saved.differences(mine),
            SavedKind::Text(saved) if *saved == mine.to_string() => vec![],
            SavedKind::Text(saved) => vec![format!("{saved} against {mine}")],
        };
        if differences.is_empty() {
            return Ok(());
        }
        Err(Error::config(
            "optimizer",
            format!(
                "the saved optimizer state is of another optimizer than this trainer's (saved against this \
                 trainer's): {}",
                differences.join(", ")
            ),
        ))
    }
}

/// An optimizer the trainer drives: it zeroes gradients, steps, has a learning rate, and saves
/// and restores its state.
pub trait Optimizer: Send {
    /// Clears the gradients of the variables it optimizes (before a backward pass).
    fn zero_grad(&mut self) -> Result<()>;
    /// One update of the variables from their gradients (a variable without a gradient is left
    /// alone, as PyTorch does).
    fn step(&mut self) -> Result<()>;
    /// Sets the learning rate from the next step on.
    fn set_learning_rate(&mut self, lr: f64);
    /// Which algorithm this is, with its settings (`Adam { beta1: 0.9, … }`): a resume point made
    /// with another one is refused, naming what differs. The learning rate is not part of it.
    fn kind(&self) -> OptimizerKind;
    /// The state: a plain value and named tensors (copies), as a hook's.
    fn state(&self) -> Result<HookState>;
    /// Restores a state [`Optimizer::state`] returned (in this or another process).
    fn restore(&mut self, state: HookState) -> Result<()>;

    /// Keeps a copy of the state in `snapshot`, for a rollback ([`crate::Rollback`]). By
    /// default a new [`Optimizer::state`]; trainmon's optimizers copy into the tensors of the
    /// previous snapshot instead (no allocation).
    fn snapshot(&self, snapshot: &mut Option<HookState>) -> Result<()> {
        *snapshot = Some(self.state()?);
        Ok(())
    }

    /// The optimizer named `name`, of a trainer with several ([`crate::Trainer::optimizer_for`]);
    /// an error for one over the whole model.
    #[doc(hidden)]
    fn by_name(&mut self, name: &str) -> Result<&mut dyn Optimizer> {
        Err(Error::config(
            "optimizer_for",
            format!(
                "no optimizer named `{name}`: the trainer has one, over the whole model; `optimizer_for` gives it \
             several by name"
            ),
        ))
    }

    /// The gradients of the variables it optimizes (clipping one optimizer's, by hand), or
    /// `None` when it cannot tell: then the whole model's are clipped.
    #[doc(hidden)]
    fn gradients(&self) -> Option<Vec<Tensor>> {
        None
    }

    /// Goes back to a snapshot, which stays as it was (its tensors are copied).
    fn roll_back(&mut self, snapshot: &HookState) -> Result<()> {
        let mut copy = HookState {
            value: snapshot.value.clone(),
            tensors: Vec::with_capacity(snapshot.tensors.len()),
        };
        for (name, tensor) in &snapshot.tensors {
            let tensor = tensor
                .f_detach_copy()
                .map_err(|e| Error::torch("copying the optimizer's snapshot", e))?;
            copy.tensors.push((name.clone(), tensor));
        }
        self.restore(copy)
    }
}

/// Several optimizers, each over a part of the model, by name ([`crate::Trainer::optimizer_for`]):
/// one optimizer to the loop — zeroing every gradient of the model, stepping every part,
/// setting the learning rates, its state theirs together — and, to a step that optimizes by
/// hand, each by its name.
pub(crate) struct Named {
    parts: Vec<Part>,
    /// Every variable of the model: zeroing the gradients of a step the trainer optimizes
    /// leaves none behind, of a variable in no part.
    all: tch::COptimizer,
}

struct Part {
    name: String,
    path: String,
    optimizer: Box<dyn Optimizer>,
    /// Its learning rate as given: a learning rate set for all (a hook's, a resume point's, a
    /// rollback's) keeps the parts' ratios to the first one's.
    base_lr: f64,
}

/// The key under which [`Named`] keeps its parts' states.
const PARTS: &str = "optimizers";

impl Named {
    /// No optimizer yet, over the variables of `vs`.
    pub(crate) fn new(vs: &VarStore) -> Result<Self> {
        let all = || -> std::result::Result<tch::COptimizer, TchError> {
            let mut all = tch::COptimizer::sgd(0.0, 0.0, 0.0, 0.0, false)?;
            for (_, var) in crate::context::variables_by_name(vs) {
                all.add_parameters(&var, 0)?;
            }
            Ok(all)
        };
        Ok(Named {
            parts: Vec::new(),
            all: all().map_err(|e| Error::torch("building the optimizers", e))?,
        })
    }

    /// Adds `optimizer` as `name`, over the variables under `path`, of learning rate `lr`. A
    /// name given twice, a name with a `/` (the resume point's separator) and a path that
    /// overlaps another's (its variables would be stepped twice) are refused.
    pub(crate) fn add(&mut self, name: &str, path: &str, optimizer: Box<dyn Optimizer>, lr: f64) -> Result<()> {
        if name.contains('/') {
            return Err(Error::config(
                "optimizer_for",
                format!("an optimizer's name holds no `/`, got `{name}`"),
            ));
        }
        let within = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}."));
        for part in &self.parts {
            if part.name == name {
                return Err(Error::config("optimizer_for", format!("two optimizers named `{name}`")));
            }
            if within(path, &part.path) || within(&part.path, path) {
                return Err(Error::config(
                    "optimizer_for",
                    format!(
                        "the optimizers `{}` (over `{}`) and `{name}` (over `{path}`) share variables: each variable \
                     belongs to one optimizer",
                        part.name, part.path
                    ),
                ));
            }
        }
        self.parts.push(Part {
            name: name.to_owned(),
            path: path.to_owned(),
            optimizer,
            base_lr: lr,
        });
        Ok(())
    }

    /// The optimizer named `name`, or an error listing the names there are.
    pub(crate) fn part(&mut self, name: &str) -> Result<&mut dyn Optimizer> {
        let names: Vec<String> = self.parts.iter().map(|p| format!("`{}`", p.name)).collect();
        match self.parts.iter_mut().find(|p| p.name == name) {
            Some(part) => Ok(&mut *part.optimizer),
            None => Err(Error::config(
                "optimizer_for",
                format!(
                    "no optimizer named `{name}`: the trainer has {} (`optimizer_for`)",
                    if names.is_empty() {
                        "none by name".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            )),
        }
    }

    /// Each part's restore of its share of `state`, all or none.
    fn restore_parts(
        &mut self,
        mut values: serde_json::Map<String, serde_json::Value>,
        tensors: Vec<(String, Tensor)>,
    ) -> Result<()> {
        let mine: Vec<&str> = self.parts.iter().map(|p| p.name.as_str()).collect();
        let saved: Vec<String> = values.keys().cloned().collect();
        if saved.len() != mine.len() || mine.iter().any(|n| !values.contains_key(*n)) {
            return Err(Error::config(
                "optimizer_for",
                format!(
                    "the saved optimizers are {}, this trainer's {}",
                    saved.join(", "),
                    mine.join(", ")
                ),
            ));
        }
        let before: Vec<HookState> = self.parts.iter().map(|p| p.optimizer.state()).collect::<Result<_>>()?;
        let mut tensors = tensors;
        let mut restored = Ok(());
        for part in &mut self.parts {
            let prefix = format!("{}/", part.name);
            let (own, rest): (Vec<_>, Vec<_>) = tensors.into_iter().partition(|(t, _)| t.starts_with(&prefix));
            tensors = rest;
            let own = own
                .into_iter()
                .map(|(t, tensor)| (t[prefix.len()..].to_owned(), tensor))
                .collect();
            let value = values.remove(&part.name).unwrap_or_default();
            restored = part.optimizer.restore(HookState { value, tensors: own });
            if restored.is_err() {
                break;
            }
        }
        if restored.is_err() {
            // None restored: each part as it was.
            for (part, state) in self.parts.iter_mut().zip(before) {
                let _ = part.optimizer.restore(state);
            }
        }
        restored
    }
}

impl Optimizer for Named {
    fn by_name(&mut self, name: &str) -> Result<&mut dyn Optimizer> {
        self.part(name)
    }

    fn zero_grad(&mut self) -> Result<()> {
        self.all.zero_grad().map_err(failed("zero_grad"))
    }

    fn step(&mut self) -> Result<()> {
        self.parts.iter_mut().try_for_each(|p| p.optimizer.step())
    }

    /// The first part's learning rate; the others keep their ratio to it (or, if the first was
    /// given 0, their own).
    fn set_learning_rate(&mut self, lr: f64) {
        let first = self.parts.first().map_or(0.0, |p| p.base_lr);
        for (i, part) in self.parts.iter_mut().enumerate() {
            let own = match (i, first > 0.0) {
                (0, _) => lr,
                (_, true) => part.base_lr * lr / first,
                (_, false) => part.base_lr,
            };
            part.optimizer.set_learning_rate(own);
        }
    }

    /// `Parts { generator: Adam { … }, critic: Sgd { … } }`.
    fn kind(&self) -> OptimizerKind {
        let parts = self
            .parts
            .iter()
            .map(|p| (p.name.clone(), Hyper::Kind(Box::new(p.optimizer.kind()))));
        OptimizerKind::new("Parts", parts)
    }

    /// Each part's state: its value under its name, its tensors under `name/`.
    fn state(&self) -> Result<HookState> {
        let mut values = serde_json::Map::new();
        let mut tensors = Vec::new();
        for part in &self.parts {
            let state = part.optimizer.state()?;
            values.insert(part.name.clone(), state.value);
            tensors.extend(
                state
                    .tensors
                    .into_iter()
                    .map(|(t, tensor)| (format!("{}/{t}", part.name), tensor)),
            );
        }
        Ok(HookState {
            value: serde_json::json!({ PARTS: values }),
            tensors,
        })
    }

    fn restore(&mut self, state: HookState) -> Result<()> {
        let values = match state.value {
            serde_json::Value::Object(mut tagged) => match tagged.remove(PARTS) {
                Some(serde_json::Value::Object(values)) => Some(values),
                _ => None,
            },
            _ => None,
        };
        let Some(values) = values else {
            return Err(Error::config(
                "optimizer_for",
                "the saved optimizer state is of one optimizer over the whole model; this trainer has several \
                 (`optimizer_for`)"
                    .into(),
            ));
        };
        self.restore_parts(values, state.tensors)
    }
}

/// One optimized variable and its state.
struct Param {
    name: String,
    var: Tensor,
    /// Steps taken by this variable (it takes none while it has no gradient).
    steps: u64,
    /// The algorithm's state tensors, by slot (`exp_avg`, `momentum_buffer`, …); created at the
    /// variable's first step.
    slots: BTreeMap<&'static str, Tensor>,
}

/// The variables of `vs`, by name (sorted: the same order in every process). Frozen ones too:
/// they have no gradient, so a step leaves them alone, until they are unfrozen.
fn params(vs: &VarStore) -> Vec<Param> {
    crate::context::variables_by_name(vs)
        .into_iter()
        .map(|(name, var)| Param {
            name,
            var,
            steps: 0,
            slots: BTreeMap::new(),
        })
        .collect()
}

/// The update rule of one algorithm, applied to one variable.
trait Rule: Send {
    fn kind(&self) -> OptimizerKind;
    /// Updates `param.var` (under no_grad) from `grad`, at learning rate `lr`; `param.steps`
    /// already counts this step.
    fn update(&self, param: &mut Param, grad: &Tensor, lr: f64) -> std::result::Result<(), TchError>;
}

/// An optimizer made of an update rule and the variables' state.
struct Stateful<R> {
    rule: R,
    params: Vec<Param>,
    lr: f64,
    /// libtorch's optimizer over the same variables, for its `zero_grad` alone: it sets the
    /// gradients to none (as PyTorch does by default), which spares the backward pass adding
    /// into zeroed buffers; tch has no other way to unset a gradient.
    unset: tch::COptimizer,
}

#[derive(Serialize, Deserialize)]
struct SavedState {
    kind: SavedKind,
    lr: f64,
    /// Steps taken, by variable name.
    steps: BTreeMap<String, u64>,
}

fn failed(what: &str) -> impl Fn(TchError) -> Error + '_ {
    move |e| Error::torch(format!("the optimizer's {what}"), e)
}

impl<R: Rule> Stateful<R> {
    /// The plain part of the state: the algorithm, the learning rate, each variable's steps.
    fn saved(&self) -> SavedState {
        SavedState {
            kind: SavedKind::Typed(self.kind()),
            lr: self.lr,
            steps: self.params.iter().map(|p| (p.name.clone(), p.steps)).collect(),
        }
    }
}

impl<R: Rule> Optimizer for Stateful<R> {
    fn gradients(&self) -> Option<Vec<Tensor>> {
        Some(
            self.params
                .iter()
                .map(|p| p.var.grad())
                .filter(Tensor::defined)
                .collect(),
        )
    }

    fn zero_grad(&mut self) -> Result<()> {
        self.unset.zero_grad().map_err(failed("zero_grad"))
    }

    fn step(&mut self) -> Result<()> {
        let _no_grad = tch::no_grad_guard();
        for param in &mut self.params {
            let grad = param.var.grad();
            if !grad.defined() {
                continue;
            }
            param.steps += 1;
            self.rule.update(param, &grad, self.lr).map_err(failed("step"))?;
        }
        Ok(())
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn kind(&self) -> OptimizerKind {
        self.rule.kind()
    }

    fn state(&self) -> Result<HookState> {
        let mut tensors = Vec::new();
        for param in &self.params {
            for (slot, tensor) in &param.slots {
                let copy = tensor.f_detach_copy().map_err(failed("state"))?;
                tensors.push((format!("{}.{slot}", param.name), copy));
            }
        }
        let mut state = HookState::new(self.saved())
            .map_err(|e| Error::config("optimizer", format!("the optimizer state: {e}")))?;
        state.tensors = tensors;
        Ok(state)
    }

    fn snapshot(&self, snapshot: &mut Option<HookState>) -> Result<()> {
        // The variables are fixed for the optimizer's life and their slots, once made, stay:
        // the previous snapshot's tensors fit when there are as many, of the same shapes and
        // kinds, in the same (sorted) order.
        let slots = || self.params.iter().flat_map(|p| p.slots.values());
        let reusable = snapshot.as_ref().is_some_and(|kept| {
            kept.tensors.len() == slots().count()
                && (kept.tensors.iter().zip(slots()))
                    .all(|((_, kept), t)| kept.size() == t.size() && kept.kind() == t.kind())
        });
        let Some(kept) = snapshot.as_mut().filter(|_| reusable) else {
            *snapshot = Some(self.state()?);
            return Ok(());
        };
        let _no_grad = tch::no_grad_guard();
        for ((_, into), t) in kept.tensors.iter_mut().zip(slots()) {
            into.f_copy_(t).map_err(failed("snapshot"))?;
        }
        kept.value = serde_json::to_value(self.saved())
            .map_err(|e| Error::config("optimizer", format!("the optimizer state: {e}")))?;
        Ok(())
    }

    fn restore(&mut self, state: HookState) -> Result<()> {
        let saved: SavedState = state
            .value()
            .map_err(|e| Error::config("optimizer", format!("the saved optimizer state cannot be read: {e}")))?;
        let tensors: BTreeMap<String, Tensor> = state.tensors.into_iter().collect();
        saved.kind.check(&self.kind())?;
        // All or nothing: every slot is checked and copied before any replaces the current.
        let mut restored = Vec::with_capacity(self.params.len());
        for param in &self.params {
            let mut slots = BTreeMap::new();
            for slot in SLOTS {
                let name = format!("{}.{slot}", param.name);
                let Some(tensor) = tensors.get(&name) else { continue };
                if tensor.size() != param.var.size() {
                    return Err(Error::config(
                        "optimizer",
                        format!(
                            "the saved optimizer state `{name}` has shape {:?}, the variable {:?}",
                            tensor.size(),
                            param.var.size()
                        ),
                    ));
                }
                let copy = tensor
                    .f_to_device(param.var.device())
                    .and_then(|t| t.f_to_kind(param.var.kind()))
                    .map_err(failed("restore"))?;
                slots.insert(slot, copy);
            }
            restored.push((saved.steps.get(&param.name).copied().unwrap_or(0), slots));
        }
        for (param, (steps, slots)) in self.params.iter_mut().zip(restored) {
            (param.steps, param.slots) = (steps, slots);
        }
        self.lr = saved.lr;
        Ok(())
    }
}

/// Every slot name the rules use (PyTorch's names).
const SLOTS: [&str; 6] = [
    "momentum_buffer",
    "exp_avg",
    "exp_avg_sq",
    "max_exp_avg_sq",
    "square_avg",
    "grad_avg",
];

/// A slot's tensor, made as zeros like the variable at its first use.
fn slot<'p>(param: &'p mut Param, name: &'static str) -> std::result::Result<&'p mut Tensor, TchError> {
    if !param.slots.contains_key(name) {
        param.slots.insert(name, param.var.f_zeros_like()?);
    }
    Ok(param.slots.get_mut(name).expect("inserted above"))
}

/// The gradient with L2 weight decay added (`grad + wd * var`), as PyTorch's coupled decay.
fn decayed(grad: &Tensor, var: &Tensor, wd: f64) -> std::result::Result<Tensor, TchError> {
    if wd == 0.0 {
        Ok(grad.shallow_clone())
    } else {
        grad.f_add(&var.f_mul_scalar(wd)?)
    }
}

/// `var -= lr * update`.
fn descend(var: &mut Tensor, update: &Tensor, lr: f64) -> std::result::Result<(), TchError> {
    let _ = var.f_sub_(&update.f_mul_scalar(lr)?)?;
    Ok(())
}

struct SgdRule(nn::Sgd);

impl Rule for SgdRule {
    fn kind(&self) -> OptimizerKind {
        let nn::Sgd {
            momentum,
            dampening,
            wd,
            nesterov,
        } = self.0;
        OptimizerKind::new(
            "Sgd",
            [
                ("momentum", Hyper::Number(momentum)),
                ("dampening", Hyper::Number(dampening)),
                ("wd", Hyper::Number(wd)),
                ("nesterov", Hyper::Flag(nesterov)),
            ],
        )
    }

    fn update(&self, param: &mut Param, grad: &Tensor, lr: f64) -> std::result::Result<(), TchError> {
        let nn::Sgd {
            momentum,
            dampening,
            wd,
            nesterov,
        } = self.0;
        let grad = decayed(grad, &param.var, wd)?;
        let update = if momentum != 0.0 {
            let first = !param.slots.contains_key("momentum_buffer");
            let buf = slot(param, "momentum_buffer")?;
            if first {
                buf.f_copy_(&grad)?;
            } else {
                let _ = buf.f_mul_scalar_(momentum)?;
                if dampening == 0.0 {
                    let _ = buf.f_add_(&grad)?;
                } else {
                    let _ = buf.f_add_(&grad.f_mul_scalar(1.0 - dampening)?)?;
                }
            }
            if nesterov {
                grad.f_add(&buf.f_mul_scalar(momentum)?)?
            } else {
                buf.shallow_clone()
            }
        } else {
            grad
        };
        descend(&mut param.var, &update, lr)
    }
}

/// Adam (coupled weight decay) and AdamW (decoupled), which differ only there.
struct AdamRule {
    beta1: f64,
    beta2: f64,
    wd: f64,
    eps: f64,
    amsgrad: bool,
    decoupled: bool,
}

impl Rule for AdamRule {
    fn kind(&self) -> OptimizerKind {
        let AdamRule {
            beta1,
            beta2,
            wd,
            eps,
            amsgrad,
            decoupled,
        } = *self;
        OptimizerKind::new(
            if decoupled { "AdamW" } else { "Adam" },
            [
                ("beta1", Hyper::Number(beta1)),
                ("beta2", Hyper::Number(beta2)),
                ("wd", Hyper::Number(wd)),
                ("eps", Hyper::Number(eps)),
                ("amsgrad", Hyper::Flag(amsgrad)),
            ],
        )
    }

    fn update(&self, param: &mut Param, grad: &Tensor, lr: f64) -> std::result::Result<(), TchError> {
        let step = param.steps as f64;
        let grad = if self.decoupled {
            if self.wd != 0.0 {
                let _ = param.var.f_mul_scalar_(1.0 - lr * self.wd)?;
            }
            grad.shallow_clone()
        } else {
            decayed(grad, &param.var, self.wd)?
        };
        // m = lerp(m, g, 1 - beta1); v = lerp(v, g², 1 - beta2), PyTorch's update of both.
        let _ = slot(param, "exp_avg")?.f_lerp_(&grad, 1.0 - self.beta1)?;
        let _ = slot(param, "exp_avg_sq")?.f_lerp_(&grad.f_square()?, 1.0 - self.beta2)?;
        let mut second = param.slots["exp_avg_sq"].shallow_clone();
        if self.amsgrad {
            let max = slot(param, "max_exp_avg_sq")?;
            let _ = max.f_maximum_out(max, &second)?;
            second = max.shallow_clone();
        }
        // var -= lr / c1 · m / (sqrt(v) / sqrt(c2) + eps), computed in as few passes as tch's
        // calls allow: denom = (sqrt(v) + eps·sqrt(c2)) · (-c1 / (lr·sqrt(c2))), var += m / denom.
        let correction1 = 1.0 - self.beta1.powf(step);
        let root2 = (1.0 - self.beta2.powf(step)).sqrt();
        if lr == 0.0 {
            return Ok(());
        }
        let mut denom = second.f_sqrt()?;
        let _ = denom.f_add_scalar_(self.eps * root2)?;
        let _ = denom.f_mul_scalar_(-correction1 / (lr * root2))?;
        let _ = param.var.f_addcdiv_(&param.slots["exp_avg"], &denom)?;
        Ok(())
    }
}

struct RmsPropRule(nn::RmsProp);

impl Rule for RmsPropRule {
    fn kind(&self) -> OptimizerKind {
        let nn::RmsProp {
            alpha,
            eps,
            wd,
            momentum,
            centered,
        } = self.0;
        OptimizerKind::new(
            "RmsProp",
            [
                ("alpha", Hyper::Number(alpha)),
                ("eps", Hyper::Number(eps)),
                ("wd", Hyper::Number(wd)),
                ("momentum", Hyper::Number(momentum)),
                ("centered", Hyper::Flag(centered)),
            ],
        )
    }

    fn update(&self, param: &mut Param, grad: &Tensor, lr: f64) -> std::result::Result<(), TchError> {
        let nn::RmsProp {
            alpha,
            eps,
            wd,
            momentum,
            centered,
        } = self.0;
        let grad = decayed(grad, &param.var, wd)?;
        let square_avg = slot(param, "square_avg")?;
        let _ = square_avg.f_mul_scalar_(alpha)?;
        let _ = square_avg.f_addcmul_(&grad, &grad.f_mul_scalar(1.0 - alpha)?)?;
        let square_avg = square_avg.shallow_clone();
        let mut avg = if centered {
            let grad_avg = slot(param, "grad_avg")?;
            let _ = grad_avg.f_lerp_(&grad, 1.0 - alpha)?;
            square_avg.f_sub(&grad_avg.f_square()?)?.f_sqrt()?
        } else {
            square_avg.f_sqrt()?
        };
        let _ = avg.f_add_scalar_(eps)?;
        if momentum > 0.0 {
            let buf = slot(param, "momentum_buffer")?;
            let _ = buf.f_mul_scalar_(momentum)?;
            let _ = buf.f_add_(&grad.f_div(&avg)?)?;
            let buf = buf.shallow_clone();
            descend(&mut param.var, &buf, lr)
        } else {
            descend(&mut param.var, &grad.f_div(&avg)?, lr)
        }
    }
}

/// An optimizer of `rule` over the variables of `vs` — under `path` alone, if given.
fn build<R: Rule + 'static>(rule: R, vs: &VarStore, path: Option<&str>, lr: f64) -> Result<Box<dyn Optimizer>> {
    if !(lr.is_finite() && lr >= 0.0) {
        return Err(Error::config(
            "optimizer",
            format!("the learning rate must be finite and not negative, got {lr}"),
        ));
    }
    let mut params = params(vs);
    if let Some(path) = path {
        let prefix = format!("{path}.");
        params.retain(|p| p.name.starts_with(&prefix));
        if params.is_empty() {
            let names: Vec<String> = crate::context::variables_by_name(vs)
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            return Err(Error::config(
                "optimizer_for",
                format!(
                    "no variable of the model is under `{path}` (made under `vs.root() / \"{path}\"`); it has {}",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        }
    }
    let built = || -> std::result::Result<tch::COptimizer, TchError> {
        let mut unset = tch::COptimizer::sgd(0.0, 0.0, 0.0, 0.0, false)?;
        // Every variable, frozen ones too: unfrozen later, their gradients are unset as well.
        for param in &params {
            unset.add_parameters(&param.var, 0)?;
        }
        Ok(unset)
    };
    let unset = built().map_err(|e| Error::torch("building the optimizer", e))?;
    Ok(Box::new(Stateful {
        rule,
        params,
        lr,
        unset,
    }))
}

/// The optimizer configurations of tch, each with its rule.
macro_rules! configs {
    ($($config:ty => $rule:expr;)*) => {$(
        impl OptimizerConfig for $config {
            fn build_optimizer(self, vs: &VarStore, lr: f64) -> Result<Box<dyn Optimizer>> {
                build($rule(self)?, vs, None, lr)
            }

            fn build_optimizer_for(self, vs: &VarStore, path: &str, lr: f64) -> Result<Box<dyn Optimizer>> {
                build($rule(self)?, vs, Some(path), lr)
            }
        }
    )*};
}

configs! {
    nn::Sgd => sgd_rule;
    nn::Adam => |c: nn::Adam| Ok::<_, Error>(adam_rule(c.beta1, c.beta2, c.wd, c.eps, c.amsgrad, false));
    nn::AdamW => |c: nn::AdamW| Ok::<_, Error>(adam_rule(c.beta1, c.beta2, c.wd, c.eps, c.amsgrad, true));
    nn::RmsProp => |c: nn::RmsProp| Ok::<_, Error>(RmsPropRule(c));
}

fn sgd_rule(config: nn::Sgd) -> Result<SgdRule> {
    if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
        return Err(Error::config(
            "optimizer",
            "Nesterov momentum requires a momentum and zero dampening".into(),
        ));
    }
    Ok(SgdRule(config))
}

fn adam_rule(beta1: f64, beta2: f64, wd: f64, eps: f64, amsgrad: bool, decoupled: bool) -> AdamRule {
    AdamRule {
        beta1,
        beta2,
        wd,
        eps,
        amsgrad,
        decoupled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{Module, OptimizerConfig as TchConfig};
    use tch::{Device, Kind};

    /// Fixed values of `shape` without libtorch's generator (which other tests share).
    fn fixed(shape: &[i64], phase: f64) -> Tensor {
        let n: i64 = shape.iter().product();
        (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.7 + phase)
            .sin()
            .reshape(shape)
    }

    /// Gives every variable of `vs` fixed values.
    fn fix_weights(vs: &VarStore) {
        let _no_grad = tch::no_grad_guard();
        let mut vars: Vec<_> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (i, (_, mut var)) in vars.into_iter().enumerate() {
            var.copy_(&(fixed(&var.size(), i as f64) * 0.3));
        }
    }

    /// A small MLP trained for 25 steps by `step`, from fixed weights and data.
    fn train(step: &mut dyn FnMut(&VarStore, &Tensor)) -> Vec<Tensor> {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let model = nn::seq()
            .add(nn::linear(&root / "l1", 6, 16, Default::default()))
            .add_fn(|x| x.tanh())
            .add(nn::linear(&root / "l2", 16, 3, Default::default()));
        fix_weights(&vs);
        let x = fixed(&[64, 6], 0.5);
        let y = (fixed(&[64], 1.5) * 10.0).abs().to_kind(Kind::Int64).remainder(3);
        for _ in 0..25 {
            let loss = model.forward(&x).cross_entropy_for_logits(&y);
            step(&vs, &loss);
        }
        let mut vars: Vec<_> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars.into_iter().map(|(_, t)| t).collect()
    }

    fn with_tch(config: impl TchConfig + Copy, lr: f64) -> Vec<Tensor> {
        let mut opt = None;
        train(&mut |vs, loss| {
            let opt = opt.get_or_insert_with(|| config.build(vs, lr).unwrap());
            opt.zero_grad();
            loss.backward();
            opt.step();
        })
    }

    fn with_ours(config: impl OptimizerConfig + Clone, lr: f64) -> Vec<Tensor> {
        let mut opt: Option<Box<dyn Optimizer>> = None;
        train(&mut |vs, loss| {
            let opt = opt.get_or_insert_with(|| config.clone().build_optimizer(vs, lr).unwrap());
            opt.zero_grad().unwrap();
            loss.backward();
            opt.step().unwrap();
        })
    }

    fn assert_close(ours: &[Tensor], theirs: &[Tensor], what: &str) {
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(theirs) {
            let diff = (a - b).abs().max().double_value(&[]);
            let scale = b.abs().max().double_value(&[]);
            assert!(
                diff <= 1e-5 * scale.max(1.0),
                "{what}: max difference {diff} (scale {scale})"
            );
        }
    }

    #[test]
    fn the_algorithms_agree_with_tch_optimizers() {
        let sgd = |momentum, dampening, wd, nesterov| nn::Sgd {
            momentum,
            dampening,
            wd,
            nesterov,
        };
        for config in [
            sgd(0.0, 0.0, 0.0, false),
            sgd(0.9, 0.0, 1e-2, false),
            sgd(0.9, 0.1, 0.0, false),
            sgd(0.9, 0.0, 1e-3, true),
        ] {
            assert_close(
                &with_ours(config, 0.05),
                &with_tch(config, 0.05),
                &format!("{config:?}"),
            );
        }
        for (wd, amsgrad) in [(0.0, false), (1e-2, false), (0.0, true)] {
            let adam = nn::Adam {
                wd,
                amsgrad,
                ..Default::default()
            };
            assert_close(&with_ours(adam, 1e-2), &with_tch(adam, 1e-2), &format!("{adam:?}"));
            let adamw = nn::AdamW {
                wd: wd.max(1e-2),
                amsgrad,
                ..Default::default()
            };
            assert_close(&with_ours(adamw, 1e-2), &with_tch(adamw, 1e-2), &format!("{adamw:?}"));
        }
        for (momentum, centered) in [(0.0, false), (0.5, false), (0.0, true), (0.5, true)] {
            let rms = nn::RmsProp {
                momentum,
                centered,
                wd: 1e-3,
                ..Default::default()
            };
            assert_close(&with_ours(rms, 1e-3), &with_tch(rms, 1e-3), &format!("{rms:?}"));
        }
    }

    #[test]
    fn a_restored_state_continues_bit_for_bit() {
        let run = |split: Option<usize>, restore: bool| {
            let vs = VarStore::new(Device::Cpu);
            let model = nn::linear(vs.root(), 5, 2, Default::default());
            fix_weights(&vs);
            let x = fixed(&[16, 5], 0.2);
            let y = (fixed(&[16], 2.5) * 10.0).abs().to_kind(Kind::Int64).remainder(2);
            let config = nn::Adam {
                amsgrad: true,
                ..Default::default()
            };
            let mut opt = config.build_optimizer(&vs, 1e-2).unwrap();
            for i in 0..20 {
                if Some(i) == split {
                    // A new optimizer from the saved state, as a resumed process has.
                    let state = opt.state().unwrap();
                    opt = config.build_optimizer(&vs, 1.0).unwrap();
                    if restore {
                        opt.restore(state).unwrap();
                    } else {
                        opt.set_learning_rate(1e-2);
                    }
                }
                opt.zero_grad().unwrap();
                model.forward(&x).cross_entropy_for_logits(&y).backward();
                opt.step().unwrap();
            }
            vs.root().get("weight").unwrap()
        };
        assert!(run(None, true).equal(&run(Some(9), true)));
        // Without the state (moments from zero) it would not be the same.
        assert!(!run(None, true).equal(&run(Some(9), false)));
    }

    #[test]
    fn a_state_of_another_algorithm_is_refused() {
        let vs = VarStore::new(Device::Cpu);
        let _ = nn::linear(vs.root(), 2, 2, Default::default());
        let adam = nn::Adam::default().build_optimizer(&vs, 1e-3).unwrap();
        let state = adam.state().unwrap();
        let mut sgd = nn::Sgd::default().build_optimizer(&vs, 1e-3).unwrap();
        let err = sgd.restore(state).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Config {
                    setting: "optimizer",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().ends_with(": the algorithm: Adam against Sgd"), "{err}");
    }

    #[test]
    fn a_state_of_other_settings_is_refused_naming_them() {
        let vs = VarStore::new(Device::Cpu);
        let _ = nn::linear(vs.root(), 2, 2, Default::default());
        let adam = |wd: f64, amsgrad: bool| nn::Adam {
            wd,
            amsgrad,
            ..Default::default()
        };
        let state = || adam(0.0, false).build_optimizer(&vs, 1e-3).unwrap().state().unwrap();
        // The same settings, another learning rate: the same optimizer.
        adam(0.0, false)
            .build_optimizer(&vs, 0.5)
            .unwrap()
            .restore(state())
            .unwrap();
        let mut other = adam(0.01, true).build_optimizer(&vs, 1e-3).unwrap();
        let err = other.restore(state()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with(": wd: 0.0 against 0.01, amsgrad: false against true"),
            "{err}"
        );
    }

    #[test]
    fn the_description_reads_as_before_and_old_states_restore() {
        let vs = VarStore::new(Device::Cpu);
        let _ = nn::linear(vs.root(), 2, 2, Default::default());
        let sgd = nn::Sgd {
            momentum: 0.9,
            ..Default::default()
        };
        let opt = sgd.build_optimizer(&vs, 1e-3).unwrap();
        // The text resume points held before the description was typed: tch's `Debug`.
        assert_eq!(opt.kind().to_string(), format!("{sgd:?}"));
        let adam = nn::Adam::default().build_optimizer(&vs, 1e-3).unwrap();
        assert_eq!(
            adam.kind().to_string(),
            "Adam { beta1: 0.9, beta2: 0.999, wd: 0.0, eps: 1e-8, amsgrad: false }"
        );
        let old = |text: String| {
            let mut state = opt.state().unwrap();
            state.value["kind"] = serde_json::Value::String(text);
            state
        };
        let mut again = sgd.build_optimizer(&vs, 1e-3).unwrap();
        again.restore(old(format!("{sgd:?}"))).unwrap();
        let err = again.restore(old(format!("{:?}", nn::Sgd::default()))).unwrap_err();
        assert!(err.to_string().contains("Sgd { momentum: 0.0,"), "{err}");
    }

    #[test]
    fn parts_are_described_part_by_part() {
        let vs = VarStore::new(Device::Cpu);
        let _ = nn::linear(&vs.root() / "g", 2, 2, Default::default());
        let _ = nn::linear(&vs.root() / "d", 2, 2, Default::default());
        let parts = |beta1: f64| {
            let mut named = Named::new(&vs).unwrap();
            let g = nn::Adam {
                beta1,
                ..Default::default()
            }
            .build_optimizer_for(&vs, "g", 1e-3)
            .unwrap();
            named.add("g", "g", g, 1e-3).unwrap();
            let d = nn::Sgd::default().build_optimizer_for(&vs, "d", 1e-3).unwrap();
            named.add("d", "d", d, 1e-3).unwrap();
            named
        };
        let (a, b) = (parts(0.5), parts(0.9));
        assert!(
            a.kind().to_string().starts_with("Parts { g: Adam { beta1: 0.5,"),
            "{}",
            a.kind()
        );
        assert_eq!(a.kind().differences(&b.kind()), ["g: beta1: 0.5 against 0.9"]);
        assert!(a.kind().differences(&parts(0.5).kind()).is_empty());
    }
}
