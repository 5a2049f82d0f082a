//! Mixed precision: `Trainer::precision` runs the forward pass and the loss under autocast
//! (bf16 on the CPU here: CUDA's fp16 cannot be tried on this machine), and `Trainer::grad_scaler`
//! scales the loss, unscales the gradients before the hooks see them, skips the steps that
//! overflow and keeps its scale in resume points. The scaler runs on the CPU too (with any
//! precision), so its path is tested here with fp32 and bf16.

use std::sync::{Arc, Mutex};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};
use trainmon::prelude::*;
use trainmon::{Error, Event, GradScaler, HookContext, HookSpec, Hooks, Precision, TensorDataset};
use trainmon_tests::{tutorial_data, tutorial_model, weights};

/// One test at a time: libtorch's generator is one per process.
use trainmon_tests::serial;

/// A two-layer perceptron written out, which records the type of its first matmul's output and
/// of its weights at every forward pass (training or not).
#[derive(Debug)]
struct Recording {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    /// (training, the matmul's output type, the weight's type), per forward pass.
    seen: Mutex<Vec<(bool, Kind, Kind)>>,
}

impl Recording {
    fn new(vs: &nn::VarStore) -> Self {
        let root = vs.root();
        Recording {
            w1: root.randn("w1", &[20, 32], 0.0, 0.2),
            b1: root.zeros("b1", &[32]),
            w2: root.randn("w2", &[32, 2], 0.0, 0.2),
            b2: root.zeros("b2", &[2]),
            seen: Mutex::new(Vec::new()),
        }
    }

    /// The distinct (training, matmul output, weight) types seen, in order of first sight.
    fn kinds(&self) -> Vec<(bool, Kind, Kind)> {
        let mut kinds = Vec::new();
        for seen in self.seen.lock().unwrap().iter() {
            if !kinds.contains(seen) {
                kinds.push(*seen);
            }
        }
        kinds
    }
}

impl ModuleT for Recording {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = x.matmul(&self.w1);
        self.seen.lock().unwrap().push((train, h.kind(), self.w1.kind()));
        (h + &self.b1).relu().matmul(&self.w2) + &self.b2
    }
}

/// The tutorial's data with its features 64 times larger: gradients in the tens, so that a
/// scale near float32's largest makes them overflow.
fn large_data() -> TensorDataset {
    tch::manual_seed(3);
    let features = Tensor::randn([1000, 20], (Kind::Float, Device::Cpu)) * 64.0;
    let labels = Tensor::randint(2, [1000], (Kind::Int64, Device::Cpu));
    TensorDataset::new(features, labels).unwrap()
}

/// Every gradient of the model, by variable name, as one vector (empty where none).
fn gradients(vs: &nn::VarStore) -> Vec<f32> {
    let mut named: Vec<_> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
        .iter()
        .filter(|(_, t)| t.grad().defined())
        .flat_map(|(_, t)| Vec::<f32>::try_from(t.grad().flatten(0, -1).to_kind(Kind::Float)).unwrap())
        .collect()
}

/// Whether `a` and `b` agree within `tolerance`, relative to the largest magnitude of `b`.
fn close(a: &[f32], b: &[f32], tolerance: f32) -> bool {
    let largest = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tolerance * largest.max(1e-12))
}

/// The precision and the scaler `HookContext::settings` shows.
type Shown = (Precision, Option<GradScaler>);

