//! The events of a trainmon fit and the rules of their filters: the one list of events, shared
//! by `trainmon` (which fires them) and `trainmon-macros` (whose attributes name them), so that
//! an event is added, renamed or documented in one place.
//!
//! [`for_each_event!`] hands the list to a macro of the caller's: `trainmon` builds its
//! per-event marker types and re-exports from it, `trainmon-macros` its attribute functions.
//! [`check_filter`] holds the rules a filter must follow at its event, checked at compile time
//! for attributes (each error under the offending option) and when `fit` starts for hooks added
//! at run time.

/// Calls `$callback! { … }` with one entry per event, in the order the events first occur in a
/// fit: `Variant attribute_name Occurs "doc of the variant" "doc of the attribute"`.
///
/// ```
/// macro_rules! names {
///     ($($variant:ident $attribute:ident $occurs:ident $doc:literal $attr_doc:literal)*) => {
///         [$(stringify!($attribute)),*]
///     };
/// }
/// let names = trainmon_events::for_each_event!(names);
/// assert_eq!(names.len(), trainmon_events::Event::ALL.len());
/// assert_eq!(names[0], "on_train_begin");
/// ```
#[macro_export]
macro_rules! for_each_event {
    ($callback:ident) => {
        $callback! {
            TrainBegin on_train_begin Once
                "Once, when `fit` starts (`#[on_train_begin]`)."
                "Runs the function once when `fit` starts, before the first epoch.\n\nOptions: `priority = i32` (higher runs first, default 0), `group = \"name\"`, `crate = \"path\"`."
            EpochBegin on_epoch_begin PerEpoch
                "At the start of each epoch (`#[on_epoch_begin]`)."
                "Runs the function at the start of each epoch.\n\nFilters count epochs from 1: `every = N`, `once = N` or `once = [N, …]`, `after = N`, `before = N`, `when = predicate`. Options: `priority`, `group`, `crate`."
            BatchBegin on_batch_begin PerBatch
                "Before each training batch (`#[on_batch_begin]`)."
                "Runs the function before each training batch.\n\nFilters count the batch within its epoch from 1 (`counter = global_step`: the optimizer step over the fit). Options: `every`, `once`, `after`, `before`, `when`, `counter`, `priority`, `group`, `crate`."
            BeforeBackward on_before_backward PerBatch
                "After the batch's loss is computed, before its backward pass (`#[on_before_backward]`)."
                "Runs the function after the batch's loss is computed, before the backward pass. Filters and options as `on_batch_begin`."
            AfterBackward on_after_backward PerBatch
                "After the backward pass: gradients are there (`#[on_after_backward]`)."
                "Runs the function after the backward pass, gradients computed. Filters and options as `on_batch_begin`."
            BeforeOptimizerStep on_before_optimizer_step PerBatch
                "Just before the optimizer step (`#[on_before_optimizer_step]`)."
                "Runs the function just before the optimizer step. Filters and options as `on_batch_begin`."
            BatchEnd on_batch_end PerBatch
                "After each training batch's optimizer step, its running logs ready (`#[on_batch_end]`)."
                "Runs the function after each training batch's optimizer step, with the epoch's running logs: `every = 10` fires at batches 10, 20, 30 of every epoch. Filters and options as `on_batch_begin`."
            ValidationBegin on_validation_begin PerEpoch
                "Before the validation pass at the end of each epoch (`#[on_validation_begin]`)."
                "Runs the function before each epoch's validation pass. Filters count epochs."
            ValidationBatchEnd on_validation_batch_end PerValidationBatch
                "After each validation batch (`#[on_validation_batch_end]`)."
                "Runs the function after each validation batch, with the validation run's running logs. Filters count validation batches from 1."
            ValidationEnd on_validation_end PerEpoch
                "After the validation pass; the epoch's logs hold the `val_` metrics (`#[on_validation_end]`)."
                "Runs the function after each epoch's validation pass; the epoch's logs hold the `val_` metrics. Filters count epochs."
            EpochEnd on_epoch_end PerEpoch
                "At the end of each epoch, its logs final (`#[on_epoch_end]`)."
                "Runs the function at the end of each epoch, its logs final. Filters count epochs."
            TrainEnd on_train_end Once
                "Once, when training ends, however it ended but by an error (`#[on_train_end]`)."
                "Runs the function once when training ends, however it ended but by an error.\n\nOptions: `priority`, `group`, `crate`."
            Exception on_exception Once
                "Once, when training fails with an error, which the hook may take (`#[on_exception]`)."
                "Runs the function once when training fails with an error (`&Error` parameter).\n\nOptions: `priority`, `group`, `crate`."
        }
    };
}

