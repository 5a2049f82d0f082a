//! Hooks defined in another crate of the workspace run when that crate is linked; that crate
//! names trainmon `tm`, which its attributes find in its `Cargo.toml` or are told (`crate = "tm"`).

use tch::nn;
use trainmon::registrations;
use trainmon::Hooks;
use trainmon_test_hooks::{CALLS, FOUND};
use trainmon_tests::{tutorial_data, tutorial_model};

#[test]
fn hooks_of_a_linked_library_run() {
    let info = registrations()
        .into_iter()
        .map(|r| r.info())
        .find(|i| i.name() == "library_hook")
        .expect("registered");
    assert_eq!(
        (info.module_path(), info.group()),
        ("trainmon_test_hooks", "from_library")
    );
    assert!(
        info.location().file.ends_with("hook-crate/lib.rs"),
        "{}",
        info.location()
    );

    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let fit = |hooks| {
        trainmon::Trainer::new(&vs, &model)
            .optimizer(nn::Adam::default(), 1e-3)
            .epochs(3)
            .batch_size(500)
            .hooks(hooks)
            .fit(&data)
            .unwrap()
    };
    fit(Hooks::groups(["from_library"]));
    assert_eq!(*CALLS.lock().unwrap(), [1, 2, 3]);
    assert_eq!(*FOUND.lock().unwrap(), [1, 2, 3], "the hook without `crate` found `tm`");
    fit(Hooks::all().except(["from_library"]));
    assert_eq!(*CALLS.lock().unwrap(), [1, 2, 3], "left out by group");
}
