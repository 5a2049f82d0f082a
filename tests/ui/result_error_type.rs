use trainmon::prelude::*;

#[on_epoch_end]
fn check(epoch: &EpochLogs) -> Result<(), u32> {
    if epoch.loss().is_nan() {
        return Err(7);
    }
    Ok(())
}

fn main() {}
