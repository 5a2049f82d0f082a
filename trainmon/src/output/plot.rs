//! Plots of a history, as PNG: loss and accuracy over epochs (lines with markers), time per
//! epoch (bars). Text uses a font carried by the crate, so no system font is needed.

use crate::error::{Error, Result};
use crate::history::History;
use crate::output::atomically;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1000, 500);

/// Writes the three plots of `history` into `dir` — `loss.png`, `accuracy.png`,
/// `epoch_time.png` — and returns their paths.
pub fn write_all(history: &History, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    let plots = [
        (
            "loss.png",
            Plot::Line {
                title: "Training Loss Over Epochs",
                y: "Loss",
                label: "Loss",
                metric: "loss",
                color: TAB_BLUE,
            },
        ),
        (
            "accuracy.png",
            Plot::Line {
                title: "Training Accuracy Over Epochs",
                y: "Accuracy",
                label: "Accuracy",
                metric: "accuracy",
                color: TAB_GREEN,
            },
        ),
        (
            "epoch_time.png",
            Plot::Bars {
                title: "Training Time per Epoch",
                y: "Time (seconds)",
                metric: "time",
                color: TAB_ORANGE,
            },
        ),
    ];
    plots
        .into_iter()
        .map(|(name, plot)| {
            let path = dir.join(name);
            plot.write(history, &path)?;
            Ok(path)
        })
        .collect()
}

// The colours of matplotlib's default cycle, which the tutorial's plots use.
const TAB_BLUE: RGBColor = RGBColor(31, 119, 180);
const TAB_GREEN: RGBColor = RGBColor(44, 160, 44);
const TAB_ORANGE: RGBColor = RGBColor(255, 127, 14);

/// One figure over the epochs of a history.
#[derive(Clone, Copy, Debug)]
pub enum Plot {
    /// A metric as a line with markers, a legend entry `label`.
    Line {
        /// Title above the plot.
        title: &'static str,
        /// Label of the y axis.
        y: &'static str,
        /// Legend entry.
        label: &'static str,
        /// The metric's name ([`crate::EpochLogs::get`]).
        metric: &'static str,
        /// Line colour.
        color: RGBColor,
    },
    /// A metric as one bar per epoch.
    Bars {
        /// Title above the plot.
        title: &'static str,
        /// Label of the y axis.
        y: &'static str,
        /// The metric's name ([`crate::EpochLogs::get`]).
        metric: &'static str,
        /// Bar colour.
        color: RGBColor,
    },
}

impl Plot {
    /// Draws the plot of `history` into the PNG file `path`, atomically.
    pub fn write(&self, history: &History, path: &Path) -> Result<()> {
        register_font();
        let failed = |err: &dyn std::fmt::Display| Error::Plot {
            path: path.to_owned(),
            message: err.to_string(),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(Error::Io {
                    action: "write the plot into",
                    path: parent.to_owned(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
                });
            }
        }
        atomically(path, |temp| {
            let root = BitMapBackend::new(temp, SIZE).into_drawing_area();
            self.draw(history, &root).map_err(|e| failed(&e))?;
            root.present().map_err(|e| failed(&e))
        })
    }

    fn draw(
        &self,
        history: &History,
        root: &DrawingArea<BitMapBackend<'_>, Shift>,
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let (title, y_label, metric) = match *self {
            Plot::Line { title, y, metric, .. } | Plot::Bars { title, y, metric, .. } => (title, y, metric),
        };
        let epochs: Vec<(f64, f64)> = history
            .epochs()
            .iter()
            .filter_map(|e| e.get(metric).map(|v| (e.epoch() as f64, v)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        root.fill(&WHITE)?;
        let last = epochs.last().map_or(1.0, |(e, _)| *e);
        let (lo, hi) = epochs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
                (lo.min(*v), hi.max(*v))
            });
        let (y_lo, y_hi) = match *self {
            Plot::Bars { .. } => (0.0, if hi.is_finite() && hi > 0.0 { hi * 1.1 } else { 1.0 }),
            Plot::Line { .. } if lo.is_finite() => {
                let pad = ((hi - lo) * 0.1).max(1e-3);
                (lo - pad, hi + pad)
            }
            Plot::Line { .. } => (0.0, 1.0),
        };
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 28))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(0.5..last + 0.5, y_lo..y_hi)?;
        chart
            .configure_mesh()
            .x_desc("Epochs")
            .y_desc(y_label)
            .x_labels(epochs.len().clamp(2, 20))
            .x_label_formatter(&|x| {
                if x.fract().abs() < 1e-9 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 18))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(200, 200, 200))
            .draw()?;
        match *self {
            Plot::Line { label, color, .. } => {
                chart
                    .draw_series(LineSeries::new(epochs.iter().copied(), color.stroke_width(2)))?
                    .label(label)
                    .legend(move |(x, y)| {
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(-10, 0), (10, 0)], color.stroke_width(2))
                            + Circle::new((0, 0), 4, color.filled())
                    });
                chart.draw_series(epochs.iter().map(|&point| Circle::new(point, 5, color.filled())))?;
                // The legend goes to the corner the curve leaves free: where it ends low, up.
                let ends_high = epochs.last().is_some_and(|(_, v)| *v > (y_lo + y_hi) / 2.0);
                chart
                    .configure_series_labels()
                    .position(if ends_high {
                        SeriesLabelPosition::LowerRight
                    } else {
                        SeriesLabelPosition::UpperRight
                    })
                    .label_font((FONT, 16))
                    .background_style(WHITE.mix(0.9))
                    .border_style(BLACK)
                    .draw()?;
            }
            Plot::Bars { color, .. } => {
                chart.draw_series(
                    epochs
                        .iter()
                        .map(|&(e, v)| Rectangle::new([(e - 0.35, 0.0), (e + 0.35, v)], color.filled())),
                )?;
            }
        }
        Ok(())
    }
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a constant of this crate: a failure here is a packaging bug, and the plot
        // then reports the missing font as its error.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, include_bytes!("../../assets/DejaVuSans.ttf"));
    });
}
