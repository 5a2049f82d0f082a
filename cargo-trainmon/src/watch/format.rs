//! Numbers, durations and chart axes as the dashboard writes them: short, and round where a
//! reader compares them (axis labels fall on 1, 2 or 5 times a power of ten).

/// A value in a panel: 4 significant digits, trailing zeros dropped; exponent form when very
/// large or small (`0.3460` → `0.346`, `0.0001` → `1e-4`, `14000` → `14000`).
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    let magnitude = value.abs();
    if magnitude == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&magnitude) {
        let text = format!("{value:.3e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        return format!("{}e{exponent}", trim_zeros(mantissa));
    }
    let decimals = (3 - magnitude.log10().floor() as i32).clamp(0, 6) as usize;
    trim_zeros(&format!("{value:.decimals$}")).to_owned()
}

/// A rate: whole numbers with thousands separators (`14,000`), small ones as [`number`].
pub fn rate(value: f64) -> String {
    if !value.is_finite() || value.abs() < 100.0 {
        return number(value);
    }
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if value < 0.0 {
        grouped.insert(0, '-');
    }
    grouped
}

fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// A duration to the second: `42s`, `3m 05s`, `2h 07m`, `3d 4h`; `?` when not known.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".into();
    }
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// A coarse age, in its largest unit: `12s`, `3m`, `2h`, `4d`.
pub fn age(secs: f64) -> String {
    if !secs.is_finite() {
        return "?".into();
    }
    let s = secs.max(0.0).floor() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// An axis: the bounds the chart spans and the labels spread evenly between them (first at the
/// low bound, last at the high one), each at a round number.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticks {
    pub bounds: [f64; 2],
    pub labels: Vec<String>,
}

/// 1, 2 or 5 times a power of ten, the least at least `raw` (`raw` > 0).
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|step| *step >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

/// A linear axis through `lo..=hi` in at most `intervals` equal steps of a round size (at
/// least 1 when `integer`), the bounds on multiples of it.
pub fn linear(lo: f64, hi: f64, intervals: usize, integer: bool) -> Ticks {
    let intervals = intervals.max(1);
    let (mut lo, mut hi) = (lo.min(hi), lo.max(hi));
    if hi - lo <= hi.abs().max(lo.abs()) * 1e-12 {
        // One value: a range around it.
        let pad = if integer || lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo, hi) = (lo - pad, hi + pad);
    }
    let mut step = nice_step((hi - lo) / intervals as f64);
    if integer {
        step = step.max(1.0);
    }
    let (start, steps) = loop {
        let start = (lo / step + 1e-9).floor() * step;
        let steps = ((hi - start) / step - 1e-9).ceil().max(1.0) as usize;
        if steps <= intervals {
            break (start, steps);
        }
        step = nice_step(step * 1.000001);
    };
    let labels = (0..=steps)
        .map(|i| linear_label(start + step * i as f64, step))
        .collect();
    Ticks {
        bounds: [start, start + step * steps as f64],
        labels,
    }
}

/// An axis of whole numbers (epochs, steps) spanning exactly `lo..=hi`: labelled at both
/// ends, and in the middle when that is a whole number too (a chart puts a middle label of
/// three exactly there).
pub fn counts(lo: f64, hi: f64) -> Ticks {
    let (mut lo, mut hi) = (lo.min(hi).round(), lo.max(hi).round());
    if hi - lo < 1.0 {
        (lo, hi) = (lo - 1.0, hi + 1.0);
    }
    let mid = (lo + hi) / 2.0;
    let mut labels = vec![format!("{lo}")];
    if mid.fract() == 0.0 && hi - lo >= 4.0 || hi - lo == 2.0 {
        labels.push(format!("{mid}"));
    }
    labels.push(format!("{hi}"));
    Ticks {
        bounds: [lo, hi],
        labels,
    }
}

