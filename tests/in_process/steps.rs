//! A training step of the user's (`TrainStep`, `Trainer::fit_steps`): the classifier written as
//! a step trains to the bit as `fit` does; batches of the user's own type (a derived struct, a
//! map by name) train, validate and resume to the bit; every step event fires; accumulation,
//! clipping and bf16 autocast work around it; a step's bad loss, error or panic and a batch
//! whose tensors disagree are errors naming the batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tch::nn::{self, Module};
use tch::{Kind, Reduction, Tensor};
use trainmon::prelude::*;
use trainmon::{Accuracy, BatchDataset, BoxError, Error, Event, GradScaler, HookSpec, Hooks, Precision, Rollback};
use trainmon_tests::{poisoned_data, tutorial_data, tutorial_model, weights, ClassifierByHand, ClassifierStep};

/// libtorch's generator is one per process: the tests that seed it and compare runs take turns.
use trainmon_tests::serial;

/// `trainer` with the settings these tests share: Adam, 3 epochs of batches of 16, seeded, no
/// registered hook.
fn trainer(trainer: Trainer<'_>) -> Trainer<'_> {
    trainer
        .optimizer(nn::Adam::default(), 1e-2)
        .epochs(3)
        .batch_size(16)
        .seed(5)
        .hooks(Hooks::none())
}

#[test]
fn the_classifier_as_a_step_trains_to_the_bit_as_fit() {
    let _serial = serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let own = trainer(Trainer::new(&vs, &model)).fit(&data).unwrap();
    let own_weights = weights(&vs);
    let (vs, model) = tutorial_model(2);
    let stepped = trainer(Trainer::for_steps(&vs))
        .metric(Accuracy::default)
        .fit_steps(&mut ClassifierStep { model: &model }, &data, None)
        .unwrap();
    assert_eq!(weights(&vs), own_weights);
    assert_eq!(stepped.metric("loss"), own.metric("loss"));
    assert_eq!(stepped.metric("accuracy"), own.metric("accuracy"));
    // Hooks see the step named as the loss.
    assert_eq!(stepped.len(), 3);
}

/// A sequence batch of the user's: ids, a mask, labels.
#[derive(Batch)]
struct Tokens {
    ids: Tensor,
    mask: Tensor,
    labels: Tensor,
}

/// 200 sequences of 6 tokens of 5 kinds; each label is the next token (the last wraps around).
struct Sequences {
    ids: Tensor,
}

impl Sequences {
    fn new() -> Self {
        let starts = Tensor::arange(200, tch::kind::INT64_CPU).remainder(5);
        let ids = (starts.unsqueeze(1) + Tensor::arange(6, tch::kind::INT64_CPU).unsqueeze(0)).remainder(5);
        Sequences { ids }
    }
}

impl BatchDataset for Sequences {
    type Batch = Tokens;

    fn len(&self) -> usize {
        self.ids.size()[0] as usize
    }

    fn batch(&self, indices: &[i64]) -> trainmon::Result<Tokens> {
        let ids = self.ids.index_select(0, &Tensor::from_slice(indices));
        Ok(Tokens {
            mask: ids.ones_like().to_kind(Kind::Float),
            labels: (&ids + 1).remainder(5),
            ids,
        })
    }
}

/// An embedding and a linear head; the loss is the masked mean cross-entropy over tokens.
struct NextToken {
    embed: nn::Embedding,
    head: nn::Linear,
}

impl NextToken {
    fn new(vs: &nn::VarStore) -> Self {
        tch::manual_seed(4);
        NextToken {
            embed: nn::embedding(vs.root() / "embed", 5, 8, Default::default()),
            head: nn::linear(vs.root() / "head", 8, 5, Default::default()),
        }
    }
}

impl TrainStep<Tokens> for NextToken {
    fn training_step(&mut self, batch: &Tokens, _: &StepContext<'_>) -> Result<StepOutput, BoxError> {
        let logits = self.head.forward(&self.embed.forward(&batch.ids));
        let per_token = logits.f_view([-1, 5])?.f_cross_entropy_loss::<Tensor>(
            &batch.labels.f_view([-1])?,
            None,
            Reduction::None,
            -100,
            0.0,
        )?;
        let mask = batch.mask.f_view([-1])?;
        let loss = (per_token * &mask).f_sum(Kind::Float)? / mask.f_sum(Kind::Float)?;
        Ok(StepOutput::loss(loss).with_outputs(logits.f_view([-1, 5])?, batch.labels.f_view([-1])?))
    }
}

#[test]
fn batches_of_a_struct_train_and_validate() {
    let _serial = serial();
    let data = Sequences::new();
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut step = NextToken::new(&vs);
    let history = trainer(Trainer::for_steps(&vs))
        .epochs(8)
        .validation_split(0.25)
        .metric(Accuracy::default)
        .fit_steps(&mut step, &data, None)
        .unwrap();
    let loss = history.metric("loss");
    assert!(loss[7] < loss[0] / 4.0, "it learns the next token: {loss:?}");
    // 150 training sequences, 50 validation ones; the accuracy is over tokens.
    assert_eq!(history.epochs()[0].samples(), 150);
    let val = history.metric("val_accuracy");
    assert!(val[7] > 0.95, "{val:?}");
    // The same set as an argument.
    let valid = Sequences::new();
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut step = NextToken::new(&vs);
    let history = trainer(Trainer::for_steps(&vs))
        .epochs(1)
        .fit_steps(&mut step, &data, Some(&valid))
        .unwrap();
    assert_eq!(history.metric("val_loss").len(), 1);
}

/// Batches as a map by name.
struct Named(Sequences);

impl BatchDataset for Named {
    type Batch = HashMap<String, Tensor>;

    fn len(&self) -> usize {
        self.0.len()
    }

    fn batch(&self, indices: &[i64]) -> trainmon::Result<HashMap<String, Tensor>> {
        let Tokens { ids, labels, .. } = self.0.batch(indices)?;
        Ok(HashMap::from([
            ("input_ids".to_owned(), ids),
            ("labels".to_owned(), labels),
        ]))
    }
}

struct NamedStep(NextToken);

impl TrainStep<HashMap<String, Tensor>> for NamedStep {
    fn training_step(
        &mut self,
        batch: &HashMap<String, Tensor>,
        ctx: &StepContext<'_>,
    ) -> Result<StepOutput, BoxError> {
        let ids = &batch["input_ids"];
        let tokens = Tokens {
            mask: ids.ones_like().to_kind(Kind::Float),
            ids: ids.shallow_clone(),
            labels: batch["labels"].shallow_clone(),
        };
        self.0.training_step(&tokens, ctx)
    }
}

/// Every event of a step fires at each batch; accumulation steps the optimizer every other
/// batch; clipping and hooks' learning rates apply; the running loss is the step's.
#[test]
fn every_step_event_fires_with_accumulation_and_clipping() {
    let _serial = serial();
    let data = Named(Sequences::new());
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut step = NamedStep(NextToken::new(&vs));
    let counts: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
    let counted = |i: usize| {
        let counts = counts.clone();
        move || {
            counts[i].fetch_add(1, Ordering::SeqCst);
        }
    };
    let history = trainer(Trainer::for_steps(&vs))
        .epochs(2)
        .accumulate_gradients(2)
        .clip_grad_norm(0.5)
        .add_hook(HookSpec::new(Event::BeforeBackward, "before_backward"), counted(0))
        .add_hook(HookSpec::new(Event::AfterBackward, "after_backward"), counted(1))
        .add_hook(HookSpec::new(Event::BeforeOptimizerStep, "before_step"), counted(2))
        .add_hook(HookSpec::new(Event::BatchEnd, "batch_end"), counted(3))
        .fit_steps(&mut step, &data, None)
        .unwrap();
    // 200 samples in batches of 16: 13 batches, 7 optimizer steps an epoch.
    let seen: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(seen, [26, 26, 14, 26]);
    assert!(history.metric("loss").iter().all(|l| l.is_finite()));
}

/// A fit resumed from a point within an epoch ends with the weights and history of one never
/// interrupted, to the bit.
#[test]
fn a_step_fit_resumes_within_an_epoch_to_the_bit() {
    let _serial = serial();
    let data = Sequences::new();
    resumes_to_the_bit(18, |dir, interrupt| {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut step = NextToken::new(&vs);
        let history = trainer(Trainer::for_steps(&vs))
            .resumable(dir)
            .resumable_steps(5)
            .metric(Accuracy::default)
            .add_hook(HookSpec::new(Event::BatchEnd, "interrupt"), interrupt)
            .fit_steps(&mut step, &data, None)
            .unwrap();
        (history, weights(&vs))
    });
}

/// Runs `fit` (in a resume directory, with a hook that interrupts it) uninterrupted, then
/// interrupted at global step `at`, then resumed: the resumed fit ends with the weights and the
/// metrics of the uninterrupted one, to the bit.
fn resumes_to_the_bit(
    at: u64,
    fit: impl Fn(&std::path::Path, Box<dyn FnMut(&TrainState) -> Control + Send>) -> (trainmon::History, Vec<f32>),
) {
    let interrupt = |stop_at: Option<u64>| -> Box<dyn FnMut(&TrainState) -> Control + Send> {
        Box::new(move |state: &TrainState| {
            if Some(state.global_step()) == stop_at {
                Control::stop("interrupted")
            } else {
                Control::Continue
            }
        })
    };
    let whole = tempfile::tempdir().unwrap();
    let (uninterrupted, expected) = fit(whole.path(), interrupt(None));
    let dir = tempfile::tempdir().unwrap();
    let (stopped, _) = fit(dir.path(), interrupt(Some(at)));
    assert!(stopped.stop_reason().is_some());
    let (resumed, got) = fit(dir.path(), interrupt(None));
    assert_eq!(got, expected);
    for name in ["loss", "accuracy"] {
        assert_eq!(resumed.metric(name), uninterrupted.metric(name), "{name}");
    }
}

#[test]
fn bf16_autocast_runs_around_the_step() {
    let _serial = serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let history = trainer(Trainer::for_steps(&vs))
        .precision(Precision::Bf16Mixed)
        .fit_steps(&mut ClassifierStep { model: &model }, &data, None)
        .unwrap();
    let loss = history.metric("loss");
    assert!(loss.iter().all(|l| l.is_finite()), "{loss:?}");
    assert_eq!(vs.variables()["fc.weight"].kind(), Kind::Float, "the weights stay fp32");
}

/// A step whose loss or batch is wrong, which fails or panics: the error names the batch and
/// the cause, before any backward pass.
#[test]
fn bad_steps_and_batches_are_errors_naming_the_cause() {
    let _serial = serial();
    struct Bad(&'static str);
    impl TrainStep<Tokens> for Bad {
        fn training_step(&mut self, batch: &Tokens, _: &StepContext<'_>) -> Result<StepOutput, BoxError> {
            let x = batch.mask.shallow_clone();
            match self.0 {
                "not_scalar" => Ok(StepOutput::loss(x)),
                "no_gradient" => Ok(StepOutput::loss(x.sum(Kind::Float))),
                "fails" => Err("the tokenizer is missing".into()),
                "panics" => panic!("index out of range"),
                "torch" => Ok(StepOutput::loss(x.f_view([7, -1])?)),
                _ => unreachable!(),
            }
        }
    }
    let data = Sequences::new();
    let fit = |what: &'static str| {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _model = nn::linear(vs.root(), 2, 2, Default::default());
        trainer(Trainer::for_steps(&vs))
            .fit_steps(&mut Bad(what), &data, None)
            .unwrap_err()
    };
    let err = fit("not_scalar");
    assert!(matches!(err, Error::Step { .. }), "{err:?}");
    assert_eq!(
        format!("{err:#}"),
        "the step failed on batch 1 of epoch 1: it returned a loss of shape [16, 6]: a loss is one number (reduce \
         it, e.g. with `.mean(Kind::Float)`)"
    );
    let err = format!("{:#}", fit("no_gradient"));
    assert!(err.contains("it returned a loss without a gradient"), "{err}");
    assert_eq!(
        format!("{:#}", fit("fails")),
        "the step failed on batch 1 of epoch 1: the tokenizer is missing"
    );
    // libtorch's error, its first line: no C++ stack.
    assert_eq!(
        format!("{:#}", fit("torch")),
        "the step failed on batch 1 of epoch 1: libtorch refused an operation: shape '[7, -1]' is invalid for input \
         of size 96"
    );
    let err = format!("{:#}", fit("panics"));
    assert!(
        err.starts_with("the step failed on batch 1 of epoch 1: panicked: index out of range"),
        "{err}"
    );

    // A batch whose tensors disagree in their first dimension.
    struct Ragged;
    impl BatchDataset for Ragged {
        type Batch = Tokens;
        fn len(&self) -> usize {
            40
        }
        fn batch(&self, indices: &[i64]) -> trainmon::Result<Tokens> {
            let n = indices.len() as i64;
            let ids = Tensor::zeros([n, 6], tch::kind::INT64_CPU);
            Ok(Tokens {
                mask: Tensor::ones([n, 6], tch::kind::FLOAT_CPU),
                labels: Tensor::zeros([n - 1, 6], tch::kind::INT64_CPU),
                ids,
            })
        }
    }
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut step = NextToken::new(&vs);
    let err = trainer(Trainer::for_steps(&vs))
        .shuffle(false)
        .fit_steps(&mut step, &Ragged, None)
        .unwrap_err();
    assert!(matches!(err, Error::Data(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid dataset: the batch of samples [0, 1, 2, 3, 4, 5, …] (16 samples): invalid dataset: the batch's \
         tensors disagree in their first dimension (the samples): `ids` has 16, `labels` has 15 ([15, 6])"
    );
}

#[test]
fn settings_a_step_fit_cannot_take_are_refused() {
    let _serial = serial();
    let data = Sequences::new();
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut step = NextToken::new(&vs);
    // Metrics without outputs.
    struct LossOnly<'s>(&'s mut NextToken);
    impl TrainStep<Tokens> for LossOnly<'_> {
        fn training_step(&mut self, batch: &Tokens, ctx: &StepContext<'_>) -> Result<StepOutput, BoxError> {
            Ok(StepOutput::loss(self.0.training_step(batch, ctx)?.into_loss()))
        }
    }
    let err = trainer(Trainer::for_steps(&vs))
        .metric(Accuracy::default)
        .fit_steps(&mut LossOnly(&mut step), &data, None)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the metric `accuracy` compares outputs and targets, and the step returned none"),
        "{err}"
    );
    // A trainer without a model has no `fit`.
    let err = trainer(Trainer::for_steps(&vs)).fit(&tutorial_data(1)).unwrap_err();
    assert!(err.to_string().contains("train it with your step, `fit_steps"), "{err}");
    // The validation set goes to `fit_steps`.
    let pairs = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let err = trainer(Trainer::for_steps(&vs))
        .validation(&pairs)
        .fit_steps(&mut ClassifierStep { model: &model }, &pairs, None)
        .unwrap_err();
    assert!(
        err.to_string().contains("takes its validation set as an argument"),
        "{err}"
    );
}

