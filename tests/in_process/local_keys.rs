//! A hook's saved `Local` values are kept by parameter name and type: a resumed run whose hook
//! swapped two parameters gets each its own value back; one renamed or retyped starts from its
//! default, and what no parameter takes is dropped with a warning.

use std::sync::Mutex;
use trainmon::prelude::*;
use trainmon::testing::Harness;
use trainmon::{registrations, Event, Hook};

static SEEN: Mutex<Vec<(u32, u32)>> = Mutex::new(Vec::new());

#[on_epoch_end(group = "keys")]
fn before(mut first: Local<u32>, mut second: Local<u32>) {
    *first += 1;
    *second += 10;
}

// The same hook after an edit: its parameters swapped.
#[on_epoch_end(group = "keys")]
fn swapped(second: Local<u32>, first: Local<u32>) {
    SEEN.lock().unwrap().push((*first, *second));
}

// After another edit: `first` renamed, `second` of another type.
#[on_epoch_end(group = "keys")]
fn edited(renamed: Local<u32>, second: Local<u64>) {
    SEEN.lock().unwrap().push((*renamed, *second as u32));
}

fn instance(name: &str) -> Box<dyn Hook> {
    registrations()
        .into_iter()
        .find(|r| r.info().module_path() == module_path!() && r.info().name() == name)
        .expect("registered")
        .instantiate()
}

#[test]
fn locals_are_restored_by_name_and_type() {
    let mut harness = Harness::new();
    let mut hook = instance("before");
    for _ in 0..2 {
        let control = harness
            .next_epoch(&[("loss", 1.0)])
            .run(Event::EpochEnd, &mut *hook)
            .unwrap();
        assert_eq!(control, Control::Continue);
    }
    let saved = || hook.state().unwrap().expect("two Locals kept");

    let mut swapped = instance("swapped");
    swapped.restore(saved()).unwrap();
    assert_eq!(harness.run(Event::EpochEnd, &mut *swapped).unwrap(), Control::Continue);
    assert_eq!(
        SEEN.lock().unwrap().pop(),
        Some((2, 20)),
        "each parameter its own value"
    );

    let mut edited = instance("edited");
    edited.restore(saved()).unwrap();
    assert_eq!(harness.run(Event::EpochEnd, &mut *edited).unwrap(), Control::Continue);
    assert_eq!(
        SEEN.lock().unwrap().pop(),
        Some((0, 0)),
        "renamed and retyped start from their defaults"
    );
}
