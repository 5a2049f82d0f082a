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

/// The Python of the bootstrap venv (which has TensorBoard's reader): `TRAINMON_PYTHON`, set by
/// `cargo xtask`, or found through the `.libtorch` link the bootstrap made.
pub fn bootstrap_python() -> std::path::PathBuf {
    if let Some(python) = std::env::var_os("TRAINMON_PYTHON") {
        return python.into();
    }
    let link = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.libtorch");
    // .libtorch → <venv>/lib/python3.X/site-packages/torch
    let venv = std::fs::canonicalize(&link)
        .ok()
        .and_then(|torch| torch.ancestors().nth(4).map(|v| v.join("bin/python")));
    match venv {
        Some(python) if python.exists() => python,
        _ => panic!(
            "no bootstrap Python: run the tests through `cargo xtask test` (or set TRAINMON_PYTHON to a \
             Python with `tensorboard` installed)"
        ),
    }
}
