use trainmon::prelude::*;

#[on_batch_end(every = -1)]
fn log_batch(batch: &BatchLogs) {
    println!("{}", batch.loss());
}

fn main() {}
