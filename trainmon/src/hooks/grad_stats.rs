//! Gradient and weight statistics, logged every few optimizer steps.

use crate::context::{variables_by_name, HookContext};
use crate::control::Control;
use crate::error::BoxError;
use crate::hook::{Hook, Plugin};
use crate::schedule::event::Event;
use crate::schedule::filter::{Counter, Filter};
use crate::schedule::priority;
use crate::schedule::spec::HookSpec;
use tch::Tensor;

/// Logs, every `n` optimizer steps, the norms of the gradients and of the weights, globally and
/// per variable, and how much the step changed each variable ([`crate::HookContext::log`]: to
/// the history, the metric files and TensorBoard):
///
/// - `grad_norm` (the global L2 norm, as `clip_grad_norm` sees it) and `grad_norm/<variable>`,
///   just before the optimizer step (after clipping);
/// - `weight_norm/<variable>`, before the step;
/// - `update_ratio/<variable>`: the norm of the step's change over the norm of the weights
///   before it (around 1e-3 is the rule of thumb of a healthy learning rate);
/// - with [`GradStats::histograms`], TensorBoard histograms `grads/<variable>` and
///   `weights/<variable>`.
///
/// The norms are computed on the device and read in one transfer before the step and one
/// after it (histograms: two more for each), on the logged steps only: the steps in between
/// cost a filter check and nothing else (no host synchronisation). Frozen variables (no
/// gradient) are left out; histograms show the finite values.
///
/// ```
/// use trainmon::hooks::{GradStats, TensorBoard};
/// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// # let model = tch::nn::linear(vs.root(), 2, 2, Default::default());
/// let trainer = trainmon::Trainer::new(&vs, &model)
///     .with(GradStats::every(100).histograms(true))
///     .with(TensorBoard::new("runs/demo/tensorboard"));
/// # let _ = trainer;
/// ```
#[derive(Debug)]
pub struct GradStats {
    every: u64,
    histograms: bool,
    /// The weights before the logged step, by name, until its end.
    before: Vec<(String, Tensor)>,
}

impl GradStats {
    /// Statistics every `n` optimizer steps (`n` of 0 is taken as 1).
    pub fn every(n: u64) -> Self {
        GradStats {
            every: n.max(1),
            histograms: false,
            before: Vec::new(),
        }
    }

    /// Also histograms of each variable's gradient and weights (for TensorBoard).
    pub fn histograms(mut self, histograms: bool) -> Self {
        self.histograms = histograms;
        self
    }

    /// Before the step: gradient and weight norms, histograms, and a copy of the weights.
    fn before_step(&mut self, ctx: &HookContext<'_>) -> Result<(), BoxError> {
        let _no_grad = tch::no_grad_guard();
        let with_grad: Vec<(String, Tensor, Tensor)> = variables_by_name(ctx.var_store())
            .into_iter()
            .filter_map(|(name, var)| {
                let grad = var.grad();
                grad.defined().then_some((name, var, grad))
            })
            .collect();
        if with_grad.is_empty() {
            return Ok(());
        }
        let mut norms = Vec::with_capacity(2 * with_grad.len());
        for (_, var, grad) in &with_grad {
            norms.push(grad.f_norm()?.f_to_kind(tch::Kind::Double)?);
            norms.push(var.f_norm()?.f_to_kind(tch::Kind::Double)?);
        }
        let norms = Vec::<f64>::try_from(Tensor::f_stack(&norms, 0)?.f_to_device(tch::Device::Cpu)?)?;
        let global = norms.iter().step_by(2).map(|n| n * n).sum::<f64>().sqrt();
        ctx.log("grad_norm", global);
        for ((name, var, grad), pair) in with_grad.iter().zip(norms.chunks(2)) {
            ctx.log(format!("grad_norm/{name}"), pair[0]);
            ctx.log(format!("weight_norm/{name}"), pair[1]);
            if self.histograms {
                ctx.log_histogram(format!("grads/{name}"), grad)?;
                ctx.log_histogram(format!("weights/{name}"), var)?;
            }
        }
        self.before = with_grad
            .into_iter()
            .map(|(name, var, _)| Ok((name, var.f_detach_copy()?)))
            .collect::<Result<_, tch::TchError>>()?;
        Ok(())
    }

    /// After the step: each variable's change over its norm before.
    fn after_step(&mut self, ctx: &HookContext<'_>) -> Result<(), BoxError> {
        let before = std::mem::take(&mut self.before);
        if before.is_empty() {
            return Ok(());
        }
        let _no_grad = tch::no_grad_guard();
        let variables = ctx.var_store().variables();
        let mut norms = Vec::with_capacity(2 * before.len());
        for (name, old) in &before {
            let var = variables
                .get(name)
                .ok_or_else(|| format!("the variable `{name}` is gone"))?;
            norms.push(var.f_sub(old)?.f_norm()?.f_to_kind(tch::Kind::Double)?);
            norms.push(old.f_norm()?.f_to_kind(tch::Kind::Double)?);
        }
        let norms = Vec::<f64>::try_from(Tensor::f_stack(&norms, 0)?.f_to_device(tch::Device::Cpu)?)?;
        for ((name, _), pair) in before.iter().zip(norms.chunks(2)) {
            ctx.log(format!("update_ratio/{name}"), pair[0] / pair[1]);
        }
        Ok(())
    }
}

impl Hook for GradStats {
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        match ctx.event() {
            Event::BeforeOptimizerStep => self.before_step(ctx)?,
            Event::BatchEnd => self.after_step(ctx)?,
            _ => {}
        }
        Ok(Control::Continue)
    }
}

impl Plugin for GradStats {
    fn specs(&self) -> Vec<HookSpec> {
        let at = |event| {
            HookSpec::new(event, "GradStats")
                .filter(Filter::ALWAYS.every(self.every).counter(Counter::GlobalStep))
                .priority(priority::LOGGING + 1)
                .rank_zero()
        };
        vec![at(Event::BeforeOptimizerStep), at(Event::BatchEnd)]
    }
}
