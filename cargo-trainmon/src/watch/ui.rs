//! Drawing: the model ([`App`]) at a time `now`, never reading a clock or a file, so that a
//! moment renders the same every time (the snapshot tests rely on it).
//!
//! ```text
//!  metric: [loss] accuracy time_s lr throughput · log scale
//! ┌ runs/mnist/version_0 ──────────────────────────────────────────────┐
//! │running · up 5m 12s · updated 0s ago                                │
//! │epoch 4/30 ━━━━━━━━━━━━━━━━━━━━━━──────────────────── 17/50 · 1s left│
//! │fit        ━━━━━━──────────────────────────────────── 11% · 59s left │
//! │14,250 samples/s · lr 7.29e-4 · step 167                            │
//! │this epoch: accuracy 0.8125 · loss 0.4213                           │
//! │epoch 3: loss 0.456 · accuracy 0.7812 · val_loss 0.516 · …          │
//! │best val_loss 0.516 at epoch 3 (lowest)                             │
//! │┌ loss by epoch (log) ━ loss ━ val_loss ───────────────────────────┐│
//! │└ … the metric by epoch, then its running value by step … ─────────┘│
//! └────────────────────────────────────────────────────────────────────┘
//! ←/→ Tab h/l: metric · g: log scale · q Esc Ctrl-C: quit
//! ```
//!
//! Several runs get a column each, side by side. On a log scale (base 10) values ≤ 0 are left
//! out, and the chart's title says how many.

use super::format::{self, Ticks};
use super::run::{Run, State};
use super::App;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, LineGauge, Paragraph};
use ratatui::Frame;

/// The keys, as the footer lists them.
pub const KEYS: &str = "←/→ Tab h/l: metric · g: log scale · q Esc Ctrl-C: quit";

const TRAIN: Color = Color::Cyan;
const VAL: Color = Color::Yellow;

/// Draws the dashboard of `app` as it is at `now` (seconds since the Unix epoch).
pub fn draw(frame: &mut Frame, app: &App, now: f64) {
    let [top, body, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)]).areas(frame.area());
    let metric = app.metric();
    frame.render_widget(Paragraph::new(metric_bar(app, metric.as_deref())), top);
    let columns = Layout::horizontal(vec![Constraint::Fill(1); app.runs.len().max(1)]).split(body);
    for (run, area) in app.runs.iter().zip(columns.iter()) {
        draw_run(frame, *area, run, app, metric.as_deref(), now);
    }
    frame.render_widget(Paragraph::new(Line::from(KEYS).dark_gray()), footer);
}

/// ` metric: [loss] accuracy lr · log scale`: every metric, the one shown in brackets.
fn metric_bar(app: &App, metric: Option<&str>) -> Line<'static> {
    let mut spans = vec![Span::raw(" metric: ")];
    let names = app.metrics();
    if names.is_empty() {
        spans.push(Span::raw("none yet").dark_gray());
    }
    for name in names {
        if Some(name.as_str()) == metric {
            spans.push(Span::raw(format!("[{name}]")).bold().reversed());
        } else {
            spans.push(Span::raw(name));
        }
        spans.push(Span::raw(" "));
    }
    if let Some(metric) = metric {
        let scale = if app.log_scale(metric) {
            "log scale"
        } else {
            "linear scale"
        };
        spans.push(Span::raw(format!("· {scale}")).dark_gray());
    }
    Line::from(spans)
}