/// Two linear maps in one `VarStore`, under `a` and `b`, each with its own optimizer.
struct TwoParts {
    a: nn::Linear,
    b: nn::Linear,
    /// Which parts the step steps, by hand.
    steps: &'static [&'static str],
}

impl TwoParts {
    fn new(vs: &nn::VarStore, steps: &'static [&'static str]) -> Self {
        tch::manual_seed(6);
        TwoParts {
            a: nn::linear(vs.root() / "a", 20, 2, Default::default()),
            b: nn::linear(vs.root() / "b", 20, 2, Default::default()),
            steps,
        }
    }
}

impl TrainStep<(Tensor, Tensor)> for TwoParts {
    fn manual_optimization(&self) -> bool {
        true
    }

    fn training_step(&mut self, (x, y): &(Tensor, Tensor), ctx: &StepContext<'_>) -> Result<StepOutput, BoxError> {
        let mut total = Tensor::zeros([], tch::kind::FLOAT_CPU);
        for &part in self.steps {
            let model = if part == "a" { &self.a } else { &self.b };
            ctx.zero_grad(part)?;
            // Noise drawn from libtorch's generator, as a GAN's: resumed, it draws alike.
            let noisy = x + Tensor::randn_like(x) * 0.1;
            let loss = model
                .forward(&noisy)
                .f_cross_entropy_loss::<Tensor>(y, None, Reduction::Mean, -100, 0.0)?;
            ctx.backward(&loss)?;
            ctx.optimizer_step(part)?;
            total += loss.detach();
        }
        Ok(StepOutput::loss(total))
    }
}

