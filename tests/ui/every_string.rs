use trainmon::prelude::*;

#[on_batch_end(every = "10")]
fn log_batch(batch: &BatchLogs) {
    println!("{}", batch.loss());
}

fn main() {}