/// How often an event happens in a fit, which says what its filters count.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Occurs {
    /// Once per fit: no filter applies.
    Once,
    /// Once per epoch: filters count epochs from 1.
    PerEpoch,
    /// Once per training batch: filters count the batch within its epoch from 1, or the
    /// optimizer step over the fit (`counter = global_step`).
    PerBatch,
    /// Once per validation batch: filters count validation batches from 1.
    PerValidationBatch,
}

macro_rules! define_events {
    ($($variant:ident $attribute:ident $occurs:ident $doc:literal $attr_doc:literal)*) => {
        /// A point in training where hooks run.
        ///
        /// Every event has a 1-based counter that its hooks' filters (`every`, `once`, `before`,
        /// `after`) test:
        ///
        /// | event | counter |
        /// |---|---|
        /// | `TrainBegin`, `TrainEnd`, `Exception` | none: they happen once |
        /// | `EpochBegin`, `ValidationBegin`, `ValidationEnd`, `EpochEnd` | the epoch, from 1 |
        /// | `BatchBegin`, `BeforeBackward`, `AfterBackward`, `BeforeOptimizerStep`, `BatchEnd` | the batch within its epoch, from 1, restarting every epoch (`counter = global_step` switches to the optimizer step over the whole fit, from 1) |
        /// | `ValidationBatchEnd` | the validation batch within its validation run, from 1 |
        ///
        /// So `#[on_batch_end(every = 10)]` fires at batches 10, 20, 30 of every epoch, as the
        /// tutorial's logger does, and `#[on_batch_end(every = 100, counter = global_step)]` at
        /// steps 100, 200, … of the fit.
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        pub enum Event {
            $(#[doc = $doc] $variant,)*
        }

        impl Event {
            /// How many events there are.
            pub const COUNT: usize = [$(stringify!($variant)),*].len();

            /// Every event, in the order they first occur in a fit.
            pub const ALL: [Event; Event::COUNT] = [$(Event::$variant),*];

            /// The attribute that registers a hook for this event (`on_batch_end`).
            pub const fn attribute(self) -> &'static str {
                match self {
                    $(Event::$variant => stringify!($attribute),)*
                }
            }

            /// The variant's name (`BatchEnd`), which also names the event's marker type.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Event::$variant => stringify!($variant),)*
                }
            }

            /// How often the event happens in a fit.
            pub const fn occurs(self) -> Occurs {
                match self {
                    $(Event::$variant => Occurs::$occurs,)*
                }
            }

            /// The event whose attribute is named `attribute` (`on_batch_end`).
            pub fn from_attribute(attribute: &str) -> Option<Event> {
                Event::ALL.into_iter().find(|e| e.attribute() == attribute)
            }
        }
    };
}

for_each_event!(define_events);

impl Event {
    /// Whether the event happens more than once in a fit, so that filters mean something.
    pub const fn repeats(self) -> bool {
        !matches!(self.occurs(), Occurs::Once)
    }

    /// Whether the event is one of a training batch, whose filters may count the global step.
    pub const fn is_training_batch(self) -> bool {
        matches!(self.occurs(), Occurs::PerBatch)
    }

    /// Its position in [`Event::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// What the filters count at this event, for messages.
    pub const fn counts(self) -> &'static str {
        match self.occurs() {
            Occurs::PerBatch => "batches within the epoch",
            Occurs::PerValidationBatch => "validation batches",
            Occurs::PerEpoch => "epochs",
            Occurs::Once => "nothing: it happens once per fit",
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.attribute())
    }
}

