//! `Local<T>` keeps a hook's state across its calls, separately for each hook, and starts from
//! `T::default()` at every fit.

use std::sync::Mutex;
use tch::nn;
use trainmon::prelude::*;
use trainmon_tests::{tutorial_data, tutorial_model};

static SEEN: Mutex<Vec<(&str, u32)>> = Mutex::new(Vec::new());

#[on_epoch_end(group = "local_state")]
fn count_every_epoch(mut n: Local<u32>) {
    *n += 1;
    SEEN.lock().unwrap().push(("every", *n));
}

#[on_epoch_end(every = 2, group = "local_state")]
fn count_even_epochs(mut n: Local<u32>) {
    *n += 1;
    SEEN.lock().unwrap().push(("even", *n));
}

// Two `Local`s of the same type in one hook are two separate values.
#[on_epoch_end(group = "local_state")]
fn two_locals(mut a: Local<u32>, mut b: Local<u32>, mut words: Local<Vec<String>>) {
    *a += 1;
    *b += 10;
    words.push(format!("{}+{}", *a, *b));
    SEEN.lock().unwrap().push(("pair", *a * 100 + *b));
}

fn seen(name: &str) -> Vec<u32> {
    SEEN.lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .collect()
}

#[test]
fn locals_persist_per_hook_and_restart_per_fit() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let mut trainer = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(trainmon::Hooks::groups(["local_state"]))
        .epochs(6)
        .batch_size(100);
    trainer.fit(&data).unwrap();
    assert_eq!(seen("every"), [1, 2, 3, 4, 5, 6], "kept across six calls");
    assert_eq!(seen("even"), [1, 2, 3], "a separate counter, called at epochs 2, 4, 6");
    assert_eq!(
        seen("pair"),
        [110, 220, 330, 440, 550, 660],
        "two Locals of one type are distinct"
    );

    SEEN.lock().unwrap().clear();
    trainer.fit(&data).unwrap();
    assert_eq!(seen("every"), [1, 2, 3, 4, 5, 6], "a new fit starts from T::default()");
}