#[test]
fn bf16_autocasts_the_forward_pass_keeps_fp32_weights_and_trains_like_fp32() {
    let _serial = serial();
    let data = tutorial_data(3);
    let fit = |precision: Precision| {
        tch::manual_seed(11);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Recording::new(&vs);
        let grads: Arc<Mutex<Vec<Kind>>> = Default::default();
        let grads_seen = grads.clone();
        let settings: Arc<Mutex<Option<Shown>>> = Default::default();
        let settings_seen = settings.clone();
        let history = Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-2)
            .epochs(6)
            .seed(4)
            .validation_split(0.2)
            .precision(precision)
            .hooks(Hooks::none())
            .add_hook(
                HookSpec::new(Event::TrainBegin, "settings"),
                move |ctx: &HookContext| {
                    let s = ctx.settings();
                    *settings_seen.lock().unwrap() = Some((s.precision(), s.grad_scaler()));
                    assert_eq!(ctx.grad_scale(), None, "no scaler");
                },
            )
            .add_hook(
                HookSpec::new(Event::AfterBackward, "grad_kinds"),
                move |vs: &VarStore| {
                    let mut grads = grads_seen.lock().unwrap();
                    grads.extend(vs.trainable_variables().iter().map(|v| v.grad().kind()));
                },
            )
            .fit(&data)
            .unwrap();
        let after: Vec<Kind> = vs.trainable_variables().iter().map(|v| v.kind()).collect();
        let grads = grads.lock().unwrap().clone();
        let settings = settings.lock().unwrap().unwrap();
        (history, model.kinds(), after, grads, settings)
    };

    let (fp32, kinds, after, grads, settings) = fit(Precision::Fp32);
    assert_eq!(
        kinds,
        [(true, Kind::Float, Kind::Float), (false, Kind::Float, Kind::Float)]
    );
    assert!(after.iter().chain(&grads).all(|k| *k == Kind::Float));
    assert_eq!(settings, (Precision::Fp32, None));

    let (bf16, kinds, after, grads, settings) = fit(Precision::Bf16Mixed);
    // The matmul in bf16, in training and in validation; the weights it reads stay fp32.
    assert_eq!(
        kinds,
        [
            (true, Kind::BFloat16, Kind::Float),
            (false, Kind::BFloat16, Kind::Float)
        ]
    );
    assert!(after.iter().all(|k| *k == Kind::Float), "weights stay fp32: {after:?}");
    assert!(
        grads.len() == 4 * 25 * 6 && grads.iter().all(|k| *k == Kind::Float),
        "{grads:?}"
    );
    assert_eq!(settings, (Precision::Bf16Mixed, None));
    // Autocast is off again after the fit.
    let a = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
    assert_eq!(a.matmul(&a).kind(), Kind::Float);

    // It trains, and ends near fp32: bf16 keeps 8 bits of mantissa, so its losses differ from
    // fp32's in the second or third digit.
    let (first, last) = (bf16.epochs()[0].loss(), bf16.last().unwrap().loss());
    assert!(last < first - 0.02, "bf16 trains: {first} → {last}");
    let fp32_last = fp32.last().unwrap().loss();
    let (val, fp32_val) = (
        bf16.last().unwrap().val_loss().unwrap(),
        fp32.last().unwrap().val_loss().unwrap(),
    );
    println!("final loss fp32 {fp32_last:.5}, bf16 {last:.5}; val_loss fp32 {fp32_val:.5}, bf16 {val:.5}");
    assert!((last - fp32_last).abs() < 0.01, "fp32 {fp32_last}, bf16 {last}");
    assert!((val - fp32_val).abs() < 0.02, "fp32 {fp32_val}, bf16 {val}");
    // The losses and metrics are fp32 values (not rounded to bf16's 8 bits).
    let bf16_rounded = |v: f64| {
        Tensor::from(v as f32)
            .to_kind(Kind::BFloat16)
            .to_kind(Kind::Float)
            .double_value(&[])
    };
    assert!(bf16.metric("loss").iter().any(|v| bf16_rounded(*v) != *v as f32 as f64));

    // The tutorial's linear model: bf16 ends within 0.01 of fp32 too.
    let tutorial = |precision: Precision| {
        let (vs, model) = tutorial_model(2);
        Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-2)
            .epochs(4)
            .seed(4)
            .precision(precision)
            .hooks(Hooks::none())
            .fit(&data)
            .unwrap()
            .last()
            .unwrap()
            .loss()
    };
    let (fp32, bf16) = (tutorial(Precision::Fp32), tutorial(Precision::Bf16Mixed));
    println!("tutorial model: final loss fp32 {fp32:.5}, bf16 {bf16:.5}");
    assert!((fp32 - bf16).abs() < 0.01, "fp32 {fp32}, bf16 {bf16}");
}

