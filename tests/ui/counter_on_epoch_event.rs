use trainmon::prelude::*;

#[on_epoch_end(every = 2, counter = global_step)]
fn log_epoch(epoch: &EpochLogs) {
    println!("{}", epoch.loss());
}

fn main() {}
