use trainmon::prelude::*;

#[on_epoch_end]
fn log_epoch(epoch: &EpochLogs) -> f64 {
    epoch.loss()
}

fn main() {}
