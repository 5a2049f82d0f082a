use trainmon::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Best(f64);

#[on_epoch_end]
fn track(epoch: &EpochLogs, best: Local<Best>) {
    println!("{} {}", epoch.loss(), best.0);
}

fn main() {}
