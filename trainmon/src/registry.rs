//! The hook registry: one record per annotated function, collected by `inventory` at link time;
//! the selection of the hooks a `Trainer` runs; and their deterministic order.

use crate::event::Event;
use crate::filter::Filter;
use crate::hook::Hook;
use std::borrow::Cow;
use std::cmp::Reverse;

/// What the loop knows of a hook: its event, filter, place in the order, and where it comes from.
///
/// The attributes make one for each annotated function; a [`HookSpec`] makes one for a hook
/// added at run time.
#[derive(Clone, Debug)]
pub struct HookInfo {
    event: Event,
    filter: Filter,
    priority: i32,
    group: Cow<'static, str>,
    name: Cow<'static, str>,
    module_path: Cow<'static, str>,
    location: HookLocation,
}

impl HookInfo {
    /// The event the hook runs at.
    pub fn event(&self) -> Event {
        self.event
    }

    /// When, among the event's occurrences, it runs.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Higher runs first; 0 unless set.
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// Its group (`""` for none).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The module the function is defined in (`my_crate::hooks`; `""` for hooks added at run time).
    pub fn module_path(&self) -> &str {
        &self.module_path
    }

    /// Where the function is defined (for hooks added at run time: where `HookSpec::new` was called).
    pub fn location(&self) -> HookLocation {
        self.location
    }

    /// `module::path::name`, or the name alone for hooks added at run time.
    pub fn path(&self) -> String {
        if self.module_path.is_empty() {
            self.name.to_string()
        } else {
            format!("{}::{}", self.module_path, self.name)
        }
    }

    /// The documented order: higher priority first, then module path, name and location,
    /// so that neither link order nor the order of definitions matters.
    pub(crate) fn order_key(&self) -> impl Ord + '_ {
        (
            Reverse(self.priority),
            &*self.module_path,
            &*self.name,
            self.location.file,
            self.location.line,
            self.location.column,
        )
    }
}

/// How a hook added at run time ([`crate::Trainer::add_hook`]) runs: the attribute's options, as
/// a builder.
///
/// ```
/// use trainmon::filter::Filter;
/// use trainmon::registry::HookSpec;
/// use trainmon::Event;
///
/// let spec = HookSpec::new(Event::BatchEnd, "cli_logger").filter(Filter::ALWAYS.every(50)).priority(1);
/// # let _ = spec;
/// ```
#[derive(Clone, Debug)]
pub struct HookSpec(pub(crate) HookInfo);

impl HookSpec {
    /// A hook of `event` named `name` (for messages and [`Hooks::except`]), which runs at every
    /// occurrence, with priority 0, in no group; its location is the caller's.
    #[track_caller]
    pub fn new(event: Event, name: impl Into<Cow<'static, str>>) -> Self {
        let caller = std::panic::Location::caller();
        HookSpec(HookInfo {
            event,
            filter: Filter::ALWAYS,
            priority: 0,
            group: Cow::Borrowed(""),
            name: name.into(),
            module_path: Cow::Borrowed(""),
            location: HookLocation {
                file: caller.file(),
                line: caller.line(),
                column: caller.column(),
            },
        })
    }

    /// Runs only where `filter` fires (checked when `fit` starts).
    pub fn filter(mut self, filter: Filter) -> Self {
        self.0.filter = filter;
        self
    }

    /// Place among the event's hooks: higher runs first (default 0).
    pub fn priority(mut self, priority: i32) -> Self {
        self.0.priority = priority;
        self
    }

    /// The group, for messages.
    pub fn group(mut self, group: impl Into<Cow<'static, str>>) -> Self {
        self.0.group = group.into();
        self
    }
}

/// One registered hook: its [`HookInfo`] and how to instantiate it.
///
/// The attributes create these; read them through [`registrations`].
pub struct Registration {
    info: HookInfo,
    new: fn() -> Box<dyn Hook>,
}

inventory::collect!(Registration);

impl Registration {
    /// Not public API: the attributes' generated code calls this.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub const fn new(
        event: Event,
        filter: Filter,
        priority: i32,
        group: &'static str,
        name: &'static str,
        module_path: &'static str,
        file: &'static str,
        line: u32,
        column: u32,
        new: fn() -> Box<dyn Hook>,
    ) -> Self {
        let info = HookInfo {
            event,
            filter,
            priority,
            group: Cow::Borrowed(group),
            name: Cow::Borrowed(name),
            module_path: Cow::Borrowed(module_path),
            location: HookLocation { file, line, column },
        };
        Registration { info, new }
    }

    /// What the attribute said about the function.
    pub fn info(&self) -> &HookInfo {
        &self.info
    }

    /// A fresh instance of the hook, with its own `Local` state.
    pub(crate) fn instantiate(&self) -> Box<dyn Hook> {
        (self.new)()
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.info.fmt(f)
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

/// Every hook registered in this binary, in the order they run: higher `priority` first, then
/// module path, function name, location.
pub fn registrations() -> Vec<&'static Registration> {
    sorted(inventory::iter::<Registration>.into_iter().collect())
}

fn sorted(mut list: Vec<&'static Registration>) -> Vec<&'static Registration> {
    list.sort_by(|a, b| a.info.order_key().cmp(&b.info.order_key()));
    list
}

/// Which registered hooks a `Trainer` runs ([`crate::Trainer::hooks`]): all of them by default.
///
/// ```
/// use trainmon::registry::Hooks;
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
            .filter(|g| !registered.iter().any(|r| r.info.group == **g))
            .map(|g| format!("group `{g}` has no registered hooks"))
            .collect();
        missing.extend(
            self.except
                .iter()
                .filter(|name| !registered.iter().any(|r| matches(name, &r.info)))
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
    use crate::hook::hook_fn;

    fn noop() -> Box<dyn Hook> {
        Box::new(hook_fn(|_| ()))
    }

    fn leak(priority: i32, module: &'static str, name: &'static str, line: u32) -> &'static Registration {
        Box::leak(Box::new(Registration::new(
            Event::EpochEnd,
            Filter::ALWAYS,
            priority,
            if name.starts_with('z') { "late" } else { "" },
            name,
            module,
            "x.rs",
            line,
            1,
            noop,
        )))
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
                .filter(|r| hooks.selects(r.info()))
                .map(|r| r.info().name())
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
                    &*Box::leak(Box::new(Registration::new(
                        Event::EpochEnd,
                        Filter::ALWAYS,
                        priority,
                        "",
                        NAMES[name as usize % 4],
                        MODULES[module as usize % 3],
                        "x.rs",
                        line as u32 + 1,
                        1,
                        noop,
                    )))
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
