//! Parse: the attribute's options, `#[on_batch_end(every = 10, after = 20, priority = -1)]`.
//!
//! Each option is kept with the span of its key (and, for counts, of its value), so that a check
//! can point at it. Mistakes that do not stop parsing (a repeat, a zero, an option that does not
//! apply, two options that contradict each other) are collected, so that one compile reports
//! them all. The filter rules are `trainmon_events::check_filter`'s, which `trainmon` applies
//! to the filters of hooks added at run time.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, ExprArray, ExprLit, ExprUnary, Lit, LitStr, UnOp};
use trainmon_events::{check_filter, Event, FilterOption, FilterRule};

/// An option's value and the span of its key.
pub type Opt<T> = Option<(T, Span)>;

#[derive(Default)]
pub struct Args {
    /// `every = N`: fire when the counter is a multiple of N.
    pub every: Opt<u64>,
    /// `once = N` or `once = [N, …]`: fire at these counts only.
    pub once: Opt<Vec<u64>>,
    /// `after = N`: fire when the counter is greater than N.
    pub after: Opt<u64>,
    /// `before = N`: fire when the counter is less than N.
    pub before: Opt<u64>,
    /// `when = path`: fire when `path(&TrainState)` is true.
    pub when: Opt<syn::Path>,
    /// `counter = global_step`: count optimizer steps over the fit instead of batches.
    pub global_step: Opt<bool>,
    /// `priority = i32`: higher runs first; 0 by default. A literal is checked here; a constant
    /// expression (`trainmon::priority::CHECKPOINT - 1`) is checked by the compiler as an `i32`.
    pub priority: Opt<TokenStream>,
    /// `group = "name"`: for selecting hooks at run time.
    pub group: Opt<String>,
    /// `rank = 0`: in a data-parallel fit, only rank 0 runs the hook.
    pub rank_zero: Opt<bool>,
    /// `crate = "path"`: where `trainmon` is, for a renamed dependency.
    pub krate: Opt<syn::Path>,
    /// The span of each count option's value (`every = 0`: the `0`), for rules about values.
    values: Vec<(FilterOption, Span)>,
    /// The spans of `once`'s counts.
    once_elements: Vec<Span>,
}

