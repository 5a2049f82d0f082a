//! `GradStats`: gradient and weight norms and update ratios every n steps, equal to the norms
//! computed directly from the `VarStore`; in the history, the metric files (`logged.csv`) and
//! TensorBoard, scalars and histograms read back by TensorBoard's own `EventAccumulator`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tch::nn::{self, VarStore};
use tch::Tensor;
use trainmon::hooks::{GradStats, MetricFiles, TensorBoard};
use trainmon::{Event, HookSpec, Hooks, TrainState, Trainer};
use trainmon_tests::{python_json, tutorial_data, tutorial_model};

const READER: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "histograms": 0})
acc.Reload()
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]},
    "histograms": {t: [[e.step, e.histogram_value.num, e.histogram_value.min, e.histogram_value.max,
                        sum(e.histogram_value.bucket)] for e in acc.Histograms(t)]
                   for t in acc.Tags()["histograms"]},
}))
"#;

/// Scalars: `(step, value)`; histograms: `(step, num, min, max, sum of the buckets)`.
type Scalars = BTreeMap<String, Vec<(u64, f64)>>;
type Histograms = BTreeMap<String, Vec<(u64, f64, f64, f64, f64)>>;

/// Norms computed directly, at every step: (step, name, value).
type Seen = Arc<Mutex<Vec<(u64, String, f64)>>>;

fn norm(t: &Tensor) -> f64 {
    t.norm().double_value(&[])
}

#[test]
fn statistics_equal_the_norms_of_the_var_store_and_reach_every_output() {
    let _serial = trainmon_tests::serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let seen: Seen = Arc::default();
    let (before, after) = (seen.clone(), seen.clone());
    let weights_before: Arc<Mutex<BTreeMap<String, Tensor>>> = Arc::default();
    let (keep, compare) = (weights_before.clone(), weights_before.clone());
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-2)
        .epochs(1)
        .batch_size(32)
        .hooks(Hooks::none())
        .with(GradStats::every(5).histograms(true))
        .with(TensorBoard::new(tmp.path().join("tb")))
        .with(MetricFiles::new(tmp.path().join("metrics")))
        .add_hook(
            HookSpec::new(Event::BeforeOptimizerStep, "direct"),
            move |vs: &VarStore, state: &TrainState| {
                let step = state.global_step() + 1;
                let mut seen = before.lock().unwrap();
                let mut squares = 0.0;
                for (name, var) in vs.variables() {
                    let grad = norm(&var.grad());
                    squares += grad * grad;
                    seen.push((step, format!("grad_norm/{name}"), grad));
                    seen.push((step, format!("weight_norm/{name}"), norm(&var)));
                    keep.lock().unwrap().insert(name, var.detach().copy());
                }
                seen.push((step, "grad_norm".into(), squares.sqrt()));
            },
        )
        .add_hook(
            HookSpec::new(Event::BatchEnd, "direct_update"),
            move |vs: &VarStore, state: &TrainState| {
                let old = compare.lock().unwrap();
                for (name, var) in vs.variables() {
                    let ratio = norm(&(&var - &old[&name])) / norm(&old[&name]);
                    after
                        .lock()
                        .unwrap()
                        .push((state.global_step(), format!("update_ratio/{name}"), ratio));
                }
            },
        )
        .fit(&data)
        .unwrap();

    // 1000 samples in batches of 32: steps 1 to 32, logged at 5, 10, …, 30.
    let logged_steps: Vec<u64> = (1..=6).map(|k| 5 * k).collect();
    let seen = seen.lock().unwrap();
    for name in [
        "grad_norm",
        "grad_norm/fc.weight",
        "grad_norm/fc.bias",
        "weight_norm/fc.weight",
        "update_ratio/fc.bias",
        "update_ratio/fc.weight",
    ] {
        let got = history.logged(name);
        assert_eq!(got.iter().map(|(s, _)| *s).collect::<Vec<_>>(), logged_steps, "{name}");
        for (step, value) in got {
            let want = seen
                .iter()
                .find(|(s, n, _)| *s == step && n == name)
                .unwrap_or_else(|| panic!("{name} at {step} computed directly"))
                .2;
            assert!(
                (value - want).abs() <= 1e-6 * want.abs().max(1e-12),
                "{name} at step {step}: {value} logged, {want} from the VarStore"
            );
        }
    }

    let read = python_json(READER, &tmp.path().join("tb"));
    let scalars: Scalars = serde_json::from_value(read["scalars"].clone()).unwrap();
    let histograms: Histograms = serde_json::from_value(read["histograms"].clone()).unwrap();
    let grad = &scalars["grad_norm/fc.weight"];
    let want: Vec<(u64, f32)> = history
        .logged("grad_norm/fc.weight")
        .iter()
        .map(|(s, v)| (*s, *v as f32))
        .collect();
    assert_eq!(grad.iter().map(|(s, v)| (*s, *v as f32)).collect::<Vec<_>>(), want);
    assert!(scalars.contains_key("update_ratio/fc.bias"), "{:?}", scalars.keys());
    for (tag, values) in [
        ("grads/fc.weight", 40.0),
        ("weights/fc.weight", 40.0),
        ("grads/fc.bias", 2.0),
    ] {
        let of_tag = &histograms[tag];
        assert_eq!(of_tag.iter().map(|h| h.0).collect::<Vec<_>>(), logged_steps, "{tag}");
        for (step, num, min, max, counted) in of_tag {
            assert_eq!(
                (*num, *counted),
                (values, values),
                "{tag} at {step}: every value in a bucket"
            );
            assert!(min <= max);
        }
    }

    let csv = std::fs::read_to_string(tmp.path().join("metrics/logged.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("step,name,value"));
    let rows: Vec<(u64, String, f64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[1].to_owned(), f[2].parse().unwrap())
        })
        .collect();
    let scalars = history
        .logged_all()
        .iter()
        .filter(|l| matches!(l.value(), trainmon::LoggedValue::Scalar(_)));
    assert_eq!(rows.len(), scalars.count(), "a line per logged number");
    let (step, name, value) = &rows[0];
    assert_eq!((*step, name.as_str()), (5, "grad_norm"));
    assert_eq!(*value, history.logged("grad_norm")[0].1, "written exactly");
}
