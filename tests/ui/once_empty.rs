use trainmon::prelude::*;

#[on_epoch_end(once = [])]
fn at_epochs(epoch: &EpochLogs) {
    println!("{}", epoch.loss());
}

fn main() {}
