//! Losses other than cross-entropy, custom metrics visible to hooks by name (and `val_`-prefixed
//! on the validation set), gradient clipping, and gradient accumulation.

use std::sync::Mutex;
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Reduction, TchError, Tensor};
use trainmon::prelude::*;
use trainmon::{Hooks, Loss, Metric, MetricKey, Split};

/// Mean absolute error, summed on the device.
#[derive(Default)]
struct Mae {
    sum: Option<Tensor>,
    count: usize,
}

impl Metric for Mae {
    fn name(&self) -> &str {
        "mae"
    }
    fn update(&mut self, outputs: &Tensor, targets: &Tensor) -> Result<(), TchError> {
        let batch = (outputs - targets).f_abs()?.f_sum(Kind::Double)?;
        self.sum = Some(match self.sum.take() {
            Some(sum) => sum + batch,
            None => batch,
        });
        self.count += outputs.numel();
        Ok(())
    }
    fn compute(&self) -> Result<f64, TchError> {
        self.sum
            .as_ref()
            .map_or(Ok(f64::NAN), |s| Ok(s.f_double_value(&[])? / self.count as f64))
    }
    fn reset(&mut self) {
        *self = Mae::default();
    }
}

/// libtorch's generator is one per process: the tests that seed it run one at a time.
use trainmon_tests::SERIAL;

static BATCH_MAE: Mutex<Vec<(usize, Option<f64>, f64)>> = Mutex::new(Vec::new());

#[on_batch_end(every = 5, group = "regression")]
fn running_mae(batch: &BatchLogs) {
    BATCH_MAE
        .lock()
        .unwrap()
        .push((batch.number(), batch.get("mae"), batch.accuracy()));
}

static GRAD_BOUNDS: Mutex<Vec<(f64, f64)>> = Mutex::new(Vec::new());
static STEPS: Mutex<Vec<(usize, usize, u64)>> = Mutex::new(Vec::new());

/// The largest gradient value and the global gradient norm, as the optimizer is about to see them.
#[on_before_optimizer_step(group = "clipping")]
fn gradient_bounds(vs: &VarStore) {
    let grads: Vec<Tensor> = vs.trainable_variables().iter().map(|v| v.grad()).collect();
    let max = grads
        .iter()
        .map(|g| g.abs().max().double_value(&[]))
        .fold(0.0, f64::max);
    let norm = grads
        .iter()
        .map(|g| g.square().sum(Kind::Double).double_value(&[]))
        .sum::<f64>()
        .sqrt();
    GRAD_BOUNDS.lock().unwrap().push((max, norm));
}

#[on_before_optimizer_step(group = "accumulation")]
fn optimizer_steps(state: &TrainState) {
    STEPS
        .lock()
        .unwrap()
        .push((state.epoch(), state.batch(), state.global_step()));
}

/// y = 3·x₀ − 2·x₁ + 1, no noise.
fn regression(n: i64) -> TensorDataset {
    tch::manual_seed(11);
    let x = Tensor::randn([n, 2], (Kind::Float, Device::Cpu));
    let y = (x.select(1, 0) * 3.0 - x.select(1, 1) * 2.0 + 1.0).unsqueeze(1);
    TensorDataset::new(x, y).unwrap()
}

fn fit_regression(loss: Loss) -> (History, Vec<f32>) {
    let data = regression(512);
    tch::manual_seed(12);
    let vs = VarStore::new(Device::Cpu);
    let model = nn::linear(vs.root(), 2, 1, Default::default());
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Sgd::default(), 0.05)
        .loss(loss)
        .metric(Mae::default)
        .epochs(20)
        .batch_size(32)
        .validation_split(0.25)
        .seed(1)
        .hooks(Hooks::groups(["regression"]))
        .fit(&data)
        .unwrap();
    (history, trainmon_tests::weights(&vs))
}

