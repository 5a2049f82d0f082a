//! TensorBoard event files, read back by TensorBoard's own reader (`EventAccumulator`, in the
//! bootstrap's Python): every tag, step and value.

use std::collections::BTreeMap;
use tch::nn;
use trainmon::hooks::{LrScheduler, TensorBoard};
use trainmon::{Hooks, Trainer};
use trainmon_tests::{python_json, tutorial_data, tutorial_model};

const READER: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
print(json.dumps({tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}))
"#;

#[test]
fn tensorboard_reads_back_every_scalar() {
    let _serial = trainmon_tests::serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tb");
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(3)
        .validation_split(0.2)
        .hooks(Hooks::none())
        .with(LrScheduler::exponential(0.5))
        .with(TensorBoard::new(&dir).steps(10))
        .fit(&data)
        .unwrap();

    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1);
    assert!(files[0].starts_with("events.out.tfevents."), "{files:?}");

    let scalars: BTreeMap<String, Vec<(u64, f64)>> = serde_json::from_value(python_json(READER, &dir)).unwrap();

    let tags: Vec<&str> = scalars.keys().map(String::as_str).collect();
    assert_eq!(
        tags,
        [
            "epoch/accuracy",
            "epoch/loss",
            "epoch/lr",
            "epoch/time",
            "epoch/val_accuracy",
            "epoch/val_loss",
            "step/accuracy",
            "step/loss"
        ]
    );
    // Scalars are stored as float32: compare at that precision.
    for name in ["loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"] {
        let want: Vec<(u64, f32)> = history
            .epochs()
            .iter()
            .map(|e| (e.epoch() as u64, e.get(name).unwrap() as f32))
            .collect();
        let got: Vec<(u64, f32)> = scalars[&format!("epoch/{name}")]
            .iter()
            .map(|(s, v)| (*s, *v as f32))
            .collect();
        assert_eq!(got, want, "epoch/{name}");
    }
    // 800 training samples in batches of 32: 25 steps an epoch, 75 in all; every 10th step.
    let steps: Vec<u64> = scalars["step/loss"].iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, [10, 20, 30, 40, 50, 60, 70]);
    assert!(scalars["step/loss"].iter().all(|(_, v)| v.is_finite() && *v > 0.0));
}
