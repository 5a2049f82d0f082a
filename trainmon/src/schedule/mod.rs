//! When a hook runs: the events ([`Event`](event::Event)) and their counters, the filters on
//! them, the specs that name a hook and where it runs, and the priorities that order hooks at
//! one event.

pub(crate) mod event;
pub(crate) mod filter;
pub mod priority;
pub(crate) mod spec;