/// What a fit with a scaler saw at each batch: the epoch and batch, the weights before the
/// batch, after it, the scaler's skips so far and its scale after the batch.
#[derive(Clone, Debug)]
struct Seen {
    batch: (usize, usize),
    before: Vec<f32>,
    after: Vec<f32>,
    skipped: u64,
    scale: Option<f64>,
    /// The gradients `on_after_backward` saw.
    grads: Vec<f32>,
}

/// Fits the tutorial model on `data` with SGD at `lr` for an epoch (32 batches), with `scaler`
/// (if any), gradients accumulated over `accumulate` batches; returns what each batch saw, the
/// history and the final weights.
fn watched(
    data: &TensorDataset,
    scaler: Option<GradScaler>,
    lr: f64,
    accumulate: usize,
) -> (Vec<Seen>, trainmon::History, Vec<f32>) {
    let (vs, model) = tutorial_model(2);
    let seen: Arc<Mutex<Vec<Seen>>> = Default::default();
    let (at_begin, at_backward, at_end) = (seen.clone(), seen.clone(), seen.clone());
    let mut trainer = Trainer::new(&vs, &model)
        .optimizer(nn::Sgd::default(), lr)
        .seed(4)
        .accumulate_gradients(accumulate)
        .hooks(Hooks::none())
        .add_hook(
            HookSpec::new(Event::BatchBegin, "before"),
            move |s: &TrainState, vs: &VarStore| {
                at_begin.lock().unwrap().push(Seen {
                    batch: (s.epoch(), s.batch()),
                    before: weights(vs),
                    after: Vec::new(),
                    skipped: 0,
                    scale: None,
                    grads: Vec::new(),
                });
            },
        )
        .add_hook(HookSpec::new(Event::AfterBackward, "grads"), move |vs: &VarStore| {
            at_backward.lock().unwrap().last_mut().unwrap().grads = gradients(vs);
        })
        .add_hook(HookSpec::new(Event::BatchEnd, "after"), move |ctx: &HookContext| {
            let mut seen = at_end.lock().unwrap();
            let last = seen.last_mut().unwrap();
            last.after = weights(ctx.var_store());
            last.skipped = ctx.history().scaler_skipped_steps();
            last.scale = ctx.grad_scale();
        });
    if let Some(scaler) = scaler {
        trainer = trainer.grad_scaler(scaler);
    }
    let history = trainer.fit(data).unwrap();
    let seen = seen.lock().unwrap().clone();
    (seen, history, weights(&vs))
}

#[test]
fn a_huge_scale_overflows_skips_those_steps_and_halves_until_training_proceeds() {
    let _serial = serial();
    let init = 2f64.powi(127);
    let data = large_data();
    let (seen, history, _) = watched(&data, Some(GradScaler::new().init_scale(init)), 1e-3, 1);
    let skipped = history.scaler_skipped_steps();
    let scales: Vec<f64> = seen.iter().map(|s| s.scale.unwrap()).collect();
    println!("skipped {skipped} of 32 steps; scales {scales:?}");
    assert!(seen[0].skipped == 1, "2^127 overflows at the first step");
    assert!(
        (3..=10).contains(&skipped),
        "then the scale comes down to what the gradients allow"
    );
    let mut scale = init;
    for (i, s) in seen.iter().enumerate() {
        let before = if i == 0 { 0 } else { seen[i - 1].skipped };
        if s.skipped > before {
            // A step skipped: counted once, the weights as they were, the scale halved; the
            // hooks saw the overflow.
            assert_eq!(s.skipped, before + 1, "batch {:?}", s.batch);
            assert_eq!(
                s.after, s.before,
                "a skipped step leaves the weights: batch {:?}",
                s.batch
            );
            scale /= 2.0;
            assert!(s.grads.iter().any(|g| !g.is_finite()), "batch {:?}", s.batch);
        } else {
            // A step taken: the scale stays (it grows after 2000 good steps).
            assert_ne!(s.after, s.before, "batch {:?} steps", s.batch);
            assert!(s.grads.iter().all(|g| g.is_finite()), "batch {:?}", s.batch);
        }
        assert_eq!(s.scale, Some(scale), "batch {:?}", s.batch);
    }
    assert_eq!(seen.last().unwrap().skipped, skipped);
    // history.json has the count as a plain number.
    let json = serde_json::to_value(&history).unwrap();
    assert_eq!(json["scaler_skipped_steps"], serde_json::json!(skipped));

    // At the first step not skipped, the hooks saw the unscaled gradients: those of the same
    // weights on the same batch without a scaler (a fit at learning rate 0 keeps its weights).
    let first = seen.iter().position(|s| s.after != s.before).unwrap();
    let (plain, plain_history, _) = watched(&data, None, 0.0, 1);
    assert_eq!(plain_history.scaler_skipped_steps(), 0);
    assert!(plain.iter().all(|s| s.scale.is_none()));
    assert_eq!(seen[first].before, plain[first].before, "the same weights");
    assert!(
        close(&seen[first].grads, &plain[first].grads, 1e-6),
        "{:?} vs {:?}",
        seen[first].grads,
        plain[first].grads
    );
}

