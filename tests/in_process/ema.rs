//! `Ema`: the average matches one computed by hand from the weights after each optimizer step
//! (with and without warm-up, with gradient accumulation and `every`), validation runs with it
//! and gives the raw weights back, checkpoints save it beside or instead of the raw weights, a
//! resumed fit ends with the uninterrupted fit's average to the bit, and bad input is refused
//! with errors that name it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use tch::nn::{self, ModuleT, VarStore};
use tch::{Kind, Tensor};
use trainmon::hooks::{beside, ema_path, load_checkpoint, Averaged, Ema, ModelCheckpoint, Placement, WeightsHandle};
use trainmon::prelude::*;
use trainmon::{Event, HookSpec, Hooks, Trainer};
use trainmon_tests::{tutorial_data, tutorial_model, weights};

/// One test at a time: the seed of libtorch's generator is one per process.
use trainmon_tests::serial;

/// The average, flattened as `weights` flattens a model (variables sorted by name).
fn flat(averaged: &Averaged) -> Vec<f32> {
    averaged
        .weights()
        .unwrap()
        .iter()
        .flat_map(|(_, t)| Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float)).unwrap())
        .collect()
}

/// The EMA of `steps` — (global step, weights after it) — from `initial`, by hand, in f64.
fn reference(initial: &[f32], steps: &[(u64, Vec<f32>)], decay: f64, warmup: bool, every: u64) -> Vec<f64> {
    let mut average: Vec<f64> = initial.iter().map(|&w| w as f64).collect();
    for (step, w) in steps.iter().filter(|(step, _)| step % every == 0) {
        let t = *step as f64;
        let d = if warmup {
            decay.min((1.0 + t) / (10.0 + t))
        } else {
            decay
        };
        for (a, &w) in average.iter_mut().zip(w) {
            *a = d * *a + (1.0 - d) * w as f64;
        }
    }
    average
}

/// Whether `got` is `want` to float rounding (relative 1e-5, with a floor for values near 0).
fn assert_close(got: &[f32], want: &[f64], why: &str) {
    assert_eq!(got.len(), want.len(), "{why}: lengths");
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(err <= 1e-5 * w.abs().max(1e-2 * scale), "{why}: weight {i}: {g} vs {w}");
    }
}

/// What a fit recorded: the weights at `on_train_begin`, and (global step, weights) after each
/// optimizer step.
type Recorded = (Vec<f32>, Vec<(u64, Vec<f32>)>);

/// Fits the tutorial model 1 epoch of 50 batches of 20 with `ema` and SGD, gradients
/// accumulated over `accumulate` batches, recording the weights after every optimizer step.
fn fit_recording(ema: Ema, accumulate: usize) -> (Averaged, Recorded) {
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let averaged = ema.averaged();
    let recorded = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let (begin, after) = (recorded.clone(), recorded.clone());
    Trainer::new(&vs, &model)
        .optimizer(nn::Sgd::default(), 0.5)
        .epochs(1)
        .batch_size(20)
        .accumulate_gradients(accumulate)
        .hooks(Hooks::none())
        .with(ema)
        .add_hook(HookSpec::new(Event::TrainBegin, "initial"), move |vs: &VarStore| {
            begin.lock().unwrap().0 = weights(vs)
        })
        .add_hook(
            HookSpec::new(Event::BatchEnd, "after_step"),
            move |vs: &VarStore, state: &TrainState| {
                // Within an accumulation window the optimizer does not step: the weights of a
                // step are those at its window's end, at the batches up to the next window's
                // end (step 0: before the first).
                let step = state.global_step();
                let steps = &mut after.lock().unwrap().1;
                match steps.last() {
                    Some((last, w)) if *last == step => assert_eq!(*w, weights(vs), "no step within a window"),
                    _ if step > 0 => steps.push((step, weights(vs))),
                    _ => {}
                }
            },
        )
        .fit(&data)
        .unwrap();
    let recorded = std::mem::take(&mut *recorded.lock().unwrap());
    (averaged, recorded)
}