fn draw_run(frame: &mut Frame, area: Rect, run: &Run, app: &App, metric: Option<&str>, now: f64) {
    let block = Block::bordered().title(Line::from(format!(" {} ", run.label)).bold());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = inner.width as usize;
    if run.metrics_dir().is_none() {
        let why = if run.exists() {
            run.not_a_run()
        } else {
            format!("{} does not exist", run.dir().display())
        };
        let mut lines: Vec<Line> = wrap(&why, width, 6)
            .into_iter()
            .map(|l| Line::from(l).yellow())
            .collect();
        lines.push(Line::from("(looking again at each tick)").dark_gray());
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }

    let gauges = gauges(run, now);
    let info = info_lines(run, now, width);
    let state = state_lines(run, now, width);
    let [state_area, gauge_area, info_area, charts] = Layout::vertical([
        Constraint::Length(state.len() as u16),
        Constraint::Length(gauges.len() as u16),
        Constraint::Length(info.len() as u16),
        Constraint::Min(0),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(state), state_area);
    draw_gauges(frame, gauge_area, &gauges);
    frame.render_widget(Paragraph::new(info), info_area);

    let Some(metric) = metric else { return };
    let log = app.log_scale(metric);
    let [by_epoch, by_step] = Layout::vertical([Constraint::Fill(1), Constraint::Fill(1)]).areas(charts);
    epoch_chart(frame, by_epoch, run, metric, log);
    step_chart(frame, by_step, run, metric, log);
}

/// `running · up 5m 12s · updated 0s ago`, and the like for each state, on as many lines of
/// `width` as it takes (at most 2).
fn state_lines(run: &Run, now: f64, width: usize) -> Vec<Line<'static>> {
    let status = run.status();
    let mut spans = Vec::new();
    let mut details: Vec<String> = Vec::new();
    let elapsed = status.and_then(|s| s.elapsed_s);
    let age = status.and_then(|s| s.updated_unix_s).map(|t| now - t);
    match run.state(now) {
        State::Unknown => {
            spans.push(Span::raw("state unknown").dark_gray().bold());
            details.push("no status.json: from the metric files only".into());
        }
        State::Running => {
            spans.push(Span::raw("running").green().bold());
            details.extend(elapsed.map(|e| format!("up {}", format::duration(e))));
            details.extend(age.map(|a| format!("updated {} ago", format::age(a))));
        }
        State::Quiet { age_s } => {
            spans.push(Span::raw("running?").yellow().bold());
            details.push(format!("no update for {}", format::age(age_s)));
        }
        State::Gone { pid, age_s } => {
            let last = age_s.map_or(String::new(), |a| format!(", last update {} ago", format::age(a)));
            spans.push(Span::raw("gone").red().bold());
            spans.push(Span::raw(format!(": process {pid} no longer runs (killed?){last}")));
        }
        State::Finished => {
            spans.push(Span::raw("finished").blue().bold());
            if let Some(s) = status {
                if let (Some(epoch), Some(epochs)) = (s.epoch, s.epochs) {
                    details.push(format!("{epoch}/{epochs} epochs"));
                }
            }
            details.extend(elapsed.map(|e| format!("took {}", format::duration(e))));
            details.extend(age.map(|a| format!("ended {} ago", format::age(a))));
        }
        State::Failed => {
            spans.push(Span::raw("failed").red().bold());
            details.extend(elapsed.map(|e| format!("after {}", format::duration(e))));
            details.extend(age.map(|a| format!("{} ago", format::age(a))));
        }
        State::Other(state) => {
            spans.push(Span::raw(state).bold());
        }
    }
    if let Some(host) = run.remote_host() {
        details.push(format!("on {host}"));
    }
    if let Some(world) = status.and_then(|s| s.world_size).filter(|w| *w > 1) {
        details.push(format!("{world} processes"));
    }
    // The state, then the details, a line filled before the next.
    let mut lines = vec![Line::from(spans)];
    for detail in details {
        let full = lines.len() == 2;
        let last = lines.last_mut().expect("one line at least");
        if last.width() + 3 + detail.chars().count() <= width || full {
            last.push_span(Span::raw(format!(" · {detail}")));
        } else {
            lines.push(Line::from(detail));
        }
    }
    lines
}

/// A progress row: what is counted, how far, and what the bar does not say.
struct Gauge {
    label: String,
    ratio: f64,
    right: String,
}

