use trainmon::prelude::*;

#[on_train_begin]
fn too_early(state: &TrainState, batch: &BatchLogs) {
    println!("{} {}", state.epoch(), batch.loss());
}

fn main() {}
