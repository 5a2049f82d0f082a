//! Bad input gives a `trainmon::Error` that names the cause, never a panic or an abort.

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};
use trainmon::{Error, TensorDataset, Trainer};
use trainmon_tests::{tutorial_data, weights};

fn linear(inputs: i64, outputs: i64) -> (nn::VarStore, nn::Linear) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = nn::linear(vs.root(), inputs, outputs, Default::default());
    (vs, model)
}

fn fit_error(data: &TensorDataset, vs: &nn::VarStore, model: &impl Module, batch_size: usize) -> String {
    match Trainer::new(vs, model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(trainmon::Hooks::none())
        .epochs(2)
        .batch_size(batch_size)
        .fit(data)
    {
        Ok(_) => panic!("fit should have failed"),
        Err(err) => format!("{err:#}"),
    }
}

#[test]
fn zero_epochs_is_a_config_error() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = linear(20, 2);
    let before = weights(&vs);
    let err = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(trainmon::Hooks::none())
        .epochs(0)
        .fit(&data)
        .unwrap_err();
    assert!(matches!(err, Error::Config { setting: "epochs", .. }), "{err:?}");
    assert!(err.to_string().contains("epochs must be at least 1, got 0"), "{err}");
    assert_eq!(weights(&vs), before);
}

#[test]
fn bad_training_setups_are_errors_naming_the_cause() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let wrong_labels = TensorDataset::new(
        Tensor::randn([100, 20], (Kind::Float, Device::Cpu)),
        Tensor::randint(5, [100], (Kind::Int64, Device::Cpu)) + 2,
    )
    .unwrap();
    let int_features = TensorDataset::new(
        Tensor::ones([100, 20], (Kind::Int64, Device::Cpu)),
        Tensor::zeros([100], (Kind::Int64, Device::Cpu)),
    )
    .unwrap();
    struct Case<'a>(&'a TensorDataset, i64, i64, usize, &'a [&'a str], &'a str);
    // (dataset, model inputs, model outputs, batch size, expected pieces of the message, why)
    let cases = [
        Case(&data, 20, 2, 0, &["batch size must be at least 1"], "batch size 0"),
        Case(
            &data,
            10,
            2,
            32,
            &[
                "forward pass failed on batch 1 of epoch 1",
                "[32, 20]",
                "mat1 and mat2 shapes cannot be multiplied",
            ],
            "features of 20 into a model of 10 inputs",
        ),
        Case(
            &wrong_labels,
            20,
            2,
            32,
            &["cross-entropy loss failed on batch 1", "out of bounds"],
            "labels beyond the classes",
        ),
        Case(
            &data,
            20,
            1,
            32,
            &["cross-entropy loss failed"],
            "one output for two classes",
        ),
        Case(
            &int_features,
            20,
            2,
            32,
            &["forward pass failed", "Int64"],
            "integer features into a float model",
        ),
    ];
    for Case(data, inputs, outputs, batch_size, want, why) in cases {
        let (vs, model) = linear(inputs, outputs);
        let err = fit_error(data, &vs, &model, batch_size);
        for piece in want {
            assert!(err.contains(piece), "{why}: expected {piece:?} in {err:?}");
        }
    }
}

#[test]
fn a_missing_optimizer_is_an_error() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = linear(20, 2);
    let err = Trainer::new(&vs, &model)
        .hooks(trainmon::Hooks::none())
        .fit(&data)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config {
                setting: "optimizer",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("no optimizer"), "{err}");
}

#[test]
fn bad_datasets_are_refused() {
    let _serial = trainmon_tests::serial();
    let f = |n| Tensor::randn([n, 20], (Kind::Float, Device::Cpu));
    let l = |n| Tensor::zeros([n], (Kind::Int64, Device::Cpu));
    let cases = [
        (f(10), l(9), "differ in length: 10 samples", "lengths differ"),
        (f(0), l(0), "empty: 0 samples", "empty dataset"),
    ];
    for (features, labels, want, why) in cases {
        let err = TensorDataset::new(features, labels).unwrap_err();
        assert!(matches!(err, Error::Data(_)), "{why}: {err:?}");
        assert!(format!("{err:#}").contains(want), "{why}: expected {want:?} in {err:#}");
    }
}

#[test]
fn bad_trainer_settings_are_errors_naming_the_cause() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let float_labels = TensorDataset::new(
        Tensor::randn([100, 20], (Kind::Float, Device::Cpu)),
        Tensor::zeros([100], (Kind::Float, Device::Cpu)),
    )
    .unwrap();
    let (vs, model) = linear(20, 2);
    let trainer = || {
        Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-3)
            .hooks(trainmon::Hooks::none())
            .batch_size(32)
    };
    type Setup<'a> = Box<dyn Fn() -> trainmon::Result<trainmon::History> + 'a>;
    let cases: Vec<(Setup, &str, &str)> = vec![
        (
            Box::new(|| trainer().fit(&float_labels)),
            "cross-entropy wants class indices",
            "float labels, cross-entropy",
        ),
        (
            Box::new(|| trainer().validation_split(1.5).fit(&data)),
            "between 0 and 1",
            "split above 1",
        ),
        (
            Box::new(|| trainer().validation_split(0.0001).fit(&data)),
            "leaves 0 for validation",
            "split too small",
        ),
        (
            Box::new(|| trainer().batch_size(2000).drop_last(true).fit(&data)),
            "leaves no batch",
            "drop_last, big batches",
        ),
        (
            Box::new(|| trainer().accumulate_gradients(0).fit(&data)),
            "at least 1 batch",
            "accumulate 0",
        ),
        (
            Box::new(|| trainer().clip_grad_norm(0.0).fit(&data)),
            "positive and finite",
            "clip 0",
        ),
        (
            Box::new(|| trainer().clip_grad_value(f64::NAN).fit(&data)),
            "positive and finite",
            "clip NaN",
        ),
    ];
    for (fit, want, why) in cases {
        let err = format!("{:#}", fit().unwrap_err());
        assert!(err.contains(want), "{why}: expected {want:?} in {err}");
    }
}

