//! Calling hooks: one list per event, built once per fit, in the registry's order.

use crate::context::HookContext;
use crate::control::Control;
use crate::error::{Error, Result};
use crate::hook::Hook;
use crate::panics;
use crate::records::history::{HookCost, StopReason};
use crate::records::metrics::device_reads;
use crate::records::saved::HookState;
use crate::registry::matches;
use crate::schedule::event::{Event, EVENTS};
use crate::schedule::spec::HookInfo;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Duration;

/// One hook at one event: a hook that runs at several events (a plugin) has a slot for each.
struct Slot {
    info: HookInfo,
    /// Which of `Dispatch::hooks` it is.
    hook: usize,
    /// Time spent in this hook at this event while profiling, and its calls.
    spent: Cell<(Duration, u32)>,
    /// Whether a failure of this hook disables it instead of ending the fit.
    tolerated: bool,
}

/// The hooks of one fit, and the first stop one of them asked for. The hooks themselves (with
/// their state) are owned by the fit (registered ones) or the trainer (those added at run time).
pub(crate) struct Dispatch<'h> {
    hooks: Vec<Entry<'h>>,
    by_event: [Vec<Slot>; EVENTS],
    stop: Option<StopReason>,
    /// Whether hook calls are being timed per slot (the first batches of a fit: slow hooks).
    profiling: bool,
    /// Times every hook call: the TSC where there is one (a few ns a read, against ~20 ns for
    /// the OS clock), else the OS clock.
    clock: quanta::Clock,
}

/// One hook of the fit.
struct Entry<'h> {
    hook: &'h mut dyn Hook,
    /// Its first spec: its name and location, for messages.
    info: HookInfo,
    /// The key of its state in resume points.
    key: String,
    /// Whether it was disabled after a tolerated failure.
    disabled: bool,
    /// Its calls over the fit, their time (in ticks of the dispatch's clock), and the device
    /// values they read.
    calls: u64,
    ticks: u64,
    device_reads: u64,
}

