//! When a hook fires among its event's occurrences: Ignite's event filters, checked with integer
//! arithmetic on the event's 1-based counter (see [`crate::Event`] for which counter).

use crate::schedule::event::Event;
use crate::state::TrainState;
use std::borrow::Cow;
use trainmon_events::{check_filter, FilterRule};

/// Which counter a training-batch hook's filter counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Counter {
    /// The event's own counter: the batch within its epoch for batch events, the epoch for
    /// epoch events.
    #[default]
    Event,
    /// The optimizer step over the whole fit, from 1 (training-batch events only).
    GlobalStep,
}

/// Which occurrences of its event a hook runs at: all conditions set must hold.
///
/// | condition | fires when the counter `c` … |
/// |---|---|
/// | `every(n)` | is a multiple of `n` |
/// | `after(n)` | is greater than `n` |
/// | `before(n)` | is less than `n` |
/// | `once(list)` | is in `list` (not combined with the others) |
/// | `when(f)` | any, if `f(&TrainState)` is true |
///
/// ```
/// use trainmon::Filter;
///
/// // Batches 20, 30, 40 of each epoch (Ignite's `every=10, after=10, before=50`).
/// let filter = Filter::ALWAYS.every(10).after(10).before(50);
/// let fired: Vec<u64> = (1..=60).filter(|&c| filter.fires_at(c)).collect();
/// assert_eq!(fired, [20, 30, 40]);
/// ```
#[derive(Clone)]
pub struct Filter {
    every: u64,
    after: u64,
    before: u64,
    once: Cow<'static, [u64]>,
    when: Option<fn(&TrainState) -> bool>,
    counter: Counter,
}

impl Filter {
    /// Every occurrence.
    pub const ALWAYS: Filter = Filter {
        every: 1,
        after: 0,
        before: u64::MAX,
        once: Cow::Borrowed(&[]),
        when: None,
        counter: Counter::Event,
    };

    /// Only when the counter is a multiple of `n` (`n` ≥ 1).
    pub fn every(self, n: u64) -> Self {
        Filter { every: n, ..self }
    }

    /// Only when the counter is greater than `n`.
    pub fn after(self, n: u64) -> Self {
        Filter { after: n, ..self }
    }

    /// Only when the counter is less than `n`.
    pub fn before(self, n: u64) -> Self {
        Filter { before: n, ..self }
    }

    /// Only at these counts.
    pub fn once(self, counts: impl Into<Cow<'static, [u64]>>) -> Self {
        Filter {
            once: counts.into(),
            ..self
        }
    }

    /// Only when `predicate` holds for the training state.
    pub fn when(self, predicate: fn(&TrainState) -> bool) -> Self {
        Filter {
            when: Some(predicate),
            ..self
        }
    }

    /// Which counter the conditions count (training-batch events only).
    pub fn counter(self, counter: Counter) -> Self {
        Filter { counter, ..self }
    }

    /// The counter this filter counts.
    pub fn counts(&self) -> Counter {
        self.counter
    }

    /// Whether the hook runs when the counter is `count`, before any `when` predicate.
    #[inline]
    pub fn fires_at(&self, count: u64) -> bool {
        count > self.after
            && count < self.before
            && count % self.every == 0
            && (self.once.is_empty() || self.once.contains(&count))
    }

    /// Whether the hook runs at an occurrence of its event: the counters of this occurrence
    /// (the event's own, and the global step) and the training state for `when`.
    #[inline]
    pub(crate) fn fires(&self, own: u64, global: u64, state: &TrainState) -> bool {
        let count = match self.counter {
            Counter::Event => own,
            Counter::GlobalStep => global,
        };
        self.fires_at(count) && self.when.is_none_or(|when| when(state))
    }

    /// Why this filter cannot be used on `event`, if it can't: the rules the attributes check
    /// at compile time (one piece of code, `trainmon_events::check_filter`), for filters built
    /// at run time.
    pub fn check(&self, event: Event) -> Result<(), String> {
        let rule = FilterRule {
            every: (self.every != 1).then_some(self.every),
            after: (self.after != 0).then_some(self.after),
            before: (self.before != u64::MAX).then_some(self.before),
            once: (!self.once.is_empty()).then_some(&*self.once),
            when: self.when.is_some(),
            counter: (self.counter == Counter::GlobalStep).then_some(true),
        };
        match check_filter(event, &rule).into_iter().next() {
            Some(error) => Err(error.message),
            None => Ok(()),
        }
    }
}