/// The epoch's and the fit's progress, from `status.json`.
fn gauges(run: &Run, now: f64) -> Vec<Gauge> {
    let Some(status) = run.status() else {
        return Vec::new();
    };
    let (Some(epoch), Some(epochs)) = (status.epoch, status.epochs) else {
        return Vec::new();
    };
    let state = run.state(now);
    let running = state == State::Running;
    // A finished fit's status names its last epoch, with no batch: it was trained whole.
    let finished = state == State::Finished;
    let per_epoch = status.batches_per_epoch.filter(|b| *b > 0 && !finished);
    let batch = status.batch.unwrap_or(0);
    // How much of the current epoch is done.
    let fraction = match per_epoch {
        Some(per) if epoch > 0 => (batch as f64 / per as f64).clamp(0.0, 1.0),
        _ => 0.0,
    };
    let epoch_left = status
        .epoch_elapsed_s
        .filter(|_| fraction > 0.0 && fraction < 1.0)
        .map(|e| e / fraction * (1.0 - fraction));
    let mut rows = Vec::new();
    if let Some(per) = per_epoch {
        let mut right = format!("{batch}/{per}");
        if running {
            right.extend(epoch_left.map(|s| format!(" · {} left", format::duration(s))));
        }
        rows.push(Gauge {
            label: format!("epoch {epoch}/{epochs}"),
            ratio: fraction,
            right,
        });
    }
    if epochs > 0 {
        let done = (epoch.saturating_sub(1) as f64 + fraction).min(epochs as f64);
        let done = if per_epoch.is_none() {
            epoch.min(epochs) as f64
        } else {
            done
        };
        let ratio = (done / epochs as f64).clamp(0.0, 1.0);
        let mut right = format!("{:.0}%", ratio * 100.0);
        if running {
            // Whole epochs left at the mean epoch time, plus what is left of this one.
            let mean = run.mean_epoch_s().or_else(|| {
                let elapsed = status.epoch_elapsed_s?;
                (fraction > 0.0).then(|| elapsed / fraction)
            });
            let left = mean.map(|mean| {
                let this = epoch_left.unwrap_or(mean * (1.0 - fraction));
                this + mean * epochs.saturating_sub(epoch.max(1)) as f64
            });
            right.extend(left.map(|s| format!(" · {} left", format::duration(s))));
        }
        rows.push(Gauge {
            label: "fit".into(),
            ratio,
            right,
        });
    }
    rows
}

fn draw_gauges(frame: &mut Frame, area: Rect, gauges: &[Gauge]) {
    let label_width = gauges.iter().map(|g| g.label.chars().count()).max().unwrap_or(0) as u16;
    let right_width = gauges.iter().map(|g| g.right.chars().count()).max().unwrap_or(0) as u16 + 1;
    let rows = Layout::vertical(vec![Constraint::Length(1); gauges.len()]).split(area);
    for (gauge, row) in gauges.iter().zip(rows.iter()) {
        let [label, bar, right] = Layout::horizontal([
            Constraint::Length(label_width),
            Constraint::Min(4),
            Constraint::Length(right_width),
        ])
        .areas(*row);
        frame.render_widget(Paragraph::new(gauge.label.as_str()), label);
        frame.render_widget(
            LineGauge::default()
                .ratio(gauge.ratio)
                .label("")
                .filled_symbol(ratatui::symbols::line::THICK_HORIZONTAL)
                .filled_style(Style::new().fg(Color::Green))
                .unfilled_style(Style::new().fg(Color::DarkGray)),
            bar,
        );
        frame.render_widget(Paragraph::new(format!(" {}", gauge.right)), right);
    }
}

