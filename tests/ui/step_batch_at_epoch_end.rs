use trainmon::prelude::*;

// The batch exists from its forward pass to its end, not at an epoch's end.
#[on_epoch_end]
fn after_the_batches(batch: StepBatch<(tch::Tensor, tch::Tensor)>) {
    println!("{:?}", batch.0.size());
}

fn main() {}
