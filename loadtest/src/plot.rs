//! SVG plots of a run's latency: quantiles over time and the whole distribution as a percentile spectrum, as
//! standalone documents any browser opens, written by hand so the harness needs no plotting library.

use std::fmt::{self, Write};

/// One interval of a run: when it ended (seconds from the start of the run) and its latency quantiles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalPoint {
    /// When the interval ended, in seconds from the start of the run.
    pub t_secs: f64,
    /// Median latency of the interval (ms).
    pub p50_ms: f64,
    /// 99th percentile latency of the interval (ms).
    pub p99_ms: f64,
    /// 99.9th percentile latency of the interval (ms).
    pub p999_ms: f64,
    /// Largest latency of the interval (ms).
    pub max_ms: f64,
    /// Latency samples in the interval; 0 means the quantiles mean nothing.
    pub count: u64,
}

/// Latency over time: one line per quantile (p50, p99, p99.9, max) against time, y axis in ms.
///
/// Intervals with count 0 are gaps: they contribute no point to the lines and are shaded instead. An empty slice
/// gives a valid SVG saying "no samples". Negative, non-finite or absurdly large values are skipped.
pub fn latency_over_time(title: &str, points: &[IntervalPoint]) -> String {
    let mut intervals: Vec<&IntervalPoint> = points.iter().filter(|p| plottable(p.t_secs)).collect();
    // The caller hands them over in order, but a stray one would make the lines zigzag back in time.
    intervals.sort_by(|a, b| a.t_secs.total_cmp(&b.t_secs));

    let line = |name, class, colour, width, value: fn(&IntervalPoint) -> f64| Series {
        name,
        class,
        colour,
        width,
        points: intervals
            .iter()
            .filter(|p| p.count > 0)
            .map(|p| (p.t_secs, value(p)))
            .filter(|&(_, v)| plottable(v))
            .collect(),
    };
    let series = [
        line("p50", "p50", "#1f77b4", 2.0, |p| p.p50_ms),
        line("p99", "p99", "#ff7f0e", 2.0, |p| p.p99_ms),
        line("p99.9", "p999", "#d62728", 2.0, |p| p.p999_ms),
        line("max", "max", "#7f7f7f", 1.25, |p| p.max_ms),
    ];

    // An interval covers the time since the one before it ended.
    let mut gaps = Vec::new();
    let mut previous_end = 0.0;
    for p in &intervals {
        if p.count == 0 && p.t_secs > previous_end {
            gaps.push((previous_end, p.t_secs));
        }
        previous_end = p.t_secs;
    }

    let t_max = intervals.last().map_or(0.0, |p| p.t_secs);
    let x_axis = NiceAxis::covering(t_max, 1.0);
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|&(_, v)| v))
        .fold(0.0, f64::max);
    let chart = Chart {
        title,
        x_title: "time since the first connection attempt (s)",
        y_title: "latency (ms)",
        x_max: x_axis.max,
        x_ticks: x_axis.labelled_ticks(),
        y_axis: NiceAxis::covering(y_max, HEADROOM),
        empty: intervals.iter().all(|p| p.count == 0),
        gaps,
        // Drawn back to front, so the spiky max sits behind the quantiles people read first.
        series: series.into_iter().rev().collect(),
    };
    chart.render()
}

