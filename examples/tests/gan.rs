//! The `gan` example trains a generator against a discriminator, two optimizers stepped by hand:
//! its samples come closer to the eight modes and cover more of them, its outputs are written,
//! and it says where its run directory is last.

use crate::common::run_in;

#[test]
fn the_generator_learns_the_ring() {
    let _serial = crate::common::serial();
    let out = tempfile::tempdir().unwrap();
    let (run, _) = run_in("gan", &["--epochs", "30"], out.path(), &[("OMP_NUM_THREADS", "2")]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("quality.json")).unwrap()).unwrap();
    let distance = |when: &str| report[when]["mean_distance_to_nearest_mode"].as_f64().unwrap();
    let covered = |when: &str| report[when]["modes_covered"].as_u64().unwrap();
    assert!(distance("after") < 0.6 * distance("before"), "{report}");
    assert!(covered("after") > covered("before"), "{report}");
    for file in [
        "samples_before.csv",
        "samples_after.csv",
        "metrics/epochs.csv",
        "checkpoints/last.safetensors",
        "loss.png",
    ] {
        assert!(run.join(file).exists(), "{file}");
    }
    let samples = std::fs::read_to_string(run.join("samples_after.csv")).unwrap();
    assert_eq!(samples.lines().count(), 2001, "a header and 2000 points");
}
