use trainmon::prelude::*;

#[on_epoch_end(once = [0, 5])]
fn at_epochs(epoch: &EpochLogs) {
    println!("{}", epoch.loss());
}

fn main() {}
