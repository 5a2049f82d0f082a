use trainmon::prelude::*;

#[on_batch_end(every = 10)]
fn log(batch: &BatchLogs, epoch: &EpochLogs) {
    println!("{} {}", batch.loss(), epoch.loss());
}

fn main() {}
