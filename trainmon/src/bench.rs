//! Not public API: a harness for the dispatch benchmark (`benches/dispatch.rs`), which needs
//! the loop's dispatch without a model around it.

use crate::event::Event;
use crate::history::History;
use crate::hook::{Hook, HookContext};
use crate::metrics::BatchLogs;
use crate::registry::{registrations, Hooks};
use crate::trainer::dispatch::Dispatch;
use crate::trainer::TrainState;
use std::cell::Cell;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// The selected registered hooks of this binary, ready to fire as the loop fires them.
pub struct DispatchBench {
    dispatch: Dispatch<'static>,
    state: TrainState,
    history: History,
    vs: VarStore,
    learning_rate: Cell<f64>,
    logs: BatchLogs,
}

impl DispatchBench {
    /// The hooks `selection` picks, instantiated once (their instances live as long as the
    /// process: this is a benchmark harness).
    pub fn new(selection: &Hooks) -> Self {
        let hooks = registrations()
            .into_iter()
            .filter(|r| selection.selects(r.info()))
            .map(|r| {
                let hook: &'static mut dyn Hook = Box::leak(r.instantiate());
                (vec![r.info().clone()], hook)
            });
        DispatchBench {
            dispatch: Dispatch::new(hooks, &[]).expect("registered filters are checked at compile time"),
            state: TrainState {
                epoch: 1,
                epochs: 1,
                batch: 1,
                batches: 1,
                global_step: 0,
                started: Instant::now(),
                device: Device::Cpu,
                learning_rate: 1e-3,
            },
            history: History::default(),
            vs: VarStore::new(Device::Cpu),
            learning_rate: Cell::new(1e-3),
            logs: {
                let mut logs = BatchLogs::new(false, Vec::new(), false);
                let outputs = Tensor::zeros([32, 2], (Kind::Float, Device::Cpu));
                let targets = Tensor::zeros([32], (Kind::Int64, Device::Cpu));
                logs.update(&Tensor::from(0.5f32), &outputs, &targets)
                    .expect("a batch of zeros");
                logs
            },
        }
    }

    /// Fires `on_batch_end` at batch `batch` (and global step `batch`), as the loop does.
    #[inline]
    pub fn fire_batch_end(&mut self, batch: u64) {
        let ctx = HookContext {
            event: Event::BatchEnd,
            state: &self.state,
            batch: Some(&self.logs),
            epoch: None,
            history: &self.history,
            vs: &self.vs,
            learning_rate: &self.learning_rate,
            error: None,
            resources: &crate::resource::NONE,
        };
        if let Err(err) = self.dispatch.fire(batch, batch, &ctx) {
            panic!("benchmark hook failed: {err}");
        }
    }
}
