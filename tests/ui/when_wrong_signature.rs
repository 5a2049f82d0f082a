use trainmon::prelude::*;

fn warm(logs: &EpochLogs) -> bool {
    logs.epoch() > 3
}

#[on_batch_end(when = warm)]
fn log_batch(batch: &BatchLogs) {
    println!("{}", batch.loss());
}

fn main() {}
