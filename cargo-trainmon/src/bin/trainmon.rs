//! `trainmon`: the commands of `cargo trainmon` without cargo, e.g. `trainmon watch runs/NAME/version_0`.

use std::process::ExitCode;

fn main() -> ExitCode {
    trainmon_setup::cli::main("trainmon")
}
