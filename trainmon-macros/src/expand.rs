//! Expand: the function as written, plus its registration with trainmon's hook registry.
//!
//! ```text
//! #[on_batch_end(every = 10)] fn log(batch: &BatchLogs, n: Local<u32>) { … }
//! ```
//! becomes the function, unchanged, and
//! ```text
//! const _: () = {
//!     fn __trainmon_hook() -> Box<dyn trainmon::Hook> { /* state + call adapter */ }
//!     inventory::submit! { Registration::new(Event::BatchEnd, 10, 0, "log", module_path!(), …) }
//! };
//! ```
//! Parameter and return types are checked by traits of `trainmon`, in code spanned at each type,
//! so that a wrong type is reported under that type.

use crate::args::{Args, Errors};
use crate::check;
use crate::event::Event;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType};

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

fn register(event: Event, args: &Args, func: &ItemFn) -> TokenStream {
    // Paths into trainmon, spanned where they are used: rustc reports a failed bound of a path
    // expression at its first token, which must be the parameter's type, not the attribute.
    let krate_at = |span: Span| -> TokenStream {
        let path = match &args.krate {
            Some((path, _)) => path.to_token_stream(),
            None => quote!(::trainmon),
        };
        path.into_iter()
            .map(|mut token| {
                token.set_span(span);
                token
            })
            .collect()
    };
    let krate = krate_at(Span::call_site());
    let private = quote!(#krate::__private);
    let ident = &func.sig.ident;
    let variant = event.variant();
    let every = args.every.as_ref().map_or(1, |(n, _)| *n);
    let after = args.after.as_ref().map_or(0, |(n, _)| *n);
    let before = args.before.as_ref().map_or(quote!(u64::MAX), |(n, _)| quote!(#n));
    let once = args.once.as_ref().map_or(&[][..], |(list, _)| list.as_slice());
    let when = match &args.when {
        // Spanned at the path: a function of the wrong type is reported there.
        Some((path, _)) => quote_spanned!(path.span()=> ::core::option::Option::Some(#path)),
        None => quote!(::core::option::Option::None),
    };
    let counter = match args.global_step {
        Some((true, _)) => quote!(GlobalStep),
        _ => quote!(Event),
    };
    let filter = quote! {
        #krate::filter::Filter::__new(#every, #after, #before, &[#(#once),*], #when, #krate::filter::Counter::#counter)
    };
    let priority = args.priority.as_ref().map_or(quote!(0), |(p, _)| p.clone());
    let group = args.group.as_ref().map_or("", |(g, _)| g.as_str());
    let cfgs = func.attrs.iter().filter(|a| a.path().is_ident("cfg"));

    let types: Vec<&syn::Type> = func
        .sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(pat) => Some(&*pat.ty),
            FnArg::Receiver(_) => None,
        })
        .collect();
    // Spanned at their types too: a state's type is its parameter's, and so are its errors.
    let states: Vec<_> = types
        .iter()
        .enumerate()
        .map(|(i, ty)| format_ident!("__s{i}", span = ty.span()))
        .collect();
    // Each of these is spanned at its parameter's type, so a type error lands there.
    let checks = types.iter().map(|ty| {
        let krate = krate_at(ty.span());
        quote_spanned! {ty.span()=>
            #krate::__private::param_at::<#ty, #krate::events::#variant>();
        }
    });
    let inits = types.iter().map(|ty| {
        let krate = krate_at(ty.span());
        quote_spanned! {ty.span()=> <#ty as #krate::__private::HookParam>::init_state() }
    });
    // The resources a hook needs, found by autoref specialization as for `Persist`: no bound
    // that could fail, so a wrong type is reported by the parameter check alone.
    let requires = types.iter().map(|ty| {
        quote! { (&&#private::Require::<#ty>::new()).require(&mut __needs); }
    });
    let fetches = types.iter().zip(&states).map(|(ty, state)| {
        let krate = krate_at(ty.span());
        quote_spanned! {ty.span()=> #krate::__private::fetch::<#ty>(#state, __ctx)? }
    });
    // Resume points keep the `Local` parameters whose type serde handles; which ones is found by
    // autoref specialization on each parameter's type (trainmon::param::Persist).
    let persist = |method: proc_macro2::TokenStream| {
        types
            .iter()
            .zip(&states)
            .enumerate()
            .map(|(index, (ty, state))| {
                quote! { (&&#private::Persist::<#ty>::new()).#method(#state, #index, __saved); }
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
        let krate = krate_at(output.span());
        quote_spanned! {output.span()=> <#output as #krate::__private::IntoControl>::into_control(__out) }
    };
    let location = quote_spanned! {ident.span()=> ::core::line!(), ::core::column!() };

    quote! {
        #(#cfgs)*
        const _: () = {
            fn __trainmon_hook() -> ::std::boxed::Box<dyn #krate::Hook> {
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
                        use #private::{PersistLocal as _, PersistNothing as _, PersistUnserializable as _};
                        let (#(#states,)*) = __state;
                        #(#saves)*
                    },
                    |__state, __saved| {
                        #[allow(unused_imports)]
                        use #private::{PersistLocal as _, PersistNothing as _, PersistUnserializable as _};
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
                #private::Registration::new(
                    #krate::Event::#variant,
                    #filter,
                    #priority,
                    #group,
                    ::core::stringify!(#ident),
                    ::core::module_path!(),
                    ::core::file!(),
                    #location,
                    __trainmon_hook,
                )
            }
        };
    }
}