/// Rate and learning rate, the values now and at the last epoch, the best value, the stop
/// reason or error, and what could not be read; each on up to a few lines of `width`.
fn info_lines(run: &Run, now: f64, width: usize) -> Vec<Line<'static>> {
    // Text, its style, and the lines it may take.
    let mut items: Vec<(String, Style, usize)> = Vec::new();
    let plain = Style::new();
    let status = run.status();
    let epochs = run.epochs.data();
    if status.is_none() {
        let mut parts = vec![format!("{} epochs done", epochs.len())];
        let steps = run.steps.data();
        if let Some(step) = steps.last("step") {
            let mut at = format!("last step {step}");
            if let (Some(epoch), Some(batch)) = (steps.last("epoch"), steps.last("batch")) {
                at.push_str(&format!(" (epoch {epoch}, batch {batch})"));
            }
            parts.push(at);
        }
        items.push((parts.join(" · "), plain, 2));
    }
    if let Some(status) = status {
        let mut parts = Vec::new();
        parts.extend(status.samples_per_s.map(|r| format!("{} samples/s", format::rate(r))));
        parts.extend(status.lr.map(|lr| format!("lr {}", format::number(lr))));
        parts.extend(status.global_step.map(|s| format!("step {s}")));
        if !parts.is_empty() {
            items.push((parts.join(" · "), plain, 2));
        }
        let running: Vec<String> = status
            .running_values()
            .map(|(name, v)| format!("{name} {}", format::number(v)))
            .collect();
        if !running.is_empty() && run.state(now) == State::Running {
            items.push((format!("this epoch: {}", running.join(" · ")), plain, 2));
        }
    }
    if let Some(last) = epochs.len().checked_sub(1) {
        let epoch = epochs
            .get(last, "epoch")
            .map_or_else(|| epochs.len().to_string(), |e| e.to_string());
        let values: Vec<String> = epochs
            .columns()
            .iter()
            .filter(|c| !["epoch", "time_s", "time", "lr", "throughput"].contains(&c.as_str()))
            .filter_map(|c| Some(format!("{c} {}", format::number(epochs.get(last, c)?))))
            .collect();
        if !values.is_empty() {
            items.push((format!("epoch {epoch}: {}", values.join(" · ")), plain, 2));
        }
    }
    if let Some(best) = run.best() {
        let mode = if best.higher { "highest" } else { "lowest" };
        let text = format!(
            "best {} {} at epoch {} ({mode})",
            best.metric,
            format::number(best.value),
            best.epoch
        );
        items.push((text, Style::new().add_modifier(Modifier::BOLD), 2));
    }
    if let Some(reason) = status.and_then(|s| s.stop_reason.as_deref()) {
        items.push((format!("stopped: {reason}"), Style::new().fg(Color::Yellow), 2));
    }
    if let Some(error) = status.and_then(|s| s.error.as_deref()) {
        items.push((format!("error: {error}"), Style::new().fg(Color::Red), 4));
    }
    for problem in run.problems(now) {
        items.push((problem, Style::new().fg(Color::Yellow), 2));
    }
    items
        .into_iter()
        .flat_map(|(text, style, max)| {
            wrap(&text, width, max)
                .into_iter()
                .map(move |l| Line::from(l).style(style))
        })
        .collect()
}

/// `text` in lines of at most `width` characters (breaking at spaces where it can), at most
/// `max` of them, the last ending in `…` when some was left out.
fn wrap(text: &str, width: usize, max: usize) -> Vec<String> {
    let width = width.max(8);
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut rest: Vec<char> = paragraph.chars().collect();
        while !rest.is_empty() {
            let take = if rest.len() <= width {
                rest.len()
            } else {
                rest[..width]
                    .iter()
                    .rposition(|c| *c == ' ')
                    .filter(|at| *at > width / 2)
                    .map_or(width, |at| at + 1)
            };
            lines.push(rest[..take].iter().collect::<String>().trim_end().to_owned());
            rest.drain(..take);
        }
    }
    if lines.len() > max {
        lines.truncate(max);
        let last = &mut lines[max - 1];
        let mut chars: Vec<char> = last.chars().collect();
        chars.truncate(width - 1);
        *last = chars.into_iter().collect::<String>() + "…";
    }
    lines
}

/// A series of a chart.
struct Series {
    name: String,
    color: Color,
    points: Vec<(f64, f64)>,
}

/// The metric (and its `val_` twin) by epoch.
fn epoch_chart(frame: &mut Frame, area: Rect, run: &Run, metric: &str, log: bool) {
    let epochs = run.epochs.data();
    let mut series = Vec::new();
    let train = epochs.points("epoch", metric);
    if !train.is_empty() {
        series.push(Series {
            name: metric.to_owned(),
            color: TRAIN,
            points: train,
        });
    }
    let val_name = format!("val_{metric}");
    let val = epochs.points("epoch", &val_name);
    if !val.is_empty() {
        series.push(Series {
            name: val_name,
            color: VAL,
            points: val,
        });
    }
    let empty = if epochs.is_empty() {
        "no epoch has ended yet".to_owned()
    } else {
        format!("the epoch lines have no {metric}")
    };
    chart(frame, area, &format!("{metric} by epoch"), series, log, &empty);
}