impl<'h> Dispatch<'h> {
    /// Puts each hook, at each of its events, into that event's list, in the documented order.
    /// A filter that cannot work at its event (only possible for hooks added at run time) is an
    /// error naming the hook.
    pub(crate) fn new(
        hooks: impl IntoIterator<Item = (Vec<HookInfo>, &'h mut dyn Hook)>,
        tolerated: &[String],
    ) -> Result<Self> {
        let mut slots = Vec::new();
        let mut entries: Vec<Entry<'h>> = Vec::new();
        for (index, (infos, hook)) in hooks.into_iter().enumerate() {
            // A plugin without specs never runs; it still has a name for its state.
            let info = infos.first().cloned().unwrap_or_else(|| {
                crate::schedule::spec::HookSpec::new(Event::TrainBegin, "(a hook without events)").0
            });
            let key = state_key(&info, &entries);
            entries.push(Entry {
                hook,
                info,
                key,
                disabled: false,
                calls: 0,
                ticks: 0,
                device_reads: 0,
            });
            slots.extend(infos.into_iter().map(|info| Slot {
                tolerated: tolerated.iter().any(|name| matches(name, &info)),
                info,
                hook: index,
                spent: Cell::default(),
            }));
        }
        slots.sort_by(|a, b| a.info.order_key().cmp(&b.info.order_key()));
        let mut by_event: [Vec<Slot>; EVENTS] = Default::default();
        for slot in slots {
            if let Err(why) = slot.info.filter().check(slot.info.event()) {
                return Err(Error::config(
                    "hooks",
                    format!("hook `{}` ({}): {why}", slot.info.name(), slot.info.location()),
                ));
            }
            by_event[slot.info.event().index()].push(slot);
        }
        Ok(Dispatch {
            hooks: entries,
            by_event,
            stop: None,
            profiling: false,
            clock: quanta::Clock::new(),
        })
    }

    /// Fails, naming the hook and the type, when a hook needs a resource the trainer was not
    /// given (before any batch).
    pub(crate) fn check_requirements(&self, resources: &crate::resource::Resources) -> Result<()> {
        for Entry { hook, info, .. } in &self.hooks {
            if let Some(missing) = hook.requires().iter().find(|r| !resources.contains(r.id)) {
                return Err(Error::config(
                    "resource",
                    format!(
                        "hook `{}` ({}) takes `Res<{}>`, but the trainer was not given a `{}`: add \
                     `.resource(…)` to the trainer",
                        info.name(),
                        info.location(),
                        missing.type_name(),
                        missing.type_name()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Starts or stops timing hook calls.
    pub(crate) fn profile(&mut self, on: bool) {
        self.profiling = on;
    }

    /// The training-batch hooks that took longer per batch than the training step itself, given
    /// the whole time of the `batches` profiled (step and hooks): the step's mean time, and
    /// `(name, location, event, time per batch)` of each slow hook.
    pub(crate) fn slow_hooks(
        &self,
        total: Duration,
        batches: u32,
    ) -> (Duration, Vec<(String, String, Event, Duration)>) {
        let slots = || {
            Event::ALL
                .into_iter()
                .filter(|e| e.is_training_batch())
                .flat_map(|e| self.by_event[e.index()].iter().map(move |slot| (e, slot)))
        };
        let hooks: Duration = slots().map(|(_, slot)| slot.spent.get().0).sum();
        let step = total.saturating_sub(hooks) / batches.max(1);
        let slow = slots()
            .filter_map(|(event, slot)| {
                let per_batch = slot.spent.get().0 / batches.max(1);
                (per_batch > step).then(|| {
                    (
                        slot.info.name().to_owned(),
                        slot.info.location().to_string(),
                        event,
                        per_batch,
                    )
                })
            })
            .collect();
        (step, slow)
    }

    /// Whether any hook runs at `event`.
    pub(crate) fn has_hooks(&self, event: Event) -> bool {
        !self.by_event[event.index()].is_empty()
    }

    /// Whether a hook asked to stop.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.is_some()
    }

    /// The stop a hook asked for, if one did.
    pub(crate) fn stop(&self) -> Option<&StopReason> {
        self.stop.as_ref()
    }

    /// Stops as a resume point of an ended fit says.
    pub(crate) fn stop_with(&mut self, stop: StopReason) {
        self.stop = Some(stop);
    }

    pub(crate) fn take_stop(&mut self) -> Option<StopReason> {
        self.stop.take()
    }

    /// Runs the hooks of `ctx`'s event whose filter passes, given the event's own counter and
    /// the global step. A filtered-out hook costs a few integer operations. A hook's error or
    /// panic ends the fit with [`Error::Hook`] — or, for a hook whose failures are tolerated,
    /// disables it with a warning.
    #[inline]
    pub(crate) fn fire(&mut self, own: u64, global: u64, ctx: &HookContext<'_>) -> Result<()> {
        for slot in &self.by_event[ctx.event.index()] {
            let entry = &mut self.hooks[slot.hook];
            if !slot.info.filter().fires(own, global, ctx.state) || entry.disabled {
                continue;
            }
            let reads = device_reads();
            let started = self.clock.raw();
            let result = call(slot, &mut *entry.hook, ctx, &mut self.stop);
            let ticks = self.clock.raw().saturating_sub(started);
            entry.calls += 1;
            entry.ticks += ticks;
            entry.device_reads += device_reads() - reads;
            if self.profiling {
                let (total, calls) = slot.spent.get();
                slot.spent.set((total + self.clock.delta(0, ticks), calls + 1));
            }
            if let Err(err) = result {
                if !slot.tolerated {
                    return Err(err);
                }
                tracing::warn!("{err}; its failures are tolerated: it is disabled for the rest of this fit");
                entry.disabled = true;
            }
        }
        Ok(())
    }

    /// What each hook that ran cost so far, the costliest first; shares of `elapsed`.
    pub(crate) fn costs(&self, elapsed: Duration) -> Vec<HookCost> {
        let mut costs: Vec<HookCost> = self
            .hooks
            .iter()
            .filter(|entry| entry.calls > 0)
            .map(|entry| {
                let total = self.clock.delta(0, entry.ticks);
                HookCost {
                    name: entry.info.name().to_owned(),
                    location: entry.info.location().to_string(),
                    calls: entry.calls,
                    total,
                    device_reads: entry.device_reads,
                    share: total.as_secs_f64() / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
                }
            })
            .collect();
        costs.sort_by_key(|cost| std::cmp::Reverse(cost.total));
        costs
    }

    /// The keys of the hooks disabled after a tolerated failure (a resume point keeps them).
    pub(crate) fn disabled(&self) -> Vec<String> {
        self.hooks
            .iter()
            .filter(|entry| entry.disabled)
            .map(|entry| entry.key.clone())
            .collect()
    }

    /// Disables again the hooks a resume point says were disabled.
    pub(crate) fn disable(&mut self, keys: &[String]) {
        for entry in &mut self.hooks {
            if keys.contains(&entry.key) {
                entry.disabled = true;
            }
        }
    }

    /// Every hook's state for a resume point, by key.
    pub(crate) fn states(&self) -> Result<Vec<(String, HookState)>> {
        let mut states = Vec::new();
        for Entry { hook, info, key, .. } in &self.hooks {
            let state = match panics::caught(|| hook.state()) {
                Ok(state) => state,
                Err(panic) => Err(format!("panicked: {panic}").into()),
            };
            match state {
                Ok(Some(state)) => states.push((key.clone(), state)),
                Ok(None) => {}
                Err(err) => return Err(hook_error(info, format!("its state cannot be saved: {err}").into())),
            }
        }
        Ok(states)
    }

    /// Gives each hook its state from a resume point. A state no hook of this fit claims is
    /// ignored with a warning (a hook removed since); a hook without one keeps its own.
    /// `all_here`: whether every hook of the point should be here (a rank other than 0 of a
    /// data-parallel fit leaves rank 0's own out, and says nothing of them).
    pub(crate) fn restore(&mut self, mut saved: BTreeMap<String, HookState>, all_here: bool) -> Result<()> {
        for Entry { hook, info, key, .. } in &mut self.hooks {
            let Some(state) = saved.remove(key.as_str()) else {
                continue;
            };
            let _span = tracing::warn_span!("restore", hook = info.name()).entered();
            let restored = match panics::caught(|| hook.restore(state)) {
                Ok(restored) => restored,
                Err(panic) => Err(format!("panicked: {panic}").into()),
            };
            restored.map_err(|err| hook_error(info, format!("its saved state cannot be restored: {err}").into()))?;
        }
        if all_here && !saved.is_empty() {
            let keys: Vec<_> = saved.into_keys().collect();
            tracing::warn!(
                "the resume point keeps the state of hooks this fit does not run, which is ignored: {}",
                keys.join(", ")
            );
        }
        Ok(())
    }

    /// Runs the `on_exception` hooks after `ctx.error` ended training. Their own failures are
    /// warnings (one line, with their causes), not returned: the error that ended training is
    /// the one to report.
    pub(crate) fn fire_exception(&mut self, ctx: &HookContext<'_>) {
        let mut ignored = None;
        for slot in &self.by_event[ctx.event.index()] {
            if let Err(err) = call(slot, &mut *self.hooks[slot.hook].hook, ctx, &mut ignored) {
                tracing::warn!("{err:#} (while handling the error that ended training)");
            }
        }
    }
}

/// The key of a hook's state in resume points: `module::function@event` for a registered hook,
/// the name of a hook added at run time; `#2`, `#3`… for the second and third of one name.
fn state_key(info: &HookInfo, before: &[Entry<'_>]) -> String {
    let key = if info.module_path().is_empty() {
        info.name().to_owned()
    } else {
        format!("{}@{}", info.path(), info.event())
    };
    let same = before
        .iter()
        .map(|entry| &entry.key)
        .filter(|k| **k == key || k.strip_prefix(&key).is_some_and(|rest| rest.starts_with('#')))
        .count();
    if same == 0 {
        key
    } else {
        format!("{key}#{}", same + 1)
    }
}

fn hook_error(info: &HookInfo, source: crate::error::BoxError) -> Error {
    Error::Hook {
        hook: info.name().to_owned(),
        location: info.location(),
        source,
    }
}

#[inline(never)]
fn call(slot: &Slot, hook: &mut dyn Hook, ctx: &HookContext<'_>, stop: &mut Option<StopReason>) -> Result<()> {
    let failed = |source| hook_error(&slot.info, source);
    let control = match panics::caught(|| hook.call(ctx)) {
        Ok(Ok(control)) => control,
        Ok(Err(err)) => return Err(failed(err)),
        Err(panic) => return Err(failed(format!("panicked: {panic}").into())),
    };
    if let Control::Stop { cause, reason } = control {
        stop.get_or_insert_with(|| StopReason {
            cause,
            reason,
            hook: slot.info.name().to_owned(),
            event: ctx.event,
            epoch: ctx.state.epoch(),
        });
    }
    Ok(())
}
