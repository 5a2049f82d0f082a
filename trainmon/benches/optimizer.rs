//! One optimizer step: tch's Adam (libtorch's C++) against the Adam the trainer runs
//! (`trainmon::optim`, whose state resume points save), on the parameters of the loop
//! benchmark's models, measured in the same process. Also a whole `zero_grad`, backward, step.
//! Run: `cargo bench -p trainmon --bench optimizer`.

use criterion::{criterion_group, criterion_main, Criterion};
use tch::nn::{self, Module, OptimizerConfig as _};
use tch::{Device, Kind, Tensor};
use trainmon::optim::OptimizerConfig as _;

/// The models of the loop benchmark: `tiny` (Linear(20, 2)), `mlp` (784-256-10), with a batch.
fn setup(name: &str) -> (nn::VarStore, nn::Sequential, Tensor, Tensor) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let (model, features, classes, batch) = match name {
        "tiny" => (
            nn::seq().add(nn::linear(&root / "fc", 20, 2, Default::default())),
            20,
            2,
            32,
        ),
        _ => (
            nn::seq()
                .add(nn::linear(&root / "fc1", 784, 256, Default::default()))
                .add_fn(|x| x.relu())
                .add(nn::linear(&root / "fc2", 256, 10, Default::default())),
            784,
            10,
            64,
        ),
    };
    let x = Tensor::randn([batch, features], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(classes, [batch], (Kind::Int64, Device::Cpu));
    (vs, model, x, y)
}

fn bench(c: &mut Criterion) {
    for name in ["tiny", "mlp"] {
        let mut group = c.benchmark_group(format!("adam_{name}"));
        let (vs, model, x, y) = setup(name);
        model.forward(&x).cross_entropy_for_logits(&y).backward();
        let mut theirs = nn::Adam::default().build(&vs, 1e-3).unwrap();
        let mut ours = nn::Adam::default().build_optimizer(&vs, 1e-3).unwrap();
        group.bench_function("step/tch", |b| b.iter(|| theirs.step()));
        group.bench_function("step/trainmon", |b| b.iter(|| ours.step().unwrap()));
        group.bench_function("zero_grad+backward+step/tch", |b| {
            b.iter(|| theirs.backward_step(&model.forward(&x).cross_entropy_for_logits(&y)))
        });
        group.bench_function("zero_grad+backward+step/trainmon", |b| {
            b.iter(|| {
                ours.zero_grad().unwrap();
                model.forward(&x).cross_entropy_for_logits(&y).backward();
                ours.step().unwrap();
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
