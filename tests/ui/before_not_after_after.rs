use trainmon::prelude::*;

#[on_batch_end(after = 20, before = 10)]
fn log_batch(batch: &BatchLogs) {
    println!("{}", batch.loss());
}

fn main() {}