/// The metric's running value by step (the steps file), or its logged values.
fn step_chart(frame: &mut Frame, area: Rect, run: &Run, metric: &str, log: bool) {
    let steps = run.steps.data();
    let logged = run.logged.data();
    let (title, points) = if steps.has(metric) {
        (
            format!("{metric} by step (running value)"),
            steps.points("step", metric),
        )
    } else if logged.names().iter().any(|n| n == metric) {
        (format!("{metric} logged, by step"), logged.points(metric))
    } else {
        (format!("{metric} by step"), Vec::new())
    };
    let series = vec![Series {
        name: String::new(),
        color: TRAIN,
        points,
    }];
    let series = series.into_iter().filter(|s| !s.points.is_empty()).collect();
    let empty = match run.steps.file_name() {
        None if run.logged.file_name().is_none() => "no steps file (MetricFiles::steps(n) writes one)".to_owned(),
        _ => format!("no step values of {metric}"),
    };
    chart(frame, area, &title, series, log, &empty);
}

/// A line chart of `series` titled `title`; on a log scale (base 10) values ≤ 0 are left out,
/// and the title says how many.
fn chart(frame: &mut Frame, area: Rect, title: &str, mut series: Vec<Series>, log: bool, empty: &str) {
    let mut title = vec![Span::raw(format!(" {title}{} ", if log { " (log)" } else { "" }))];
    if log {
        let dropped: usize = series
            .iter()
            .map(|s| s.points.iter().filter(|p| p.1 <= 0.0).count())
            .sum();
        for s in &mut series {
            s.points = s
                .points
                .iter()
                .filter(|p| p.1 > 0.0)
                .map(|(x, y)| (*x, y.log10()))
                .collect();
        }
        if dropped > 0 {
            title.push(Span::raw(format!("· {dropped} values ≤ 0 left out ")));
        }
    }
    series.retain(|s| !s.points.is_empty());
    // The legend, in the title: a box inside would hide the lines of a small chart.
    if series.len() > 1 {
        for s in &series {
            title.push(Span::raw(format!("━ {} ", s.name)).fg(s.color));
        }
    }
    let block = Block::bordered().title(Line::from(title));
    if series.is_empty() || area.height < 5 {
        frame.render_widget(
            Paragraph::new(Line::from(empty.to_owned()).dark_gray()).block(block),
            area,
        );
        return;
    }
    for s in &mut series {
        s.points = format::thin(&s.points, area.width as usize);
    }
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (x_lo, x_hi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.0), hi.max(p.0))
    });
    let (y_lo, y_hi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let x = format::counts(x_lo, x_hi);
    let y = if log {
        format::log(10f64.powf(y_lo), 10f64.powf(y_hi), 5)
    } else {
        let intervals = (area.height.saturating_sub(4) / 2).clamp(1, 4) as usize;
        format::linear(y_lo, y_hi, intervals, false)
    };
    let datasets = series
        .iter()
        .map(|s| {
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(s.color))
                .data(&s.points)
        })
        .collect();
    let axis = |ticks: Ticks| {
        Axis::default()
            .bounds(ticks.bounds)
            .labels(ticks.labels)
            .style(Style::new().fg(Color::DarkGray).add_modifier(Modifier::empty()))
    };
    let chart = Chart::new(datasets)
        .block(block)
        .x_axis(axis(x))
        .y_axis(axis(y))
        .legend_position(None);
    frame.render_widget(chart, area);
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrapping_breaks_at_spaces_and_marks_a_cut() {
        assert_eq!(wrap("short", 20, 2), ["short"]);
        assert_eq!(wrap("one two three four", 10, 3), ["one two", "three four"]);
        let cut = wrap(&"word ".repeat(20), 10, 2);
        assert_eq!(cut.len(), 2);
        assert!(cut[1].ends_with('…') && cut[1].chars().count() <= 10, "{cut:?}");
    }
}
