use trainmon::prelude::*;

#[on_train_begin(every = 2)]
fn hello() {}

// The function is still emitted next to the error, so the rest of the crate compiles.
fn main() {
    hello();
}
