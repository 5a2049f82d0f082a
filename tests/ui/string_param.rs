use trainmon::prelude::*;

/// A parameter that is no hook parameter: one error, under its type.
#[on_epoch_end]
fn named(name: &String) {
    println!("{name}");
}

fn main() {}
