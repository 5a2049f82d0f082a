//! Calling hooks: one list per event, built once per fit, in the registry's order.

use crate::control::Control;
use crate::error::{Error, Result};
use crate::event::EVENTS;
use crate::history::StopReason;
use crate::hook::{Hook, HookContext};
use crate::registry::HookInfo;
use crate::trainer::guard;

/// One hook at one event: a hook that runs at several events (a plugin) has a slot for each.
struct Slot {
    info: HookInfo,
    /// Which of `Dispatch::hooks`.
    hook: usize,
}

/// The hooks of one fit, and the first stop one of them asked for. The hooks themselves (with
/// their state) are owned by the fit (registered ones) or the trainer (those added at run time).
pub(crate) struct Dispatch<'h> {
    hooks: Vec<&'h mut dyn Hook>,
    by_event: [Vec<Slot>; EVENTS],
    stop: Option<StopReason>,
}

impl<'h> Dispatch<'h> {
    /// Puts each hook, at each of its events, into that event's list, in the documented order.
    /// A filter that cannot work at its event (only possible for hooks added at run time) is an
    /// error naming the hook.
    pub(crate) fn new(hooks: impl IntoIterator<Item = (Vec<HookInfo>, &'h mut dyn Hook)>) -> Result<Self> {
        let mut slots = Vec::new();
        let mut all = Vec::new();
        for (index, (infos, hook)) in hooks.into_iter().enumerate() {
            all.push(hook);
            slots.extend(infos.into_iter().map(|info| Slot { info, hook: index }));
        }
        slots.sort_by(|a, b| a.info.order_key().cmp(&b.info.order_key()));
        let mut by_event: [Vec<Slot>; EVENTS] = Default::default();
        for slot in slots {
            if let Err(why) = slot.info.filter().check(slot.info.event()) {
                return Err(Error::Config(format!(
                    "hook `{}` ({}): {why}",
                    slot.info.name(),
                    slot.info.location()
                )));
            }
            by_event[slot.info.event().index()].push(slot);
        }
        Ok(Dispatch {
            hooks: all,
            by_event,
            stop: None,
        })
    }

    /// Whether a hook asked to stop.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.is_some()
    }

    pub(crate) fn take_stop(&mut self) -> Option<StopReason> {
        self.stop.take()
    }

    /// Runs the hooks of `ctx`'s event whose filter passes, given the event's own counter and
    /// the global step. A filtered-out hook costs a few integer operations. A hook's error or
    /// panic ends the fit with [`Error::Hook`].
    #[inline]
    pub(crate) fn fire(&mut self, own: u64, global: u64, ctx: &HookContext<'_>) -> Result<()> {
        for slot in &self.by_event[ctx.event.index()] {
            if slot.info.filter().fires(own, global, ctx.state) {
                call(slot, &mut *self.hooks[slot.hook], ctx, &mut self.stop)?;
            }
        }
        Ok(())
    }

    /// Runs the `on_exception` hooks after `ctx.error` ended training. Their own failures are
    /// logged, not returned: the error that ended training is the one to report.
    pub(crate) fn fire_exception(&mut self, ctx: &HookContext<'_>) {
        let mut ignored = None;
        for slot in &self.by_event[ctx.event.index()] {
            if let Err(err) = call(slot, &mut *self.hooks[slot.hook], ctx, &mut ignored) {
                tracing::error!("{err} (while handling an earlier error)");
            }
        }
    }
}

#[inline(never)]
fn call(slot: &Slot, hook: &mut dyn Hook, ctx: &HookContext<'_>, stop: &mut Option<StopReason>) -> Result<()> {
    let failed = |source| Error::Hook {
        hook: slot.info.name().to_owned(),
        location: slot.info.location(),
        source,
    };
    let control = match guard::caught(|| hook.call(ctx)) {
        Ok(Ok(control)) => control,
        Ok(Err(err)) => return Err(failed(err)),
        Err(panic) => return Err(failed(format!("panicked: {panic}").into())),
    };
    if let Control::Stop(reason) = control {
        stop.get_or_insert_with(|| StopReason {
            reason,
            hook: slot.info.name().to_owned(),
            event: ctx.event,
            epoch: ctx.state.epoch(),
        });
    }
    Ok(())
}
