//! The events of training at which hooks run: [`Event`] (defined once, in `trainmon-events`,
//! for this crate and its attributes), and one marker type per event in [`events`].

pub use trainmon_events::{Event, Occurs};

/// How many events there are.
pub(crate) const EVENTS: usize = Event::COUNT;

/// One type per event, so that the compiler can check which parameters exist at which event.
pub mod events {
    macro_rules! markers {
        ($($variant:ident $attribute:ident $occurs:ident $doc:literal $attr_doc:literal)*) => {$(
            #[doc = $doc]
            #[derive(Debug)]
            pub enum $variant {}
        )*};
    }
    trainmon_events::for_each_event!(markers);

    /// Where hook parameters exist: each type names a set of events.
    pub mod scope {
        use crate::schedule::event::Event;

        /// A set of events, at which some hook parameters exist.
        pub trait Scope {
            /// Whether `event` is in the set.
            fn includes(event: Event) -> bool;
        }

        /// Every event.
        #[derive(Debug)]
        pub enum AnyEvent {}
        /// `on_batch_end` and `on_validation_batch_end`: where batch logs exist.
        #[derive(Debug)]
        pub enum BatchEnds {}
        /// `on_validation_end` and `on_epoch_end`: where an epoch's logs exist.
        #[derive(Debug)]
        pub enum EpochEnds {}
        /// `on_exception`: where the error exists.
        #[derive(Debug)]
        pub enum Exception {}
        /// From a batch's forward pass to its end — `on_before_backward`, `on_after_backward`,
        /// `on_before_optimizer_step`, `on_batch_end`, `on_validation_batch_end` —: where the
        /// batch exists.
        #[derive(Debug)]
        pub enum StepBatches {}

        impl Scope for AnyEvent {
            fn includes(_: Event) -> bool {
                true
            }
        }
        impl Scope for BatchEnds {
            fn includes(event: Event) -> bool {
                matches!(event, Event::BatchEnd | Event::ValidationBatchEnd)
            }
        }
        impl Scope for EpochEnds {
            fn includes(event: Event) -> bool {
                matches!(event, Event::ValidationEnd | Event::EpochEnd)
            }
        }
        impl Scope for Exception {
            fn includes(event: Event) -> bool {
                event == Event::Exception
            }
        }
        impl Scope for StepBatches {
            fn includes(event: Event) -> bool {
                matches!(
                    event,
                    Event::BeforeBackward
                        | Event::AfterBackward
                        | Event::BeforeOptimizerStep
                        | Event::BatchEnd
                        | Event::ValidationBatchEnd
                )
            }
        }
    }

    /// Whether a parameter of this scope exists at event `E`, for the compiler: the same sets
    /// as [`scope::Scope::includes`].
    #[diagnostic::on_unimplemented(
        message = "this hook parameter does not exist in `{E}` hooks",
        label = "not available in this hook",
        note = "`&BatchLogs` exists in `on_batch_end` and `on_validation_batch_end` hooks, `StepBatch<B>` in those and `on_before_backward`, `on_after_backward`, `on_before_optimizer_step` hooks, `&EpochLogs` in `on_validation_end` and `on_epoch_end` hooks, `&Error` in `on_exception` hooks; the other parameters everywhere"
    )]
    pub trait ScopeIncludes<E> {}

    impl<E> ScopeIncludes<E> for scope::AnyEvent {}
    impl ScopeIncludes<BatchEnd> for scope::BatchEnds {}
    impl ScopeIncludes<ValidationBatchEnd> for scope::BatchEnds {}
    impl ScopeIncludes<ValidationEnd> for scope::EpochEnds {}
    impl ScopeIncludes<EpochEnd> for scope::EpochEnds {}
    impl ScopeIncludes<Exception> for scope::Exception {}
    impl ScopeIncludes<BeforeBackward> for scope::StepBatches {}
    impl ScopeIncludes<AfterBackward> for scope::StepBatches {}
    impl ScopeIncludes<BeforeOptimizerStep> for scope::StepBatches {}
    impl ScopeIncludes<BatchEnd> for scope::StepBatches {}
    impl ScopeIncludes<ValidationBatchEnd> for scope::StepBatches {}
}
