use tch::Tensor;
use trainmon::Batch;

#[derive(Batch)]
enum Either {
    Left(Tensor),
    Right(Tensor),
}

fn main() {}
