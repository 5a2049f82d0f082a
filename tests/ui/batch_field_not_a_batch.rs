use tch::Tensor;
use trainmon::Batch;

#[derive(Batch)]
struct LmBatch {
    input_ids: Tensor,
    lengths: Vec<usize>,
}

fn main() {}