#[test]
fn features_without_nan_pass_the_check_even_when_their_sum_is_not_finite() {
    let _serial = trainmon_tests::serial();
    // Infinities and values whose sum overflows: not NaN, so no error even under `Error`.
    let features = Tensor::randn([100, 20], (Kind::Float, Device::Cpu));
    let _ = features.get(3).get(1).fill_(f64::INFINITY);
    let _ = features.get(5).get(1).fill_(f64::NEG_INFINITY);
    let _ = features.get(9).fill_(f64::from(f32::MAX));
    let data = TensorDataset::new(features, Tensor::zeros([100], (Kind::Int64, Device::Cpu))).unwrap();
    let (vs, model) = linear(20, 2);
    let result = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(trainmon::Hooks::none())
        .nan_policy(trainmon::NanPolicy::Error)
        .fit(&data);
    // The loss may well be NaN with such features; the data check is what is tested.
    if let Err(err) = &result {
        assert!(!format!("{err:#}").contains("have NaN in"), "{err:#}");
    }
}

#[test]
fn nan_features_follow_the_policy() {
    let _serial = trainmon_tests::serial();
    let features = Tensor::randn([100, 20], (Kind::Float, Device::Cpu));
    let _ = features.get(7).get(2).fill_(f64::NAN);
    let _ = features.get(42).get(0).fill_(f64::NAN);
    let data = TensorDataset::new(features, Tensor::zeros([100], (Kind::Int64, Device::Cpu))).unwrap();
    let (vs, model) = linear(20, 2);
    let fit = |policy| {
        trainmon_tests::capture_logs(|| {
            Trainer::new(&vs, &model)
                .optimizer(nn::Adam::default(), 1e-3)
                .hooks(trainmon::Hooks::none())
                .nan_policy(policy)
                .fit(&data)
        })
    };
    let (result, _) = fit(trainmon::NanPolicy::Error);
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Data(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid dataset: the training features have NaN in 2 samples (the first: sample 7)"
    );

    let (result, logs) = fit(trainmon::NanPolicy::Warn);
    assert!(result.is_ok(), "warn: training goes on");
    assert!(
        logs.iter()
            .any(|(level, m)| level == "WARN" && m.contains("NaN in 2 samples (the first: sample 7)")),
        "{logs:?}"
    );

    let (result, logs) = fit(trainmon::NanPolicy::Ignore);
    assert!(
        result.is_ok() && !logs.iter().any(|(level, _)| level == "WARN"),
        "{logs:?}"
    );
}

#[test]
fn a_full_disk_is_an_error_naming_the_file() {
    let _serial = trainmon_tests::serial();
    // `epochs.csv` is a link to /dev/full, where every write fails with "no space left".
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("epochs.csv")).unwrap();
    let data = tutorial_data(1);
    let (vs, model) = linear(20, 2);
    let err = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(trainmon::Hooks::none())
        .with(trainmon::hooks::MetricFiles::new(dir.path()).jsonl(false))
        .fit(&data)
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("hook `MetricFiles`") && err.contains("epochs.csv"),
        "{err}"
    );
    assert!(err.contains("No space left on device"), "{err}");
}

#[test]
fn truncated_or_foreign_checkpoints_are_refused_and_change_nothing() {
    let _serial = trainmon_tests::serial();
    let dir = tempfile::tempdir().unwrap();
    let data = tutorial_data(1);
    let (vs, model) = linear(20, 2);
    let checkpoints = trainmon::hooks::ModelCheckpoint::new(dir.path()).save_last(true);
    let saved = checkpoints.saved();
    Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(trainmon::Hooks::none())
        .with(checkpoints)
        .fit(&data)
        .unwrap();
    let last = saved.last().unwrap();

    // Whole and of this model: it loads.
    let (fresh, _fresh_model) = linear(20, 2);
    trainmon::hooks::load_checkpoint(&fresh, &last).unwrap();
    assert_eq!(weights(&fresh), weights(&vs));

    // Truncated: refused, the weights untouched.
    let bytes = std::fs::read(&last).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let (other, _other_model) = linear(20, 2);
    let before = weights(&other);
    let err = trainmon::hooks::load_checkpoint(&other, &truncated).unwrap_err();
    assert!(matches!(err, Error::Checkpoint { .. }), "{err:?}");
    assert!(
        err.to_string().contains("truncated.safetensors cannot be loaded"),
        "{err}"
    );
    assert_eq!(weights(&other), before, "nothing loaded");

    // Another model's: refused, saying what differs.
    let (wider, _wider_model) = linear(20, 3);
    let err = trainmon::hooks::load_checkpoint(&wider, &last).unwrap_err().to_string();
    assert!(err.contains("made for another model"), "{err}");
    assert!(
        err.contains("`weight` has shape [2, 20], the model's [3, 20]") && err.contains("`bias` has shape [2]"),
        "{err}"
    );
}