#[test]
fn the_scale_grows_after_its_interval_and_a_scaled_fit_trains_as_an_unscaled_one() {
    let _serial = serial();
    let scaler = GradScaler::new().init_scale(1024.0).growth_interval(3);
    let data = tutorial_data(3);
    let (seen, history, end) = watched(&data, Some(scaler), 0.1, 1);
    assert_eq!(history.scaler_skipped_steps(), 0);
    let scales: Vec<f64> = seen.iter().take(7).map(|s| s.scale.unwrap()).collect();
    assert_eq!(scales, [1024.0, 1024.0, 2048.0, 2048.0, 2048.0, 4096.0, 4096.0]);
    // The hooks see unscaled gradients at every step, and the fit ends where the one without a
    // scaler does.
    let (plain, _, plain_end) = watched(&data, None, 0.1, 1);
    for (s, p) in seen.iter().zip(&plain) {
        assert!(close(&s.grads, &p.grads, 1e-6), "batch {:?}", s.batch);
    }
    assert!(close(&end, &plain_end, 1e-5));
}

#[test]
fn with_accumulation_the_gradients_are_unscaled_once_per_window() {
    let _serial = serial();
    let scaler = GradScaler::new().init_scale(1024.0);
    let data = tutorial_data(3);
    let (seen, _, _) = watched(&data, Some(scaler), 0.1, 2);
    let (plain, _, _) = watched(&data, None, 0.1, 2);
    assert_eq!(seen.len(), 32);
    for (s, p) in seen.iter().zip(&plain) {
        let scaled: Vec<f32> = p.grads.iter().map(|g| g * 1024.0).collect();
        if s.batch.1 % 2 == 1 {
            // Within a window: the sum so far, still scaled.
            assert!(close(&s.grads, &scaled, 1e-6), "batch {:?}", s.batch);
        } else {
            // At its end: unscaled.
            assert!(close(&s.grads, &p.grads, 1e-6), "batch {:?}", s.batch);
        }
    }

    // Overflow: a window is skipped as one step, the scale halved once per window.
    let init = 2f64.powi(127);
    let (seen, history, _) = watched(&large_data(), Some(GradScaler::new().init_scale(init)), 1e-3, 2);
    let skipped = history.scaler_skipped_steps();
    assert!(skipped >= 1);
    let mut scale = init;
    for (i, s) in seen.iter().enumerate() {
        let before = if i == 0 { 0 } else { seen[i - 1].skipped };
        if s.batch.1 % 2 == 1 {
            // Within a window: no step, no check, no update.
            assert_eq!((s.skipped, &s.after), (before, &s.before), "batch {:?}", s.batch);
        } else if s.skipped > before {
            assert_eq!((s.skipped, &s.after), (before + 1, &s.before), "batch {:?}", s.batch);
            scale /= 2.0;
        }
        assert_eq!(
            s.scale,
            Some(scale),
            "halved once per skipped window: batch {:?}",
            s.batch
        );
    }
    assert_eq!(seen.last().unwrap().skipped, skipped);
}

