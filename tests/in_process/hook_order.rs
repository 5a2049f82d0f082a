//! Hooks of one event run in the documented order — priority (higher first), then module path,
//! then name — whatever the order they are written or linked in.

use std::sync::Mutex;
use tch::nn;
use trainmon::prelude::*;
use trainmon::registrations;
use trainmon::Event;
use trainmon_tests::{tutorial_data, tutorial_model};

static ORDER: Mutex<Vec<&str>> = Mutex::new(Vec::new());

mod zebra {
    use super::ORDER;
    use trainmon::prelude::*;

    #[on_epoch_end(group = "hook_order")]
    fn b_second() {
        ORDER.lock().unwrap().push("zebra::b_second");
    }

    #[on_epoch_end(priority = 10, group = "hook_order")]
    fn first_by_priority() {
        ORDER.lock().unwrap().push("zebra::first_by_priority");
    }

    #[on_epoch_end(group = "hook_order")]
    fn a_first() {
        ORDER.lock().unwrap().push("zebra::a_first");
    }
}

#[on_epoch_end(priority = -3, group = "hook_order")]
fn last_by_priority() {
    ORDER.lock().unwrap().push("last_by_priority");
}

// A constant expression as the priority: after checkpointing, before the outputs.
#[on_epoch_end(priority = trainmon::priority::CHECKPOINT - 1, group = "hook_order")]
fn after_checkpoints() {
    ORDER.lock().unwrap().push("after_checkpoints");
}

#[on_epoch_end(group = "hook_order")]
fn zz_top_level() {
    ORDER.lock().unwrap().push("zz_top_level");
}

mod apple {
    use super::ORDER;
    use trainmon::prelude::*;

    #[on_epoch_end(group = "hook_order")]
    fn only() {
        ORDER.lock().unwrap().push("apple::only");
    }
}

const WANT: [&str; 7] = [
    "zebra::first_by_priority", // priority 10
    "zz_top_level",             // priority 0, module in_process::hook_order
    "apple::only",              // priority 0, module in_process::hook_order::apple
    "zebra::a_first",           // priority 0, module in_process::hook_order::zebra
    "zebra::b_second",
    "last_by_priority",  // priority -3
    "after_checkpoints", // priority -201
];

#[test]
fn order_is_priority_then_module_then_name() {
    let _serial = trainmon_tests::serial();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .hooks(trainmon::Hooks::groups(["hook_order"]))
        .epochs(2)
        .batch_size(500)
        .fit(&data)
        .unwrap();
    let order = ORDER.lock().unwrap().clone();
    assert_eq!(order[..7], WANT, "epoch 1");
    assert_eq!(order[7..], WANT, "epoch 2: the same order");

    let listed: Vec<String> = registrations()
        .into_iter()
        .map(|r| r.info())
        .filter(|info| info.event() == Event::EpochEnd && info.group() == "hook_order")
        .map(|info| info.path().trim_start_matches(concat!(module_path!(), "::")).to_owned())
        .collect();
    assert_eq!(listed, WANT, "registrations() lists them in the order they run");
}
