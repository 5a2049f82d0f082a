//! `history.json` is a table for pandas: `json_normalize` of its epochs gives one row per epoch
//! and a column per value, none holding a list; the stop reason is plain fields.

use tch::nn;
use trainmon::hooks::EarlyStopping;
use trainmon::{History, Hooks, Trainer};
use trainmon_tests::{python_json, tutorial_data, tutorial_model};

const READ: &str = r#"
import json, sys
import pandas as pd
with open(sys.argv[1]) as f:
    history = json.load(f)
epochs = pd.json_normalize(history["epochs"])
lists = [c for c in epochs.columns if epochs[c].map(lambda v: isinstance(v, (list, dict))).any()]
print(json.dumps({
    "columns": list(epochs.columns),
    "rows": len(epochs),
    "dtypes": sorted({str(t) for t in epochs.dtypes}),
    "lists": lists,
    "loss": epochs["loss"].tolist(),
    "stop": [history["stop_reason"], history["stop_hook"], history["stop_event"], history["stop_epoch"]],
}))
"#;

#[test]
fn pandas_reads_the_epochs_as_a_table() {
    let _serial = trainmon_tests::serial();
    let dir = tempfile::tempdir().unwrap();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 5e-2)
        .epochs(40)
        .validation_split(0.2)
        .hooks(Hooks::none())
        .with(EarlyStopping::new("val_loss").patience(2))
        .fit(&data)
        .unwrap();
    let stop = history.stop_reason().expect("early stopping fired").clone();
    let path = dir.path().join("history.json");
    std::fs::write(&path, serde_json::to_string_pretty(&history).unwrap()).unwrap();

    let read = python_json(READ, &path);
    assert_eq!(
        read["columns"],
        serde_json::json!([
            "epoch",
            "loss",
            "accuracy",
            "val_loss",
            "val_accuracy",
            "lr",
            "time_s",
            "throughput",
            "batches",
            "samples"
        ])
    );
    assert_eq!(read["rows"], history.len());
    assert_eq!(read["lists"], serde_json::json!([]), "no list columns");
    assert_eq!(read["dtypes"], serde_json::json!(["float64", "int64"]), "numbers only");
    let loss: Vec<f64> = serde_json::from_value(read["loss"].clone()).unwrap();
    assert_eq!(loss, history.metric("loss"), "every value exact");
    assert_eq!(
        read["stop"],
        serde_json::json!([stop.reason, "EarlyStopping", "on_epoch_end", stop.epoch])
    );

    let back: History = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(back.stop_reason(), Some(&stop));
    assert_eq!(back.metric("val_loss"), history.metric("val_loss"));
    let names: Vec<&str> = back.epochs()[0].metrics().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["loss", "accuracy", "val_loss", "val_accuracy"],
        "the metrics keep their order"
    );
}
