//! Attribute macros of [trainmon](https://docs.rs/trainmon). Use them through `trainmon`, which
//! re-exports them: `use trainmon::prelude::*;`.
//!
//! Each attribute marks a free function as a hook of one event. The macro checks the function
//! (parse → check → expand), leaves it as written, and registers it with the hook registry of
//! `trainmon`, so that `Trainer::fit` finds and calls it. The events, their attributes and the
//! rules of their filters come from `trainmon-events`, which `trainmon` shares.

mod args;
mod batch;
mod check;
mod expand;

use proc_macro::TokenStream;
use trainmon_events::Event;

macro_rules! attributes {
    ($($variant:ident $attribute:ident $occurs:ident $doc:literal $attr_doc:literal)*) => {$(
        #[doc = $attr_doc]
        #[proc_macro_attribute]
        pub fn $attribute(args: TokenStream, item: TokenStream) -> TokenStream {
            expand::hook(Event::$variant, args.into(), item.into()).into()
        }
    )*};
}

trainmon_events::for_each_event!(attributes);

/// Derives `trainmon::Batch` for a struct of batches (tensors, tuples, `Vec`s, maps of them):
/// its fields are the batch's parts, by name. A field marked `#[batch(keep)]` is cloned as it is
/// instead of moved to the device; `#[batch(crate = "path")]` on the struct says where
/// trainmon is.
#[proc_macro_derive(Batch, attributes(batch))]
pub fn derive_batch(item: TokenStream) -> TokenStream {
    batch::derive(item.into()).into()
}
