use trainmon::prelude::*;

#[on_train_begin(every = 2)]
fn hello() {}

fn main() {}