impl Args {
    /// Parses the options of `event`'s attribute; every mistake found is in the error.
    pub fn parse(event: Event, tokens: TokenStream) -> (Args, Option<syn::Error>) {
        let mut args = Args::default();
        let mut errors = Errors::default();
        let attr = event.attribute();
        let parser = syn::meta::parser(|meta| {
            let key = meta.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
            match key.as_str() {
                "every" => {
                    let value = meta.value()?.parse::<Expr>()?;
                    args.values.push((FilterOption::Every, value.span()));
                    set(&mut args.every, integer::<u64>(&value, "every"), &meta, &mut errors);
                }
                "after" => {
                    let value = meta.value()?.parse::<Expr>()?;
                    set(&mut args.after, integer::<u64>(&value, "after"), &meta, &mut errors);
                }
                "before" => {
                    let value = meta.value()?.parse::<Expr>()?;
                    set(&mut args.before, integer::<u64>(&value, "before"), &meta, &mut errors);
                }
                "once" => {
                    let value = meta.value()?.parse::<Expr>()?;
                    args.values.push((FilterOption::Once, value.span()));
                    args.once_elements = match peel(&value) {
                        Expr::Array(ExprArray { elems, .. }) => elems.iter().map(|e| e.span()).collect(),
                        single => vec![single.span()],
                    };
                    let once = match peel(&value) {
                        Expr::Array(ExprArray { elems, .. }) => elems
                            .iter()
                            .map(|e| integer::<u64>(e, "once"))
                            .collect::<syn::Result<Vec<u64>>>(),
                        single => integer::<u64>(single, "once").map(|n| vec![n]),
                    };
                    set(&mut args.once, once, &meta, &mut errors);
                }
                "when" => {
                    let value = meta.value()?.parse::<Expr>()?;
                    let path = match peel(&value) {
                        Expr::Path(path) => Ok(path.path.clone()),
                        other => Err(syn::Error::new_spanned(
                            other,
                            "`when` takes the path of a function `fn(&TrainState) -> bool`, as in `when = is_warm`",
                        )),
                    };
                    set(&mut args.when, path, &meta, &mut errors);
                }
                "counter" => {
                    let value = meta.value()?.parse::<Expr>()?;
                    let counter = match peel(&value) {
                        Expr::Path(p) if p.path.is_ident("global_step") => Ok(true),
                        Expr::Path(p) if p.path.is_ident("batch") => Ok(false),
                        other => Err(syn::Error::new_spanned(
                            other,
                            "`counter` is `batch` (the batch within its epoch, the default) or `global_step` \
                             (the optimizer step over the whole fit)",
                        )),
                    };
                    set(&mut args.global_step, counter, &meta, &mut errors);
                }
                "priority" => {
                    let value = meta.value()?.parse::<Expr>()?;
                    let priority = match peel(&value) {
                        Expr::Lit(_) | Expr::Unary(_) => {
                            integer::<i32>(&value, "priority").map(|p| quote::ToTokens::to_token_stream(&p))
                        }
                        Expr::Path(_) | Expr::Binary(_) | Expr::Paren(_) => {
                            // Spanned at the expression: a wrong type is reported there.
                            let span = value.span();
                            Ok(quote::quote_spanned!(span=> { const P: i32 = #value; P }))
                        }
                        _ => Err(syn::Error::new_spanned(
                            &value,
                            "`priority` takes an integer or a constant, as in `priority = 10` or \
                             `priority = trainmon::priority::CHECKPOINT - 1`",
                        )),
                    };
                    set(&mut args.priority, priority, &meta, &mut errors);
                }
                "group" => {
                    let value = meta.value()?.parse::<LitStr>()?;
                    let group = if value.value().is_empty() {
                        Err(syn::Error::new_spanned(&value, "`group` needs a name"))
                    } else {
                        Ok(value.value())
                    };
                    set(&mut args.group, group, &meta, &mut errors);
                }
                "rank" => {
                    let value = meta.value()?.parse::<Expr>()?;
                    let rank = match integer::<u64>(&value, "rank") {
                        Ok(0) => Ok(true),
                        Ok(_) | Err(_) => Err(syn::Error::new_spanned(
                            &value,
                            "`rank` takes only `0`: the hook runs on rank 0 alone in a data-parallel fit (without \
                             the option, every rank runs it)",
                        )),
                    };
                    set(&mut args.rank_zero, rank, &meta, &mut errors);
                }
                "crate" => {
                    let value = meta.value()?.parse::<LitStr>()?;
                    set(&mut args.krate, value.parse::<syn::Path>(), &meta, &mut errors);
                }
                _ => {
                    let valid: &[&str] = if event.is_training_batch() {
                        &[
                            "every", "once", "after", "before", "when", "counter", "priority", "group", "rank", "crate",
                        ]
                    } else if event.repeats() {
                        &[
                            "every", "once", "after", "before", "when", "priority", "group", "rank", "crate",
                        ]
                    } else {
                        &["priority", "group", "rank", "crate"]
                    };
                    let given = quote::ToTokens::to_token_stream(&meta.path)
                        .to_string()
                        .replace(' ', "");
                    let listed: Vec<String> = valid.iter().map(|v| format!("`{v}`")).collect();
                    let listed = listed.join(", ");
                    errors.push(meta.error(match closest(&given, valid) {
                        Some(option) => format!(
                            "unknown option `{given}` for `#[{attr}]`: did you mean `{option}`? The valid options are \
                             {listed}"
                        ),
                        None => format!("unknown option `{given}` for `#[{attr}]`; valid options are {listed}"),
                    }));
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
        args.check_rules(event, &mut errors);
        (args, errors.into_error())
    }

    /// The filter rules of `trainmon_events`, each error under the option (or value) at fault.
    fn check_rules(&self, event: Event, errors: &mut Errors) {
        let rule = FilterRule {
            every: self.every.as_ref().map(|(n, _)| *n),
            after: self.after.as_ref().map(|(n, _)| *n),
            before: self.before.as_ref().map(|(n, _)| *n),
            once: self.once.as_ref().map(|(list, _)| list.as_slice()),
            when: self.when.is_some(),
            counter: self.global_step.as_ref().map(|(global, _)| *global),
        };
        for error in check_filter(event, &rule) {
            let key = match error.option {
                FilterOption::Every => self.every.as_ref().map(|(_, s)| *s),
                FilterOption::After => self.after.as_ref().map(|(_, s)| *s),
                FilterOption::Before => self.before.as_ref().map(|(_, s)| *s),
                FilterOption::Once => self.once.as_ref().map(|(_, s)| *s),
                FilterOption::When => self.when.as_ref().map(|(_, s)| *s),
                FilterOption::Counter => self.global_step.as_ref().map(|(_, s)| *s),
            };
            let value = self.values.iter().find(|(o, _)| *o == error.option).map(|(_, s)| *s);
            let element = error.element.and_then(|i| self.once_elements.get(i).copied());
            let span = if error.at_value { element.or(value).or(key) } else { key };
            errors.push(syn::Error::new(span.unwrap_or_else(Span::call_site), error.message));
        }
    }
}

/// Stores an option's value, or the reason it has none; a second occurrence is an error.
fn set<T>(slot: &mut Opt<T>, value: syn::Result<T>, meta: &ParseNestedMeta, errors: &mut Errors) {
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
    match peel(expr) {
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
            match s.value().trim().parse::<i64>() {
                Ok(n) => format!("`{key}` takes an integer, not a string: write `{key} = {n}`"),
                Err(_) => format!("`{key}` takes an integer literal, not a string, as in `{key} = 10`"),
            },
        )),
        _ => Err(wrong()),
    }
}

/// The expression inside the invisible group that a `macro_rules!` fragment (`$every:literal`)
/// arrives in.
fn peel(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(group) => peel(&group.expr),
        other => other,
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

/// The option among `valid` that `given` is a slip of — two edits at most (a letter missing,
/// extra, wrong, or two swapped), and fewer than its length —, if there is one.
fn closest<'v>(given: &str, valid: &[&'v str]) -> Option<&'v str> {
    valid
        .iter()
        .map(|option| (edits(given, option), *option))
        .filter(|(n, option)| *n <= 2 && *n < option.len().min(given.len()))
        .min_by_key(|(n, _)| *n)
        .map(|(_, option)| option)
}

/// The optimal string alignment distance between `a` and `b`: insertions, deletions,
/// substitutions and swaps of two neighbours.
fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod slips {
    use super::closest;

    #[test]
    fn slips_of_an_option_are_named() {
        let valid = ["every", "once", "after", "before", "priority", "group"];
        for (given, want) in [
            ("evry", Some("every")),
            ("eveyr", Some("every")),
            ("prority", Some("priority")),
            ("befroe", Some("before")),
            ("grup", Some("group")),
            ("size", None),
            ("on", None),
        ] {
            assert_eq!(closest(given, &valid), want, "{given}");
        }
    }
}
