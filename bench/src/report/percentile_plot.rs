//! The percentile plot: one line per main row over the percentile ladder, on log axes; drawn
//! below `bench --plot`'s bars and, alone, in the HTML report.

use super::BenchReport;
use super::axis::{log_ticks, tick_at_or_above, tick_at_or_below, tick_label};
use super::percentiles::{PERCENTILES, Percentile};
use super::plot::plot_error;
use crate::Row;

/// The rows whose distributions the percentile plot draws, in its legend's order.
pub const MAIN_ROWS: [Row; 6] = [
    Row::Tcp,
    Row::Rest,
    Row::UnaryV1,
    Row::UnaryRouter,
    Row::PythonToRust,
    Row::RustToPython,
];

/// The colours of the percentile plot's lines, by line, as RGB.
pub const PERCENTILE_COLORS: [(u8, u8, u8); 6] = [
    (87, 96, 106),
    (130, 80, 223),
    (9, 105, 218),
    (26, 127, 55),
    (191, 87, 0),
    (207, 34, 46),
];

/// One line of the percentile plot: a row's label and its [`percentiles`].
#[derive(Debug, Clone)]
pub struct PercentileLine {
    /// The row's label, for the legend.
    pub label: String,
    /// Its points; the 100th (the slowest call) is not drawn: it has no place on the axis.
    pub points: Vec<Percentile>,
}

/// Where percentile `p` (%) sits on the plot's x axis: log10(1 / (1 − p)), so 90 % is 1, 99 % is
/// 2, 99.9 % is 3 (`None` for 100).
pub fn percentile_x(p: f64) -> Option<f64> {
    (p < 100.0).then(|| (100.0 / (100.0 - p)).log10())
}

/// The percentile plot alone as an SVG figure, `width` by `height`: see [`draw_percentiles`].
pub fn percentile_svg(
    lines: &[PercentileLine],
    caption: &str,
    (width, height): (u32, u32),
) -> anyhow::Result<String> {
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        draw_percentiles(&root, lines, caption)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Draws the percentile plot on `area`: one line per row, with a dot at each recorded
/// percentile (x: the percentile on the usual log10(1 / (1 − p)) scale, labelled 0 %, 50 %,
/// 75 %, 90 %, 99 %, 99.9 %, 99.99 %; y: µs per call on a log axis with ticks at 1, 2, 5 × 10ⁿ),
/// and a legend. The one chart function of both `bench --plot` and the HTML report.
pub(super) fn draw_percentiles(
    area: &plotters::drawing::DrawingArea<
        plotters::backend::SVGBackend<'_>,
        plotters::coord::Shift,
    >,
    lines: &[PercentileLine],
    caption: &str,
) -> anyhow::Result<()> {
    use plotters::coord::combinators::BindKeyPoints;
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    // x in thousandths of the axis unit (an integer axis, so that its ticks can be chosen).
    let milli = |p: f64| percentile_x(p).map(|x| (x * 1000.0).round() as i32);
    let drawn = |line: &PercentileLine| -> Vec<(i32, f64)> {
        line.points
            .iter()
            .filter(|p| p.us > 0.0)
            .filter_map(|p| milli(p.percentile).map(|x| (x, p.us)))
            .collect()
    };
    let values: Vec<f64> = lines
        .iter()
        .flat_map(|line| drawn(line).into_iter().map(|(_, us)| us))
        .collect();
    let smallest = values.iter().copied().fold(f64::INFINITY, f64::min);
    let largest = values.iter().copied().fold(0.0, f64::max);
    anyhow::ensure!(
        smallest.is_finite() && smallest > 0.0,
        "no percentiles to plot"
    );
    let (lo, hi) = (
        tick_at_or_below(smallest / 1.2),
        tick_at_or_above(largest * 1.2),
    );
    // Over more than four decades 2 and 5 would crowd the axis: powers of ten only.
    let y_ticks: Vec<f64> = log_ticks(lo, hi)
        .into_iter()
        .filter(|t| {
            hi / lo <= 1e4
                || tick_label(*t)
                    .trim_start_matches(['0', '.'])
                    .starts_with('1')
        })
        .collect();
    let x_end = milli(PERCENTILES[PERCENTILES.len() - 2]).unwrap_or(4000);
    let x_ticks: Vec<i32> = [0.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99]
        .into_iter()
        .filter_map(milli)
        .collect();
    let x_label = |x: &i32| {
        let p = 100.0 * (1.0 - 10f64.powf(-f64::from(*x) / 1000.0));
        let text = format!("{p:.2}");
        format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
    };
    // The legend gets a column of its own on the right, so that it never hides a line.
    let area = area
        .titled(caption, ("sans-serif", 17))
        .map_err(plot_error)?;
    let (width, _) = area.dim_in_pixel();
    let (plot, legend) = area.split_horizontally(width.saturating_sub(270));
    let mut chart = ChartBuilder::on(&plot)
        .margin(14)
        // Room for the last label (99.99%), centred on the axis's end.
        .margin_right(30)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0..x_end).with_key_points(x_ticks),
            (lo..hi).log_scale().with_key_points(y_ticks),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile (log scale of 1 / (1 − p))")
        .y_desc("µs per call (log scale)")
        .x_label_formatter(&x_label)
        .y_label_formatter(&|v| tick_label(*v))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(plot_error)?;
    let legend_text = ("sans-serif", 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, line) in lines.iter().enumerate() {
        let (r, g, b) = PERCENTILE_COLORS[i % PERCENTILE_COLORS.len()];
        let color = RGBColor(r, g, b);
        let points = drawn(line);
        chart
            .draw_series(std::iter::once(PathElement::new(
                points.clone(),
                color.stroke_width(2),
            )))
            .map_err(plot_error)?;
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(plot_error)?;
        let y = 24 + 22 * i as i32;
        legend
            .draw(&PathElement::new(
                vec![(4, y), (26, y)],
                color.stroke_width(3),
            ))
            .map_err(plot_error)?;
        legend
            .draw(&Text::new(line.label.clone(), (32, y), legend_text.clone()))
            .map_err(plot_error)?;
    }
    Ok(())
}

