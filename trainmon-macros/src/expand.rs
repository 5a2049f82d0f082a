//! Expand: the function as written, plus its registration with trainmon's hook registry.
//!
//! ```text
//! #[on_batch_end(every = 10)] fn log(batch: &BatchLogs, n: Local<u32>) { … }
//! ```
//! becomes the function, unchanged, and
//! ```text
//! const _: () = {
//!     fn __trainmon_hook() -> Box<dyn Hook> { /* state + call adapter */ }
//!     inventory::submit! {
//!         Registration::new(Event::BatchEnd, "log", __trainmon_hook).every(10).defined_at(module_path!(), …)
//!     }
//! };
//! ```
//! Everything the expansion names is under `trainmon::__private`. Where `trainmon` is: the
//! attribute's `crate = "path"`, else the name the calling crate's `Cargo.toml` gives it (a
//! renamed dependency, `tm = { package = "trainmon" }`, is found there), else `::trainmon`.
//! Parameter and return types are checked by traits of `trainmon`, in code spanned at each type,
//! so that a wrong type is reported under that type.

use crate::args::{Args, Errors};
use crate::check;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat, ReturnType};
use trainmon_events::Event;

pub fn hook(event: Event, args: TokenStream, item: TokenStream) -> TokenStream {
    let (args, args_error) = Args::parse(event, args);
    let func = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            // Not a function: keep the item for the IDE, and say what the attribute applies to.
            let mut errors = Errors::default();
            errors.push(syn::Error::new_spanned(
                &item,
                format!("`#[{}]` applies to free functions only", event.attribute()),
            ));
            errors.extend(args_error);
            return with_error(item, errors);
        }
    };
    let mut errors = Errors::default();
    errors.extend(args_error);
    errors.extend(check::signature(event, &func));
    if errors.has_errors() {
        return with_error(func.into_token_stream(), errors);
    }
    let registration = register(event, &args, &func);
    quote! {
        #func
        #registration
    }
}

fn with_error(item: TokenStream, errors: Errors) -> TokenStream {
    let error = errors.into_error().map(syn::Error::into_compile_error);
    quote! {
        #item
        #error
    }
}

/// The path of `trainmon` in the calling crate, when the attribute does not say: the name its
/// `Cargo.toml` gives the dependency (renamed or not), `::trainmon` when that cannot be read; an
/// error that says what to do when trainmon is not a dependency of the crate at all (reached
/// through another crate's re-export).
fn default_crate(event: Event) -> Result<TokenStream, syn::Error> {
    trainmon_path(&format!("`#[{}(crate = \"my_facade::trainmon\")]`", event.attribute()))
}

