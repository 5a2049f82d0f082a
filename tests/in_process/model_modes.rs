//! The model runs in train mode with gradients while training, and in eval mode without
//! gradients while validating.

use std::sync::Mutex;
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};
use trainmon::{TensorDataset, Trainer};

static CALLS: Mutex<Vec<(bool, bool)>> = Mutex::new(Vec::new());

/// A linear layer that records, for each forward pass, the mode and whether its output tracks
/// gradients.
#[derive(Debug)]
struct Recording(nn::Linear);

impl ModuleT for Recording {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let out = self.0.forward(xs);
        CALLS.lock().unwrap().push((train, out.requires_grad()));
        out
    }
}

#[test]
fn train_mode_to_train_eval_mode_to_validate() {
    let _serial = trainmon_tests::serial();
    tch::manual_seed(0);
    let data = |n| {
        TensorDataset::new(
            Tensor::randn([n, 4], (Kind::Float, Device::Cpu)),
            Tensor::randint(2, [n], (Kind::Int64, Device::Cpu)),
        )
        .unwrap()
    };
    let (train, valid) = (data(64), data(40));
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Recording(nn::linear(vs.root(), 4, 2, Default::default()));
    Trainer::new(&vs, &model)
        .optimizer(nn::Sgd::default(), 0.1)
        .hooks(trainmon::Hooks::none())
        .batch_size(32)
        .validation(&valid)
        .fit(&train)
        .unwrap();
    // 2 training batches, then 2 validation batches (40 samples in batches of 32).
    assert_eq!(
        *CALLS.lock().unwrap(),
        [(true, true), (true, true), (false, false), (false, false)]
    );
}
