//! Shared setup of the integration tests: the tutorial's data and model, seeded.

use tch::{nn, Device, Kind, Tensor};
use trainmon::TensorDataset;

/// `RandomDataset(1000, 20)` of the tutorial: standard normal features, labels 0 or 1.
pub fn tutorial_data(seed: i64) -> TensorDataset {
    tch::manual_seed(seed);
    let features = Tensor::randn([1000, 20], (Kind::Float, Device::Cpu));
    let labels = Tensor::randint(2, [1000], (Kind::Int64, Device::Cpu));
    TensorDataset::new(features, labels).expect("a valid dataset")
}

/// The tutorial's model, `Linear(20, 2)`, with weights drawn after seeding with `seed`.
pub fn tutorial_model(seed: i64) -> (nn::VarStore, nn::Linear) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = nn::linear(vs.root() / "fc", 20, 2, Default::default());
    (vs, model)
}
