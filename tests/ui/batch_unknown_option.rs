use tch::Tensor;
use trainmon::Batch;

#[derive(Batch)]
struct Pair {
    features: Tensor,
    #[batch(skip)]
    labels: Tensor,
}

#[derive(Batch)]
#[batch(krate = "trainmon")]
struct One(Tensor);

fn main() {}