/// A label on a linear axis: as many decimals as the step needs.
fn linear_label(value: f64, step: f64) -> String {
    if !(1e-4..1e6).contains(&step) {
        return number(value);
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let text = format!("{value:.decimals$}");
    // No "-0.00".
    if text.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
        text.trim_start_matches('-').to_owned()
    } else {
        text
    }
}

/// A log-scale axis (base 10) through `lo..=hi` (both > 0), in log10 units. Over two decades
/// or more: bounds on whole decades, a label at each (every few when there are many).
/// Otherwise: bounds on one significant digit around the data (`0.4`, `0.7`), labelled at
/// both ends — the labels a chart spreads evenly must sit where their values are.
pub fn log(lo: f64, hi: f64, max_labels: usize) -> Ticks {
    let (lo, hi) = (lo.min(hi).log10(), lo.max(hi).log10());
    let (mut first, mut last) = (lo.floor() as i32, hi.ceil() as i32);
    if hi - lo < 2.0 {
        let mantissas = || (1..=10).map(|m| (m as f64).log10());
        let down = |v: f64| {
            let d = v.floor();
            mantissas().rev().map(|m| d + m).find(|b| *b <= v + 1e-12).unwrap_or(d)
        };
        let up = |v: f64| {
            let d = v.floor();
            mantissas().map(|m| d + m).find(|b| *b >= v - 1e-12).unwrap_or(d + 1.0)
        };
        let (mut low, mut high) = (down(lo), up(hi));
        if high - low < 1e-9 {
            (low, high) = (down(lo - 1e-6), up(hi + 1e-6));
        }
        return Ticks {
            bounds: [low, high],
            labels: vec![number(10f64.powf(low)), number(10f64.powf(high))],
        };
    }
    let every = ((last - first) as usize).div_ceil(max_labels.max(2) - 1) as i32;
    first = first.div_euclid(every) * every;
    while (last - first) % every != 0 {
        last += 1;
    }
    let labels = (0..=(last - first) / every)
        .map(|i| number(10f64.powi(first + i * every)))
        .collect();
    Ticks {
        bounds: [first as f64, last as f64],
        labels,
    }
}

