use trainmon::prelude::*;

#[on_epoch_end]
async fn log_epoch(epoch: &EpochLogs) {
    println!("{}", epoch.loss());
}

fn main() {}
