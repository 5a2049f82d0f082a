//! What the loop knows of a hook: its event, filter, place in the order and where it is
//! defined ([`HookInfo`]); the builder of the same for hooks added at run time ([`HookSpec`]).

use crate::schedule::event::Event;
use crate::schedule::filter::Filter;
use std::borrow::Cow;
use std::cmp::Reverse;

/// What the loop knows of a hook: its event, filter, place in the order, and where it comes from.
///
/// The attributes make one for each annotated function; a [`HookSpec`] makes one for a hook
/// added at run time.
#[derive(Clone, Debug)]
pub struct HookInfo {
    pub(crate) event: Event,
    pub(crate) filter: Filter,
    pub(crate) priority: i32,
    pub(crate) group: Cow<'static, str>,
    pub(crate) name: Cow<'static, str>,
    pub(crate) module_path: Cow<'static, str>,
    pub(crate) location: HookLocation,
    /// Whether, in a data-parallel fit, only rank 0 runs it (a hook that writes outputs).
    pub(crate) rank_zero: bool,
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
/// use trainmon::{Event, Filter, HookSpec};
///
/// let spec = HookSpec::new(Event::BatchEnd, "cli_logger").filter(Filter::ALWAYS.every(50)).priority(1);
/// # let _ = spec;
/// ```
#[derive(Clone, Debug)]
pub struct HookSpec(pub(crate) HookInfo);

impl HookSpec {
    /// A hook of `event` named `name` (for messages and [`crate::Hooks::except`]), which runs at every
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
            rank_zero: false,
        })
    }

    /// In a data-parallel fit ([`crate::Trainer::data_parallel`]), runs on rank 0 only: for a
    /// hook that writes outputs (files, log lines, a tracker), which the other ranks would
    /// write again. The built-in outputs are such hooks.
    pub fn rank_zero(mut self) -> Self {
        self.0.rank_zero = true;
        self
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
