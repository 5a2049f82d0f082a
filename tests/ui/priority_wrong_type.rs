use trainmon::prelude::*;

const LATE: u64 = 5;

#[on_epoch_end(priority = LATE)]
fn late() {}

fn main() {
    late();
}
