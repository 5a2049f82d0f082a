//! Shared setup of the integration tests: the tutorial's data and model, seeded.

use tch::{nn, Device, Kind, Tensor};
use trainmon::TensorDataset;

/// `RandomDataset(1000, 20)` of the tutorial: standard normal features, labels 0 or 1.
pub fn tutorial_data(seed: i64) -> TensorDataset {
    tch::manual_seed(seed);
    let features = Tensor::randn([1000, 20], (Kind::Float, Device::Cpu));
    let labels = Tensor::randint(2, [1000], (Kind::Int64, Device::Cpu));
    TensorDataset::new(features, labels).expect("a valid dataset")
}

/// The tutorial's model, `Linear(20, 2)`, with weights drawn after seeding with `seed`.
pub fn tutorial_model(seed: i64) -> (nn::VarStore, nn::Linear) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = nn::linear(vs.root() / "fc", 20, 2, Default::default());
    (vs, model)
}

/// The Python of the bootstrap venv (which has TensorBoard's reader): `TRAINMON_PYTHON`, set by
/// `cargo xtask`, or found through the `.libtorch` link the bootstrap made.
pub fn bootstrap_python() -> std::path::PathBuf {
    if let Some(python) = std::env::var_os("TRAINMON_PYTHON") {
        return python.into();
    }
    let link = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.libtorch");
    // .libtorch → <venv>/lib/python3.X/site-packages/torch
    let venv = std::fs::canonicalize(&link)
        .ok()
        .and_then(|torch| torch.ancestors().nth(4).map(|v| v.join("bin/python")));
    match venv {
        Some(python) if python.exists() => python,
        _ => panic!(
            "no bootstrap Python: run the tests through `cargo xtask test` (or set TRAINMON_PYTHON to a \
             Python with `tensorboard` installed)"
        ),
    }
}

/// Runs a Python `script` of the bootstrap's Python on `arg` (`sys.argv[1]`); returns the JSON it
/// prints. Fails the test with Python's error when it fails.
pub fn python_json(script: &str, arg: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new(bootstrap_python())
        .args(["-c", script])
        .arg(arg)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "the Python script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

/// Runs `f` with a tracing subscriber that records what is logged; returns `f`'s result and
/// the lines, as `(level, message)`.
pub fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, Vec<(String, String)>) {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines = text
        .lines()
        .map(|line| {
            let (level, message) = line.trim_start().split_once(' ').unwrap_or((line, ""));
            (level.to_owned(), message.to_owned())
        })
        .collect();
    (result, lines)
}

/// Every weight of the model, by variable name, as one vector.
pub fn weights(vs: &nn::VarStore) -> Vec<f32> {
    let mut named: Vec<_> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
        .iter()
        .flat_map(|(_, t)| Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float)).unwrap())
        .collect()
}