#[test]
fn the_average_matches_one_computed_by_hand_over_50_steps() {
    let _serial = serial();
    for warmup in [false, true] {
        let why = format!("warm-up {warmup}");
        let (averaged, (initial, steps)) = fit_recording(Ema::new(0.95).warmup(warmup), 1);
        assert_eq!(steps.len(), 50, "{why}: 50 optimizer steps");
        assert_eq!(averaged.updates(), 50, "{why}");
        let want = reference(&initial, &steps, 0.95, warmup, 1);
        let got = flat(&averaged);
        assert_close(&got, &want, &why);
        // It is an average indeed: neither the first weights nor the last.
        let last = &steps.last().unwrap().1;
        assert!(
            got.iter().zip(last).any(|(a, w)| (a - w).abs() > 1e-3),
            "{why}: not the last weights"
        );
        assert!(
            got.iter().zip(&initial).any(|(a, w)| (a - w).abs() > 1e-3),
            "{why}: not the first"
        );
    }
    // With warm-up the average follows the weights more closely early on: the two differ.
    let (plain, _) = fit_recording(Ema::new(0.95), 1);
    let (warmed, _) = fit_recording(Ema::new(0.95).warmup(true), 1);
    assert_ne!(flat(&plain), flat(&warmed));
}

#[test]
fn with_accumulated_gradients_it_updates_once_per_optimizer_step() {
    let _serial = serial();
    // 50 batches, 2 per optimizer step: 25 steps, 25 updates.
    let (averaged, (initial, steps)) = fit_recording(Ema::new(0.9), 2);
    assert_eq!(steps.len(), 25);
    assert_eq!(averaged.updates(), 25);
    assert_close(
        &flat(&averaged),
        &reference(&initial, &steps, 0.9, false, 1),
        "accumulate 2",
    );
    // `every(5)`: at global steps 5, 10, …, 25.
    let (averaged, (initial, steps)) = fit_recording(Ema::new(0.9).every(5).warmup(true), 2);
    assert_eq!(averaged.updates(), 5);
    assert_close(
        &flat(&averaged),
        &reference(&initial, &steps, 0.9, true, 5),
        "accumulate 2, every 5",
    );
}

/// The model of `vs` evaluated on the last `n` samples of `data`: the cross-entropy loss.
fn loss_on_last(model: &nn::Linear, features: &Tensor, labels: &Tensor, n: i64) -> f64 {
    let _no_grad = tch::no_grad_guard();
    let len = features.size()[0];
    let x = features.narrow(0, len - n, n);
    let y = labels.narrow(0, len - n, n);
    model
        .forward_t(&x, false)
        .cross_entropy_for_logits(&y)
        .double_value(&[])
}

#[test]
fn validation_runs_with_the_average_and_gives_the_raw_weights_back() {
    let _serial = serial();
    let data = tutorial_data(3);
    let (vs, model) = tutorial_model(4);
    let ema = Ema::new(0.9);
    let averaged = ema.averaged();
    let last_batch = Arc::new(Mutex::new(Vec::new()));
    let validated = Arc::new(Mutex::new(Vec::new()));
    let (last, seen) = (last_batch.clone(), validated.clone());
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-2)
        .epochs(2)
        .batch_size(20)
        .validation_split(0.2)
        .hooks(Hooks::none())
        .with(ema)
        .add_hook(HookSpec::new(Event::BatchEnd, "raw"), move |vs: &VarStore| {
            *last.lock().unwrap() = weights(vs)
        })
        .add_hook(
            HookSpec::new(Event::ValidationBatchEnd, "validated"),
            move |vs: &VarStore, state: &TrainState| seen.lock().unwrap().push((state.epoch(), weights(vs))),
        )
        .fit(&data)
        .unwrap();
    let average = flat(&averaged);
    let raw = weights(&vs);
    assert_eq!(
        raw,
        *last_batch.lock().unwrap(),
        "the raw weights are back after validation"
    );
    assert_ne!(raw, average, "the average is not the raw weights");
    // 200 validation samples in batches of 20: every batch of the last epoch ran with the
    // final average.
    let validated = validated.lock().unwrap();
    let last_epoch: Vec<_> = validated.iter().filter(|(epoch, _)| *epoch == 2).collect();
    assert_eq!(last_epoch.len(), 10);
    for (_, seen) in last_epoch {
        assert_eq!(*seen, average, "validation saw the average");
    }
    // `val_loss` is the loss of a model holding the average.
    let (other, other_model) = tutorial_model(99);
    averaged.copy_to(&other).unwrap();
    assert_eq!(weights(&other), average);
    let want = loss_on_last(&other_model, data.features(), data.labels(), 200);
    let got = history.epochs().last().unwrap().get("val_loss").unwrap();
    assert!((got - want).abs() <= 1e-5 * want.abs(), "val_loss {got} vs {want}");
    let raw_loss = loss_on_last(&model, data.features(), data.labels(), 200);
    assert!(
        (got - raw_loss).abs() > 1e-6,
        "the raw weights' loss differs: {raw_loss}"
    );
}

