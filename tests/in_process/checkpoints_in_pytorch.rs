//! Checkpoints are safetensors files PyTorch loads (`safetensors.torch.load_file`, then
//! `load_state_dict`), with a header that says where training was: epoch, global step, the
//! monitored value, trainmon's version.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};
use trainmon::hooks::{checkpoint_metadata, ModelCheckpoint};
use trainmon::{Hooks, Trainer};
use trainmon_tests::{python_json, tutorial_data, tutorial_model};

const LOAD: &str = r#"
import json, sys, torch
from safetensors import safe_open
from safetensors.torch import load_file
model = torch.nn.Linear(20, 2)
state = load_file(sys.argv[1])
model.load_state_dict({name.removeprefix("fc."): tensor for name, tensor in state.items()})
with safe_open(sys.argv[1], "pt") as f:
    metadata = f.metadata()
x = torch.linspace(-1, 1, 40).reshape(2, 20)
with torch.no_grad():
    print(json.dumps({"metadata": metadata, "outputs": model(x).flatten().tolist()}))
"#;

#[test]
fn pytorch_loads_a_checkpoint_and_its_header_says_where_training_was() {
    let _serial = trainmon_tests::serial();
    let dir = tempfile::tempdir().unwrap();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let checkpoint = ModelCheckpoint::new(dir.path())
        .filename("{epoch:02d}")
        .monitor("val_loss")
        .save_last(true);
    let saved = checkpoint.saved();
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-2)
        .epochs(3)
        .batch_size(50)
        .validation_split(0.2)
        .hooks(Hooks::none())
        .with(checkpoint)
        .fit(&data)
        .unwrap();

    let last = saved.last().expect("last.safetensors");
    let read = python_json(LOAD, &last);
    let metadata = &read["metadata"];
    assert_eq!(metadata["format"], "pt");
    assert_eq!(metadata["trainmon_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(metadata["epoch"], "3");
    assert_eq!(
        metadata["global_step"], "48",
        "800 training samples in batches of 50, 3 epochs"
    );
    assert_eq!(metadata["monitor"], "val_loss");
    let val_loss: f64 = metadata["monitor_value"].as_str().unwrap().parse().unwrap();
    assert_eq!(val_loss, history.last().unwrap().val_loss().unwrap(), "the exact value");

    // The same outputs as the trained tch model (the last checkpoint holds the final weights).
    let x = Tensor::linspace(-1.0, 1.0, 40, (Kind::Float, tch::Device::Cpu)).reshape([2, 20]);
    let want = Vec::<f32>::try_from(model.forward(&x).flatten(0, -1)).unwrap();
    let got: Vec<f32> = serde_json::from_value(read["outputs"].clone()).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{got:?} against {want:?}");
    }

    let first = checkpoint_metadata(dir.path().join("01.safetensors")).unwrap();
    assert_eq!((first["epoch"].as_str(), first["global_step"].as_str()), ("1", "16"));
    let first_loss: f64 = first["monitor_value"].parse().unwrap();
    assert_eq!(first_loss, history.epochs()[0].val_loss().unwrap());
}