impl Default for Filter {
    fn default() -> Self {
        Filter::ALWAYS
    }
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("Filter");
        if self.every != 1 {
            s.field("every", &self.every);
        }
        if self.after != 0 {
            s.field("after", &self.after);
        }
        if self.before != u64::MAX {
            s.field("before", &self.before);
        }
        if !self.once.is_empty() {
            s.field("once", &self.once);
        }
        if self.when.is_some() {
            s.field("when", &"fn(&TrainState) -> bool");
        }
        if self.counter != Counter::Event {
            s.field("counter", &self.counter);
        }
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(filter: &Filter) -> Vec<u64> {
        (1..=12).filter(|&c| filter.fires_at(c)).collect()
    }

    #[test]
    fn conditions_match_ignites_filters() {
        let cases: [(Filter, &[u64], &str); 8] = [
            (
                Filter::ALWAYS,
                &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
                "no condition fires always",
            ),
            (Filter::ALWAYS.every(10), &[10], "every = 10 over 1..=12"),
            (Filter::ALWAYS.every(3), &[3, 6, 9, 12], "every = 3"),
            (Filter::ALWAYS.after(9), &[10, 11, 12], "after = 9 is strictly after"),
            (Filter::ALWAYS.before(4), &[1, 2, 3], "before = 4 is strictly before"),
            (
                Filter::ALWAYS.after(2).before(9).every(2),
                &[4, 6, 8],
                "a range with every",
            ),
            (Filter::ALWAYS.once(vec![1, 5, 12]), &[1, 5, 12], "once = [1, 5, 12]"),
            (Filter::ALWAYS.once(&[7][..]), &[7], "once = 7"),
        ];
        for (filter, want, why) in cases {
            assert_eq!(fired(&filter), want, "{why}");
        }
    }

    #[test]
    fn impossible_filters_are_refused() {
        let cases: [(Filter, Event, &str); 7] = [
            (Filter::ALWAYS.every(0), Event::EpochEnd, "at least 1"),
            (Filter::ALWAYS.every(2), Event::TrainBegin, "once per fit"),
            (
                Filter::ALWAYS.once(vec![3]).every(2),
                Event::BatchEnd,
                "cannot be combined",
            ),
            (Filter::ALWAYS.once(vec![0]), Event::BatchEnd, "0 never happens"),
            (Filter::ALWAYS.after(5).before(6), Event::BatchEnd, "never fires"),
            (Filter::ALWAYS.before(1), Event::BatchEnd, "never fires"),
            (
                Filter::ALWAYS.counter(Counter::GlobalStep),
                Event::EpochEnd,
                "training-batch events",
            ),
        ];
        for (filter, event, want) in cases {
            let err = filter.check(event).unwrap_err();
            assert!(err.contains(want), "{filter:?} at {event}: {err}");
        }
        assert_eq!(
            Filter::ALWAYS.after(5).before(7).check(Event::BatchEnd),
            Ok(()),
            "6 fires"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Ignite's filters, written the plain way: the reference `fires_at` must agree with.
        fn reference(every: u64, after: u64, before: u64, once: &[u64], count: u64) -> bool {
            if !once.is_empty() {
                return once.contains(&count);
            }
            count % every == 0 && count > after && count < before
        }

        proptest! {
            #[test]
            fn ranges_agree_with_the_reference(
                every in 1u64..50,
                after in 0u64..200,
                span in 2u64..300,
                count in 1u64..1000,
            ) {
                let before = after + span;
                let filter = Filter::ALWAYS.every(every).after(after).before(before);
                prop_assert_eq!(filter.fires_at(count), reference(every, after, before, &[], count));
                prop_assert!(filter.check(Event::BatchEnd).is_ok());
            }

            #[test]
            fn once_lists_agree_with_the_reference(
                once in proptest::collection::vec(1u64..100, 1..8),
                count in 1u64..120,
            ) {
                let filter = Filter::ALWAYS.once(once.clone());
                prop_assert_eq!(filter.fires_at(count), reference(1, 0, u64::MAX, &once, count));
            }
        }
    }
}
