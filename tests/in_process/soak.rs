//! Soak: 1000 short epochs with every built-in hook on (checkpoints every epoch, metric files,
//! TensorBoard, schedulers, early stopping that never triggers, …) and a resume point written
//! every epoch. Resident memory and open file handles stay flat: between epoch 100 and epoch
//! 1000, memory grows by less than 16 MiB (measured: 360.9 → 362.6 MiB, the history's own
//! growth) and the number of open files does not change (11).
//!
//! Ignored by default (about half a minute); `.ci/run` runs it alone in its process (it reads the
//! process's memory and files): `cargo xtask test --test in_process -- --ignored soak::`.

use std::sync::Mutex;
use std::time::Duration;
use tch::nn;
use tch::{Device, Kind, Tensor};
use trainmon::hooks::{
    EarlyStopping, Logger, LrMonitor, LrScheduler, MetricFiles, ModelCheckpoint, Plots, Progress, Summary, TensorBoard,
    TerminateOnNaN, Throughput, TimeLimit,
};
use trainmon::prelude::*;
use trainmon::Hooks;

static SAMPLES: Mutex<Vec<(usize, f64, usize)>> = Mutex::new(Vec::new());

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib / 1024.0
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[on_epoch_end(every = 100, group = "soak")]
fn sample(epoch: &EpochLogs) {
    SAMPLES
        .lock()
        .unwrap()
        .push((epoch.epoch(), resident_mib(), open_files()));
}

#[test]
#[ignore = "a soak test: about half a minute; `.ci/run` runs it"]
fn a_thousand_epochs_with_every_builtin_stay_flat() {
    let _serial = trainmon_tests::serial();
    let run = tempfile::tempdir().unwrap();
    let dir = |name: &str| run.path().join(name);
    tch::manual_seed(0);
    let data = TensorDataset::new(
        Tensor::randn([320, 8], (Kind::Float, Device::Cpu)),
        Tensor::randint(2, [320], (Kind::Int64, Device::Cpu)),
    )
    .unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = nn::linear(vs.root(), 8, 2, Default::default());
    let history = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(1000)
        .batch_size(64)
        .validation_split(0.2)
        .hooks(Hooks::groups(["soak"]))
        .with(Logger::new().every(0))
        .with(Progress::new())
        .with(TerminateOnNaN::new())
        .with(TimeLimit::new(Duration::from_secs(3600)))
        .with(EarlyStopping::new("val_loss").patience(100_000))
        .with(
            ModelCheckpoint::new(dir("checkpoints"))
                .monitor("val_loss")
                .save_top_k(3)
                .save_last(true),
        )
        .with(LrScheduler::cosine(1000, 1e-5))
        .with(LrMonitor)
        .with(Throughput::new().every(0))
        .with(MetricFiles::new(dir("metrics")).steps(2))
        .with(TensorBoard::new(dir("tensorboard")).steps(2))
        .with(Plots::new(dir("plots")))
        .with(Summary::new().monitor("val_loss").outputs(run.path()))
        .resumable(dir("resume"))
        .fit(&data)
        .unwrap();
    assert_eq!(history.len(), 1000);

    let samples = SAMPLES.lock().unwrap().clone();
    println!("soak: (epoch, resident MiB, open files) = {samples:?}");
    assert_eq!(samples.len(), 10);
    let (_, rss_100, files_100) = samples[0];
    let (_, rss_1000, files_1000) = samples[9];
    assert!(
        rss_1000 - rss_100 < 16.0,
        "resident memory grew from {rss_100:.1} to {rss_1000:.1} MiB: {samples:?}"
    );
    assert_eq!(files_1000, files_100, "open files: {samples:?}");
    let checkpoints = std::fs::read_dir(dir("checkpoints")).unwrap().count();
    assert_eq!(checkpoints, 4, "3 best and last, nothing left behind");
    let resume: Vec<_> = std::fs::read_dir(dir("resume"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(resume, ["resume.safetensors"], "one resume point, nothing left behind");
}