#[test]
fn without_validate_with_ema_validation_runs_with_the_raw_weights() {
    let _serial = serial();
    let data = tutorial_data(3);
    let (vs, model) = tutorial_model(4);
    let ema = Ema::new(0.9).validate_with_ema(false).swap_at_end(true);
    let averaged = ema.averaged();
    let last_batch = Arc::new(Mutex::new(Vec::new()));
    let last = last_batch.clone();
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-2)
        .epochs(1)
        .batch_size(20)
        .validation_split(0.2)
        .hooks(Hooks::none())
        .with(ema)
        .add_hook(HookSpec::new(Event::BatchEnd, "raw"), move |vs: &VarStore| {
            *last.lock().unwrap() = weights(vs)
        })
        .fit(&data)
        .unwrap();
    let raw = last_batch.lock().unwrap().clone();
    // `swap_at_end`: the model ends holding the average.
    assert_eq!(weights(&vs), flat(&averaged));
    assert_ne!(weights(&vs), raw);
    // Validated with the raw weights: `val_loss` is the loss of a model holding them.
    let (other, other_model) = tutorial_model(99);
    set(&other, &raw);
    let want = loss_on_last(&other_model, data.features(), data.labels(), 200);
    let got = history.epochs()[0].get("val_loss").unwrap();
    assert!((got - want).abs() <= 1e-5 * want.abs(), "val_loss {got} vs {want}");
}

/// Sets the variables of `vs` (sorted by name) from one flat vector, as `weights` gives it.
fn set(vs: &VarStore, flat: &[f32]) {
    let _no_grad = tch::no_grad_guard();
    let mut at = 0;
    for (_, mut variable) in sorted(vs) {
        let n = variable.numel();
        variable.copy_(&Tensor::from_slice(&flat[at..at + n]).view_as(&variable));
        at += n;
    }
    assert_eq!(at, flat.len());
}