fn two_optimizers<'a>(vs: &'a nn::VarStore) -> Trainer<'a> {
    Trainer::for_steps(vs)
        .optimizer_for("a", "a", nn::Adam::default(), 1e-2)
        .optimizer_for("b", "b", nn::Sgd::default(), 1e-1)
        .epochs(3)
        .batch_size(16)
        .seed(5)
        .hooks(Hooks::none())
}

/// A step that optimizes by hand: each backward pass and optimizer step it asks for fires its
/// events; an optimizer it does not step leaves its variables alone; each batch is a global
/// step.
#[test]
fn a_step_by_hand_steps_each_optimizer_when_it_says() {
    let _serial = serial();
    let data = tutorial_data(1);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut step = TwoParts::new(&vs, &["a", "b"]);
    let counts: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
    let counted = |i: usize| {
        let counts = counts.clone();
        move || {
            counts[i].fetch_add(1, Ordering::SeqCst);
        }
    };
    let steps = Arc::new(AtomicUsize::new(0));
    let last_step = steps.clone();
    let history = two_optimizers(&vs)
        .add_hook(HookSpec::new(Event::BeforeBackward, "before_backward"), counted(0))
        .add_hook(HookSpec::new(Event::AfterBackward, "after_backward"), counted(1))
        .add_hook(HookSpec::new(Event::BeforeOptimizerStep, "before_step"), counted(2))
        .add_hook(HookSpec::new(Event::TrainEnd, "steps"), move |state: &TrainState| {
            last_step.store(state.global_step() as usize, Ordering::SeqCst)
        })
        .fit_steps(&mut step, &data, None)
        .unwrap();
    // 1000 samples in batches of 16: 63 batches an epoch, 2 backward passes and steps each.
    let seen: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(seen, [2 * 189, 2 * 189, 2 * 189]);
    assert_eq!(steps.load(Ordering::SeqCst), 189);
    let loss = history.metric("loss");
    assert!(loss[2] < loss[0], "both parts learn: {loss:?}");

    // Only `a` stepped: `b` keeps its weights.
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut step = TwoParts::new(&vs, &["a"]);
    let b_before = step.b.ws.copy();
    let a_before = step.a.ws.copy();
    two_optimizers(&vs).fit_steps(&mut step, &data, None).unwrap();
    assert!(step.b.ws.equal(&b_before), "`b` was never stepped");
    assert!(!step.a.ws.equal(&a_before));
}