/// How a fit ended, to the bit: the weights, the epochs' losses, the steps skipped, the scale.
#[derive(Debug, PartialEq)]
struct Ending {
    weights: Vec<u32>,
    losses: Vec<u64>,
    skipped: u64,
    scale: Option<f64>,
}

/// A fit that fails after a given batch (`None`: never), for the resume test.
static FAIL_AFTER: Mutex<Option<(usize, usize)>> = Mutex::new(None);

/// A resumable bf16 fit with a scaler whose scale grows into overflow every few steps (so that
/// its state matters), with step points.
fn resumable_fit(dir: &std::path::Path) -> trainmon::Result<Ending> {
    let data = large_data();
    tch::manual_seed(8);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = nn::seq_t()
        .add(nn::linear(vs.root() / "fc1", 20, 16, Default::default()))
        .add_fn(|x| x.relu())
        .add_fn_t(|x, train| x.dropout(0.2, train))
        .add(nn::linear(vs.root() / "fc2", 16, 2, Default::default()));
    let scale: Arc<Mutex<Option<f64>>> = Default::default();
    let scale_seen = scale.clone();
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-2)
        .epochs(3)
        .seed(4)
        .precision(Precision::Bf16Mixed)
        .grad_scaler(GradScaler::new().init_scale(2f64.powi(120)).growth_interval(3))
        .resumable(dir)
        .resumable_steps(4)
        .hooks(Hooks::none())
        .add_hook(HookSpec::new(Event::BatchEnd, "fail"), move |ctx: &HookContext| {
            *scale_seen.lock().unwrap() = ctx.grad_scale();
            let s = ctx.state();
            if *FAIL_AFTER.lock().unwrap() == Some((s.epoch(), s.batch())) {
                return Err(format!(
                    "the process dies after batch {} of epoch {}",
                    s.batch(),
                    s.epoch()
                ));
            }
            Ok(())
        })
        .fit(&data)?;
    let scale = *scale.lock().unwrap();
    Ok(Ending {
        weights: weights(&vs).iter().map(|w| w.to_bits()).collect(),
        losses: history.metric("loss").iter().map(|l| l.to_bits()).collect(),
        skipped: history.scaler_skipped_steps(),
        scale,
    })
}

#[test]
fn a_resumed_fit_with_a_scaler_ends_bit_identical_to_the_uninterrupted_one() {
    let _serial = serial();
    let (whole, cut) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    *FAIL_AFTER.lock().unwrap() = None;
    let uninterrupted = resumable_fit(whole.path()).unwrap();
    let skips = uninterrupted.skipped;
    assert!(skips >= 3, "the scale overflows now and then: {skips} skips");
    // Dies after batch 18 of epoch 2 (step 43): it goes on from the point of step 40 (batch 15).
    *FAIL_AFTER.lock().unwrap() = Some((2, 18));
    let err = resumable_fit(cut.path()).unwrap_err();
    assert!(format!("{err:#}").contains("dies after batch 18 of epoch 2"), "{err:#}");
    *FAIL_AFTER.lock().unwrap() = None;
    let resumed = resumable_fit(cut.path()).unwrap();
    assert_eq!(resumed.skipped, skips, "the skips of both processes counted");
    assert_eq!(resumed.scale, uninterrupted.scale, "the same scale at the end");
    assert_eq!(resumed.losses, uninterrupted.losses, "the same losses, to the bit");
    assert!(resumed == uninterrupted, "the same weights, to the bit");
}

