use trainmon::prelude::*;

#[on_epoch_end]
struct Logger;

fn main() {}