/// The variables of `vs`, sorted by name.
fn sorted(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut named: Vec<_> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// The files in `dir`, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The weights of the checkpoint at `path`, loaded into a tutorial model.
fn loaded(path: &Path) -> Vec<f32> {
    let (vs, _model) = tutorial_model(77);
    load_checkpoint(&vs, path).unwrap();
    weights(&vs)
}

#[test]
fn checkpoints_hold_the_average_beside_or_instead_of_the_raw_weights() {
    let _serial = serial();
    for what in [Placement::Also, Placement::Instead] {
        let dir = tempfile::tempdir().unwrap();
        let data = tutorial_data(5);
        let (vs, model) = tutorial_model(6);
        let ema = Ema::new(0.9);
        let averaged = ema.averaged();
        let at_epoch_end = Arc::new(Mutex::new(Vec::new()));
        let seen = at_epoch_end.clone();
        let reader = averaged.clone();
        Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-2)
            .epochs(3)
            .batch_size(20)
            .hooks(Hooks::none())
            .with(ema)
            .with(
                ModelCheckpoint::new(dir.path())
                    .weights(averaged.clone(), what)
                    .save_top_k(2)
                    .save_last(true),
            )
            .add_hook(HookSpec::new(Event::EpochEnd, "average"), move |vs: &VarStore| {
                seen.lock().unwrap().push((weights(vs), flat(&reader)))
            })
            .fit(&data)
            .unwrap();
        let at_epoch_end = at_epoch_end.lock().unwrap();
        let (raw, average) = (weights(&vs), flat(&averaged));
        assert_eq!(at_epoch_end[2], (raw.clone(), average.clone()));
        let (raw_2, average_2) = &at_epoch_end[1];
        let path = |name: &str| dir.path().join(name);
        match what {
            Placement::Also => {
                // The first epoch's checkpoint was dropped (top 2, latest first) with its average.
                assert_eq!(
                    files(dir.path()),
                    [
                        "epoch=2-step=100.ema.safetensors",
                        "epoch=2-step=100.safetensors",
                        "epoch=3-step=150.ema.safetensors",
                        "epoch=3-step=150.safetensors",
                        "last.ema.safetensors",
                        "last.safetensors",
                    ]
                );
                assert_eq!(loaded(&path("last.safetensors")), raw);
                assert_eq!(loaded(&path("last.ema.safetensors")), average);
                assert_eq!(loaded(&path("epoch=3-step=150.safetensors")), raw);
                assert_eq!(loaded(&ema_path(path("epoch=3-step=150.safetensors"))), average);
                assert_eq!(loaded(&path("epoch=2-step=100.safetensors")), *raw_2);
                assert_eq!(loaded(&path("epoch=2-step=100.ema.safetensors")), *average_2);
            }
            Placement::Instead => {
                assert_eq!(
                    files(dir.path()),
                    [
                        "epoch=2-step=100.safetensors",
                        "epoch=3-step=150.safetensors",
                        "last.safetensors"
                    ]
                );
                assert_eq!(loaded(&path("last.safetensors")), average);
                assert_eq!(loaded(&path("epoch=3-step=150.safetensors")), average);
                assert_eq!(loaded(&path("epoch=2-step=100.safetensors")), *average_2);
            }
        }
        assert_ne!(raw, average);
    }
}

/// Fits 4 epochs resumably into `dir` (or not, without), failing at the start of epoch
/// `crash_epoch` or after batch `crash_batch.1` of epoch `crash_batch.0` (0: never), resume
/// points also every 7 steps; returns the average's bits, its updates and the raw weights' bits.
fn fit_resumably(
    dir: Option<&Path>,
    crash_epoch: usize,
    crash_batch: (usize, usize),
) -> trainmon::Result<(Vec<u32>, u64, Vec<u32>)> {
    let data = tutorial_data(7);
    let (vs, model) = tutorial_model(8);
    let ema = Ema::new(0.98).warmup(true);
    let averaged = ema.averaged();
    let mut trainer = Trainer::new(&vs, &model)
        .optimizer(nn::AdamW::default(), 1e-2)
        .epochs(4)
        .batch_size(32)
        .validation_split(0.2)
        .seed(11)
        .hooks(Hooks::none())
        .with(ema)
        .add_hook(HookSpec::new(Event::EpochBegin, "crash"), move |state: &TrainState| {
            if state.epoch() == crash_epoch {
                return Err(format!("the process dies in epoch {}", state.epoch()));
            }
            Ok(())
        })
        .add_hook(
            HookSpec::new(Event::BatchEnd, "crash_in_batch").priority(-100_000),
            move |state: &TrainState| {
                if (state.epoch(), state.batch()) == crash_batch {
                    return Err(format!("the process dies after batch {}", state.batch()));
                }
                Ok(())
            },
        );
    if let Some(dir) = dir {
        trainer = trainer.resumable(dir).resumable_steps(7);
    }
    trainer.fit(&data)?;
    let bits = |w: Vec<f32>| w.iter().map(|w| w.to_bits()).collect();
    Ok((bits(flat(&averaged)), averaged.updates(), bits(weights(&vs))))
}

