//! `cargo trainmon`: sets a crate up for trainmon, and watches its runs (see the library's docs).

use std::process::ExitCode;

fn main() -> ExitCode {
    trainmon_setup::cli::main("cargo trainmon")
}