/// Both optimizers' states are in the resume point: a fit resumed within an epoch ends as one
/// never interrupted, to the bit.
#[test]
fn a_step_by_hand_resumes_both_optimizers_to_the_bit() {
    let _serial = serial();
    let data = tutorial_data(1);
    resumes_to_the_bit(90, |dir, interrupt| {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut step = TwoParts::new(&vs, &["a", "b"]);
        let history = two_optimizers(&vs)
            .resumable(dir)
            .resumable_steps(20)
            .add_hook(HookSpec::new(Event::BatchEnd, "interrupt"), interrupt)
            .fit_steps(&mut step, &data, None)
            .unwrap();
        (history, weights(&vs))
    });
}

#[test]
fn optimizing_by_hand_wrongly_is_an_error_naming_the_cause() {
    let _serial = serial();
    let data = tutorial_data(1);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut step = TwoParts::new(&vs, &["a", "c"]);
    let err = two_optimizers(&vs).fit_steps(&mut step, &data, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid trainer setup (`optimizer_for`): no optimizer named `c`: the trainer has `a`, `b` (`optimizer_for`)"
    );
    // `ctx.backward` in a step the trainer optimizes.
    struct Automatic;
    impl TrainStep<(Tensor, Tensor)> for Automatic {
        fn training_step(&mut self, _: &(Tensor, Tensor), ctx: &StepContext<'_>) -> Result<StepOutput, BoxError> {
            ctx.backward(&Tensor::zeros([], tch::kind::FLOAT_CPU))?;
            unreachable!()
        }
    }
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let _model = TwoParts::new(&vs, &[]);
    let err = two_optimizers(&vs).fit_steps(&mut Automatic, &data, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("`ctx.backward` in a step that does not optimize by hand"),
        "{err}"
    );
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut step = TwoParts::new(&vs, &["a"]);
    // A part without variables; both kinds of optimizer.
    let err = Trainer::for_steps(&vs)
        .hooks(Hooks::none())
        .optimizer_for("c", "c", nn::Adam::default(), 1e-3)
        .fit_steps(&mut step, &data, None)
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "the optimizer could not be built: the optimizer `c`: no variable of the model is under `c` (made under `vs.root() / \"c\"`); it has a.bias, a.weight, b.bias, b.weight"
        ),
        "{err}"
    );
    let err = Trainer::for_steps(&vs)
        .hooks(Hooks::none())
        .optimizer(nn::Adam::default(), 1e-3)
        .optimizer_for("a", "a", nn::Adam::default(), 1e-3)
        .fit_steps(&mut step, &data, None)
        .unwrap_err();
    assert!(err.to_string().contains("both `optimizer`"), "{err}");
}