impl BenchReport {
    /// The percentile plot's lines: the [`MAIN_ROWS`] that ran and recorded percentiles.
    pub fn percentile_lines(&self) -> Vec<PercentileLine> {
        MAIN_ROWS
            .iter()
            .filter_map(|row| self.rows.iter().find(|r| r.row == *row))
            .filter(|r| !r.percentiles.is_empty())
            .map(|r| PercentileLine {
                label: r.label.to_string(),
                points: r.percentiles.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{elements, histogram_of, latencies, number};
    use super::super::percentiles::percentiles;
    use super::*;

    #[test]
    fn the_percentile_plot_puts_each_point_where_the_axes_ticks_say_its_value_is() {
        let line = |label: &str, seed| PercentileLine {
            label: label.to_string(),
            points: percentiles(&histogram_of(&latencies(20_000, seed))),
        };
        let mut slow = line("slow", 9);
        for point in &mut slow.points {
            point.us *= 7.0;
        }
        let lines = [line("fast", 8), slow];
        let svg = percentile_svg(&lines, "test", (1000, 420)).unwrap();
        let texts = elements(&svg, "text");
        // The axes' own ticks: x labels sit at their x, y labels at their y.
        let x_tick = |label: &str| {
            let (a, _) = texts.iter().find(|(_, t)| t == label).unwrap();
            number(a, "x")
        };
        let y_ticks: Vec<(f64, f64)> = texts
            .iter()
            .filter(|(a, _)| a.get("dy").is_some_and(|dy| dy == "0.5ex"))
            .filter_map(|(a, t)| Some((t.parse::<f64>().ok()?, number(a, "y"))))
            .collect();
        assert!(y_ticks.len() >= 2, "{svg}");
        let ((v1, y1), (v2, y2)) = (y_ticks[0], y_ticks[y_ticks.len() - 1]);
        let y_of = |us: f64| y1 + (y2 - y1) * (us / v1).log10() / (v2 / v1).log10();
        let x_of = |p: f64| {
            let (x0, x99) = (x_tick("0%"), x_tick("99%"));
            x0 + (x99 - x0) * percentile_x(p).unwrap() / 2.0
        };
        for label in ["fast", "slow"] {
            assert!(
                texts.iter().any(|(_, t)| t == label),
                "no legend entry {label}"
            );
        }
        let circles = elements(&svg, "circle");
        for (i, line) in lines.iter().enumerate() {
            let (r, g, b) = PERCENTILE_COLORS[i];
            let fill = format!("#{r:02X}{g:02X}{b:02X}");
            let dots: Vec<(f64, f64)> = circles
                .iter()
                .filter(|(a, _)| a["fill"] == fill)
                .map(|(a, _)| (number(a, "cx"), number(a, "cy")))
                .collect();
            // Every point but the slowest call (100 %), in order.
            assert_eq!(dots.len(), PERCENTILES.len() - 1, "{}", line.label);
            for (point, (x, y)) in line.points.iter().zip(&dots) {
                assert!(
                    (x - x_of(point.percentile)).abs() <= 1.5,
                    "{point:?} at x {x}"
                );
                assert!((y - y_of(point.us)).abs() <= 1.5, "{point:?} at y {y}");
            }
            assert_eq!(
                x_tick("99%"),
                dots[8].0,
                "the 99th percentile sits on its tick"
            );
            assert!(
                dots.windows(2).all(|w| w[0].1 >= w[1].1),
                "rising to the right"
            );
        }
    }
}
