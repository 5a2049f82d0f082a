//! `Trainer::data_parallel`: ranks of this test binary (child processes, Gloo over loopback)
//! train replicas that stay identical, match one process over the same samples, stop
//! together, refuse a model that differs, fail — not hang — when a rank dies, and write the
//! built-in outputs from rank 0 only.

use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use tch::nn;
use trainmon::dist::{ProcessGroup, Rendezvous};
use trainmon::hooks::MetricFiles;
use trainmon::prelude::*;
use trainmon::{Event, HookSpec, Hooks};
use trainmon_tests::ranks::{free_port, result, world};
use trainmon_tests::{tutorial_data, tutorial_model, weights};

/// Two ranks of `role`; each writes under `OUT/rank<N>` (`out`).
fn two_ranks(role: &str, out: &std::path::Path) -> Vec<Output> {
    world(role, 2, &[("OUT", out.display().to_string())])
}

/// The tutorial fit, SGD, batches of `batch_size`, in order or shuffled.
fn trainer<'a>(vs: &'a nn::VarStore, model: &'a nn::Linear, batch_size: usize, shuffle: bool) -> Trainer<'a> {
    Trainer::new(vs, model)
        .optimizer(nn::Sgd::default(), 0.1)
        .epochs(2)
        .batch_size(batch_size)
        .shuffle(shuffle)
        .seed(3)
        .hooks(Hooks::none())
}

/// Epoch ends the `rank = 0` hook saw in this process.
static RANK_ZERO_CALLS: AtomicUsize = AtomicUsize::new(0);

#[on_epoch_end(rank = 0, group = "rank_zero")]
fn on_rank_zero_only() {
    RANK_ZERO_CALLS.fetch_add(1, Ordering::SeqCst);
}

/// What each child process does, by `TRAINMON_TEST_ROLE`; a test starts it, it is not one.
#[test]
#[ignore = "a rank of the tests below, started by them"]
fn rank_process() {
    let role = std::env::var("TRAINMON_TEST_ROLE").unwrap();
    let group = ProcessGroup::from_env().unwrap();
    let rank = group.rank();
    let out = std::path::PathBuf::from(std::env::var("OUT").unwrap()).join(format!("rank{rank}"));
    let data = tutorial_data(1);
    // Each rank starts from other weights: rank 0's are broadcast.
    let (vs, model) = if role == "mismatch" && rank == 1 {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = nn::linear(vs.root() / "fc", 20, 3, Default::default());
        (vs, model)
    } else {
        tutorial_model(10 + rank as i64)
    };
    let trainer = match role.as_str() {
        "train" => trainer(&vs, &model, 16, true).with(MetricFiles::new(&out)),
        "in_order" | "mismatch" => trainer(&vs, &model, 16, false),
        "attribute" => trainer(&vs, &model, 16, true).hooks(Hooks::groups(["rank_zero"])),
        "stop" => trainer(&vs, &model, 16, true).add_hook(
            HookSpec::new(Event::BatchEnd, "stops_on_rank_1"),
            move |state: &TrainState| {
                if rank == 1 && state.epoch() == 1 && state.batch() == 5 {
                    Control::stop("rank 1 has seen enough")
                } else {
                    Control::Continue
                }
            },
        ),
        "dies" => trainer(&vs, &model, 16, true).add_hook(
            HookSpec::new(Event::BatchEnd, "dies"),
            move |state: &TrainState| {
                if rank == 1 && state.batch() == 3 {
                    std::process::exit(7);
                }
            },
        ),
        other => panic!("unknown role {other}"),
    };
    let outcome = trainer.data_parallel(group).fit(&data);
    let json = match outcome {
        Ok(history) => serde_json::json!({
            "rank": rank,
            "weights": weights(&vs),
            "loss": history.metric("loss"),
            "epochs": history.len(),
            "stop": history.stop_reason().map(|s| s.reason.clone()),
            "rank_zero_calls": RANK_ZERO_CALLS.load(Ordering::SeqCst),
        }),
        Err(e) => serde_json::json!({ "rank": rank, "error": format!("{e:#}") }),
    };
    println!("RESULT {json}");
}

#[test]
fn two_ranks_end_with_the_same_weights_and_only_rank_0_writes() {
    let out = tempfile::tempdir().unwrap();
    let results: Vec<_> = two_ranks("train", out.path()).iter().map(result).collect();
    assert_eq!(results[0]["weights"], results[1]["weights"], "replicas stay identical");
    // The epoch metrics are averaged over the ranks: the same on both.
    assert_eq!(results[0]["loss"], results[1]["loss"]);
    assert_eq!(results[0]["epochs"], 2);
    assert!(
        out.path().join("rank0/epochs.csv").exists(),
        "rank 0 writes its metric files"
    );
    assert!(!out.path().join("rank1").exists(), "rank 1 writes none");
}

