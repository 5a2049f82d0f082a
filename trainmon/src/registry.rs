//! The hook registry: one record per annotated function, collected by `inventory` at link time;
//! the selection of the hooks a `Trainer` runs; and their deterministic order.

use crate::hook::Hook;
use crate::schedule::event::Event;
use crate::schedule::filter::{Counter, Filter};
use crate::schedule::spec::{HookInfo, HookLocation};
use crate::state::TrainState;
use std::borrow::Cow;

/// One registered hook: what its attribute said, and how to instantiate it.
///
/// The attributes create these, with the `const` builder below (not public API); read them
/// through [`registrations`].
pub struct Registration {
    event: Event,
    name: &'static str,
    new: fn() -> Box<dyn Hook>,
    every: u64,
    after: u64,
    before: u64,
    once: &'static [u64],
    when: Option<fn(&TrainState) -> bool>,
    counter: Counter,
    priority: i32,
    group: &'static str,
    rank_zero: bool,
    module_path: &'static str,
    location: HookLocation,
}

inventory::collect!(Registration);

#[doc(hidden)]
impl Registration {
    /// A hook of `event`, the function `name`, made by `new`; every option at its default.
    pub const fn new(event: Event, name: &'static str, new: fn() -> Box<dyn Hook>) -> Self {
        Registration {
            event,
            name,
            new,
            every: 1,
            after: 0,
            before: u64::MAX,
            once: &[],
            when: None,
            counter: Counter::Event,
            priority: 0,
            group: "",
            rank_zero: false,
            module_path: "",
            location: HookLocation {
                file: "",
                line: 0,
                column: 0,
            },
        }
    }

    /// `every = n`.
    pub const fn every(mut self, n: u64) -> Self {
        self.every = n;
        self
    }

    /// `after = n`.
    pub const fn after(mut self, n: u64) -> Self {
        self.after = n;
        self
    }

    /// `before = n`.
    pub const fn before(mut self, n: u64) -> Self {
        self.before = n;
        self
    }

    /// `once = [..]`.
    pub const fn once(mut self, counts: &'static [u64]) -> Self {
        self.once = counts;
        self
    }

    /// `when = predicate`.
    pub const fn when(mut self, predicate: fn(&TrainState) -> bool) -> Self {
        self.when = Some(predicate);
        self
    }

    /// `counter = global_step`.
    pub const fn global_step(mut self) -> Self {
        self.counter = Counter::GlobalStep;
        self
    }

    /// `priority = p`.
    pub const fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// `group = "name"`.
    pub const fn group(mut self, group: &'static str) -> Self {
        self.group = group;
        self
    }

    /// `rank = 0`.
    pub const fn rank_zero(mut self) -> Self {
        self.rank_zero = true;
        self
    }

    /// Where the function is: `module_path!()`, `file!()`, and the line and column of its name.
    pub const fn defined_at(mut self, module_path: &'static str, file: &'static str, line: u32, column: u32) -> Self {
        self.module_path = module_path;
        self.location = HookLocation { file, line, column };
        self
    }
}

impl Registration {
    /// What the attribute said about the function.
    pub fn info(&self) -> HookInfo {
        let filter = Filter::ALWAYS
            .every(self.every)
            .after(self.after)
            .before(self.before)
            .once(self.once)
            .counter(self.counter);
        let filter = match self.when {
            Some(when) => filter.when(when),
            None => filter,
        };
        HookInfo {
            event: self.event,
            filter,
            priority: self.priority,
            group: Cow::Borrowed(self.group),
            name: Cow::Borrowed(self.name),
            module_path: Cow::Borrowed(self.module_path),
            location: self.location,
            rank_zero: self.rank_zero,
        }
    }

    /// A fresh instance of the hook, with its own `Local` state (to run it with
    /// [`crate::testing::Harness`], say).
    pub fn instantiate(&self) -> Box<dyn Hook> {
        (self.new)()
    }

