use trainmon::prelude::*;

struct Logger;

impl Logger {
    #[on_epoch_end]
    fn log_epoch(&self, epoch: &EpochLogs) {
        println!("{}", epoch.loss());
    }
}

fn main() {}
