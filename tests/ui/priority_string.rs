use trainmon::prelude::*;

#[on_epoch_end(priority = "high")]
fn first() {}

fn main() {
    first();
}