/// At most about `buckets` × 2 of `points` (in x order): the lowest and the highest of each run
/// of neighbours, so that spikes survive; fewer points draw the same on a terminal.
pub fn thin(points: &[(f64, f64)], buckets: usize) -> Vec<(f64, f64)> {
    let buckets = buckets.max(1);
    if points.len() <= buckets * 2 {
        return points.to_vec();
    }
    let size = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(buckets * 2 + 1);
    for chunk in points.chunks(size) {
        let low = chunk
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("chunks are not empty");
        let high = chunk
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("chunks are not empty");
        if low.0 <= high.0 {
            out.extend([*low, *high]);
        } else {
            out.extend([*high, *low]);
        }
    }
    let last = points[points.len() - 1];
    if out.last() != Some(&last) {
        out.push(last);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(0.34598), "0.346");
        assert_eq!(number(0.001), "0.001");
        assert_eq!(number(0.0001), "1e-4");
        assert_eq!(number(0.000125), "1.25e-4");
        assert_eq!(number(14000.0), "14000");
        assert_eq!(number(123456.0), "1.235e5");
        assert_eq!(number(-2.5), "-2.5");
        assert_eq!(number(f64::NAN), "n/a");
        assert_eq!(rate(14000.4), "14,000");
        assert_eq!(rate(1234567.0), "1,234,567");
        assert_eq!(rate(12.5), "12.5");
    }

    #[test]
    fn durations_and_ages() {
        assert_eq!(duration(42.4), "42s");
        assert_eq!(duration(185.0), "3m 05s");
        assert_eq!(duration(2.0 * 3600.0 + 7.0 * 60.0), "2h 07m");
        assert_eq!(duration(3.0 * 86400.0 + 4.0 * 3600.0), "3d 4h");
        assert_eq!(duration(f64::NAN), "?");
        assert_eq!(age(185.0), "3m");
        assert_eq!(age(59.9), "59s");
        assert_eq!(age(7300.0), "2h");
    }

    #[test]
    fn linear_axes_fall_on_round_numbers() {
        let t = linear(1.0, 40.0, 2, true);
        assert_eq!(t.bounds, [0.0, 40.0]);
        assert_eq!(t.labels, ["0", "20", "40"]);
        let t = linear(1.0, 3.0, 2, true);
        assert_eq!(
            (t.bounds, t.labels),
            ([1.0, 3.0], vec!["1".into(), "2".into(), "3".into()])
        );
        let t = linear(0.31, 0.69, 4, false);
        assert!(
            (t.bounds[0] - 0.3).abs() < 1e-12 && (t.bounds[1] - 0.7).abs() < 1e-12,
            "{t:?}"
        );
        assert_eq!(t.labels, ["0.3", "0.4", "0.5", "0.6", "0.7"]);
        let t = linear(0.31, 0.72, 4, false);
        assert_eq!(t.labels, ["0.2", "0.4", "0.6", "0.8"]);
        let t = linear(1.0, 5.0, 2, true);
        assert_eq!(t.labels, ["0", "5"]);
        let t = linear(-0.05, 0.12, 4, false);
        assert!(t.bounds[0] <= -0.05 && t.bounds[1] >= 0.12, "{t:?}");
        assert!(t.labels.contains(&"0.00".to_owned()), "zero without a sign: {t:?}");
        let t = linear(5.0, 5.0, 2, true);
        assert_eq!(t.labels, ["4", "5", "6"]);
        let t = linear(0.0, 0.0, 2, false);
        assert!(t.bounds[0] < 0.0 && t.bounds[1] > 0.0, "{t:?}");
    }

    #[test]
    fn count_axes_span_the_data() {
        let t = counts(1.0, 12.0);
        assert_eq!((t.bounds, t.labels), ([1.0, 12.0], vec!["1".into(), "12".into()]));
        let t = counts(1.0, 3.0);
        assert_eq!(t.labels, ["1", "2", "3"]);
        let t = counts(10.0, 1000.0);
        assert_eq!(t.labels, ["10", "505", "1000"]);
        let t = counts(4.0, 4.0);
        assert_eq!(
            (t.bounds, t.labels),
            ([3.0, 5.0], vec!["3".into(), "4".into(), "5".into()])
        );
    }

    #[test]
    fn log_axes_fall_on_decades_or_one_significant_digit() {
        let t = log(0.0003, 2.0, 6);
        assert_eq!(t.bounds, [-4.0, 1.0]);
        assert_eq!(t.labels, ["1e-4", "0.001", "0.01", "0.1", "1", "10"]);
        let t = log(1e-6, 1e3, 4);
        assert_eq!(t.labels, ["1e-6", "0.001", "1", "1000"]);
        let t = log(0.456, 0.6075, 5);
        assert_eq!(t.labels, ["0.4", "0.7"]);
        assert!((t.bounds[0] - 0.4f64.log10()).abs() < 1e-12);
        let t = log(0.08, 1.3, 5);
        assert_eq!(t.labels, ["0.08", "2"]);
        let t = log(0.5, 0.5, 5);
        assert!(t.bounds[0] < t.bounds[1], "{t:?}");
    }

    #[test]
    fn thinning_keeps_extremes_and_the_last_point() {
        let points: Vec<(f64, f64)> = (0..1000)
            .map(|i| (i as f64, if i == 537 { 9.0 } else { 1.0 }))
            .collect();
        let thin = thin(&points, 50);
        assert!(thin.len() <= 101, "{}", thin.len());
        assert!(thin.contains(&(537.0, 9.0)), "the spike survives");
        assert_eq!(thin.last(), Some(&(999.0, 1.0)));
        assert!(thin.windows(2).all(|w| w[0].0 <= w[1].0), "in x order");
    }
}