/// Two ranks × batches of 16, in order, average their gradients: the same steps as one process
/// with batches of 32 over the same samples (rank 0 takes the even samples, rank 1 the odd).
#[test]
fn two_ranks_of_16_match_one_process_of_32() {
    let out = tempfile::tempdir().unwrap();
    let results: Vec<_> = two_ranks("in_order", out.path()).iter().map(result).collect();
    let data = tutorial_data(1);
    // Rank 0's initial weights.
    let (vs, model) = tutorial_model(10);
    trainer(&vs, &model, 32, false).fit(&data).unwrap();
    let alone = weights(&vs);
    for r in &results {
        let theirs: Vec<f64> = serde_json::from_value(r["weights"].clone()).unwrap();
        assert_eq!(theirs.len(), alone.len());
        for (a, b) in theirs.iter().zip(&alone) {
            assert!((a - *b as f64).abs() < 1e-5, "{a} against {b}: {r}");
        }
    }
}

#[test]
fn a_stop_on_rank_1_stops_both_at_the_same_batch() {
    let out = tempfile::tempdir().unwrap();
    let results: Vec<_> = two_ranks("stop", out.path()).iter().map(result).collect();
    assert_eq!(results[1]["stop"], "rank 1 has seen enough");
    assert_eq!(results[0]["stop"], "rank 1 of 2 stopped");
    // Both stopped after batch 5 of epoch 1: the same weights.
    assert_eq!(results[0]["weights"], results[1]["weights"]);
    assert_eq!(results[0]["epochs"], 1);
}

#[test]
fn a_rank_that_dies_fails_the_other_with_an_error() {
    let out = tempfile::tempdir().unwrap();
    let outs = two_ranks("dies", out.path());
    assert_eq!(outs[1].status.code(), Some(7));
    let error = result(&outs[0])["error"].as_str().unwrap().to_owned();
    assert!(error.starts_with("distributed training: "), "{error}");
    assert!(error.contains("failed on rank 0 of 2"), "{error}");
}

#[test]
fn a_hook_with_rank_0_runs_on_rank_0_alone() {
    let out = tempfile::tempdir().unwrap();
    let results: Vec<_> = two_ranks("attribute", out.path()).iter().map(result).collect();
    assert_eq!(results[0]["rank_zero_calls"], 2, "{}", results[0]);
    assert_eq!(results[1]["rank_zero_calls"], 0, "{}", results[1]);
    // Outside a data-parallel fit (rank 0 of none), the hook runs as any other.
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(1);
    let before = RANK_ZERO_CALLS.load(Ordering::SeqCst);
    trainer(&vs, &model, 16, true)
        .hooks(Hooks::groups(["rank_zero"]))
        .fit(&data)
        .unwrap();
    assert_eq!(
        RANK_ZERO_CALLS.load(Ordering::SeqCst),
        before + 2,
        "a fit of one process runs it"
    );
}

#[test]
fn ranks_with_other_models_are_refused_naming_the_difference() {
    let out = tempfile::tempdir().unwrap();
    for r in two_ranks("mismatch", out.path()).iter().map(result) {
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains("the ranks disagree on the model's variables: rank 0 has `fc.bias [2] Float` where rank 1 has `fc.bias [3] Float`"),
            "{error}"
        );
    }
}

/// A world of one, in this process: the settings data-parallel training does not take yet are
/// refused, and otherwise it trains as one process does.
#[test]
fn settings_it_does_not_take_yet_are_refused() {
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(1);
    let out = tempfile::tempdir().unwrap();
    let group = || ProcessGroup::join(Rendezvous::new("127.0.0.1", free_port(), 0, 1).unwrap()).unwrap();
    let err = trainer(&vs, &model, 16, true)
        .resumable(out.path())
        .data_parallel(group())
        .fit(&data)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not take resume points (`resumable`) yet"),
        "{err}"
    );
    // A world of one trains as one process does.
    let before = weights(&vs);
    let history = trainer(&vs, &model, 16, true)
        .data_parallel(group())
        .fit(&data)
        .unwrap();
    let (vs2, model2) = tutorial_model(1);
    let alone = trainer(&vs2, &model2, 16, true).fit(&data).unwrap();
    assert_ne!(weights(&vs), before);
    assert_eq!(weights(&vs), weights(&vs2));
    assert_eq!(history.metric("loss"), alone.metric("loss"));
}
