use trainmon::prelude::*;

#[on_batch_end(every = 2, every = 3)]
fn log_batch() {}

fn main() {
    log_batch();
}
