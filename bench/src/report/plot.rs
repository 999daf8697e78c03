//! `bench --plot`: the per-call latency of each row as an SVG bar chart (bar p50, whisker
//! p90-p99, the ratio to the TCP floor beside each bar), with the percentile plot below it.

use super::axis::{log_ticks, tick_at_or_above, tick_at_or_below, tick_label};
use super::percentile_plot::draw_percentiles;
use super::table::figure;
use super::{BenchReport, RowResult};
use crate::Row;
use anyhow::Context;
use std::path::Path;

impl BenchReport {
    /// Draws the per-call latency of each row to an SVG at `path` (which must end in `.svg`):
    /// see [`BenchReport::plot_svg`].
    pub fn plot(&self, path: &Path) -> anyhow::Result<()> {
        check_svg_path(path)?;
        let svg = self.plot_svg()?;
        std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The per-call latency of each row (but the harness) as an SVG figure: one horizontal bar
    /// per row at its median call, with a whisker from p90 to p99, on a log axis of µs with
    /// ticks at 1, 2, 5, 10, 20, 50 ...; beside each bar its median and its ratio to the raw TCP
    /// floor. The throughput-only row has no percentiles: its bar is its mean, without whisker.
    /// Below it, the percentile plot of the main rows that ran ([`percentile_svg`]'s chart).
    pub fn plot_svg(&self) -> anyhow::Result<String> {
        use plotters::coord::combinators::BindKeyPoints;
        use plotters::prelude::*;
        use plotters::style::text_anchor::{HPos, Pos, VPos};

        let rows: Vec<&RowResult> = self.rows.iter().filter(|r| r.row != Row::Harness).collect();
        anyhow::ensure!(!rows.is_empty(), "no row to plot");
        let n = rows.len();
        let (width, height) = (1200u32, 110 + 30 * n as u32);
        // The chart's layout (and so the width of its plotting area, roughly).
        let (margin, label_area, x_label_area) = (14u32, 290u32, 50u32);
        let plot_width = f64::from(width - 2 * margin - label_area);
        // How far right each row's marks reach, and how much room its text needs after them.
        let reach = |r: &RowResult| r.p99_us.unwrap_or(0.0).max(r.typical_us());
        let text_px = 170.0;
        // A log axis has no zero: the smallest figure above it sets the axis's start.
        let smallest = rows
            .iter()
            .map(|r| r.typical_us())
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let largest = rows.iter().map(|r| reach(r)).fold(0.0, f64::max);
        anyhow::ensure!(
            smallest.is_finite() && smallest > 0.0 && largest.is_finite(),
            "nothing measured to plot"
        );
        let lo = tick_at_or_below(smallest / 1.5);
        // Far enough right that the text after the longest marks fits inside the plot.
        let decades = (largest.log10() - lo.log10()) / (1.0 - text_px / plot_width);
        let hi = 10f64.powf(lo.log10() + decades);
        // Ticks (and grid lines) up to the data; the room after it is for the text.
        let ticks = log_ticks(lo, tick_at_or_above(largest).min(hi));
        // Label 2 and 5 too where a decade is wide enough for their labels not to run into
        // each other; otherwise the powers of ten alone.
        let every_tick = plot_width / decades >= 110.0;
        let x_label = |v: &f64| {
            let label = tick_label(*v);
            if every_tick || label.trim_start_matches(['0', '.']).starts_with('1') {
                label
            } else {
                String::new()
            }
        };
        // Each row a band of BAND units on the y axis, the first at the top; its bar and
        // whisker and its label sit at the band's centre.
        const BAND: i32 = 10;
        let n_bands = i32::try_from(n).context("too many rows to plot")?;
        let center = |i: usize| (n_bands - i as i32) * BAND - BAND / 2;
        let centers: Vec<i32> = (0..n).map(center).collect();
        let row_at = |y: i32| {
            let i = (n_bands * BAND - BAND / 2 - y) / BAND;
            usize::try_from(i).ok().and_then(|i| rows.get(i))
        };

        let lines = self.percentile_lines();
        let below = if lines.is_empty() { 0 } else { 440 };
        let mut svg = String::new();
        {
            let root =
                SVGBackend::with_string(&mut svg, (width, height + below)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_error)?;
            let (bars, percentiles) = root.split_vertically(height);
            let mut chart = ChartBuilder::on(&bars)
                .caption(
                    format!(
                        "per-call latency: bar p50, whisker p90–p99; {} dependent calls, runtime {}, {}",
                        self.requests,
                        self.runtime.name(),
                        self.placement()
                    ),
                    ("sans-serif", 17),
                )
                .margin(margin)
                .x_label_area_size(x_label_area)
                .y_label_area_size(label_area)
                .build_cartesian_2d(
                    (lo..hi).log_scale().with_key_points(ticks),
                    (0..n_bands * BAND).with_key_points(centers),
                )
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .x_desc("µs per call (log scale)")
                .x_label_formatter(&x_label)
                .y_label_formatter(&|y| row_at(*y).map_or(String::new(), |r| r.label.to_string()))
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .draw()
                .map_err(plot_error)?;
            let bar = RGBColor(70, 120, 190).filled();
            let half = 3;
            chart
                .draw_series(rows.iter().enumerate().map(|(i, r)| {
                    let c = center(i);
                    Rectangle::new([(lo, c - half), (r.typical_us().max(lo), c + half)], bar)
                }))
                .map_err(plot_error)?;
            let whisker = BLACK.stroke_width(2);
            let cap = 2;
            for (i, r) in rows.iter().enumerate() {
                let c = center(i);
                let Some((p90, p99)) = r.p90_us.zip(r.p99_us) else {
                    continue;
                };
                let (p90, p99) = (p90.max(lo), p99.max(lo));
                if p99 <= lo {
                    continue;
                }
                let lines = [
                    vec![(p90, c), (p99, c)],
                    vec![(p90, c - cap), (p90, c + cap)],
                    vec![(p99, c - cap), (p99, c + cap)],
                ];
                chart
                    .draw_series(lines.into_iter().map(|l| PathElement::new(l, whisker)))
                    .map_err(plot_error)?;
            }
            let text = ("sans-serif", 13)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center));
            chart
                .draw_series(rows.iter().enumerate().map(|(i, r)| {
                    Text::new(
                        bar_note(r),
                        (reach(r).max(lo) * 1.12, center(i)),
                        text.clone(),
                    )
                }))
                .map_err(plot_error)?;
            if !lines.is_empty() {
                let caption = format!(
                    "per-call latency by percentile, main rows (the slowest call is in the table); runtime {}, {}",
                    self.runtime.name(),
                    self.placement()
                );
                draw_percentiles(&percentiles, &lines, &caption)?;
            }
            root.present().map_err(plot_error)?;
        }
        Ok(svg)
    }
}

