//! `Trainer::seed`: two CPU runs with the same seed give bit-identical histories and weights —
//! whether values are read eagerly or lazily, and whether batches come from tensors or from a
//! dataset asked batch by batch (and for tensors with wide rows, which the loop gathers batch by
//! batch rather than an epoch at once).

use tch::nn::{self, VarStore};
use tch::{Device, Tensor};
use trainmon::{Dataset, History, TensorDataset, Trainer};
use trainmon_tests::{tutorial_data, weights};

/// The same samples as a `TensorDataset`, but only through `Dataset::batch`.
struct OneByOne<'a>(&'a TensorDataset);

impl Dataset for OneByOne<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn batch(&self, indices: &[i64]) -> trainmon::Result<(Tensor, Tensor)> {
        self.0.batch(indices)
    }
}

/// An epoch without its wall time: number, batches, metrics by name.
type Epoch = (usize, usize, Vec<(String, f64)>);

/// Everything a run produced: the history without wall times, and the weights.
fn run(seed: u64, lazy: bool, one_by_one: bool) -> (Vec<Epoch>, Vec<f32>) {
    let data = {
        let _rng = GLOBAL_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tutorial_data(5)
    };
    run_on(&data, seed, lazy, one_by_one)
}

/// libtorch's random generator is one per process: the tests draw from it one at a time.
use trainmon_tests::SERIAL as GLOBAL_RNG;

fn run_on(data: &TensorDataset, seed: u64, lazy: bool, one_by_one: bool) -> (Vec<Epoch>, Vec<f32>) {
    let _rng = GLOBAL_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let features = data.tensors().expect("a tensor dataset").0.size()[1];
    tch::manual_seed(6);
    let vs = VarStore::new(Device::Cpu);
    let model = nn::seq_t()
        .add(nn::linear(vs.root() / "fc1", features, 16, Default::default()))
        .add_fn(|x| x.relu())
        .add_fn_t(|x, train| x.dropout(0.2, train))
        .add(nn::linear(vs.root() / "fc2", 16, 2, Default::default()));
    let mut trainer = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-2)
        .hooks(trainmon::Hooks::none())
        .epochs(3)
        .batch_size(32)
        .validation_split(0.2)
        .seed(seed)
        .lazy_reads(lazy);
    let history: History = if one_by_one {
        trainer.fit(&OneByOne(data)).unwrap()
    } else {
        trainer.fit(data).unwrap()
    };
    let epochs = history
        .epochs()
        .iter()
        .map(|e| {
            (
                e.epoch(),
                e.batches(),
                e.metrics().map(|(n, v)| (n.to_owned(), v)).collect(),
            )
        })
        .collect();
    (epochs, weights(&vs))
}

#[test]
fn same_seed_same_bits() {
    let reference = run(7, false, false);
    let names: Vec<&str> = reference.0[0].2.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["loss", "accuracy", "val_loss", "val_accuracy"]);
    assert_eq!(
        reference.0[0].1, 25,
        "800 training samples (a 0.2 split of 1000) in batches of 32"
    );
    assert_eq!(
        run(7, false, false),
        reference,
        "the same seed: bit-identical history and weights"
    );
    assert_eq!(run(7, true, false), reference, "lazy reads give the same values");
    assert_eq!(
        run(7, false, true),
        reference,
        "a dataset asked batch by batch gives the same values"
    );
    assert_ne!(
        run(8, false, false).1,
        reference.1,
        "another seed shuffles (and drops out) otherwise"
    );
}

/// Rows of 600 floats: a batch of 32 is 76.8 kB of features, which the loop gathers batch by
/// batch (a whole epoch at once costs a fresh buffer the size of the set). The same order, the
/// same bits as the dataset asked batch by batch.
#[test]
fn wide_rows_gathered_batch_by_batch_same_bits() {
    let data = {
        let _rng = GLOBAL_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tch::manual_seed(11);
        let x = Tensor::randn([500, 600], (tch::Kind::Float, Device::Cpu));
        let y = x.narrow(1, 0, 1).squeeze_dim(1).gt(0.0).to_kind(tch::Kind::Int64);
        TensorDataset::new(x, y).unwrap()
    };
    let reference = run_on(&data, 7, false, false);
    assert_eq!(reference.0[0].1, 13, "400 training samples in batches of 32");
    assert_eq!(
        run_on(&data, 7, false, true),
        reference,
        "tensors gathered batch by batch: the same values as the dataset asked batch by batch"
    );
    assert_eq!(run_on(&data, 7, true, false), reference, "lazy reads too");
    assert_ne!(
        run_on(&data, 8, false, false).1,
        reference.1,
        "another seed shuffles otherwise"
    );
}
