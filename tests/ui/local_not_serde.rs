use trainmon::prelude::*;

/// Resume points keep a `Local`: serde must handle its type (a `Scratch` is not kept).
#[derive(Default)]
struct Best(f64);

#[on_epoch_end]
fn track(epoch: &EpochLogs, best: Local<Best>) {
    println!("{} {}", epoch.loss(), best.0);
}

fn main() {}
