//! Rolling back over bad batches: a last-good snapshot of the weights, the optimizer and the
//! running logs, the rule that finds a bad batch, and the rule that gives up.

use crate::error::{Error, Result};
use crate::optim::Optimizer;
use crate::records::metrics::{BatchLogs, LogsState};
use crate::records::saved::HookState;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use tch::nn::VarStore;
use tch::Tensor;

/// Rolls training back over bad batches instead of stopping ([`crate::Trainer::rollback`]).
///
/// At each epoch's start, every `snapshot_every` optimizer steps (after the batch's hooks) and
/// at each resume point within an epoch, the trainer copies the weights, the optimizer's state
/// and the epoch's running logs. The copies of the weights and of the optimizer's tensors are
/// kept on the device, in buffers allocated once and reused by every snapshot (a rollback
/// itself allocates the optimizer's state anew). Before each batch's backward pass it reads the
/// batch's loss; when the loss is not finite, or spikes (see [`Rollback::spike`]), it copies the
/// snapshot back, skips the batches since the snapshot (the bad one last), and goes on with the
/// next. The skipped batches, their sample indices and the reason are kept in
/// [`crate::History::skipped`] (and in resume points: a resumed fit skips the same batches).
/// After `rollbacks` rollbacks within `within` optimizer steps, training stops, with a reason
/// that lists them.
///
/// With `snapshot_every(1)` (the default) a rollback skips the bad batch alone, and the fit
/// ends as a fit over the data without that batch would (the same seed, the same order
/// otherwise), bit for bit — as long as nothing else depends on the batch's place:
/// - with `accumulate_gradients(k)`, snapshots fall at the ends of accumulation windows, so a
///   rollback also skips the window's batches before the bad one, and the rest of the window
///   steps on a partial sum;
/// - dropout draws from libtorch's generator in the bad batch's forward pass too;
/// - hooks that ran at skipped batches ran (what they logged stays), and the global step goes
///   back to the snapshot's; the learning rate stays the one hooks set last.
///
/// A resume point within an epoch ([`crate::Trainer::resumable_steps`]) is a snapshot too: a
/// rollback never goes back past one, so a fit resumed from it skips what the uninterrupted
/// fit (with the same settings) skipped.
///
/// Cost: one read of the loss a batch (free on the CPU with eager reads, where it is read
/// anyway; on CUDA a host synchronisation a step), and at each snapshot a copy of the weights
/// and the optimizer's state on the device plus a read of the running logs (with lazy reads,
/// a host synchronisation for each running sum).
#[derive(Clone, Debug, PartialEq)]
pub struct Rollback {
    pub(crate) every: u64,
    pub(crate) spike: Option<(f64, usize)>,
    pub(crate) rollbacks: usize,
    pub(crate) within: u64,
}

impl Default for Rollback {
    fn default() -> Self {
        Rollback::new()
    }
}

impl Rollback {
    /// Rolls back when a batch's loss is NaN or infinite; a snapshot every step; gives up after
    /// 5 rollbacks within 1000 steps.
    pub fn new() -> Self {
        Rollback {
            every: 1,
            spike: None,
            rollbacks: 5,
            within: 1000,
        }
    }

    /// A snapshot every `steps` optimizer steps (and at each epoch's start): a rollback skips
    /// the batches since the last one.
    pub fn snapshot_every(mut self, steps: u64) -> Self {
        self.every = steps;
        self
    }

    /// Also rolls back when a batch's loss is above the mean plus `sigmas` standard deviations
    /// of the last `window` losses kept (once there are `window` of them).
    pub fn spike(mut self, sigmas: f64, window: usize) -> Self {
        self.spike = Some((sigmas, window));
        self
    }

    /// Stops training after `rollbacks` rollbacks within `within` optimizer steps.
    pub fn give_up_after(mut self, rollbacks: usize, within: u64) -> Self {
        self.rollbacks = rollbacks;
        self.within = within;
        self
    }

    /// What is wrong with the settings, if anything.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        if self.every == 0 {
            return Err("Rollback::snapshot_every must be at least 1 step".into());
        }
        if let Some((sigmas, window)) = self.spike {
            if !(sigmas.is_finite() && sigmas > 0.0) {
                return Err(format!("Rollback::spike needs sigmas above 0, not {sigmas}"));
            }
            if window < 2 {
                return Err(format!(
                    "Rollback::spike needs a window of at least 2 losses, not {window}"
                ));
            }
        }
        if self.rollbacks == 0 || self.within == 0 {
            return Err(format!(
                "Rollback::give_up_after needs at least 1 rollback within at least 1 step, not {} within {}",
                self.rollbacks, self.within
            ));
        }
        Ok(())
    }
}

/// Where a snapshot was taken: after `batch` batches of the epoch (0: at its start), at
/// `global_step`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark {
    pub batch: usize,
    pub global_step: u64,
}

/// What of a guard a resume point keeps: the losses of the spike rule and the recent
/// rollbacks (the snapshot itself is taken again where the fit goes on, as the uninterrupted
/// fit took one there).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct GuardState {
    /// Finite: only good batches' losses are kept.
    losses: Vec<f64>,
    rollbacks: Vec<(u64, String)>,
}

