//! Plots of a history, as PNG or SVG (by the file's extension): loss and accuracy over epochs —
//! training and, when there is a validation set, validation — as lines with markers, time per
//! epoch as bars, the learning rate over epochs, a value over optimizer steps. PNG text uses a font carried by the crate, so
//! no system font is needed.

use crate::error::{Error, Result};
use crate::output::atomically;
use crate::records::history::History;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::Color as _;
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1000, 500);

/// A colour of a figure's lines or bars: red, green, blue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Color(pub u8, pub u8, pub u8);

impl Color {
    // The colours of matplotlib's default cycle, which the tutorial's plots use.
    /// Matplotlib's `tab:blue`.
    pub const BLUE: Color = Color(31, 119, 180);
    /// Matplotlib's `tab:orange`.
    pub const ORANGE: Color = Color(255, 127, 14);
    /// Matplotlib's `tab:green`.
    pub const GREEN: Color = Color(44, 160, 44);
    /// Matplotlib's `tab:red`.
    pub const RED: Color = Color(214, 39, 40);
    /// Matplotlib's `tab:purple`.
    pub const PURPLE: Color = Color(148, 103, 189);

    fn rgb(self) -> RGBColor {
        RGBColor(self.0, self.1, self.2)
    }
}

/// Writes the tutorial's plots of `history` into `dir` as PNG — `loss.png`, `accuracy.png`
/// (when the history has an accuracy), `epoch_time.png` — and returns their paths.
pub fn write_all(history: &History, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    write_figures(history, dir.as_ref(), &tutorial_figures(history), "png")
}

/// The tutorial's figures, with validation lines where the history has them.
pub(crate) fn tutorial_figures(history: &History) -> Vec<(&'static str, Figure)> {
    let has = |name: &str| history.last().is_some_and(|e| e.get(name).is_some_and(f64::is_finite));
    // "Training …" only where the figure shows training alone.
    let (loss_title, accuracy_title) = if has("val_loss") {
        ("Loss Over Epochs", "Accuracy Over Epochs")
    } else {
        ("Training Loss Over Epochs", "Training Accuracy Over Epochs")
    };
    let mut figures = vec![(
        "loss",
        Figure::lines(
            loss_title,
            "Loss",
            &[
                ("Loss", "loss", Color::BLUE),
                ("Validation loss", "val_loss", Color::ORANGE),
            ],
        ),
    )];
    if has("accuracy") {
        figures.push((
            "accuracy",
            Figure::lines(
                accuracy_title,
                "Accuracy",
                &[
                    ("Accuracy", "accuracy", Color::GREEN),
                    ("Validation accuracy", "val_accuracy", Color::RED),
                ],
            ),
        ));
    }
    figures.push((
        "epoch_time",
        Figure::bars("Training Time per Epoch", "Time (seconds)", "time", Color::ORANGE),
    ));
    figures
}

/// The learning rate over epochs.
pub fn learning_rate_figure() -> Figure {
    Figure::lines(
        "Learning Rate Over Epochs",
        "Learning rate",
        &[("Learning rate", "lr", Color::PURPLE)],
    )
}

/// The running loss over optimizer steps, from `(step, loss)` points.
pub fn loss_steps_figure(points: Vec<(f64, f64)>) -> Figure {
    Figure::steps("Running Loss Over Steps", "Loss", "Running loss", points, Color::BLUE)
}

/// Writes `figures` as `dir/NAME.EXT`, returning the paths.
pub(crate) fn write_figures(
    history: &History,
    dir: &Path,
    figures: &[(&str, Figure)],
    ext: &str,
) -> Result<Vec<PathBuf>> {
    figures
        .iter()
        .map(|(name, figure)| {
            let path = dir.join(format!("{name}.{ext}"));
            figure.write(history, &path)?;
            Ok(path)
        })
        .collect()
}

/// A line or bars to draw: legend label, (epoch, value) points, colour.
type Series = (String, Vec<(f64, f64)>, Color);

/// One figure over the epochs of a history.
#[derive(Clone, Debug)]
pub struct Figure {
    title: String,
    y: String,
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    /// Metrics as lines with markers, each a legend entry; a metric the history lacks is left out.
    Lines(Vec<(String, String, Color)>),
    /// A metric as one bar per epoch.
    Bars(String, Color),
    /// Points over optimizer steps, as a line: legend label, (step, value), colour.
    Steps(String, Vec<(f64, f64)>, Color),
}

impl Figure {
    /// Lines of metrics over epochs: `(legend label, metric name, colour)`.
    pub fn lines(title: &str, y: &str, series: &[(&str, &str, Color)]) -> Self {
        let series = series
            .iter()
            .map(|(l, m, c)| (l.to_string(), m.to_string(), *c))
            .collect();
        Figure {
            title: title.into(),
            y: y.into(),
            kind: Kind::Lines(series),
        }
    }

    /// A metric as one bar per epoch.
    pub fn bars(title: &str, y: &str, metric: &str, color: Color) -> Self {
        Figure {
            title: title.into(),
            y: y.into(),
            kind: Kind::Bars(metric.into(), color),
        }
    }

    /// A line over optimizer steps of given `(step, value)` points (not read from a history).
    pub fn steps(title: &str, y: &str, label: &str, points: Vec<(f64, f64)>, color: Color) -> Self {
        Figure {
            title: title.into(),
            y: y.into(),
            kind: Kind::Steps(label.into(), points, color),
        }
    }

