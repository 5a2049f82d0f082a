//! Not public API: a harness for the dispatch benchmark (`benches/dispatch.rs`), which needs
//! the loop's dispatch without a model around it.

use crate::context::Scene;
use crate::hook::Hook;
use crate::records::metrics::BatchLogs;
use crate::registry::{registrations, Hooks};
use crate::schedule::event::Event;
use crate::state::TrainState;
use crate::trainer::dispatch::Dispatch;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// The selected registered hooks of this binary, ready to fire as the loop fires them.
pub struct DispatchBench {
    dispatch: Dispatch<'static>,
    scene: Scene,
    vs: VarStore,
    logs: BatchLogs,
}

impl DispatchBench {
    /// The hooks `selection` picks, instantiated once (their instances live as long as the
    /// process: this is a benchmark harness).
    pub fn new(selection: &Hooks) -> Self {
        let hooks = registrations()
            .into_iter()
            .map(|r| (r.info(), r))
            .filter(|(info, _)| selection.selects(info))
            .map(|(info, r)| {
                let hook: &'static mut dyn Hook = Box::leak(r.instantiate());
                (vec![info], hook)
            });
        DispatchBench {
            dispatch: Dispatch::new(hooks, &[]).expect("registered filters are checked at compile time"),
            scene: Scene::new(TrainState {
                epoch: 1,
                epochs: 1,
                batch: 1,
                batches: 1,
                global_step: 0,
                started: Instant::now(),
                device: Device::Cpu,
                learning_rate: 1e-3,
            }),
            vs: VarStore::new(Device::Cpu),
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
        let ctx = self
            .scene
            .context(Event::BatchEnd, &self.vs, &crate::resource::NONE)
            .with_batch(&self.logs);
        if let Err(err) = self.dispatch.fire(batch, batch, &ctx) {
            panic!("benchmark hook failed: {err}");
        }
        self.scene.keep_logged();
    }
}
