//! Time: a limit on training, and throughput.

use crate::context::HookContext;
use crate::control::{Control, StopCause};
use crate::error::BoxError;
use crate::hook::{Hook, Plugin};
use crate::schedule::event::Event;
use crate::schedule::filter::Filter;
use crate::schedule::priority;
use crate::schedule::spec::HookSpec;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stops training once it has run for a given time (Lightning's `Timer`): checked after every
/// batch, so training stops within a batch of the limit; the stop reason says so. The time is
/// this `fit`'s: a resumed fit ([`crate::Trainer::resumable`]) has the whole limit again, so a
/// job stopped by it goes on when it is run again.
#[derive(Clone)]
pub struct TimeLimit {
    limit: Duration,
    started: Option<Instant>,
    clock: Clock,
}

/// What a [`TimeLimit`] reads the time from.
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

impl std::fmt::Debug for TimeLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeLimit")
            .field("limit", &self.limit)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl TimeLimit {
    /// Stops after `limit` of training (from `fit`'s start).
    pub fn new(limit: Duration) -> Self {
        TimeLimit {
            limit,
            started: None,
            clock: Arc::new(Instant::now),
        }
    }

    /// Reads the time from `clock` instead of the system's (`Instant::now`): a test moves its
    /// own clock on instead of waiting for the limit.
    pub fn clock(mut self, clock: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

impl Hook for TimeLimit {
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        let now = (self.clock)();
        if ctx.event() == Event::TrainBegin {
            self.started = Some(now);
            return Ok(Control::Continue);
        }
        let elapsed = now.saturating_duration_since(*self.started.get_or_insert(now));
        Ok(if elapsed >= self.limit {
            Control::stop_for(
                StopCause::TimeLimit,
                format!("time limit of {:?} reached after {:.2?}", self.limit, elapsed),
            )
        } else {
            Control::Continue
        })
    }
}

impl Plugin for TimeLimit {
    fn specs(&self) -> Vec<HookSpec> {
        [Event::TrainBegin, Event::BatchEnd]
            .into_iter()
            .map(|event| HookSpec::new(event, "TimeLimit").priority(priority::EARLY_STOPPING))
            .collect()
    }
}

/// Logs throughput in samples per second: every `n` batches over the batches since the last
/// line, and at every epoch's end over the epoch (which the history keeps as `throughput`).
#[derive(Debug, Clone)]
pub struct Throughput {
    every: u64,
    since: Option<(Duration, usize)>,
}

impl Throughput {
    /// A line every 100 batches and one per epoch.
    pub fn new() -> Self {
        Throughput {
            every: 100,
            since: None,
        }
    }

    /// A line every `n` batches (`0`: per epoch only).
    pub fn every(mut self, n: u64) -> Self {
        self.every = n;
        self
    }
}

impl Default for Throughput {
    fn default() -> Self {
        Throughput::new()
    }
}

impl Hook for Throughput {
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        let state = ctx.state();
        match ctx.event() {
            Event::EpochBegin => self.since = Some((state.elapsed(), 0)),
            Event::BatchEnd => {
                if let (Some((then, samples_then)), Some(batch)) = (self.since, ctx.batch()) {
                    let now = state.elapsed();
                    let rate = (batch.samples() - samples_then) as f64 / (now - then).as_secs_f64();
                    tracing::info!("epoch {} batch {}: {rate:.0} samples/s", state.epoch(), batch.number());
                    self.since = Some((now, batch.samples()));
                }
            }
            Event::EpochEnd => {
                if let Some(epoch) = ctx.epoch() {
                    tracing::info!("epoch {}: {:.0} samples/s", epoch.epoch(), epoch.throughput());
                }
            }
            _ => {}
        }
        Ok(Control::Continue)
    }
}

impl Plugin for Throughput {
    fn specs(&self) -> Vec<HookSpec> {
        let at = |event| {
            HookSpec::new(event, "Throughput")
                .priority(priority::LOGGING)
                .rank_zero()
        };
        let mut specs = vec![at(Event::EpochBegin), at(Event::EpochEnd)];
        if self.every > 0 {
            specs.push(at(Event::BatchEnd).filter(Filter::ALWAYS.every(self.every)));
        }
        specs
    }
}
