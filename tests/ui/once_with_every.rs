use trainmon::prelude::*;

#[on_batch_end(once = 5, every = 10)]
fn log_batch(batch: &BatchLogs) {
    println!("{}", batch.loss());
}

fn main() {}
