//! Plots of the history, written when training ends.

use crate::context::HookContext;
use crate::control::Control;
use crate::error::{BoxError, Error};
use crate::hook::{Hook, Plugin};
use crate::output::plot;
use crate::schedule::event::Event;
use crate::schedule::filter::{Counter, Filter};
use crate::schedule::priority;
use crate::schedule::spec::HookSpec;
use std::path::PathBuf;

/// Writes the history's plots into a directory when training ends — or fails — (priority
/// [`priority::OUTPUTS`]): loss and accuracy over epochs with their validation lines, time per
/// epoch, the learning rate over epochs, and the running loss over optimizer steps
/// (`loss_steps`, read every [`Plots::steps`] steps); PNG, SVG or both. A fit that ended
/// before its first epoch finished has no plots (a warning says so).
///
/// ```
/// use trainmon::hooks::Plots;
///
/// let plots = Plots::new("runs/demo/plots").svg(true);
/// # let _ = plots;
/// ```
#[derive(Debug, Clone)]
pub struct Plots {
    dir: PathBuf,
    png: bool,
    svg: bool,
    learning_rate: bool,
    /// The running loss is read every this many optimizer steps (0: no per-step plot).
    every: u64,
    /// `(global step, running loss)` of the finite ones, kept in resume points.
    steps: Vec<(f64, f64)>,
    /// Whether the steps come from a resume point (the fit goes on with them).
    restored: bool,
}

impl Plots {
    /// PNG plots into `dir` (created if need be), the learning rate's included.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Plots {
            dir: dir.into(),
            png: true,
            svg: false,
            learning_rate: true,
            every: 10,
            steps: Vec::new(),
            restored: false,
        }
    }

    /// The per-step loss plot reads the running loss every `n` optimizer steps (10 by default;
    /// on CUDA with lazy reads each read is a host synchronisation); `0`: no per-step plot.
    pub fn steps(mut self, n: u64) -> Self {
        self.every = n;
        self
    }

    /// Whether to write PNG files (default `true`).
    pub fn png(mut self, png: bool) -> Self {
        self.png = png;
        self
    }

    /// Whether to write SVG files (default `false`).
    pub fn svg(mut self, svg: bool) -> Self {
        self.svg = svg;
        self
    }

    /// Whether to plot the learning rate (default `true`).
    pub fn learning_rate(mut self, plot: bool) -> Self {
        self.learning_rate = plot;
        self
    }
}

impl Hook for Plots {
    fn call(&mut self, ctx: &HookContext<'_>) -> Result<Control, BoxError> {
        if ctx.event() == Event::TrainBegin {
            // A second fit of the same trainer starts its own line; a resumed one goes on.
            if !std::mem::take(&mut self.restored) {
                self.steps.clear();
            }
            return Ok(Control::Continue);
        }
        if let Some(batch) = ctx.batch() {
            let loss = batch.loss();
            if loss.is_finite() {
                self.steps.push((ctx.state().global_step() as f64, loss));
            }
            return Ok(Control::Continue);
        }
        let history = ctx.history();
        if history.is_empty() {
            tracing::warn!(
                "Plots: no epoch finished, so there is nothing to plot in {}",
                self.dir.display()
            );
            return Ok(Control::Continue);
        }
        std::fs::create_dir_all(&self.dir).map_err(Error::io("create the plot directory", &self.dir))?;
        let mut figures = plot::tutorial_figures(history);
        if self.learning_rate {
            figures.push(("learning_rate", plot::learning_rate_figure()));
        }
        if !self.steps.is_empty() {
            figures.push(("loss_steps", plot::loss_steps_figure(self.steps.clone())));
        }
        for (enabled, ext) in [(self.png, "png"), (self.svg, "svg")] {
            if enabled {
                plot::write_figures(history, &self.dir, &figures, ext)?;
            }
        }
        Ok(Control::Continue)
    }

    fn state(&self) -> Result<Option<crate::records::saved::HookState>, BoxError> {
        Ok(Some(crate::records::saved::HookState::new(&self.steps)?))
    }

    fn restore(&mut self, state: crate::records::saved::HookState) -> Result<(), BoxError> {
        self.steps = state.value()?;
        self.restored = true;
        Ok(())
    }
}

impl Plugin for Plots {
    fn specs(&self) -> Vec<HookSpec> {
        // Also when training fails: the plots of what was trained.
        let at = |event| HookSpec::new(event, "Plots").priority(priority::OUTPUTS).rank_zero();
        let mut specs = vec![at(Event::TrainBegin), at(Event::TrainEnd), at(Event::Exception)];
        if self.every > 0 {
            specs.push(at(Event::BatchEnd).filter(Filter::ALWAYS.every(self.every).counter(Counter::GlobalStep)));
        }
        specs
    }
}
