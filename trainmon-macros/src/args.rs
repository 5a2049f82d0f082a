//! Parse: the attribute's options, `#[on_batch_end(every = 10, priority = -1)]`.
//!
//! Each option is kept with the span of its key, so that a later check can point at it. Mistakes
//! that do not stop parsing (a zero, a repeat, an option that does not apply) are collected, so
//! that one compile reports them all.

use crate::event::Event;
use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Lit, LitStr, UnOp};

#[derive(Default)]
pub struct Args {
    /// `every = N`: fire when the event's counter is a multiple of N.
    pub every: Option<(u64, Span)>,
    /// `priority = i32`: higher runs first; 0 by default.
    pub priority: Option<(i32, Span)>,
    /// `crate = "path"`: where `trainmon` is, for a renamed dependency.
    pub krate: Option<(syn::Path, Span)>,
}

impl Args {
    /// Parses the options of `event`'s attribute; every mistake found is in the error.
    pub fn parse(event: Event, tokens: TokenStream) -> (Args, Option<syn::Error>) {
        let mut args = Args::default();
        let mut errors = Errors::default();
        let parser = syn::meta::parser(|meta| {
            let key = meta.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
            match key.as_str() {
                "every" => {
                    let value = meta.value()?.parse::<Expr>()?;
                    if !event.repeats() {
                        errors.push(syn::Error::new_spanned(
                            &meta.path,
                            format!(
                                "`every` does not apply to `#[{}]`: it fires once per fit",
                                event.attribute()
                            ),
                        ));
                    }
                    let every = integer::<u64>(&value, "every").and_then(|n| {
                        if n == 0 {
                            Err(syn::Error::new_spanned(
                                &value,
                                format!(
                                    "`every` must be at least 1: `every = N` fires at every Nth event, \
                                     counting {}",
                                    event.counter()
                                ),
                            ))
                        } else {
                            Ok(n)
                        }
                    });
                    set(&mut args.every, every, &meta, &mut errors);
                }
                "priority" => {
                    let value = meta.value()?.parse::<Expr>()?;
                    set(
                        &mut args.priority,
                        integer::<i32>(&value, "priority"),
                        &meta,
                        &mut errors,
                    );
                }
                "crate" => {
                    let value = meta.value()?.parse::<LitStr>()?;
                    set(&mut args.krate, value.parse::<syn::Path>(), &meta, &mut errors);
                }
                _ => {
                    let valid = if event.repeats() {
                        "`every`, `priority`, `crate`"
                    } else {
                        "`priority`, `crate`"
                    };
                    errors.push(meta.error(format!(
                        "unknown option `{}` for `#[{}]`; valid options are {valid}",
                        quote::ToTokens::to_token_stream(&meta.path).to_string().replace(' ', ""),
                        event.attribute()
                    )));
                    // Skip the value, if any, and go on to the next option.
                    if meta.input.peek(syn::Token![=]) {
                        meta.value()?.parse::<Expr>()?;
                    }
                }
            }
            Ok(())
        });
        if let Err(err) = parser.parse2(tokens) {
            errors.push(err);
        }
        (args, errors.into_error())
    }
}

/// Stores an option's value, or the reason it has none; a second occurrence is an error.
fn set<T>(slot: &mut Option<(T, Span)>, value: syn::Result<T>, meta: &ParseNestedMeta, errors: &mut Errors) {
    let key = &meta.path;
    if slot.is_some() {
        let name = key.get_ident().map(|i| i.to_string()).unwrap_or_default();
        errors.push(syn::Error::new_spanned(key, format!("`{name}` is set more than once")));
        return;
    }
    match value {
        Ok(value) => *slot = Some((value, key.span())),
        Err(err) => errors.push(err),
    }
}

/// An integer literal, possibly negative, that fits `T`; anything else is an error naming `key`.
fn integer<T>(expr: &Expr, key: &str) -> syn::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let wrong = || syn::Error::new_spanned(expr, format!("`{key}` takes an integer literal, as in `{key} = 10`"));
    match expr {
        Expr::Lit(ExprLit { lit: Lit::Int(int), .. }) => int
            .base10_parse::<T>()
            .map_err(|e| syn::Error::new_spanned(expr, format!("`{key}` = {}: {e}", int.base10_digits()))),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr: inner,
            ..
        }) => match &**inner {
            Expr::Lit(ExprLit { lit: Lit::Int(int), .. }) => format!("-{}", int.base10_digits())
                .parse::<T>()
                .map_err(|_| syn::Error::new_spanned(expr, format!("`{key}` cannot be negative"))),
            _ => Err(wrong()),
        },
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Err(syn::Error::new_spanned(
            expr,
            format!("`{key}` takes an integer, not a string: write `{key} = {}`", s.value()),
        )),
        _ => Err(wrong()),
    }
}

/// Errors of one item, reported together.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, err: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(err),
            None => self.0 = Some(err),
        }
    }

    pub fn extend(&mut self, err: Option<syn::Error>) {
        if let Some(err) = err {
            self.push(err);
        }
    }

    pub fn has_errors(&self) -> bool {
        self.0.is_some()
    }

    pub fn into_error(self) -> Option<syn::Error> {
        self.0
    }
}
