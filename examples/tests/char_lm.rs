//! The `char_lm` example trains a character language model with its own step on text it
//! writes, learns it (its validation loss falls, its accuracy rises above chance), writes its
//! outputs and a sample of generated text, and says where its run directory is last.

use crate::common::run_in;

#[test]
fn it_learns_the_text_and_writes_a_sample() {
    let _serial = crate::common::serial();
    let out = tempfile::tempdir().unwrap();
    let (run, _) = run_in(
        "char_lm",
        &["--epochs", "3", "--chars", "12000"],
        out.path(),
        &[("OMP_NUM_THREADS", "2")],
    );
    let epochs = std::fs::read_to_string(run.join("metrics/epochs.csv")).unwrap();
    let header: Vec<&str> = epochs.lines().next().unwrap().split(',').collect();
    let rows: Vec<Vec<f64>> = epochs
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap_or(f64::NAN)).collect())
        .collect();
    assert_eq!(rows.len(), 3, "{epochs}");
    let column = |name: &str| {
        let i = header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("{name} in {header:?}"));
        rows.iter().map(|r| r[i]).collect::<Vec<f64>>()
    };
    let val_loss = column("val_loss");
    assert!(val_loss[2] < val_loss[0], "{val_loss:?}");
    // 24 kinds of characters: chance is about 4 %; the grammar's words make most predictable.
    let val_accuracy = column("val_accuracy");
    assert!(val_accuracy[2] > 0.4, "{val_accuracy:?}");
    let sample = std::fs::read_to_string(run.join("sample.txt")).unwrap();
    assert!(sample.starts_with("the "), "{sample}");
    assert_eq!(sample.chars().count(), 164);
    assert!(run.join("checkpoints").read_dir().unwrap().count() > 0);
    assert!(run.join("loss.png").exists());
}
