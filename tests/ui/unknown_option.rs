use trainmon::prelude::*;

#[on_epoch_end(evry = 2)]
fn log_epoch() {}

fn main() {
    log_epoch();
}