/// The latency distribution as a percentile spectrum (HdrHistogram style).
///
/// The x axis is the percentile on a log scale of 1/(1-p), with ticks labelled 50%, 90%, 99%, 99.9%, 99.99% and
/// 99.999%; the y axis is latency in ms. `percentiles` are (percentile in 0..=100, latency ms) pairs in increasing
/// percentile order. Percentiles past the last tick, 100 included, are drawn at the right edge. Pairs with a
/// percentile outside 0..=100 or a negative, non-finite or absurdly large latency are skipped. An empty slice
/// gives a valid SVG saying "no samples".
pub fn latency_distribution(title: &str, percentiles: &[(f64, f64)]) -> String {
    let mut points: Vec<(f64, f64)> = percentiles
        .iter()
        .filter(|&&(p, ms)| p.is_finite() && (0.0..=100.0).contains(&p) && plottable(ms))
        .map(|&(p, ms)| (spectrum_x(p), ms))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let y_max = points.iter().map(|&(_, ms)| ms).fold(0.0, f64::max);
    let x_ticks = SPECTRUM_TICKS
        .iter()
        .map(|&(p, label)| (spectrum_x(p), label.to_string()))
        .collect();
    let chart = Chart {
        title,
        x_title: "percentile",
        y_title: "latency (ms)",
        x_max: spectrum_x(100.0),
        x_ticks,
        y_axis: NiceAxis::covering(y_max, HEADROOM),
        empty: points.is_empty(),
        gaps: Vec::new(),
        series: vec![Series {
            name: "latency",
            class: "latency",
            colour: "#1f77b4",
            width: 2.0,
            points,
        }],
    };
    chart.render()
}

/// Where the spectrum's x axis ticks go, and what they say. The last one is the right edge.
const SPECTRUM_TICKS: [(f64, &str); 7] = [
    (0.0, "0%"),
    (50.0, "50%"),
    (90.0, "90%"),
    (99.0, "99%"),
    (99.9, "99.9%"),
    (99.99, "99.99%"),
    (99.999, "99.999%"),
];

/// log10(1/(1-p)), capped at the last tick: 100% itself would be infinitely far right.
fn spectrum_x(percentile: f64) -> f64 {
    let edge = 5.0;
    let remaining = (100.0 - percentile) / 100.0;
    if remaining <= 0.0 {
        edge
    } else {
        (-remaining.log10()).clamp(0.0, edge)
    }
}

/// Values beyond this many ms (about 30 years) are garbage, and would only wreck the axis for the rest.
const LARGEST_VALUE: f64 = 1e12;

/// How far above the largest value the y axis reaches, so the peak does not touch the frame.
const HEADROOM: f64 = 1.1;

fn plottable(value: f64) -> bool {
    value.is_finite() && (0.0..=LARGEST_VALUE).contains(&value)
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 500.0;
const PLOT_LEFT: f64 = 78.0;
const PLOT_RIGHT: f64 = WIDTH - 40.0;
const PLOT_TOP: f64 = 64.0;
const PLOT_BOTTOM: f64 = HEIGHT - 58.0;
const FONT: &str = "font-family=\"Helvetica, Arial, sans-serif\"";

/// An axis from 0 up to a multiple of a 1, 2 or 5 × 10^k step.
#[derive(Debug, Clone, Copy)]
struct NiceAxis {
    max: f64,
    step: f64,
}

impl NiceAxis {
    /// Aim for about this many steps: enough to read values off, few enough for the labels to breathe.
    const TARGET_STEPS: f64 = 6.0;

    /// An axis reaching at least `largest` × `headroom`. A largest value of 0 (or less) still gets a 0..1 axis,
    /// and tiny ones a 0..0.001 one, so no step is 0 and no label needs more than a handful of decimals.
    fn covering(largest: f64, headroom: f64) -> Self {
        let span = if largest.is_finite() && largest > 0.0 {
            (largest * headroom).max(1e-3)
        } else {
            1.0
        };
        let raw = span / Self::TARGET_STEPS;
        let magnitude = 10f64.powf(raw.log10().floor());
        let multiple = match raw / magnitude {
            m if m <= 1.0 => 1.0,
            m if m <= 2.0 => 2.0,
            m if m <= 5.0 => 5.0,
            _ => 10.0,
        };
        let step = multiple * magnitude;
        Self {
            max: (span / step).ceil().max(1.0) * step,
            step,
        }
    }

    fn labelled_ticks(self) -> Vec<(f64, String)> {
        let decimals = if self.step >= 1.0 {
            0
        } else {
            (-self.step.log10() - 1e-9).ceil() as usize
        };
        let steps = (self.max / self.step).round() as usize;
        (0..=steps)
            .map(|i| {
                let value = i as f64 * self.step;
                (value, format!("{value:.decimals$}"))
            })
            .collect()
    }
}

/// One line of a chart, in data coordinates.
struct Series<'a> {
    name: &'a str,
    class: &'a str,
    colour: &'a str,
    width: f64,
    points: Vec<(f64, f64)>,
}

