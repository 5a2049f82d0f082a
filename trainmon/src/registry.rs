//! The hook registry: one record per annotated function, collected by `inventory` at link time,
//! put in a deterministic order when `fit` starts.

use crate::event::Event;
use crate::filter::Filter;
use crate::hook::Hook;
use std::cmp::Reverse;

/// One registered hook: what the attribute said about the function, and how to instantiate it.
///
/// The attributes create these; read them through [`registrations`].
pub struct Registration {
    event: Event,
    filter: Filter,
    priority: i32,
    name: &'static str,
    module_path: &'static str,
    location: HookLocation,
    new: fn() -> Box<dyn Hook>,
}

inventory::collect!(Registration);

impl Registration {
    /// Not public API: the attributes' generated code calls this.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub const fn new(
        event: Event,
        every: u64,
        priority: i32,
        name: &'static str,
        module_path: &'static str,
        file: &'static str,
        line: u32,
        column: u32,
        new: fn() -> Box<dyn Hook>,
    ) -> Self {
        // The attribute rejects `every = 0` at compile time.
        let filter = match Filter::every(every) {
            Some(filter) => filter,
            None => Filter::ALWAYS,
        };
        Registration {
            event,
            filter,
            priority,
            name,
            module_path,
            location: HookLocation { file, line, column },
            new,
        }
    }

    /// The event the hook runs at.
    pub fn event(&self) -> Event {
        self.event
    }

    /// When, among the event's occurrences, it runs.
    pub fn filter(&self) -> Filter {
        self.filter
    }

    /// Higher runs first; 0 unless the attribute says `priority = …`.
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// The function's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The module the function is defined in (`my_crate::hooks`).
    pub fn module_path(&self) -> &'static str {
        self.module_path
    }

    /// Where the function is defined.
    pub fn location(&self) -> HookLocation {
        self.location
    }

    /// A fresh instance of the hook, with its own `Local` state.
    pub(crate) fn instantiate(&self) -> Box<dyn Hook> {
        (self.new)()
    }

    /// The documented order: higher priority first, then module path, name and location,
    /// so that neither link order nor the order of definitions matters.
    fn order_key(&self) -> impl Ord + '_ {
        (
            Reverse(self.priority),
            self.module_path,
            self.name,
            self.location.file,
            self.location.line,
            self.location.column,
        )
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("event", &self.event)
            .field("filter", &self.filter)
            .field("priority", &self.priority)
            .field("name", &format_args!("{}::{}", self.module_path, self.name))
            .field("location", &format_args!("{}", self.location))
            .finish()
    }
}

/// Where a hook is defined: `file:line:column` of its function's name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HookLocation {
    /// Source file, as `file!()` gives it.
    pub file: &'static str,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl std::fmt::Display for HookLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Every hook registered in this binary, in the order they run (see [`Registration`]'s order:
/// higher `priority` first, then module path, function name, location).
pub fn registrations() -> Vec<&'static Registration> {
    sorted(inventory::iter::<Registration>.into_iter().collect())
}

fn sorted(mut list: Vec<&'static Registration>) -> Vec<&'static Registration> {
    list.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::fn_hook;

    fn noop() -> Box<dyn Hook> {
        fn_hook((), |_: &mut (), _| Ok(crate::Control::Continue))
    }

    fn leak(priority: i32, module: &'static str, name: &'static str, line: u32) -> &'static Registration {
        Box::leak(Box::new(Registration::new(
            Event::EpochEnd,
            1,
            priority,
            name,
            module,
            "x.rs",
            line,
            1,
            noop,
        )))
    }

    #[test]
    fn order_ignores_registration_order() {
        let regs = [
            leak(0, "a::hooks", "log", 3),
            leak(5, "z::hooks", "metrics", 9),
            leak(0, "a::hooks", "early_stop", 7),
            leak(-1, "a", "checkpoint", 1),
            leak(0, "a", "zz", 2),
        ];
        let want = ["metrics", "zz", "early_stop", "log", "checkpoint"];
        // Every rotation and the reverse of the input give the same order.
        for start in 0..regs.len() {
            for reverse in [false, true] {
                let mut input: Vec<_> = regs.iter().copied().cycle().skip(start).take(regs.len()).collect();
                if reverse {
                    input.reverse();
                }
                let got: Vec<_> = sorted(input).iter().map(|r| r.name()).collect();
                assert_eq!(got, want, "rotation {start}, reversed {reverse}");
            }
        }
    }
}