#[test]
fn bad_precision_settings_are_errors_before_the_first_batch() {
    let _serial = serial();
    let data: TensorDataset = tutorial_data(3);
    let (vs, model) = tutorial_model(2);
    let before = weights(&vs);
    let fit = |precision: Precision, scaler: Option<GradScaler>| {
        let batches = Arc::new(Mutex::new(0));
        let counted = batches.clone();
        let mut trainer = Trainer::new(&vs, &model)
            .optimizer(nn::Sgd::default(), 0.1)
            .precision(precision)
            .hooks(Hooks::none())
            .add_hook(HookSpec::new(Event::BatchBegin, "count"), move || {
                *counted.lock().unwrap() += 1
            });
        if let Some(scaler) = scaler {
            trainer = trainer.grad_scaler(scaler);
        }
        let err = trainer.fit(&data).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Config {
                    setting: "precision" | "grad_scaler",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(*batches.lock().unwrap(), 0, "no batch");
        err.to_string()
    };
    let err = fit(Precision::Fp16Mixed, None);
    assert!(
        err.contains("fp16 autocast needs CUDA; on the CPU use Precision::Bf16Mixed"),
        "{err}"
    );
    for (scaler, named) in [
        (
            GradScaler::new().init_scale(0.0),
            "init_scale must be positive and finite",
        ),
        (GradScaler::new().init_scale(-4.0), "got -4"),
        (GradScaler::new().init_scale(f64::INFINITY), "got inf"),
        (GradScaler::new().init_scale(1e40), "as a 32-bit float"),
        (
            GradScaler::new().growth_factor(0.5),
            "growth_factor must be finite and above 1, got 0.5",
        ),
        (
            GradScaler::new().backoff_factor(1.5),
            "backoff_factor must be between 0 and 1 (exclusive), got 1.5",
        ),
        (GradScaler::new().backoff_factor(f64::NAN), "backoff_factor"),
        (
            GradScaler::new().growth_interval(0),
            "growth_interval must be between 1",
        ),
    ] {
        let err = fit(Precision::Bf16Mixed, Some(scaler));
        assert!(err.contains(named), "{scaler:?}: {err}");
    }
    assert_eq!(weights(&vs), before, "nothing trained");

    // A valid scaler with bf16 is what the settings show.
    let scaler = GradScaler::new().init_scale(256.0);
    let shown: Arc<Mutex<Option<GradScaler>>> = Default::default();
    let shown_in = shown.clone();
    Trainer::new(&vs, &model)
        .optimizer(nn::Sgd::default(), 0.1)
        .precision(Precision::Bf16Mixed)
        .grad_scaler(scaler)
        .hooks(Hooks::none())
        .add_hook(
            HookSpec::new(Event::TrainBegin, "settings"),
            move |ctx: &HookContext| {
                *shown_in.lock().unwrap() = ctx.settings().grad_scaler();
                assert_eq!(ctx.grad_scale(), Some(256.0));
            },
        )
        .fit(&data)
        .unwrap();
    assert_eq!(*shown.lock().unwrap(), Some(scaler));
}

#[test]
fn the_summary_says_how_many_steps_the_scaler_skipped() {
    let _serial = serial();
    let data = large_data();
    let fit = |scaler: GradScaler| {
        let (vs, model) = tutorial_model(2);
        let (history, lines) = trainmon_tests::capture_logs(|| {
            Trainer::new(&vs, &model)
                .optimizer(nn::Sgd::default(), 1e-3)
                .seed(4)
                .grad_scaler(scaler)
                .hooks(Hooks::none())
                .with(trainmon::hooks::Summary::new())
                .fit(&data)
                .unwrap()
        });
        let line = lines
            .into_iter()
            .map(|(_, m)| m)
            .find(|m| m.contains("gradient scaler"));
        (history.scaler_skipped_steps(), line)
    };
    let (skipped, line) = fit(GradScaler::new().init_scale(2f64.powi(127)));
    let want = format!("summary: the gradient scaler skipped {skipped} of 32 optimizer steps (gradients not finite)");
    assert_eq!(line.as_deref(), Some(want.as_str()));
    assert_eq!(fit(GradScaler::new()), (0, None), "nothing said without a skip");
}