    /// The documented order's key (see [`HookInfo`]).
    fn order_key(&self) -> impl Ord + '_ {
        (
            std::cmp::Reverse(self.priority),
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
        self.info().fmt(f)
    }
}

/// Every hook registered in this binary, in the order they run: higher `priority` first, then
/// module path, function name, location.
pub fn registrations() -> Vec<&'static Registration> {
    sorted(inventory::iter::<Registration>.into_iter().collect())
}

fn sorted(mut list: Vec<&'static Registration>) -> Vec<&'static Registration> {
    list.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    list
}

/// Which registered hooks a `Trainer` runs ([`crate::Trainer::hooks`]): all of them by default.
///
/// ```
/// use trainmon::Hooks;
///
/// let quiet = Hooks::all().except(["verbose"]);        // a group, or a hook's name or path
/// let only_logging = Hooks::groups(["logging"]);
/// let none = Hooks::none();                             // run-time hooks only
/// # let _ = (quiet, only_logging, none);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    base: Base,
    except: Vec<String>,
}

#[derive(Clone, Debug, Default)]
enum Base {
    #[default]
    All,
    None,
    Groups(Vec<String>),
}

impl Hooks {
    /// Every registered hook (the default).
    pub fn all() -> Self {
        Hooks {
            base: Base::All,
            except: Vec::new(),
        }
    }

    /// No registered hook: only those added with [`crate::Trainer::add_hook`].
    pub fn none() -> Self {
        Hooks {
            base: Base::None,
            except: Vec::new(),
        }
    }

    /// The registered hooks of these groups (`#[on_epoch_end(group = "logging")]`).
    pub fn groups<S: Into<String>>(groups: impl IntoIterator<Item = S>) -> Self {
        Hooks {
            base: Base::Groups(groups.into_iter().map(Into::into).collect()),
            except: Vec::new(),
        }
    }

    /// Leaves out hooks by group, function name, or path (`my_crate::hooks::log_batch`).
    pub fn except<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.except.extend(names.into_iter().map(Into::into));
        self
    }

    pub(crate) fn selects(&self, info: &HookInfo) -> bool {
        let included = match &self.base {
            Base::All => true,
            Base::None => false,
            Base::Groups(groups) => groups.iter().any(|g| *g == info.group),
        };
        included && !self.except.iter().any(|name| matches(name, info))
    }

    /// Names in this selection that match no registered hook: a group whose crate was not
    /// linked, or a typo.
    pub(crate) fn unmatched(&self, registered: &[&'static Registration]) -> Vec<String> {
        let groups = match &self.base {
            Base::Groups(groups) => groups.as_slice(),
            _ => &[],
        };
        let mut missing: Vec<String> = groups
            .iter()
            .filter(|g| !registered.iter().any(|r| r.group == **g))
            .map(|g| format!("group `{g}` has no registered hooks"))
            .collect();
        missing.extend(
            self.except
                .iter()
                .filter(|name| !registered.iter().any(|r| matches(name, &r.info())))
                .map(|name| format!("`{name}` in `except` matches no registered hook or group")),
        );
        missing
    }
}