/// Settings added to a trainer.
type Settings = fn(Trainer<'_>) -> Trainer<'_>;

/// The settings a step by hand takes as the trainer's own step does, alone and together:
/// gradient accumulation, a gradient scaler, rollbacks.
fn by_hand_settings() -> [(&'static str, Settings); 4] {
    [
        ("accumulation", |t| t.accumulate_gradients(3)),
        ("a gradient scaler", |t| {
            t.grad_scaler(GradScaler::new().growth_interval(5))
        }),
        ("rollbacks", |t| t.rollback(Rollback::new().snapshot_every(2))),
        ("all three", |t| {
            t.accumulate_gradients(2)
                .grad_scaler(GradScaler::new().growth_interval(5))
                .rollback(Rollback::new().snapshot_every(2))
        }),
    ]
}

/// The classifier's trainer with its optimizer named `fc` (what [`ClassifierByHand`] steps).
fn fc_trainer(vs: &nn::VarStore) -> Trainer<'_> {
    Trainer::for_steps(vs)
        .optimizer_for("fc", "fc", nn::Adam::default(), 1e-2)
        .epochs(3)
        .batch_size(16)
        .seed(5)
        .metric(Accuracy::default)
        .hooks(Hooks::none())
}

/// A step by hand with gradient accumulation, a gradient scaler, rollbacks — each alone and all
/// together — trains to the bit as the same step optimized by the trainer: over data with NaN
/// in one sample (but for accumulation alone, which nothing would save from it), the scaler
/// skips that batch's steps (alone) or the rollback skips the batch.
#[test]
fn a_step_by_hand_accumulates_scales_and_rolls_back_as_the_trainer_does() {
    let _serial = serial();
    let bits = |values: Vec<f64>| values.into_iter().map(f64::to_bits).collect::<Vec<_>>();
    for (name, settings) in by_hand_settings() {
        let data = match name {
            "accumulation" => tutorial_data(1),
            _ => poisoned_data(1, 300),
        };
        let (vs, model) = tutorial_model(2);
        let automatic = settings(fc_trainer(&vs))
            .fit_steps(&mut ClassifierStep { model: &model }, &data, None)
            .unwrap();
        let expected = weights(&vs);
        let (vs, model) = tutorial_model(2);
        let by_hand = settings(fc_trainer(&vs))
            .fit_steps(&mut ClassifierByHand { model: &model }, &data, None)
            .unwrap();
        assert_eq!(weights(&vs), expected, "{name}");
        assert!(expected.iter().all(|w| w.is_finite()), "{name}");
        for metric in ["loss", "accuracy"] {
            assert_eq!(
                bits(by_hand.metric(metric)),
                bits(automatic.metric(metric)),
                "{name}: {metric}"
            );
        }
        assert_eq!(by_hand.skipped(), automatic.skipped(), "{name}");
        assert_eq!(
            by_hand.scaler_skipped_steps(),
            automatic.scaler_skipped_steps(),
            "{name}"
        );
        match name {
            "a gradient scaler" => assert_eq!(automatic.scaler_skipped_steps(), 3, "one step an epoch"),
            "accumulation" => {}
            _ => assert_eq!(automatic.skipped().len(), 3, "{name}: one rollback an epoch"),
        }
    }
}

/// A step by hand with accumulation, a gradient scaler and rollbacks resumes within an epoch to
/// the bit.
#[test]
fn a_step_by_hand_with_every_setting_resumes_to_the_bit() {
    let _serial = serial();
    let data = poisoned_data(1, 300);
    let (_, all_three) = by_hand_settings()[3];
    resumes_to_the_bit(50, |dir, interrupt| {
        let (vs, model) = tutorial_model(2);
        let history = all_three(fc_trainer(&vs))
            .resumable(dir)
            .resumable_steps(7)
            .add_hook(HookSpec::new(Event::BatchEnd, "interrupt"), interrupt)
            .fit_steps(&mut ClassifierByHand { model: &model }, &data, None)
            .unwrap();
        (history, weights(&vs))
    });
}

/// Hooks read the batch as its type: the dataset's own, or the features and targets of a
/// `Dataset`; another type is an error naming both.
#[test]
fn hooks_read_the_batch_typed() {
    let _serial = serial();
    // (event, the batch's ids' shape)
    type Seen = Vec<(String, Vec<i64>)>;
    let seen: Arc<std::sync::Mutex<Seen>> = Arc::default();
    let record = |event: &'static str| {
        let seen = seen.clone();
        move |batch: StepBatch<Tokens>| seen.lock().unwrap().push((event.to_owned(), batch.ids.size()))
    };
    let data = Sequences::new();
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut step = NextToken::new(&vs);
    trainer(Trainer::for_steps(&vs))
        .epochs(1)
        .validation_split(0.25)
        .add_hook(
            HookSpec::new(Event::AfterBackward, "after_backward"),
            record("after_backward"),
        )
        .add_hook(HookSpec::new(Event::BatchEnd, "batch_end"), record("batch_end"))
        .add_hook(
            HookSpec::new(Event::ValidationBatchEnd, "validation_batch_end"),
            record("validation"),
        )
        .fit_steps(&mut step, &data, None)
        .unwrap();
    let seen = seen.lock().unwrap();
    // 150 training sequences in batches of 16: 10 batches, the last of 6; 50 validation ones.
    assert_eq!(seen.iter().filter(|(e, _)| e == "batch_end").count(), 10);
    assert_eq!(seen.iter().filter(|(e, _)| e == "after_backward").count(), 10);
    assert_eq!(seen.iter().filter(|(e, _)| e == "validation").count(), 4);
    assert_eq!(seen[1], ("batch_end".to_owned(), vec![16, 6]));
    assert_eq!(seen[19], ("batch_end".to_owned(), vec![6, 6]));

    // The trainer's own step: `(Tensor, Tensor)`.
    let sizes: Arc<std::sync::Mutex<Vec<Vec<i64>>>> = Arc::default();
    let kept = sizes.clone();
    let pairs = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    trainer(Trainer::new(&vs, &model))
        .epochs(1)
        .add_hook(
            HookSpec::new(Event::BatchEnd, "pairs"),
            move |batch: StepBatch<(Tensor, Tensor)>| kept.lock().unwrap().push(batch.0.size()),
        )
        .fit(&pairs)
        .unwrap();
    assert_eq!(sizes.lock().unwrap()[0], [16, 20]);

    // Another type.
    let err = trainer(Trainer::new(&vs, &model))
        .add_hook(HookSpec::new(Event::BatchEnd, "wrong"), |_: StepBatch<Tokens>| {})
        .fit(&pairs)
        .unwrap_err();
    assert!(
        format!("{err:#}").contains(
            "parameter `StepBatch<in_process::steps::Tokens>`: this fit's batches are `(tch::Tensor, tch::Tensor)`"
        ),
        "{err:#}"
    );
}