#[test]
fn a_resumed_fit_ends_with_the_uninterrupted_average_to_the_bit() {
    let _serial = serial();
    let uninterrupted = fit_resumably(None, 0, (0, 0)).unwrap();
    // 800 training samples in batches of 32: 25 steps an epoch.
    assert_eq!(uninterrupted.1, 100);
    for (crash_epoch, crash_batch, why) in [
        (
            3,
            (0, 0),
            "failed at the start of epoch 3: resumed from the end of epoch 2",
        ),
        (
            0,
            (3, 16),
            "failed after batch 16 of epoch 3: resumed from its step point at batch 13",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let err = fit_resumably(Some(dir.path()), crash_epoch, crash_batch).unwrap_err();
        assert!(format!("{err:#}").contains("the process dies"), "{why}: {err:#}");
        let resumed = fit_resumably(Some(dir.path()), 0, (0, 0)).unwrap();
        assert!(
            resumed == uninterrupted,
            "{why}: the average, its updates or the weights differ"
        );
    }
}

#[test]
fn bad_input_is_refused_naming_it() {
    let _serial = serial();
    let data = tutorial_data(1);
    for decay in [1.5, 0.0] {
        let (vs, model) = tutorial_model(2);
        let before = weights(&vs);
        let err = Trainer::new(&vs, &model)
            .optimizer(nn::Sgd::default(), 0.1)
            .hooks(Hooks::none())
            .with(Ema::new(decay))
            .fit(&data)
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            matches!(err, trainmon::Error::Hook { ref hook, .. } if hook == "Ema"),
            "{err:?}"
        );
        assert!(
            text.contains(&format!(
                "the decay of an Ema must be between 0 and 1 (exclusive), got {decay}"
            )),
            "{text}"
        );
        assert_eq!(weights(&vs), before, "refused before any batch");
    }
    // A checkpoint given the average of an Ema that does not run.
    let (vs, model) = tutorial_model(2);
    let dir = tempfile::tempdir().unwrap();
    let err = Trainer::new(&vs, &model)
        .optimizer(nn::Sgd::default(), 0.1)
        .hooks(Hooks::none())
        .with(ModelCheckpoint::new(dir.path()).weights(Ema::new(0.9).averaged(), Placement::Also))
        .fit(&data)
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("add it to the trainer with `.with(ema)`"),
        "{err:#}"
    );
    // No average yet; an average of another model.
    let ema = Ema::new(0.9);
    let averaged = ema.averaged();
    let err = averaged.copy_to(&vs).unwrap_err().to_string();
    assert!(err.contains("there are none yet"), "{err}");
    Trainer::new(&vs, &model)
        .optimizer(nn::Sgd::default(), 0.1)
        .hooks(Hooks::none())
        .with(ema)
        .fit(&data)
        .unwrap();
    let other = VarStore::new(tch::Device::Cpu);
    let _wider = nn::linear(other.root() / "fc", 20, 3, Default::default());
    let before = weights(&other);
    let err = averaged.copy_to(&other).unwrap_err().to_string();
    assert!(
        err.contains("`fc.weight` has shape [2, 20], the model's [3, 20]"),
        "{err}"
    );
    assert_eq!(weights(&other), before, "left as it was");
}

/// Fits the tutorial model 1 epoch on `features` and `labels` in order, batches of 20, with an
/// `Ema` and `rollback`; returns the average's bits and its updates.
fn fit_in_order(features: &Tensor, labels: &Tensor, rollback: Option<trainmon::Rollback>) -> (Vec<u32>, u64) {
    let data = trainmon::TensorDataset::new(features.shallow_clone(), labels.shallow_clone()).unwrap();
    let (vs, model) = tutorial_model(12);
    let ema = Ema::new(0.9).warmup(true);
    let averaged = ema.averaged();
    let mut trainer = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-2)
        .epochs(1)
        .batch_size(20)
        .shuffle(false)
        .hooks(Hooks::none())
        .with(ema);
    if let Some(rollback) = rollback {
        trainer = trainer.rollback(rollback);
    }
    trainer.fit(&data).unwrap();
    (
        flat(&averaged).iter().map(|w| w.to_bits()).collect(),
        averaged.updates(),
    )
}