/// Everything either plot draws: both start their axes at 0.
struct Chart<'a> {
    title: &'a str,
    x_title: &'a str,
    y_title: &'a str,
    x_max: f64,
    x_ticks: Vec<(f64, String)>,
    y_axis: NiceAxis,
    empty: bool,
    /// Stretches of the x axis with nothing to plot, shaded.
    gaps: Vec<(f64, f64)>,
    series: Vec<Series<'a>>,
}

impl Chart<'_> {
    fn render(&self) -> String {
        let mut svg = String::new();
        // A String accepts every write, so there is no error to pass on.
        let _ = self.write(&mut svg);
        svg
    }

    fn x(&self, value: f64) -> f64 {
        PLOT_LEFT + value / self.x_max * (PLOT_RIGHT - PLOT_LEFT)
    }

    fn y(&self, value: f64) -> f64 {
        PLOT_BOTTOM - value / self.y_axis.max * (PLOT_BOTTOM - PLOT_TOP)
    }

    fn write(&self, svg: &mut String) -> fmt::Result {
        // Bold sans-serif runs to roughly 0.55 em a character: long titles get a smaller size, then get cut.
        let title_size = if self.title.chars().count() <= 80 { 17 } else { 14 };
        let title = escape(&shorten(self.title, 100));
        writeln!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
             viewBox=\"0 0 {WIDTH} {HEIGHT}\" {FONT}>"
        )?;
        writeln!(svg, "<title>{title}</title>")?;
        writeln!(
            svg,
            "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#ffffff\"/>"
        )?;
        writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"26\" font-size=\"{title_size}\" font-weight=\"bold\" text-anchor=\"middle\" \
             fill=\"#222222\">{title}</text>",
            WIDTH / 2.0
        )?;
        self.write_gaps(svg)?;
        self.write_axes(svg)?;
        if self.empty {
            writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"22\" text-anchor=\"middle\" fill=\"#888888\">\
                 no samples</text>",
                (PLOT_LEFT + PLOT_RIGHT) / 2.0,
                (PLOT_TOP + PLOT_BOTTOM) / 2.0
            )?;
        } else {
            self.write_series(svg)?;
        }
        self.write_legend(svg)?;
        writeln!(svg, "</svg>")
    }

    fn write_gaps(&self, svg: &mut String) -> fmt::Result {
        for &(from, to) in &self.gaps {
            let (left, right) = (self.x(from), self.x(to));
            writeln!(
                svg,
                "<rect class=\"gap\" x=\"{left:.1}\" y=\"{PLOT_TOP:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                 fill=\"#eeeeee\"/>",
                right - left,
                PLOT_BOTTOM - PLOT_TOP
            )?;
        }
        Ok(())
    }

    fn write_axes(&self, svg: &mut String) -> fmt::Result {
        writeln!(svg, "<g font-size=\"12\" fill=\"#444444\">")?;
        for (value, label) in self.y_axis.labelled_ticks() {
            let y = self.y(value);
            writeln!(
                svg,
                "<line x1=\"{PLOT_LEFT:.1}\" y1=\"{y:.1}\" x2=\"{PLOT_RIGHT:.1}\" y2=\"{y:.1}\" stroke=\"#e2e2e2\"/>"
            )?;
            writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                PLOT_LEFT - 8.0,
                y + 4.0,
                escape(&label)
            )?;
        }
        for (value, label) in &self.x_ticks {
            let x = self.x(*value);
            writeln!(
                svg,
                "<line x1=\"{x:.1}\" y1=\"{PLOT_TOP:.1}\" x2=\"{x:.1}\" y2=\"{PLOT_BOTTOM:.1}\" stroke=\"#e2e2e2\"/>"
            )?;
            writeln!(
                svg,
                "<line x1=\"{x:.1}\" y1=\"{PLOT_BOTTOM:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#444444\"/>",
                PLOT_BOTTOM + 5.0
            )?;
            writeln!(
                svg,
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                PLOT_BOTTOM + 19.0,
                escape(label)
            )?;
        }
        writeln!(svg, "</g>")?;
        writeln!(
            svg,
            "<polyline points=\"{PLOT_LEFT:.1},{PLOT_TOP:.1} {PLOT_LEFT:.1},{PLOT_BOTTOM:.1} \
             {PLOT_RIGHT:.1},{PLOT_BOTTOM:.1}\" fill=\"none\" stroke=\"#444444\" stroke-width=\"1\"/>"
        )?;
        writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" text-anchor=\"middle\" fill=\"#222222\">{}</text>",
            (PLOT_LEFT + PLOT_RIGHT) / 2.0,
            HEIGHT - 14.0,
            escape(self.x_title)
        )?;
        let middle = (PLOT_TOP + PLOT_BOTTOM) / 2.0;
        writeln!(
            svg,
            "<text x=\"20\" y=\"{middle:.1}\" font-size=\"13\" text-anchor=\"middle\" fill=\"#222222\" \
             transform=\"rotate(-90 20 {middle:.1})\">{}</text>",
            escape(self.y_title)
        )
    }

    fn write_series(&self, svg: &mut String) -> fmt::Result {
        for series in &self.series {
            write!(svg, "<polyline class=\"series-{}\" points=\"", series.class)?;
            for (i, &(x, y)) in series.points.iter().enumerate() {
                let separator = if i == 0 { "" } else { " " };
                write!(svg, "{separator}{:.1},{:.1}", self.x(x), self.y(y))?;
            }
            writeln!(
                svg,
                "\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" stroke-linejoin=\"round\"/>",
                series.colour, series.width
            )?;
            // A line through a handful of points hides where they are, and through one point draws nothing.
            if series.points.len() <= 30 {
                for &(x, y) in &series.points {
                    writeln!(
                        svg,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\"/>",
                        self.x(x),
                        self.y(y),
                        series.colour
                    )?;
                }
            }
        }
        Ok(())
    }

    fn write_legend(&self, svg: &mut String) -> fmt::Result {
        writeln!(svg, "<g font-size=\"12\" fill=\"#222222\">")?;
        let y = PLOT_TOP - 18.0;
        let mut x = PLOT_LEFT;
        // Read in the order the lines were listed in, not the order they are drawn in.
        for series in self.series.iter().rev() {
            writeln!(
                svg,
                "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{}\" stroke-width=\"3\"/>",
                x + 22.0,
                series.colour
            )?;
            writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                x + 28.0,
                y + 4.0,
                escape(series.name)
            )?;
            x += 28.0 + 7.0 * series.name.chars().count() as f64 + 22.0;
        }
        if !self.gaps.is_empty() {
            writeln!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"22\" height=\"12\" fill=\"#eeeeee\" stroke=\"#cccccc\"/>",
                y - 6.0
            )?;
            writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\">empty interval</text>",
                x + 28.0,
                y + 4.0
            )?;
        }
        writeln!(svg, "</g>")
    }
}

