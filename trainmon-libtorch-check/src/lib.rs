//! Nothing to use: this crate is its build script (`build.rs`), which stops a build of trainmon's
//! repository where libtorch is not set up yet, with one line that says what to run.

#![no_std]
