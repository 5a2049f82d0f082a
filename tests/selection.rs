//! Which hooks run: all registered by default, none, some groups, all but some; hooks added at
//! run time (closures and structs) in the same order; `#[cfg]` on a hook respected; a warning
//! for a selected group with no hooks.

use std::sync::{Arc, Mutex};
use tch::nn;
use trainmon::prelude::*;
use trainmon::{BoxError, Event, Filter, Hook, HookContext, HookSpec, Hooks};
use trainmon_tests::{capture_logs, tutorial_data, tutorial_model};

static RAN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn ran(name: &str) {
    RAN.lock().unwrap().push(name.to_owned());
}

#[on_train_begin(group = "logging")]
fn log_start() {
    ran("log_start")
}

#[on_train_begin(group = "logging", priority = 5)]
fn log_first() {
    ran("log_first")
}

#[on_train_begin(group = "metrics")]
fn metrics_start() {
    ran("metrics_start")
}

#[on_train_begin]
fn ungrouped() {
    ran("ungrouped")
}

// `#[cfg]` below the attribute: the function and its registration go together.
#[on_train_begin]
#[cfg(not(test))]
fn compiled_out() {
    ran("compiled_out")
}

#[on_train_begin]
#[cfg(test)]
fn compiled_in() {
    ran("compiled_in")
}

/// A hook configured at run time, as a struct.
struct Counter {
    name: String,
    calls: Arc<Mutex<u32>>,
}

impl Hook for Counter {
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        *self.calls.lock().unwrap() += 1;
        ran(&format!("{}@{}", self.name, ctx.state().epoch()));
        Ok(Control::Continue)
    }
}

fn run(configure: impl FnOnce(Trainer<'_>) -> Trainer<'_>) -> trainmon::Result<Vec<String>> {
    RAN.lock().unwrap().clear();
    let data = tutorial_data(1);
    let (vs, model) = tutorial_model(2);
    let trainer = Trainer::new(&vs, &model)
        .optimizer(nn::Adam::default(), 1e-3)
        .epochs(2)
        .batch_size(500);
    configure(trainer).fit(&data)?;
    Ok(RAN.lock().unwrap().clone())
}

#[test]
fn selections_and_run_time_hooks() {
    let all = run(|t| t).unwrap();
    assert_eq!(
        all,
        ["log_first", "compiled_in", "log_start", "metrics_start", "ungrouped"],
        "all, in order"
    );
    assert_eq!(run(|t| t.hooks(Hooks::none())).unwrap(), Vec::<String>::new(), "none");
    assert_eq!(
        run(|t| t.hooks(Hooks::groups(["logging"]))).unwrap(),
        ["log_first", "log_start"],
        "one group"
    );
    assert_eq!(
        run(|t| t.hooks(Hooks::all().except(["logging", "selection::ungrouped"]))).unwrap(),
        ["compiled_in", "metrics_start"],
        "all but a group and a path"
    );

    // Run-time hooks: a closure and a struct, ordered among the registered ones by priority.
    let calls = Arc::new(Mutex::new(0));
    let with_added = run(|t| {
        t.hooks(Hooks::groups(["metrics"]))
            .add_hook(HookSpec::new(Event::TrainBegin, "closure").priority(10), || {
                ran("closure")
            })
            .add_hook(
                HookSpec::new(Event::EpochEnd, "counter").filter(Filter::ALWAYS.every(2)),
                Counter {
                    name: "counter".into(),
                    calls: calls.clone(),
                },
            )
    })
    .unwrap();
    assert_eq!(with_added, ["closure", "metrics_start", "counter@2"]);
    assert_eq!(*calls.lock().unwrap(), 1, "the struct kept its own state");

    // A run-time filter that cannot work is refused before training, naming the hook.
    let source = include_str!("selection.rs");
    let line = source
        .lines()
        .position(|l| l.contains("HookSpec::new(Event::TrainBegin, \"bad_filter\")"))
        .unwrap()
        + 1;
    let err = run(|t| {
        t.add_hook(
            HookSpec::new(Event::TrainBegin, "bad_filter").filter(Filter::ALWAYS.every(3)),
            || (),
        )
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("hook `bad_filter` (tests/selection.rs:") && text.contains("takes no filter"),
        "{text}"
    );
    assert!(
        text.contains(&format!(":{line})")),
        "the location of HookSpec::new: {text}"
    );

    // A group with no hooks is warned about: its crate may not be linked.
    let (ran_none, logged) = capture_logs(|| run(|t| t.hooks(Hooks::groups(["ghost"]))));
    let ran_none = ran_none.unwrap();
    assert!(ran_none.is_empty());
    let warned = logged.iter().any(|(level, message)| {
        level == "WARN"
            && message.contains("group `ghost` has no registered hooks")
            && message.contains("use my_hooks as _;")
    });
    assert!(warned, "{logged:?}");
}
