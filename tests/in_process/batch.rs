//! Batches of any shape (`trainmon::Batch`): `#[derive(Batch)]` on structs of tensors, tuples,
//! maps and vectors of them — named, tuple, generic and nested structs, with fields kept as
//! they are — counted and moved to the device; tensors that disagree in their first dimension
//! are named.

use std::collections::HashMap;
use tch::{Device, Kind, Tensor};
use trainmon::Batch;

fn ids(n: i64, len: i64) -> Tensor {
    Tensor::arange(n * len, (Kind::Int64, Device::Cpu)).view([n, len])
}

#[derive(Batch)]
struct LmBatch {
    input_ids: Tensor,
    attention_mask: Tensor,
    labels: Tensor,
    #[batch(keep)]
    lengths: Vec<usize>,
}

/// Images and their labels, by position.
#[derive(Batch)]
struct Pair(Tensor, Tensor);

/// Two views of a sample and extras by name, nested.
#[derive(Batch)]
struct Views<B: Batch> {
    views: (B, B),
    extras: HashMap<String, Tensor>,
    masks: Vec<Option<Tensor>>,
}

fn names<B: Batch>(batch: &B) -> Vec<String> {
    let mut seen = Vec::new();
    batch.for_each_tensor("", &mut |name, _| seen.push(name.to_owned()));
    seen
}

#[test]
fn a_derived_batch_counts_names_and_moves_its_tensors() {
    let batch = LmBatch {
        input_ids: ids(4, 6),
        attention_mask: ids(4, 6).ones_like(),
        labels: ids(4, 6),
        lengths: vec![6, 5, 4, 3],
    };
    assert_eq!(batch.samples().unwrap(), 4);
    assert_eq!(names(&batch), ["input_ids", "attention_mask", "labels"]);
    let moved = batch.to_device(Device::Cpu, false).unwrap();
    assert_eq!(moved.lengths, [6, 5, 4, 3]);
    assert!(moved.input_ids.equal(&batch.input_ids));

    let pair = Pair(Tensor::zeros([3, 2, 2], (Kind::Float, Device::Cpu)), ids(3, 1));
    assert_eq!(pair.samples().unwrap(), 3);
    assert_eq!(names(&pair), ["0", "1"]);

    let mut extras = HashMap::new();
    extras.insert("weights".to_owned(), Tensor::ones([5], (Kind::Float, Device::Cpu)));
    extras.insert("ages".to_owned(), ids(5, 1));
    let views = Views {
        views: (Pair(ids(5, 2), ids(5, 1)), Pair(ids(5, 2), ids(5, 1))),
        extras,
        masks: vec![Some(ids(5, 3)), None],
    };
    assert_eq!(views.samples().unwrap(), 5);
    assert_eq!(
        names(&views),
        [
            "views.0.0",
            "views.0.1",
            "views.1.0",
            "views.1.1",
            "extras.ages",
            "extras.weights",
            "masks[0]"
        ]
    );
    let moved = views.to_device(Device::Cpu, false).unwrap();
    assert!(moved.masks[1].is_none());
    assert_eq!(moved.extras.len(), 2);
}

#[test]
fn tensors_that_disagree_in_samples_are_named() {
    let batch = LmBatch {
        input_ids: ids(4, 6),
        attention_mask: ids(4, 6),
        labels: ids(3, 6),
        lengths: Vec::new(),
    };
    let err = batch.samples().unwrap_err();
    assert!(matches!(err, trainmon::Error::Data(_)));
    assert_eq!(
        err.to_string(),
        "invalid dataset: the batch's tensors disagree in their first dimension (the samples): `input_ids` has 4, `labels` has 3 ([3, 6])"
    );
}
