//! SIGKILL while checkpoints are being written never leaves a checkpoint that fails to load.
//!
//! The test runs itself again as a child process (the same test, told so by an environment
//! variable) that trains a model with a large variable, saving checkpoints at every step and a
//! resume point at every epoch, so that writing files takes most of its time; it kills the child
//! at random moments, and checks that every checkpoint left loads and the resume point reads.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};
use trainmon::hooks::{load_checkpoint, ModelCheckpoint};
use trainmon::{Control, Event, HookSpec, Hooks, TensorDataset, Trainer};

/// Set in the child: the directory it trains into.
const CHILD: &str = "TRAINMON_KILL_DURING_WRITE_DIR";
const TEST: &str = "a_kill_during_a_checkpoint_write_never_leaves_a_checkpoint_that_fails_to_load";

/// The model: the tutorial's linear layer, and a variable of 8 Mi floats (32 MiB per file).
fn model(vs: &VarStore) -> nn::Linear {
    let _large = vs.root().zeros("large", &[8 << 20]);
    nn::linear(vs.root() / "fc", 20, 2, Default::default())
}

fn trainer<'a>(vs: &'a VarStore, model: &'a nn::Linear, dir: &Path, epochs: usize) -> Trainer<'a> {
    Trainer::new(vs, model)
        .optimizer(nn::Sgd::default(), 1e-2)
        .epochs(epochs)
        .batch_size(100)
        .seed(1)
        .hooks(Hooks::none())
        .with(
            ModelCheckpoint::new(dir.join("checkpoints"))
                .every_epochs(0)
                .every_steps(1)
                .monitor("loss")
                .save_top_k(2)
                .save_last(true),
        )
        .resumable(dir.join("resume"))
}

fn data() -> TensorDataset {
    let x = Tensor::arange(20_000, (Kind::Float, Device::Cpu))
        .reshape([1000, 20])
        .sin();
    let y = Tensor::arange(1000, (Kind::Int64, Device::Cpu)).remainder(2);
    TensorDataset::new(x, y).unwrap()
}

/// The child: trains until killed.
fn child(dir: &Path) {
    let vs = VarStore::new(Device::Cpu);
    let model = model(&vs);
    trainer(&vs, &model, dir, 1_000_000).fit(&data()).unwrap();
}

/// Temporary files an interrupted write left (the kill landed in one).
fn leftovers(dir: &Path) -> usize {
    ["checkpoints", "resume"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(dir.join(sub)).ok())
        .flatten()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp-"))
        .count()
}

#[test]
fn a_kill_during_a_checkpoint_write_never_leaves_a_checkpoint_that_fails_to_load() {
    let _serial = trainmon_tests::serial();
    if let Some(dir) = std::env::var_os(CHILD) {
        child(Path::new(&dir));
        return;
    }
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let mut in_a_write = 0;
    // Five kills at least, and more (up to 20) until one lands in a write: a kill at a random
    // moment misses every write now and then (1 run in 5 full runs here missed all of 5).
    let mut trial = 0u64;
    while trial < 5 || (in_a_write == 0 && trial < 20) {
        trial += 1;
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                trainmon_tests::test_name(module_path!(), TEST).as_str(),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let point = dir.path().join("resume/resume.safetensors");
        while !point.exists() {
            assert!(child.try_wait().unwrap().is_none(), "the child ended");
            std::thread::sleep(Duration::from_millis(1));
        }
        let delay = Duration::from_millis(seed.wrapping_mul(trial).wrapping_mul(2654435761) % 400);
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        in_a_write += usize::from(leftovers(dir.path()) > 0);

        let vs = VarStore::new(Device::Cpu);
        let model = model(&vs);
        let mut loaded = 0;
        for entry in std::fs::read_dir(dir.path().join("checkpoints")).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap().to_string_lossy().starts_with('.') {
                continue; // a temporary file: never a checkpoint's name
            }
            load_checkpoint(&vs, &path).unwrap_or_else(|e| panic!("killed after {delay:?}: {e}"));
            loaded += 1;
        }
        assert!(loaded >= 2, "killed after {delay:?}: {loaded} checkpoints");
        // The resume point reads, and the next fit goes on from it (and cleans up); a hook stops
        // it as it begins, before any more training.
        let history = trainer(&vs, &model, dir.path(), 1_000_000)
            .add_hook(HookSpec::new(Event::TrainBegin, "stop"), || Control::stop("resumed"))
            .fit(&data())
            .unwrap();
        assert!(!history.is_empty(), "killed after {delay:?}: the fit did not resume");
        assert_eq!(leftovers(dir.path()), 0, "the resumed fit removes what the kill left");
    }
    eprintln!("{in_a_write} of {trial} kills interrupted a write");
    assert!(in_a_write >= 1, "no kill landed in a write: the test did not test it");
}