/// The text, cut to `limit` characters with an ellipsis, so a long title cannot run off the canvas.
fn shorten(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let mut short: String = text.chars().take(limit - 1).collect();
    short.push('…');
    short
}

/// Escapes text for XML, dropping the control characters XML 1.0 cannot carry at all.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\t' | '\n' | '\r' => escaped.push(' '),
            c if c.is_control() => {}
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn interval(t_secs: f64, base: f64, count: u64) -> IntervalPoint {
        IntervalPoint {
            t_secs,
            p50_ms: base,
            p99_ms: base * 3.0,
            p999_ms: base * 5.0,
            max_ms: base * 9.0,
            count,
        }
    }

    /// A minute of a run with a quiet stretch and a latency spike in it.
    fn sample_run() -> Vec<IntervalPoint> {
        (1..=60)
            .map(|s| {
                let t = f64::from(s);
                let base = 2.0 + (t / 7.0).sin().abs() * 3.0 + if s == 41 { 40.0 } else { 0.0 };
                interval(t, base, if (20..=23).contains(&s) { 0 } else { 500 })
            })
            .collect()
    }

    fn sample_spectrum() -> Vec<(f64, f64)> {
        let mut points = Vec::new();
        let mut p: f64 = 0.0;
        while p < 99.9999 {
            points.push((p, 3.0 + 200.0 * (p / 100.0).powi(40) + 1.0 / (100.5 - p)));
            p += (100.0 - p) / 8.0;
        }
        points.push((100.0, 250.0));
        points
    }

    fn assert_sane(svg: &str) {
        let trimmed = svg.trim();
        assert!(trimmed.starts_with("<svg"), "{svg}");
        assert!(trimmed.ends_with("</svg>"), "{svg}");
        assert!(!svg.contains("NaN"), "{svg}");
        assert!(!svg.contains("inf"), "{svg}");
        assert_eq!(svg.matches("<svg").count(), 1);
    }

    /// The (x, y) pairs of the polyline of one series.
    fn polyline(svg: &str, class: &str) -> Vec<(f64, f64)> {
        let tag = format!("<polyline class=\"series-{class}\" points=\"");
        let start = svg.find(&tag).unwrap() + tag.len();
        let end = start + svg[start..].find('"').unwrap();
        svg[start..end]
            .split_whitespace()
            .map(|pair| {
                let (x, y) = pair.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    fn inside_plot(points: &[(f64, f64)]) -> bool {
        points
            .iter()
            .all(|&(x, y)| (PLOT_LEFT..=PLOT_RIGHT).contains(&x) && (PLOT_TOP..=PLOT_BOTTOM).contains(&y))
    }

    #[test]
    fn over_time_is_a_whole_document() {
        let svg = latency_over_time("run", &sample_run());
        assert_sane(&svg);
        assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("viewBox=\"0 0 900 500\""));
        for name in ["p50", "p99", "p99.9", "max"] {
            assert!(svg.contains(&format!(">{name}</text>")), "no legend entry for {name}");
        }
    }

    #[test]
    fn title_is_escaped() {
        let svg = latency_over_time("a<b & \"c\"", &sample_run());
        assert!(svg.contains("a&lt;b &amp; &quot;c&quot;"));
        assert!(!svg.contains("a<b"));
        let svg = latency_distribution("it's a<b", &sample_spectrum());
        assert!(svg.contains("it&apos;s a&lt;b"));
    }

    #[test]
    fn empty_intervals_are_left_out_of_the_lines() {
        let run = sample_run();
        let non_empty = run.iter().filter(|p| p.count > 0).count();
        let svg = latency_over_time("run", &run);
        for class in ["p50", "p99", "p999", "max"] {
            let points = polyline(&svg, class);
            assert_eq!(points.len(), non_empty, "{class}");
            assert!(inside_plot(&points), "{class}: {points:?}");
        }
        assert_eq!(svg.matches("class=\"gap\"").count(), 4);
    }

    #[test]
    fn no_intervals_say_no_samples() {
        for svg in [latency_over_time("empty", &[]), latency_distribution("empty", &[])] {
            assert_sane(&svg);
            assert!(svg.contains("no samples"));
            assert!(!svg.contains("<polyline class=\"series-"));
        }
        let silent = [interval(1.0, 5.0, 0), interval(2.0, 5.0, 0)];
        assert!(latency_over_time("silent", &silent).contains("no samples"));
    }

    #[test]
    fn all_zero_latencies_still_get_an_axis() {
        let zeros: Vec<_> = (1..=5).map(|s| interval(f64::from(s), 0.0, 10)).collect();
        let svg = latency_over_time("zeros", &zeros);
        assert_sane(&svg);
        assert_eq!(polyline(&svg, "p99").len(), 5);
        assert!(svg.contains(">1</text>"), "{svg}");
        let svg = latency_distribution("zeros", &[(0.0, 0.0), (50.0, 0.0), (100.0, 0.0)]);
        assert_sane(&svg);
        assert!(inside_plot(&polyline(&svg, "latency")));
    }

    #[test]
    fn bad_values_are_skipped() {
        let points = [
            interval(1.0, 4.0, 10),
            IntervalPoint {
                p99_ms: f64::NAN,
                ..interval(2.0, 4.0, 10)
            },
            IntervalPoint {
                p99_ms: f64::INFINITY,
                ..interval(3.0, 4.0, 10)
            },
            IntervalPoint {
                p99_ms: -1.0,
                ..interval(4.0, 4.0, 10)
            },
            interval(f64::NAN, 4.0, 10),
            interval(-3.0, 4.0, 10),
            interval(f64::INFINITY, 4.0, 10),
            IntervalPoint {
                max_ms: f64::MAX,
                ..interval(5.0, 4.0, 10)
            },
            interval(6.0, 4.0, 10),
        ];
        let svg = latency_over_time("bad", &points);
        assert_sane(&svg);
        assert_eq!(polyline(&svg, "p99").len(), 3);
        assert_eq!(polyline(&svg, "p50").len(), 6);
        assert_eq!(polyline(&svg, "max").len(), 5);
        assert!(inside_plot(&polyline(&svg, "max")));

        let spectrum = [
            (f64::NAN, 1.0),
            (-5.0, 1.0),
            (0.0, 1.0),
            (50.0, f64::NAN),
            (90.0, f64::NEG_INFINITY),
            (99.0, 2.0),
            (100.0, 3.0),
            (101.0, 4.0),
        ];
        let svg = latency_distribution("bad", &spectrum);
        assert_sane(&svg);
        assert_eq!(polyline(&svg, "latency").len(), 3);
    }

    #[test]
    fn distribution_reaches_the_right_edge_at_100_percent() {
        let svg = latency_distribution("dist", &sample_spectrum());
        assert_sane(&svg);
        let points = polyline(&svg, "latency");
        assert_eq!(points.len(), sample_spectrum().len());
        assert!(points.windows(2).all(|w| w[0].0 <= w[1].0), "{points:?}");
        assert!(inside_plot(&points), "{points:?}");
        let last = points.last().unwrap();
        assert!((last.0 - PLOT_RIGHT).abs() < 0.1, "{last:?}");
        assert!((points[0].0 - PLOT_LEFT).abs() < 0.1);
    }

    #[test]
    fn distribution_ticks_are_percentiles() {
        let svg = latency_distribution("dist", &sample_spectrum());
        for label in ["50%", "90%", "99%", "99.9%", "99.99%", "99.999%"] {
            assert!(svg.contains(&format!(">{label}</text>")), "no tick {label}");
        }
    }

    #[test]
    fn axes_step_by_one_two_or_five() {
        for (largest, max, step) in [
            (100.0, 120.0, 20.0),
            (0.0, 1.0, 0.2),
            (7.3, 10.0, 2.0),
            (2600.0, 3000.0, 500.0),
        ] {
            let axis = NiceAxis::covering(largest, HEADROOM);
            assert!(
                (axis.max - max).abs() < 1e-9 && (axis.step - step).abs() < 1e-9,
                "{largest}: {axis:?}"
            );
        }
        let labels: Vec<_> = NiceAxis::covering(0.0, HEADROOM)
            .labelled_ticks()
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(labels, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let tiny = NiceAxis::covering(1e-300, HEADROOM);
        assert!(tiny.step > 0.0 && tiny.labelled_ticks().iter().all(|(_, l)| l.len() < 8));
    }

    #[test]
    fn long_titles_are_cut() {
        let svg = latency_over_time(&"x".repeat(500), &sample_run());
        assert!(!svg.contains(&"x".repeat(100)));
        assert!(svg.contains('…'));
    }

    /// Writes both plots of the sample data to /tmp, to look at: `cargo test -p natter-loadtest --lib plot --
    /// --ignored`.
    #[test]
    #[ignore = "writes files for a person to look at"]
    fn write_samples() {
        std::fs::write(
            "/tmp/plot-over-time.svg",
            latency_over_time("natter-loadtest a<b & \"c\"", &sample_run()),
        )
        .unwrap();
        std::fs::write(
            "/tmp/plot-dist.svg",
            latency_distribution("natter-loadtest Fanout", &sample_spectrum()),
        )
        .unwrap();
    }
}
