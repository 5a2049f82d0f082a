//! Calling hooks: one list per event, built once per fit, in the registry's order.

use crate::control::Control;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::history::StopReason;
use crate::hook::{Hook, HookContext};
use crate::registry::Registration;
use crate::trainer::guard;

struct Slot {
    registration: &'static Registration,
    hook: Box<dyn Hook>,
}

/// The hooks of one fit, with their state, and the first stop one of them asked for.
pub(crate) struct Dispatch {
    by_event: [Vec<Slot>; Event::ALL.len()],
    stop: Option<StopReason>,
}

impl Dispatch {
    /// Instantiates each registration (fresh `Local` state) into its event's list, keeping order.
    pub(crate) fn new(registrations: &[&'static Registration]) -> Self {
        let mut by_event: [Vec<Slot>; Event::ALL.len()] = Default::default();
        for &registration in registrations {
            by_event[registration.event().index()].push(Slot {
                registration,
                hook: registration.instantiate(),
            });
        }
        Dispatch { by_event, stop: None }
    }

    /// Whether a hook asked to stop.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.is_some()
    }

    pub(crate) fn take_stop(&mut self) -> Option<StopReason> {
        self.stop.take()
    }

    /// Runs the hooks of `ctx`'s event whose filter passes at `count`. A filtered-out hook costs
    /// one integer check. A hook's error or panic ends the fit with [`Error::Hook`].
    pub(crate) fn fire(&mut self, count: usize, ctx: &HookContext<'_>) -> Result<()> {
        let event = ctx.event;
        for slot in &mut self.by_event[event.index()] {
            if !slot.registration.filter().fires(count as u64) {
                continue;
            }
            let hook_error = |source| Error::Hook {
                hook: slot.registration.name(),
                location: slot.registration.location(),
                source,
            };
            let control = match guard::caught(|| slot.hook.call(ctx)) {
                Ok(Ok(control)) => control,
                Ok(Err(err)) => return Err(hook_error(err)),
                Err(panic) => return Err(hook_error(format!("panicked: {panic}").into())),
            };
            if let Control::Stop(reason) = control {
                self.stop.get_or_insert(StopReason {
                    reason,
                    hook: slot.registration.name(),
                    event,
                    epoch: ctx.state.epoch(),
                });
            }
        }
        Ok(())
    }
}
