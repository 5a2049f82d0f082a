use trainmon::prelude::*;

// `&EpochLogs` exists at `on_epoch_end`, not at `on_train_begin`: only the second complains.
#[on_epoch_end]
#[on_train_begin]
fn summary(epoch: &EpochLogs) {
    println!("{}", epoch.loss());
}

fn main() {}