#[test]
fn a_batch_rolled_back_never_reaches_the_average() {
    let _serial = serial();
    let data = tutorial_data(13);
    let (x, y) = (data.features(), data.labels());
    // A NaN in batch 6 (samples 100–119): rolled back before its optimizer step, skipped.
    let planted = x.copy();
    let _ = planted.get(105).get(3).fill_(f64::NAN);
    let rolled_back = fit_in_order(&planted, y, Some(trainmon::Rollback::new()));
    // The same data without batch 6.
    let keep = Tensor::from_slice(&(0..1000).filter(|i| !(100..120).contains(i)).collect::<Vec<i64>>());
    let without = fit_in_order(&x.index_select(0, &keep), &y.index_select(0, &keep), None);
    assert_eq!(rolled_back.1, 49, "49 optimizer steps, 49 updates");
    assert!(
        rolled_back == without,
        "the average of the run without the bad batch, to the bit"
    );
}

/// Weights of a hook of your own, given to the checkpoint through their handle: the raw weights
/// scaled by 2, written where the checkpoint says, and none before the first epoch ends.
#[derive(Clone, Default)]
struct Doubled(Arc<Mutex<Option<Named>>>);

/// Tensors by variable name.
type Named = Vec<(String, Tensor)>;

impl WeightsHandle for Doubled {
    fn suffix(&self) -> &str {
        "doubled"
    }

    fn missing(&self) -> Option<String> {
        None
    }

    fn save_with(&self, path: &Path, _: &std::collections::BTreeMap<String, String>) -> trainmon::Result<()> {
        let kept = self.0.lock().unwrap();
        let named: Vec<(&str, &Tensor)> = kept.iter().flatten().map(|(n, t)| (n.as_str(), t)).collect();
        Tensor::write_safetensors(&named, path).map_err(|e| trainmon::Error::Io {
            action: "write",
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })
    }
}

#[test]
fn a_handle_of_your_own_is_saved_beside_each_checkpoint() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = tutorial_data(5);
    let (vs, model) = tutorial_model(6);
    let doubled = Doubled::default();
    let keeper = doubled.clone();
    Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-2)
        .epochs(3)
        .seed(2)
        .hooks(Hooks::none())
        .add_hook(
            HookSpec::new(Event::EpochEnd, "doubler").priority(10),
            move |vs: &VarStore| {
                let mut named: Vec<(String, Tensor)> =
                    vs.variables().into_iter().map(|(n, t)| (n, t.detach() * 2.0)).collect();
                named.sort_by(|a, b| a.0.cmp(&b.0));
                *keeper.0.lock().unwrap() = Some(named);
            },
        )
        .with(
            ModelCheckpoint::new(dir.path())
                .save_top_k(1)
                .weights(doubled, Placement::Also),
        )
        .fit(&data)
        .unwrap();
    let kept = dir.path().join("epoch=3-step=96.safetensors");
    let other = beside(&kept, "doubled");
    assert_eq!(other, dir.path().join("epoch=3-step=96.doubled.safetensors"));
    assert!(
        kept.exists() && other.exists(),
        "{:?}",
        std::fs::read_dir(dir.path()).unwrap().collect::<Vec<_>>()
    );
    // The checkpoints dropped by `save_top_k`, with what was saved beside them: only these two.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    let raw = weights(&vs);
    let (saved, _) = tutorial_model(77);
    load_checkpoint(&saved, &other).unwrap();
    let twice: Vec<f32> = raw.iter().map(|w| w * 2.0).collect();
    assert_eq!(weights(&saved), twice, "the handle's weights, as it wrote them");
}
