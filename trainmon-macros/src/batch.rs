//! `#[derive(Batch)]`: a struct of batches (tensors, tuples, maps… of them) is a batch, its
//! fields named by their names (`input_ids`) or positions (`0`). A field marked
//! `#[batch(keep)]` is cloned as it is (lengths, ids, strings). `#[batch(crate = "path")]` on
//! the struct says where trainmon is, as the hook attributes' `crate` does.
//!
//! ```text
//! #[derive(Batch)] struct LmBatch { input_ids: Tensor, #[batch(keep)] lengths: Vec<usize> }
//! ```
//! becomes
//! ```text
//! impl trainmon::Batch for LmBatch {
//!     fn for_each_tensor(&self, name, visit) { Batch::for_each_tensor(&self.input_ids, &part_name(name, "input_ids"), visit); }
//!     fn to_device(&self, device, non_blocking) { Ok(Self { input_ids: Batch::to_device(&self.input_ids, …)?, lengths: Clone::clone(&self.lengths) }) }
//! }
//! ```
//! with each field's calls spanned at its type, so that a field that is not a batch is
//! reported under its type.

use crate::expand::trainmon_path;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitStr, Path};

pub fn derive(input: TokenStream) -> TokenStream {
    match expand(input) {
        Ok(tokens) => tokens,
        Err(err) => err.into_compile_error(),
    }
}

/// What `#[batch(…)]` on a field says.
#[derive(Default)]
struct FieldOptions {
    keep: bool,
}

fn field_options(field: &syn::Field) -> syn::Result<FieldOptions> {
    let mut options = FieldOptions::default();
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("batch")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("keep") {
                if options.keep {
                    return Err(meta.error("`keep` is given twice"));
                }
                options.keep = true;
                Ok(())
            } else {
                Err(meta.error("unknown option of a batch's field: the option is `keep` (a field cloned as it is, not moved to the device)"))
            }
        })?;
    }
    Ok(options)
}

/// The `crate = "path"` of `#[batch(…)]` on the struct, if given.
fn struct_crate(input: &DeriveInput) -> syn::Result<Option<Path>> {
    let mut krate = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("batch")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let lit: LitStr = meta.value()?.parse()?;
                krate = Some(lit.parse::<Path>()?);
                Ok(())
            } else {
                Err(meta.error("unknown option of a batch: the option is `crate = \"path\"` (where trainmon is)"))
            }
        })?;
    }
    Ok(krate)
}

fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(input)?;
    let fields = match &input.data {
        Data::Struct(data) => &data.fields,
        Data::Enum(data) => {
            return Err(syn::Error::new(
                data.enum_token.span(),
                "`#[derive(Batch)]` applies to structs: a batch's parts are its fields",
            ))
        }
        Data::Union(data) => {
            return Err(syn::Error::new(
                data.union_token.span(),
                "`#[derive(Batch)]` applies to structs: a batch's parts are its fields",
            ))
        }
    };
    let base = match struct_crate(&input)? {
        Some(path) => path.to_token_stream(),
        None => trainmon_path("`#[batch(crate = \"my_facade::trainmon\")]`")?,
    };
    let private = quote!(#base::__private);
    let mut visits = Vec::new();
    let mut moves = Vec::new();
    let mut errors: Option<syn::Error> = None;
    for (i, field) in fields.iter().enumerate() {
        let options = match field_options(field) {
            Ok(options) => options,
            Err(err) => {
                match &mut errors {
                    Some(all) => all.combine(err),
                    None => errors = Some(err),
                }
                continue;
            }
        };
        let (member, name) = match &field.ident {
            Some(ident) => (ident.to_token_stream(), ident.to_string()),
            None => {
                let index = syn::Index::from(i);
                (index.to_token_stream(), i.to_string())
            }
        };
        let ty = &field.ty;
        let span = ty.span();
        if options.keep {
            moves.push(quote_spanned!(span=> #member: ::core::clone::Clone::clone(&self.#member)));
            continue;
        }
        visits.push(quote_spanned! {span=>
            <#ty as #private::Batch>::for_each_tensor(&self.#member, &#private::part_name(name, #name), visit);
        });
        moves.push(quote_spanned! {span=>
            #member: <#ty as #private::Batch>::to_device(&self.#member, device, non_blocking)?
        });
    }
    if let Some(errors) = errors {
        return Err(errors);
    }
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let build = match fields {
        Fields::Named(_) | Fields::Unnamed(_) => quote!(Self { #(#moves),* }),
        Fields::Unit => quote!(Self),
    };
    Ok(quote! {
        impl #impl_generics #private::Batch for #ident #ty_generics #where_clause {
            fn for_each_tensor<'__a>(
                &'__a self,
                name: &str,
                visit: &mut dyn ::core::ops::FnMut(&str, &'__a #private::Tensor),
            ) {
                let _ = (&name, &visit);
                #(#visits)*
            }

            fn to_device(
                &self,
                device: #private::Device,
                non_blocking: bool,
            ) -> ::core::result::Result<Self, #private::TchError> {
                let _ = (&device, &non_blocking);
                ::core::result::Result::Ok(#build)
            }
        }
    })
}
