use trainmon::prelude::*;

#[on_epoch_end]
fn log_epoch(epoch: &EpochLogs, threshold: f64) {
    println!("{} {threshold}", epoch.loss());
}

fn main() {}