#[test]
fn mse_and_custom_losses_with_a_custom_metric() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (history, _) = fit_regression(Loss::Mse);
    let first = &history.epochs()[0];
    let last = history.last().unwrap();
    assert!(
        last.loss() < first.loss() / 100.0,
        "MSE falls: {} → {}",
        first.loss(),
        last.loss()
    );
    let names: Vec<&str> = last.metrics().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["loss", "mae", "val_loss", "val_mae"],
        "no accuracy without cross-entropy"
    );
    // Each metric knows its split: the validation `mae` is `val_mae`, not a metric of that name.
    let keys: Vec<(Split, &str)> = last.keyed().map(|(key, _)| (key.split(), key.name())).collect();
    assert_eq!(
        keys,
        [
            (Split::Training, "loss"),
            (Split::Training, "mae"),
            (Split::Validation, "loss"),
            (Split::Validation, "mae")
        ]
    );
    assert_eq!(last.metric(&MetricKey::validation("mae")), last.get("val_mae"));
    assert!(last.accuracy().is_nan() && last.val_accuracy().is_none());
    assert!(
        last.get("val_mae").unwrap() < 0.1,
        "validation error small: {:?}",
        last.get("val_mae")
    );

    let seen = BATCH_MAE.lock().unwrap().clone();
    // 384 training samples in batches of 32: 12 batches, the hook at 5 and 10, for 20 epochs.
    assert_eq!(seen.len(), 40);
    assert!(seen
        .iter()
        .all(|(n, mae, acc)| [5, 10].contains(n) && mae.is_some_and(f64::is_finite) && acc.is_nan()));

    // The same loss written as a closure trains to the same bits.
    let (_, mse_weights) = fit_regression(Loss::Mse);
    let (custom, custom_weights) = fit_regression(Loss::custom(|out, target| {
        out.f_mse_loss(&target.to_kind(out.kind()), Reduction::Mean)
    }));
    assert_eq!(custom_weights, mse_weights, "Loss::custom computing MSE");
    assert_eq!(custom.metric("loss"), history.metric("loss"));
}

fn fit_classifier(configure: impl FnOnce(Trainer<'_>) -> Trainer<'_>, group: &str) -> Vec<f32> {
    // 1024 samples: 32 whole batches of 32, or 64 of 16, so that windows line up.
    tch::manual_seed(3);
    let data = TensorDataset::new(
        Tensor::randn([1024, 20], (Kind::Float, Device::Cpu)),
        Tensor::randint(2, [1024], (Kind::Int64, Device::Cpu)),
    )
    .unwrap();
    let (vs, model) = trainmon_tests::tutorial_model(4);
    let trainer = Trainer::new(&vs, &model)
        .optimizer(nn::Sgd::default(), 0.5)
        .epochs(2)
        .batch_size(32)
        .shuffle(false)
        .hooks(Hooks::groups([group]));
    configure(trainer).fit(&data).unwrap();
    trainmon_tests::weights(&vs)
}

#[test]
fn gradients_are_clipped_and_accumulated() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    fit_classifier(|t| t.clip_grad_value(0.01), "clipping");
    let bounds = std::mem::take(&mut *GRAD_BOUNDS.lock().unwrap());
    assert_eq!(bounds.len(), 64, "a step per batch");
    assert!(
        bounds.iter().all(|(max, _)| *max <= 0.01 + 1e-9),
        "values clamped: {bounds:?}"
    );

    fit_classifier(|t| t.clip_grad_norm(0.05), "clipping");
    let bounds = std::mem::take(&mut *GRAD_BOUNDS.lock().unwrap());
    assert!(
        bounds.iter().all(|(_, norm)| *norm <= 0.05 * (1.0 + 1e-5)),
        "norms clipped: {bounds:?}"
    );
    assert!(
        bounds.iter().any(|(_, norm)| *norm > 0.049),
        "and not below the bound for nothing"
    );

    // Accumulating 4 batches: a step at batches 4, 8, …, 32 of each epoch.
    fit_classifier(|t| t.accumulate_gradients(4), "accumulation");
    let steps = STEPS.lock().unwrap().clone();
    let want: Vec<(usize, usize, u64)> = (0..16).map(|i| (i / 8 + 1, (i % 8 + 1) * 4, i as u64)).collect();
    assert_eq!(steps, want, "(epoch, batch, steps taken before this one)");

    // Two half batches accumulated train like one whole batch (up to rounding).
    let whole = fit_classifier(|t| t, "none");
    let halves = fit_classifier(|t| t.batch_size(16).accumulate_gradients(2), "none");
    let diff = whole
        .iter()
        .zip(&halves)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        diff < 1e-5,
        "batch 32 vs 2 × 16 accumulated: max weight difference {diff}"
    );
}
