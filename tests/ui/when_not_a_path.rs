use trainmon::prelude::*;

#[on_batch_end(when = 5)]
fn log_batch(batch: &BatchLogs) {
    println!("{}", batch.loss());
}

fn main() {}