/// The sequences of `Sequences`, kept in Rust memory (a loader's workers share the dataset:
/// `Sync`, which tensors are not); sample 37 cannot be built when `broken`, and panics when
/// `panics`.
struct Encoded {
    rows: Vec<[i64; 6]>,
    broken: bool,
    panics: bool,
}

impl Encoded {
    fn new(broken: bool) -> Self {
        let rows = (0..200).map(|i| std::array::from_fn(|t| (i + t as i64) % 5)).collect();
        Encoded {
            rows,
            broken,
            panics: false,
        }
    }
}

impl BatchDataset for Encoded {
    type Batch = Tokens;

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn batch(&self, indices: &[i64]) -> trainmon::Result<Tokens> {
        if self.broken && indices.contains(&37) {
            assert!(!self.panics, "sample 37 is out of range");
            return Err(Error::Data("sample 37 is corrupt".into()));
        }
        let flat: Vec<i64> = indices.iter().flat_map(|&i| self.rows[i as usize]).collect();
        let ids = Tensor::from_slice(&flat).view([-1, 6]);
        Ok(Tokens {
            mask: ids.ones_like().to_kind(Kind::Float),
            labels: (&ids + 1).remainder(5),
            ids,
        })
    }
}

/// Batches of the user's type built on a loader's workers: the fit is the one without workers,
/// to the bit (shuffled, with a validation split); a batch that fails on a worker names its
/// samples; prefetch without workers is refused.
#[test]
fn a_batch_loader_builds_typed_batches_on_workers_to_the_bit() {
    let _serial = serial();
    let fit = |workers: Option<usize>| {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut step = NextToken::new(&vs);
        let mut trainer = trainer(Trainer::for_steps(&vs)).validation_split(0.25);
        let history = match workers {
            None => trainer.fit_steps(&mut step, &Encoded::new(false), None),
            Some(n) => trainer.fit_steps(
                &mut step,
                &trainmon::BatchLoader::new(Encoded::new(false)).workers(n),
                None,
            ),
        }
        .unwrap();
        (history.metric("loss"), history.metric("val_loss"), weights(&vs))
    };
    let alone = fit(None);
    assert_eq!(fit(Some(1)), alone);
    assert_eq!(fit(Some(3)), alone);

    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut step = NextToken::new(&vs);
    let err = trainer(Trainer::for_steps(&vs))
        .shuffle(false)
        .fit_steps(
            &mut step,
            &trainmon::BatchLoader::new(Encoded::new(true)).workers(2),
            None,
        )
        .unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "the dataset could not build the batch of samples [32, 33, 34, 35, 36, 37, …] (16 samples): invalid \
         dataset: sample 37 is corrupt"
    );
    let panicking = Encoded {
        panics: true,
        ..Encoded::new(true)
    };
    let err = trainer(Trainer::for_steps(&vs))
        .shuffle(false)
        .fit_steps(&mut step, &trainmon::BatchLoader::new(panicking).workers(2), None)
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("(16 samples): panicked on loader worker"), "{message}");
    assert!(message.ends_with("sample 37 is out of range"), "{message}");
    let err = trainer(Trainer::for_steps(&vs))
        .fit_steps(
            &mut step,
            &trainmon::BatchLoader::new(Encoded::new(false)).workers(0).prefetch(2),
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("prefetch needs at least one worker"), "{err}");
}