/// The path of `trainmon` in the calling crate, as [`default_crate`] finds it; `with_crate`
/// shows how to say where trainmon is, for the error.
pub fn trainmon_path(with_crate: &str) -> Result<TokenStream, syn::Error> {
    use proc_macro_crate::{crate_name, Error, FoundCrate};
    match crate_name("trainmon") {
        Ok(FoundCrate::Name(name)) => {
            let ident = syn::Ident::new(&name, Span::call_site());
            Ok(quote!(::#ident))
        }
        Err(Error::CrateNotFound { path, .. }) => Err(syn::Error::new(
            Span::call_site(),
            format!(
                "`trainmon` is not a dependency in {}: add it (`cargo add trainmon`), or say where trainmon is \
                 with `crate`, as in {with_crate}",
                path.display(),
            ),
        )),
        // Trainmon's own tests and examples (`extern crate self as trainmon` in the library),
        // or a manifest that cannot be read: the usual name.
        Ok(FoundCrate::Itself) | Err(_) => Ok(quote!(::trainmon)),
    }
}

fn register(event: Event, args: &Args, func: &ItemFn) -> TokenStream {
    // Paths into trainmon, spanned where they are used: rustc reports a failed bound of a path
    // expression at its first token, which must be the parameter's type, not the attribute.
    let base = match &args.krate {
        Some((path, _)) => path.to_token_stream(),
        None => match default_crate(event) {
            Ok(path) => path,
            Err(err) => return err.into_compile_error(),
        },
    };
    let private_at = |span: Span| -> TokenStream {
        let path: TokenStream = base
            .clone()
            .into_iter()
            .map(|mut token| {
                token.set_span(span);
                token
            })
            .collect();
        quote_spanned!(span=> #path::__private)
    };
    let private = private_at(Span::call_site());
    let ident = &func.sig.ident;
    let variant = syn::Ident::new(event.name(), Span::call_site());

    // The registration, by named builder calls; options not given keep their defaults.
    let mut options = Vec::new();
    if let Some((every, _)) = &args.every {
        options.push(quote!(.every(#every)));
    }
    if let Some((after, _)) = &args.after {
        options.push(quote!(.after(#after)));
    }
    if let Some((before, _)) = &args.before {
        options.push(quote!(.before(#before)));
    }
    if let Some((once, _)) = &args.once {
        options.push(quote!(.once(&[#(#once),*])));
    }
    if let Some((path, _)) = &args.when {
        // Spanned at the path: a function of the wrong type is reported there.
        options.push(quote_spanned!(path.span()=> .when(#path)));
    }
    if let Some((true, _)) = &args.global_step {
        options.push(quote!(.global_step()));
    }
    if let Some((priority, _)) = &args.priority {
        options.push(quote!(.priority(#priority)));
    }
    if let Some((group, _)) = &args.group {
        options.push(quote!(.group(#group)));
    }
    if let Some((true, _)) = &args.rank_zero {
        options.push(quote!(.rank_zero()));
    }
    let cfgs = func.attrs.iter().filter(|a| a.path().is_ident("cfg"));

    let params: Vec<(&syn::Type, String)> = func
        .sig
        .inputs
        .iter()
        .enumerate()
        .filter_map(|(i, arg)| match arg {
            FnArg::Typed(pat) => {
                // Resume points keep a `Local` by its parameter's name (and type).
                let name = match &*pat.pat {
                    Pat::Ident(ident) => ident.ident.to_string(),
                    _ => format!("#{i}"),
                };
                Some((&*pat.ty, name))
            }
            FnArg::Receiver(_) => None,
        })
        .collect();
    let types: Vec<&syn::Type> = params.iter().map(|(ty, _)| *ty).collect();
    // Spanned at their types too: a state's type is its parameter's, and so are its errors.
    let states: Vec<_> = types
        .iter()
        .enumerate()
        .map(|(i, ty)| format_ident!("__s{i}", span = ty.span()))
        .collect();
    // Each of these is spanned at its parameter's type, so a type error lands there.
    let checks = types.iter().map(|ty| {
        let private = private_at(ty.span());
        quote_spanned! {ty.span()=>
            #private::param_at::<#ty, #private::events::#variant>();
        }
    });
    let inits = types.iter().map(|ty| {
        let private = private_at(ty.span());
        // Through a function, as `fetch`, and with the type's tokens all at its first one: a type
        // that is no hook parameter fails this bound where it fails the check's, one error.
        let ty = at(ty, ty.span());
        quote_spanned! {ty.span()=> #private::init_state::<#ty>() }
    });
    // The resources a hook needs, found by autoref specialization as for `Persist`: no bound
    // that could fail, so a wrong type is reported by the parameter check alone.
    let requires = types.iter().map(|ty| {
        quote! { (&&#private::Require::<#ty>::new()).require(&mut __needs); }
    });
    let fetches = types.iter().zip(&states).map(|(ty, state)| {
        let private = private_at(ty.span());
        let ty = at(ty, ty.span());
        quote_spanned! {ty.span()=> #private::fetch::<#ty>(#state, __ctx)? }
    });
    // Resume points keep the `Local` parameters, by name, through `HookParam::save` and `load`
    // (as a closure's, by place); called by autoref specialization (trainmon's `Persist`), so
    // that a type that is no hook parameter adds no error to the parameter check's.
    let persist = |method: TokenStream| {
        params
            .iter()
            .zip(&states)
            .map(|((ty, name), state)| {
                quote! { (&&#private::Persist::<#ty>::new()).#method(#state, #name, __saved); }
            })
            .collect::<Vec<_>>()
    };
    let saves = persist(quote!(save));
    let loads = persist(quote!(load));
    let output = match &func.sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    };
    let into_control = {
        let private = private_at(output.span());
        quote_spanned! {output.span()=> <#output as #private::IntoControl>::into_control(__out) }
    };
    let location = quote_spanned! {ident.span()=> ::core::line!(), ::core::column!() };

    quote! {
        #(#cfgs)*
        #[doc(hidden)]
        #[allow(non_snake_case, unused_qualifications, clippy::all, clippy::pedantic, clippy::nursery)]
        const _: () = {
            #[doc(hidden)]
            fn __trainmon_hook() -> ::std::boxed::Box<dyn #private::Hook> {
                #(#checks)*
                #private::fn_hook(
                    (#(#inits,)*),
                    |__state, __ctx| {
                        let (#(#states,)*) = __state;
                        let __out = #ident(#(#fetches),*);
                        #into_control
                    },
                    |__state, __saved| {
                        #[allow(unused_imports)]
                        use #private::{PersistNothing as _, PersistParam as _};
                        let (#(#states,)*) = __state;
                        #(#saves)*
                    },
                    |__state, __saved| {
                        #[allow(unused_imports)]
                        use #private::{PersistNothing as _, PersistParam as _};
                        let (#(#states,)*) = __state;
                        #(#loads)*
                    },
                    {
                        #[allow(unused_imports)]
                        use #private::{RequireNothing as _, RequireResource as _};
                        #[allow(unused_mut)]
                        let mut __needs = ::std::vec::Vec::new();
                        #(#requires)*
                        __needs
                    },
                )
            }
            #private::inventory::submit! {
                #private::Registration::new(#private::Event::#variant, ::core::stringify!(#ident), __trainmon_hook)
                    #(#options)*
                    .defined_at(::core::module_path!(), ::core::file!(), #location)
            }
        };
    }
}

/// `ty`'s tokens, each at `span` (a group's, and its contents', too).
fn at(ty: &syn::Type, span: proc_macro2::Span) -> TokenStream {
    fn respan(tokens: TokenStream, span: proc_macro2::Span) -> TokenStream {
        tokens
            .into_iter()
            .map(|token| match token {
                proc_macro2::TokenTree::Group(group) => {
                    let mut inner = proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                    inner.set_span(span);
                    proc_macro2::TokenTree::Group(inner)
                }
                mut other => {
                    other.set_span(span);
                    other
                }
            })
            .collect()
    }
    respan(ty.to_token_stream(), span)
}
