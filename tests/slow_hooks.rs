//! Over the first batches, a hook slower than the training step itself is warned about by
//! name and place; a fast one is not.

use std::io::Write;
use std::sync::{Arc, Mutex};
use tch::nn;
use trainmon::prelude::*;
use trainmon::Hooks;
use trainmon_tests::{tutorial_data, tutorial_model};

#[on_batch_end]
fn sluggish() {
    std::thread::sleep(std::time::Duration::from_millis(3));
}

#[on_batch_end]
fn brisk(batch: &BatchLogs) {
    std::hint::black_box(batch.number());
}

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

#[test]
fn slow_hooks_are_named() {
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-3)
            .batch_size(32)
            .hooks(Hooks::all())
            .fit(&data)
            .unwrap()
    });
    let logged = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = logged.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{logged}");
    let line = "tests/slow_hooks.rs:".to_owned()
        + &(include_str!("slow_hooks.rs")
            .lines()
            .position(|l| l == "fn sluggish() {")
            .unwrap()
            + 1)
        .to_string();
    assert!(
        warnings[0].contains(&format!("hook `sluggish` ({line}) at `on_batch_end` takes ")),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("more than the training step itself") && warnings[0].contains("over the first 20 batches")
    );
}