/// A step that optimizes by hand validates with its training step: in validation its context's
/// optimizing calls do nothing.
#[test]
fn a_step_by_hand_validates_with_its_training_step() {
    let _serial = serial();
    let data = tutorial_data(1);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut step = TwoParts::new(&vs, &["a", "b"]);
    let history = two_optimizers(&vs)
        .validation_split(0.2)
        .fit_steps(&mut step, &data, None)
        .unwrap();
    let val = history.metric("val_loss");
    assert_eq!(val.len(), 3);
    assert!(val.iter().all(|v| v.is_finite()), "{val:?}");
}

/// Several optimizers: paths that overlap and names with `/` are refused; a first optimizer of
/// learning rate 0 leaves the others theirs when the trainer sets its rate (a resume point).
#[test]
fn named_optimizers_keep_their_own_learning_rates_and_parts() {
    let _serial = serial();
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut step = TwoParts::new(&vs, &["a", "b"]);
    let data = tutorial_data(1);
    let err = Trainer::for_steps(&vs)
        .hooks(Hooks::none())
        .optimizer_for("a", "a", nn::Sgd::default(), 0.1)
        .optimizer_for("again", "a", nn::Sgd::default(), 0.1)
        .fit_steps(&mut step, &data, None)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the optimizers `a` (over `a`) and `again` (over `a`) share variables"),
        "{err}"
    );
    let err = Trainer::for_steps(&vs)
        .hooks(Hooks::none())
        .optimizer_for("a/b", "a", nn::Sgd::default(), 0.1)
        .fit_steps(&mut step, &data, None)
        .unwrap_err();
    assert!(
        err.to_string().contains("an optimizer's name holds no `/`, got `a/b`"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let fit = |epochs: usize, step: &mut TwoParts| {
        Trainer::for_steps(&vs)
            .optimizer_for("a", "a", nn::Sgd::default(), 0.0)
            .optimizer_for("b", "b", nn::Sgd::default(), 0.1)
            .epochs(epochs)
            .seed(1)
            .hooks(Hooks::none())
            .resumable(dir.path())
            .fit_steps(step, &data, None)
            .unwrap()
    };
    // A resume point of other optimizers' names is refused, naming both.
    let elsewhere = tempfile::tempdir().unwrap();
    let named = |second: &str, epochs: usize, step: &mut TwoParts| {
        Trainer::for_steps(&vs)
            .optimizer_for("a", "a", nn::Sgd::default(), 0.1)
            .optimizer_for(second, "b", nn::Sgd::default(), 0.1)
            .epochs(epochs)
            .hooks(Hooks::none())
            .resumable(elsewhere.path())
            .fit_steps(step, &data, None)
    };
    named("b", 1, &mut step).unwrap();
    let err = named("other", 2, &mut step).unwrap_err();
    assert!(
        err.to_string()
            .contains("the saved optimizers are a, b, this trainer's a, other"),
        "{err}"
    );

    let (a0, b0) = (step.a.ws.copy(), step.b.ws.copy());
    fit(1, &mut step);
    let b1 = step.b.ws.copy();
    assert!(step.a.ws.equal(&a0), "`a` at learning rate 0");
    assert!(!b1.equal(&b0));
    // Resumed: the trainer sets the first one's rate, 0; `b` keeps 0.1 and learns on.
    fit(2, &mut step);
    assert!(!step.b.ws.equal(&b1), "`b` kept its own learning rate");
    assert!(step.a.ws.equal(&a0));
}