/// A filter's conditions as the rules see them: what was set, in plain values.
#[derive(Clone, Copy, Debug, Default)]
pub struct FilterRule<'a> {
    /// `every = N` (`None`: not set).
    pub every: Option<u64>,
    /// `after = N`.
    pub after: Option<u64>,
    /// `before = N`.
    pub before: Option<u64>,
    /// `once = [..]` (`None`: not set).
    pub once: Option<&'a [u64]>,
    /// Whether `when = predicate` is set.
    pub when: bool,
    /// Whether `counter = …` is set, and to the global step.
    pub counter: Option<bool>,
}

/// The option of a filter a rule is about: where the attribute reports the error.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FilterOption {
    /// `every`.
    Every,
    /// `after`.
    After,
    /// `before`.
    Before,
    /// `once`.
    Once,
    /// `when`.
    When,
    /// `counter`.
    Counter,
}

impl FilterOption {
    /// The option's key, as written in an attribute.
    pub const fn key(self) -> &'static str {
        match self {
            FilterOption::Every => "every",
            FilterOption::After => "after",
            FilterOption::Before => "before",
            FilterOption::Once => "once",
            FilterOption::When => "when",
            FilterOption::Counter => "counter",
        }
    }
}

/// A rule a filter breaks at its event: the option at fault and why.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FilterError {
    /// The option to point at.
    pub option: FilterOption,
    /// Whether the error is about the option's value (`every = 0`) rather than its presence.
    pub at_value: bool,
    /// For a list's value (`once = [0, 5]`), the element at fault.
    pub element: Option<usize>,
    /// What is wrong, for the user.
    pub message: String,
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FilterError {}