/// The rollback machinery of one fit.
pub(crate) struct Guard {
    config: Rollback,
    /// Each variable and its copy.
    weights: Vec<(Tensor, Tensor)>,
    optimizer: Option<HookState>,
    logs: Option<LogsState>,
    pub mark: Mark,
    /// The latest losses kept, for the spike rule.
    losses: VecDeque<f64>,
    /// The recent rollbacks: their step and what they skipped.
    rollbacks: VecDeque<(u64, String)>,
}

impl Guard {
    pub fn new(config: Rollback, vs: &VarStore) -> Result<Self> {
        let weights = crate::context::variables_by_name(vs)
            .into_iter()
            .map(|(_, var)| {
                let copy = var
                    .f_detach_copy()
                    .map_err(|e| Error::torch("allocating the rollback snapshot", e))?;
                Ok((var, copy))
            })
            .collect::<Result<_>>()?;
        Ok(Guard {
            config,
            weights,
            optimizer: None,
            logs: None,
            mark: Mark {
                batch: 0,
                global_step: 0,
            },
            losses: VecDeque::new(),
            rollbacks: VecDeque::new(),
        })
    }

    /// Whether a snapshot is due after this optimizer step.
    pub fn due(&self, global_step: u64) -> bool {
        global_step % self.config.every == 0
    }

    /// Copies the weights, the optimizer's state and the running logs, at `mark`.
    pub fn snapshot(&mut self, optimizer: &dyn Optimizer, logs: &BatchLogs, mark: Mark) -> Result<()> {
        {
            let _no_grad = tch::no_grad_guard();
            for (var, copy) in &mut self.weights {
                copy.f_copy_(var)
                    .map_err(|e| Error::torch("copying the weights for a rollback", e))?;
            }
        }
        optimizer.snapshot(&mut self.optimizer)?;
        self.logs = Some(logs.state());
        self.mark = mark;
        Ok(())
    }

    /// What is wrong with a batch's loss, if anything.
    pub fn anomaly(&self, loss: f64) -> Option<String> {
        if !loss.is_finite() {
            return Some(format!("the loss is {loss}"));
        }
        let (sigmas, window) = self.config.spike?;
        if self.losses.len() < window {
            return None;
        }
        let n = self.losses.len() as f64;
        let mean = self.losses.iter().sum::<f64>() / n;
        let std = (self.losses.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n).sqrt();
        (loss > mean + sigmas * std).then(|| {
            format!("the loss {loss:.6} is above the mean {mean:.6} + {sigmas} × {std:.6} of the last {window} losses")
        })
    }

    /// Keeps a good batch's loss for the spike rule.
    pub fn keep(&mut self, loss: f64) {
        if let Some((_, window)) = self.config.spike {
            self.losses.push_back(loss);
            while self.losses.len() > window {
                self.losses.pop_front();
            }
        }
    }

    /// Copies the snapshot back over the bad batch `bad`: weights, optimizer, running logs;
    /// then takes it again (the state is the snapshot's), marked as after `bad`, so that a
    /// later rollback skips from the batch after it. Returns the snapshot's mark.
    pub fn roll_back(&mut self, optimizer: &mut dyn Optimizer, logs: &mut BatchLogs, bad: usize) -> Result<Mark> {
        {
            let _no_grad = tch::no_grad_guard();
            for (var, copy) in &mut self.weights {
                var.f_copy_(copy)
                    .map_err(|e| Error::torch("copying the weights back in a rollback", e))?;
            }
        }
        if let Some(snapshot) = &self.optimizer {
            optimizer.roll_back(snapshot)?;
        }
        if let Some(state) = self.logs.take() {
            logs.reset();
            logs.restore(state)?;
        }
        let mark = self.mark;
        self.snapshot(optimizer, logs, Mark { batch: bad, ..mark })?;
        Ok(mark)
    }

    /// Records a rollback at `step`; `Some(reason)` when that makes too many within the
    /// window: training gives up.
    pub fn give_up(&mut self, step: u64, what: String) -> Option<String> {
        self.rollbacks.push_back((step, what));
        while self
            .rollbacks
            .front()
            .is_some_and(|(at, _)| step.saturating_sub(*at) >= self.config.within)
        {
            self.rollbacks.pop_front();
        }
        (self.rollbacks.len() >= self.config.rollbacks).then(|| {
            let listed: Vec<String> = self
                .rollbacks
                .iter()
                .map(|(at, what)| format!("step {at}: {what}"))
                .collect();
            format!(
                "{} rollbacks within {} steps: {}",
                self.rollbacks.len(),
                self.config.within,
                listed.join("; ")
            )
        })
    }

    pub fn state(&self) -> GuardState {
        GuardState {
            losses: self.losses.iter().copied().collect(),
            rollbacks: self.rollbacks.iter().cloned().collect(),
        }
    }

    pub fn restore(&mut self, state: GuardState) {
        self.losses = state.losses.into();
        self.rollbacks = state.rollbacks.into();
    }
}
