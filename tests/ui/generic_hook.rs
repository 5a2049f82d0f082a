use trainmon::prelude::*;

#[on_epoch_end]
fn log_epoch<T: Default>(epoch: &EpochLogs) {
    let _ = T::default();
    println!("{}", epoch.loss());
}

fn main() {}
