//! When a registered hook fires: a check of integer arithmetic on the event's counter.

use std::num::NonZeroU64;

/// Which occurrences of its event a hook runs at.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Filter {
    every: NonZeroU64,
}

impl Filter {
    /// Every occurrence.
    pub const ALWAYS: Filter = Filter { every: NonZeroU64::MIN };

    /// Occurrences `n`, `2n`, `3n`, … of the event's 1-based counter; `None` for `n = 0`.
    pub const fn every(n: u64) -> Option<Filter> {
        match NonZeroU64::new(n) {
            Some(every) => Some(Filter { every }),
            None => None,
        }
    }

    /// The `every` of this filter (1 for [`Filter::ALWAYS`]).
    pub fn period(&self) -> u64 {
        self.every.get()
    }

    /// Whether the hook runs when the event's counter is `count` (1-based).
    #[inline]
    pub fn fires(&self, count: u64) -> bool {
        count % self.every.get() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fires_at_multiples() {
        let cases: [(u64, &[u64], &str); 3] = [
            (1, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], "every = 1 fires always"),
            (10, &[10], "every = 10 over 1..=12"),
            (3, &[3, 6, 9, 12], "every = 3 over 1..=12"),
        ];
        for (n, want, why) in cases {
            let filter = Filter::every(n).unwrap();
            let fired: Vec<u64> = (1..=12).filter(|&c| filter.fires(c)).collect();
            assert_eq!(fired, want, "{why}");
        }
        assert_eq!(Filter::every(0), None, "every = 0 is no filter");
    }
}