/// What the plot writes beside a row's bar: the figure the bar shows, and its ratio to the raw
/// TCP floor.
fn bar_note(r: &RowResult) -> String {
    let value = match r.p50_us {
        Some(p50) => format!("{} µs", short(p50)),
        None => format!("{} µs mean", short(r.mean_us)),
    };
    match (r.row, r.ratio_to_tcp) {
        (Row::Tcp, _) => format!("{value} · TCP floor"),
        (_, Some(ratio)) => format!("{value} · {}× TCP", short(ratio)),
        (_, None) => value,
    }
}

/// `v` to three significant digits, no more decimals than that needs (240, 28.6, 0.042).
fn short(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return figure(Some(v), 0);
    }
    let digits = (2.0 - v.abs().log10().floor()).clamp(0.0, 9.0) as usize;
    let text = format!("{v:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// The plot is SVG: a path that names another format is refused rather than given SVG.
pub(super) fn check_svg_path(path: &Path) -> anyhow::Result<()> {
    let svg = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("svg"));
    anyhow::ensure!(
        svg,
        "--plot writes SVG; give a path ending in .svg (not {})",
        path.display()
    );
    Ok(())
}

pub(super) fn plot_error<E: std::fmt::Display>(err: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the plot: {err}")
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{elements, measured, number, options, report, scratch};
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_plot_is_svg_and_a_path_naming_another_format_is_refused() {
        let dir = scratch("plot");
        let png = dir.join("bench.png");
        let err = BenchReport::check_outputs(None, Some(&png)).unwrap_err();
        assert!(
            err.to_string()
                .contains("--plot writes SVG; give a path ending in .svg"),
            "{err}"
        );
        assert!(BenchReport::check_outputs(None, Some(&dir.join("bench"))).is_err());
        let report = report();
        assert!(report.plot(&png).is_err());
        assert!(!png.exists(), "an SVG written under a .png name");
        report.plot(&dir.join("bench.SVG")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_row_measured_at_zero_still_plots_on_the_log_axis() {
        let rows = vec![Row::InProcess, Row::Tcp];
        let runs = vec![
            (Row::InProcess, Ok(measured(Row::InProcess, 0.0, 0.0))),
            (Row::Tcp, Ok(measured(Row::Tcp, 28.6, 30.0))),
        ];
        let report = BenchReport::from_runs(&options(rows.clone()), &rows, runs, Vec::new(), None);
        let svg = report.plot_svg().unwrap();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(svg.contains("28.6 µs · TCP floor"), "{svg}");
    }

    #[test]
    fn the_plot_has_gapped_bars_at_their_labels_with_whiskers_ticks_and_ratios() {
        let rows = vec![
            Row::Harness,
            Row::Tcp,
            Row::Rest,
            Row::UnaryV1,
            Row::StreamPipelined,
        ];
        let runs = vec![
            (Row::Harness, Ok(measured(Row::Harness, 0.03, 0.085))),
            (Row::Tcp, Ok(measured(Row::Tcp, 28.6, 30.0))),
            (Row::Rest, Ok(measured(Row::Rest, 83.4, 90.0))),
            (Row::UnaryV1, Ok(measured(Row::UnaryV1, 240.0, 260.0))),
            (
                Row::StreamPipelined,
                Ok(RowResult::throughput_only(
                    Row::StreamPipelined,
                    100,
                    Duration::from_micros(232),
                )),
            ),
        ];
        let report = BenchReport::from_runs(&options(rows.clone()), &rows, runs, Vec::new(), None);
        let svg = report.plot_svg().unwrap();
        let texts = elements(&svg, "text");
        let text = |content: &str| texts.iter().find(|(_, t)| t == content);

        // The axis: its title, and ticks 1, 2, 5 times each power of ten over the data.
        assert!(text("µs per call (log scale)").is_some(), "{svg}");
        let tick_x = |label: &str| -> f64 {
            let (a, _) = text(label).unwrap_or_else(|| panic!("no tick {label}:\n{svg}"));
            number(a, "x")
        };
        for tick in ["1", "2", "5", "10", "20", "50", "100", "200", "500"] {
            tick_x(tick);
        }
        // Where a value sits on the axis, from the ticks' own positions.
        let per_decade = tick_x("100") - tick_x("10");
        let x_of = |us: f64| tick_x("10") + per_decade * (us / 10.0).log10();
        assert!((tick_x("2") - x_of(2.0)).abs() < 1.5, "{svg}");

        let bars: Vec<_> = elements(&svg, "rect")
            .into_iter()
            .filter(|(a, _)| a["fill"] != "#FFFFFF")
            .map(|(a, _)| a)
            .collect();
        let whiskers: Vec<_> = elements(&svg, "polyline")
            .into_iter()
            .filter(|(a, _)| a["stroke-width"] == "2")
            .map(|(a, _)| {
                let points: Vec<(f64, f64)> = a["points"]
                    .split_whitespace()
                    .map(|p| {
                        let (x, y) = p.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect();
                points
            })
            .collect();
        let plotted: Vec<&RowResult> = report
            .rows
            .iter()
            .filter(|r| r.row != Row::Harness)
            .collect();
        assert_eq!(
            bars.len(),
            plotted.len(),
            "the harness is not plotted:\n{svg}"
        );
        let label_y: Vec<f64> = plotted
            .iter()
            .map(|r| {
                number(
                    &text(r.label).unwrap_or_else(|| panic!("no {}", r.label)).0,
                    "y",
                )
            })
            .collect();
        let spacing = (label_y[1] - label_y[0]).abs();
        let notes = [
            "28.6 µs · TCP floor",
            "83.4 µs · 2.92× TCP",
            "240 µs · 8.39× TCP",
            "2.32 µs mean · 0.0811× TCP",
        ];
        for ((r, (bar, y)), note) in plotted.iter().zip(bars.iter().zip(&label_y)).zip(notes) {
            // Each bar is centred on its label, with a gap to the next band.
            let (top, height) = (number(bar, "y"), number(bar, "height"));
            assert!(
                (top + height / 2.0 - y).abs() <= 1.5,
                "{} off its label:\n{svg}",
                r.label
            );
            assert!(
                height <= 0.75 * spacing,
                "{} fills its band:\n{svg}",
                r.label
            );
            // It ends at its value on the axis.
            let end = number(bar, "x") + number(bar, "width");
            assert!(
                (end - x_of(r.typical_us())).abs() < 2.0,
                "{} ends at {end}:\n{svg}",
                r.label
            );
            // Its whisker spans p90 to p99, at the label's height.
            if let Some((p90, p99)) = r.p90_us.zip(r.p99_us) {
                let found = whiskers.iter().any(|w| {
                    w.len() == 2
                        && w.iter().all(|(_, wy)| (wy - y).abs() <= 1.5)
                        && (w[0].0 - x_of(p90)).abs() < 2.0
                        && (w[1].0 - x_of(p99)).abs() < 2.0
                });
                assert!(found, "no p90-p99 whisker for {}:\n{svg}", r.label);
            }
            // Its figure and its ratio to the TCP floor are written beside it.
            let (a, _) = text(note).unwrap_or_else(|| panic!("no {note:?}:\n{svg}"));
            assert!((number(a, "y") - y).abs() <= 1.5, "{note} off its bar");
            assert!(number(a, "x") > end, "{note} not after its bar");
        }
    }
}