/// Every rule `filter` breaks at `event`, in the order of the options; empty when it can fire.
///
/// ```
/// use trainmon_events::{check_filter, Event, FilterOption, FilterRule};
///
/// let rule = FilterRule { every: Some(0), ..Default::default() };
/// let errors = check_filter(Event::BatchEnd, &rule);
/// assert_eq!(errors[0].option, FilterOption::Every);
/// assert!(errors[0].message.contains("at least 1"));
/// assert!(check_filter(Event::EpochEnd, &FilterRule { every: Some(5), ..Default::default() }).is_empty());
/// ```
pub fn check_filter(event: Event, filter: &FilterRule<'_>) -> Vec<FilterError> {
    /// Records an error about `option`, returned to add where in a list it is.
    fn error(errors: &mut Vec<FilterError>, option: FilterOption, at_value: bool, message: String) -> &mut FilterError {
        errors.push(FilterError {
            option,
            at_value,
            element: None,
            message,
        });
        errors.last_mut().expect("just pushed")
    }
    let mut errors = Vec::new();
    let attr = event.attribute();
    let counts = event.counts();
    if !event.repeats() {
        let set = [
            (FilterOption::Every, filter.every.is_some()),
            (FilterOption::Once, filter.once.is_some()),
            (FilterOption::After, filter.after.is_some()),
            (FilterOption::Before, filter.before.is_some()),
            (FilterOption::When, filter.when),
            (FilterOption::Counter, filter.counter.is_some()),
        ];
        for (option, _) in set.into_iter().filter(|(_, set)| *set) {
            error(
                &mut errors,
                option,
                false,
                format!(
                    "`{}` does not apply to `#[{attr}]`: it happens once per fit, so it takes no filter",
                    option.key()
                ),
            );
        }
        return errors;
    }
    if filter.every == Some(0) {
        error(
            &mut errors,
            FilterOption::Every,
            true,
            format!("`every` must be at least 1: `every = N` fires at every Nth event; counters count {counts} from 1"),
        );
    }
    if let Some(once) = filter.once {
        if once.is_empty() {
            error(
                &mut errors,
                FilterOption::Once,
                true,
                "`once` needs at least one count: `once = 5` or `once = [1, 5]`".into(),
            );
        }
        if let Some(zero) = once.iter().position(|&n| n == 0) {
            error(
                &mut errors,
                FilterOption::Once,
                true,
                format!("`once` must be at least 1: 0 never happens; counters count {counts} from 1"),
            )
            .element = Some(zero);
        }
        for (other, set) in [
            (FilterOption::Every, filter.every.is_some()),
            (FilterOption::After, filter.after.is_some()),
            (FilterOption::Before, filter.before.is_some()),
        ] {
            if set {
                error(
                    &mut errors,
                    FilterOption::Once,
                    false,
                    format!(
                        "`once` cannot be combined with `{}`: `once` names the exact counts; for a range, use `every` \
                         with `after` and `before`",
                        other.key()
                    ),
                );
            }
        }
    }
    if let Some(before) = filter.before {
        let after = filter.after.unwrap_or(0);
        if before <= after.saturating_add(1) {
            let why = if filter.after.is_some() {
                format!(
                    "`before = {before}` with `after = {after}` never fires: no count is above {after} and below {before}"
                )
            } else {
                format!("`before = {before}` never fires: counts start at 1")
            };
            error(&mut errors, FilterOption::Before, false, why);
        }
    }
    if filter.counter.is_some() && !event.is_training_batch() {
        error(
            &mut errors,
            FilterOption::Counter,
            false,
            format!("`counter` applies to training-batch events; `#[{attr}]` counts {counts}"),
        );
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_consistent() {
        assert_eq!(Event::ALL.len(), Event::COUNT);
        for (i, event) in Event::ALL.into_iter().enumerate() {
            assert_eq!(event.index(), i, "{event}");
            assert_eq!(Event::from_attribute(event.attribute()), Some(event));
            // The attribute is the variant's name in snake case, prefixed `on_`.
            let mut snake = String::from("on");
            for c in event.name().chars() {
                if c.is_ascii_uppercase() {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            assert_eq!(event.attribute(), snake);
        }
        assert_eq!(Event::BeforeOptimizerStep.attribute(), "on_before_optimizer_step");
        assert!(Event::BatchEnd.is_training_batch() && !Event::ValidationBatchEnd.is_training_batch());
        assert!(!Event::Exception.repeats() && Event::ValidationBegin.repeats());
    }

    fn options(event: Event, rule: FilterRule<'_>) -> Vec<FilterOption> {
        check_filter(event, &rule).into_iter().map(|e| e.option).collect()
    }

    #[test]
    fn rules() {
        use FilterOption::*;
        let none = FilterRule::default();
        #[rustfmt::skip]
        let cases: [(Event, FilterRule<'_>, &[FilterOption]); 12] = [
            (Event::TrainBegin, none, &[]),
            (Event::TrainBegin, FilterRule { every: Some(2), when: true, ..none }, &[Every, When]),
            (Event::BatchEnd, FilterRule { every: Some(0), ..none }, &[Every]),
            (Event::BatchEnd, FilterRule { once: Some(&[0]), ..none }, &[Once]),
            (Event::BatchEnd, FilterRule { once: Some(&[]), ..none }, &[Once]),
            (Event::BatchEnd, FilterRule { once: Some(&[3]), every: Some(2), before: Some(9), ..none }, &[Once, Once]),
            (Event::BatchEnd, FilterRule { after: Some(5), before: Some(6), ..none }, &[Before]),
            (Event::BatchEnd, FilterRule { after: Some(5), before: Some(7), ..none }, &[]),
            (Event::BatchEnd, FilterRule { before: Some(1), ..none }, &[Before]),
            (Event::BatchEnd, FilterRule { before: Some(2), ..none }, &[]),
            (Event::EpochEnd, FilterRule { counter: Some(true), ..none }, &[Counter]),
            (Event::BatchBegin, FilterRule { counter: Some(true), ..none }, &[]),
        ];
        for (event, rule, want) in cases {
            assert_eq!(options(event, rule), want, "{event}: {rule:?}");
        }
        let zero = &check_filter(
            Event::BatchEnd,
            &FilterRule {
                once: Some(&[4, 0]),
                ..none
            },
        )[0];
        assert_eq!(
            (zero.option, zero.at_value, zero.element),
            (Once, true, Some(1)),
            "the element at fault"
        );
        let message = &check_filter(Event::ValidationBatchEnd, &FilterRule { every: Some(0), ..none })[0].message;
        assert!(message.contains("validation batches"), "{message}");
    }
}
