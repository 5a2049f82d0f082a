use trainmon::prelude::*;

#[on_epoch_end(group = "")]
fn grouped() {}

fn main() {
    grouped();
}
