//! In a clone of trainmon where libtorch is not set up yet (no `.libtorch`, which
//! `.cargo/config.toml` points `LIBTORCH` at), stops the build with one line that says what to
//! run — before torch-sys compiles its C++, whose errors would bury that line among a hundred.
//!
//! Why here: of the units that are ready to build, cargo starts first those that most others wait
//! for. trainmon-macros depends on this crate, and trainmon, examples/ and tests/ build-depend on
//! it (none uses it in code), so more units wait for this script than for torch-sys's build
//! script: cargo runs this one first, and once it has failed starts nothing more. (What more
//! units wait for still comes before it: syn, zstd… — a fresh clone's first build compiles those
//! before it says what to run.)
//!
//! Anywhere else it does nothing: a user's `LIBTORCH`, `LIBTORCH_USE_PYTORCH`, `LIBTORCH_INCLUDE`
//! or `LIBTORCH_LIB` is left to torch-sys, and so is a crate outside this repository (its
//! `LIBTORCH` is not the `.libtorch` beside this crate).

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| {
        println!("cargo:rerun-if-env-changed={name}");
        std::env::var_os(name)
    };
    let libtorch = var("LIBTORCH");
    let others = ["LIBTORCH_USE_PYTORCH", "LIBTORCH_INCLUDE", "LIBTORCH_LIB"].map(var);
    if others.iter().any(Option::is_some) {
        return;
    }
    let Some(libtorch) = libtorch else {
        return;
    };
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest)
        .parent()
        .expect("a package's directory has a parent");
    let libtorch = Path::new(&libtorch);
    let this_clones_link = libtorch.file_name() == Some(".libtorch".as_ref())
        && libtorch.parent().and_then(|dir| dir.canonicalize().ok()) == root.canonicalize().ok();
    if this_clones_link && !libtorch.is_dir() {
        println!(
            "cargo::error=libtorch is not set up in this clone yet: run `cargo xtask run --example early_stop` once \
             (it installs libtorch; then plain cargo works too)"
        );
    }
}