/// Whether `name` is the hook's group, function name or path.
pub(crate) fn matches(name: &str, info: &HookInfo) -> bool {
    name == info.group || name == info.name || name == info.path()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::IntoHook;

    fn noop() -> Box<dyn Hook> {
        (|| ()).into_hook()
    }

    fn leak(priority: i32, module: &'static str, name: &'static str, line: u32) -> &'static Registration {
        Box::leak(Box::new(
            Registration::new(Event::EpochEnd, name, noop)
                .priority(priority)
                .group(if name.starts_with('z') { "late" } else { "" })
                .defined_at(module, "x.rs", line, 1),
        ))
    }

    fn regs() -> [&'static Registration; 5] {
        [
            leak(0, "a::hooks", "log", 3),
            leak(5, "z::hooks", "metrics", 9),
            leak(0, "a::hooks", "early_stop", 7),
            leak(-1, "a", "checkpoint", 1),
            leak(0, "a", "zz", 2),
        ]
    }

    #[test]
    fn order_ignores_registration_order() {
        let regs = regs();
        let want = ["metrics", "zz", "early_stop", "log", "checkpoint"];
        // Every rotation and the reverse of the input give the same order.
        for start in 0..regs.len() {
            for reverse in [false, true] {
                let mut input: Vec<_> = regs.iter().copied().cycle().skip(start).take(regs.len()).collect();
                if reverse {
                    input.reverse();
                }
                let got: Vec<_> = sorted(input).iter().map(|r| r.info().name().to_owned()).collect();
                assert_eq!(got, want, "rotation {start}, reversed {reverse}");
            }
        }
    }

    #[test]
    fn selections_pick_by_group_name_and_path() {
        let regs = regs();
        let picked = |hooks: &Hooks| -> Vec<&str> {
            regs.iter()
                .filter(|r| hooks.selects(&r.info()))
                .map(|r| r.name)
                .collect()
        };
        let cases: [(Hooks, &[&str], &str); 5] = [
            (
                Hooks::all(),
                &["log", "metrics", "early_stop", "checkpoint", "zz"],
                "all",
            ),
            (Hooks::none(), &[], "none"),
            (Hooks::groups(["late"]), &["zz"], "one group"),
            (
                Hooks::all().except(["late", "log"]),
                &["metrics", "early_stop", "checkpoint"],
                "except group and name",
            ),
            (
                Hooks::all().except(["a::hooks::early_stop"]),
                &["log", "metrics", "checkpoint", "zz"],
                "except a path",
            ),
        ];
        for (hooks, want, why) in cases {
            assert_eq!(picked(&hooks), want, "{why}");
        }
        let unmatched = Hooks::groups(["late", "ghost"]).except(["nothing"]).unmatched(&regs);
        assert_eq!(unmatched.len(), 2, "{unmatched:?}");
        assert!(
            unmatched[0].contains("group `ghost`") && unmatched[1].contains("`nothing`"),
            "{unmatched:?}"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn leaked(specs: &[(i32, u8, u8)]) -> Vec<&'static Registration> {
            const MODULES: [&str; 3] = ["a", "a::b", "c"];
            const NAMES: [&str; 4] = ["w", "x", "y", "z"];
            specs
                .iter()
                .enumerate()
                .map(|(line, &(priority, module, name))| {
                    &*Box::leak(Box::new(
                        Registration::new(Event::EpochEnd, NAMES[name as usize % 4], noop)
                            .priority(priority)
                            .defined_at(MODULES[module as usize % 3], "x.rs", line as u32 + 1, 1),
                    ))
                })
                .collect()
        }

        proptest! {
            /// However registrations arrive (link order), the order is the same, and it is
            /// priority first (higher first), then module path, then name.
            #[test]
            fn order_does_not_depend_on_registration_order(
                specs in proptest::collection::vec((-3i32..3, 0u8..3, 0u8..4), 1..12),
                seed in any::<u64>(),
            ) {
                let regs = leaked(&specs);
                let mut shuffled = regs.clone();
                // A permutation from the seed.
                let mut state = seed | 1;
                for i in (1..shuffled.len()).rev() {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    shuffled.swap(i, (state % (i as u64 + 1)) as usize);
                }
                let a = sorted(regs);
                let b = sorted(shuffled);
                let key = |r: &&Registration| (r.info().priority(), r.info().module_path().to_owned(), r.info().name().to_owned(), r.info().location().line);
                prop_assert_eq!(a.iter().map(key).collect::<Vec<_>>(), b.iter().map(key).collect::<Vec<_>>());
                for pair in a.windows(2) {
                    let (x, y) = (pair[0].info(), pair[1].info());
                    prop_assert!(x.priority() > y.priority()
                        || (x.priority() == y.priority() && (x.module_path(), x.name()) <= (y.module_path(), y.name())));
                }
            }
        }
    }
}
