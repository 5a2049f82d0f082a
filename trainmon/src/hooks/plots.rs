//! Plots of the history, written when training ends.

use crate::context::HookContext;
use crate::control::Control;
use crate::error::{BoxError, Error};
use crate::event::Event;
use crate::hook::{Hook, Plugin};
use crate::output::plot;
use crate::priority;
use crate::spec::HookSpec;
use std::path::PathBuf;

/// Writes the history's plots into a directory when training ends — or fails — (priority
/// [`priority::OUTPUTS`]): loss and accuracy over epochs with their validation lines, time per
/// epoch, and the learning rate over epochs; PNG, SVG or both.
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
}

impl Plots {
    /// PNG plots into `dir` (created if need be), the learning rate's included.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Plots {
            dir: dir.into(),
            png: true,
            svg: false,
            learning_rate: true,
        }
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
        let history = ctx.history();
        std::fs::create_dir_all(&self.dir).map_err(Error::io("create the plot directory", &self.dir))?;
        let mut figures = plot::tutorial_figures(history);
        if self.learning_rate {
            figures.push(("learning_rate", plot::learning_rate_figure()));
        }
        for (enabled, ext) in [(self.png, "png"), (self.svg, "svg")] {
            if enabled {
                plot::write_figures(history, &self.dir, &figures, ext)?;
            }
        }
        Ok(Control::Continue)
    }
}

impl Plugin for Plots {
    fn specs(&self) -> Vec<HookSpec> {
        // Also when training fails: the plots of what was trained.
        [Event::TrainEnd, Event::Exception]
            .into_iter()
            .map(|event| HookSpec::new(event, "Plots").priority(priority::OUTPUTS))
            .collect()
    }
}
