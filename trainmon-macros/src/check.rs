//! Check: the function must be something the training loop can call as a hook.
//!
//! Each mistake is reported under its own token (`async`, the generic parameter, `self`, …);
//! parameter and return *types* are checked by the compiler through traits of `trainmon`, with
//! errors spanned at the type (see `expand.rs`).

use crate::args::Errors;
use syn::{FnArg, GenericParam, ItemFn};
use trainmon_events::Event;

pub fn signature(event: Event, func: &ItemFn) -> Option<syn::Error> {
    let sig = &func.sig;
    let attr = event.attribute();
    let mut errors = Errors::default();
    let mut error = |tokens: &dyn quote::ToTokens, msg: String| {
        errors.push(syn::Error::new_spanned(tokens, msg));
    };
    if let Some(token) = &sig.asyncness {
        error(
            token,
            format!("`#[{attr}]` hooks cannot be `async`: the training loop calls them in line, between batches"),
        );
    }
    if let Some(token) = &sig.constness {
        error(token, format!("`#[{attr}]` hooks cannot be `const fn`"));
    }
    if let Some(token) = &sig.unsafety {
        error(
            token,
            format!("`#[{attr}]` hooks cannot be `unsafe fn`: the training loop calls them as safe functions"),
        );
    }
    for param in &sig.generics.params {
        match param {
            GenericParam::Lifetime(_) => {}
            GenericParam::Type(_) | GenericParam::Const(_) => error(
                param,
                format!("`#[{attr}]` hooks cannot be generic: the training loop calls one concrete function"),
            ),
        }
    }
    if let Some(variadic) = &sig.variadic {
        error(variadic, format!("`#[{attr}]` hooks cannot be variadic"));
    }
    for input in &sig.inputs {
        if let FnArg::Receiver(receiver) = input {
            error(
                receiver,
                format!(
                    "`#[{attr}]` hooks are free functions, not methods: remove `self` (keep state in a \
                     `Local<T>` parameter)"
                ),
            );
        }
    }
    errors.into_error()
}
