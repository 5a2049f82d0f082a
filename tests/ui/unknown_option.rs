use trainmon::prelude::*;

#[on_epoch_end(evry = 2)]
fn log_epoch(epoch: &EpochLogs) {
    println!("{}", epoch.loss());
}

fn main() {}