    /// Draws the figure of `history` into `path` — PNG or SVG, by its extension — atomically.
    /// A figure with nothing to draw (none of its metrics in the history, no step) is an
    /// [`Error::Plot`] that says so, and no file.
    pub fn write(&self, history: &History, path: &Path) -> Result<()> {
        let failed = |err: String| Error::Plot {
            path: path.to_owned(),
            message: err,
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
        let svg = path.extension().is_some_and(|e| e == "svg");
        register_font();
        atomically(path, |temp| {
            if svg {
                let root = SVGBackend::new(temp, SIZE).into_drawing_area();
                self.draw(history, &root).map_err(failed)?;
                root.present().map_err(|e| failed(e.to_string()))
            } else {
                let root = BitMapBackend::new(temp, SIZE).into_drawing_area();
                self.draw(history, &root).map_err(failed)?;
                root.present().map_err(|e| failed(e.to_string()))
            }
        })
    }

    fn draw<DB: DrawingBackend>(
        &self,
        history: &History,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let text = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        let points = |metric: &str| -> Vec<(f64, f64)> {
            history
                .epochs()
                .iter()
                .filter_map(|e| e.get(metric).map(|v| (e.epoch() as f64, v)))
                .filter(|(_, v)| v.is_finite())
                .collect()
        };
        let series: Vec<Series> = match &self.kind {
            Kind::Lines(lines) => lines
                .iter()
                .map(|(label, metric, color)| (label.clone(), points(metric), *color))
                .filter(|(_, points, _)| !points.is_empty())
                .collect(),
            Kind::Bars(metric, color) => vec![(String::new(), points(metric), *color)],
            Kind::Steps(label, points, color) => vec![(
                label.clone(),
                points.iter().copied().filter(|(_, v)| v.is_finite()).collect(),
                *color,
            )],
        };
        if series.iter().all(|(_, points, _)| points.is_empty()) {
            let wanted: Vec<String> = match &self.kind {
                Kind::Lines(lines) => lines.iter().map(|(_, m, _)| format!("`{m}`")).collect(),
                Kind::Bars(metric, _) => vec![format!("`{metric}`")],
                Kind::Steps(label, ..) => vec![format!("a finite {label}")],
            };
            return Err(format!(
                "nothing to draw for \"{}\": no epoch or step has {}",
                self.title,
                wanted.join(" or ")
            ));
        }
        root.fill(&WHITE).map_err(text)?;
        let all = series.iter().flat_map(|(_, p, _)| p.iter());
        let (x_lo, x_hi, x_desc) = match &self.kind {
            Kind::Steps(_, points, _) => {
                let first = points.first().map_or(0.0, |p| p.0);
                let last = points.last().map_or(1.0, |p| p.0);
                (first, last.max(first + 1.0), "Steps")
            }
            _ => {
                let last = history.epochs().last().map_or(1.0, |e| e.epoch() as f64);
                (0.5, last + 0.5, "Epochs")
            }
        };
        let last = x_hi - 0.5;
        let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
        let (y_lo, y_hi) = match self.kind {
            Kind::Bars(..) => (0.0, if hi.is_finite() && hi > 0.0 { hi * 1.1 } else { 1.0 }),
            Kind::Lines(_) | Kind::Steps(..) if lo.is_finite() => {
                let pad = ((hi - lo) * 0.1).max(hi.abs() * 1e-3).max(1e-9);
                (lo - pad, hi + pad)
            }
            Kind::Lines(_) | Kind::Steps(..) => (0.0, 1.0),
        };
        let steps = matches!(self.kind, Kind::Steps(..));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 28))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
            .map_err(text)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(&self.y)
            .x_labels(if steps { 10 } else { (last as usize).clamp(2, 20) })
            .x_label_formatter(&|x| {
                if steps || x.fract().abs() < 1e-9 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 18))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(200, 200, 200))
            .draw()
            .map_err(text)?;
        match self.kind {
            Kind::Steps(..) => {
                for (label, points, color) in &series {
                    let color = color.rgb();
                    chart
                        .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(1)))
                        .map_err(text)?
                        .label(label)
                        .legend(move |(x, y)| PathElement::new(vec![(x - 10, y), (x + 10, y)], color.stroke_width(2)));
                }
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .label_font((FONT, 16))
                    .background_style(WHITE.mix(0.9))
                    .border_style(BLACK)
                    .draw()
                    .map_err(text)?;
            }
            Kind::Lines(_) => {
                for (label, points, color) in &series {
                    let color = color.rgb();
                    chart
                        .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                        .map_err(text)?
                        .label(label)
                        .legend(move |(x, y)| {
                            EmptyElement::at((x, y))
                                + PathElement::new(vec![(-10, 0), (10, 0)], color.stroke_width(2))
                                + Circle::new((0, 0), 4, color.filled())
                        });
                    chart
                        .draw_series(points.iter().map(|&p| Circle::new(p, 5, color.filled())))
                        .map_err(text)?;
                }
                // The legend goes to the corner the curves leave free: where they end high, down.
                let ends = series.iter().filter_map(|(_, p, _)| p.last().map(|(_, v)| *v));
                let ends_high = ends.fold(0.0, |acc, v| acc + (v - (y_lo + y_hi) / 2.0).signum()) > 0.0;
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
                    .draw()
                    .map_err(text)?;
            }
            Kind::Bars(..) => {
                for (_, points, color) in &series {
                    let color = color.rgb();
                    chart
                        .draw_series(
                            points
                                .iter()
                                .map(|&(e, v)| Rectangle::new([(e - 0.35, 0.0), (e + 0.35, v)], color.filled())),
                        )
                        .map_err(text)?;
                }
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
