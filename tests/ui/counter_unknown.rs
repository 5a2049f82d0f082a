use trainmon::prelude::*;

#[on_batch_end(every = 2, counter = epoch)]
fn log_batch(batch: &BatchLogs) {
    println!("{}", batch.loss());
}

fn main() {}
