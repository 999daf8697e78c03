//! The percentile ladder each row records: the latency at each of [`PERCENTILES`] from a
//! row's histogram, and the median ladder over the repeats.

use super::{RowResult, median};
use serde::Serialize;

/// The percentiles each row records, in %: from the fastest call (0) through a ladder that
/// closes in on the tail in steps of 1, 2 and 5 in the share of calls slower (50 %, 25 %,
/// 20 %, 10 %, 5 %, 2 %, 1 %, 0.5 % ... 0.01 %), to the slowest call (100).
pub const PERCENTILES: [f64; 16] = [
    0.0, 25.0, 50.0, 75.0, 80.0, 90.0, 95.0, 98.0, 99.0, 99.5, 99.8, 99.9, 99.95, 99.98, 99.99,
    100.0,
];

/// One point of a row's latency distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentile {
    /// The percentile, in % (100: the slowest call).
    pub percentile: f64,
    /// The per-call latency at it, µs.
    pub us: f64,
}

/// The latency at each of [`PERCENTILES`] of `histogram` (per-call nanoseconds), in µs: the
/// histogram's value at each quantile (so within its three significant digits of the exact
/// order statistic), and its maximum for 100.
pub fn percentiles(histogram: &hdrhistogram::Histogram<u64>) -> Vec<Percentile> {
    PERCENTILES
        .iter()
        .map(|&percentile| {
            let ns = if percentile >= 100.0 {
                histogram.max()
            } else {
                histogram.value_at_quantile(percentile / 100.0)
            };
            Percentile {
                percentile,
                us: ns as f64 / 1e3,
            }
        })
        .collect()
}

/// Rounds' percentiles, point by point, as the median of the rounds' values at each (as the
/// other figures are): each round's ladder rises, so the medians rise too. Empty when any round
/// has none.
pub(super) fn median_percentiles(rounds: &[&RowResult]) -> Vec<Percentile> {
    if rounds
        .iter()
        .any(|r| r.percentiles.len() != PERCENTILES.len())
    {
        return Vec::new();
    }
    PERCENTILES
        .iter()
        .enumerate()
        .map(|(i, &percentile)| Percentile {
            percentile,
            us: median(rounds.iter().map(|r| r.percentiles[i].us).collect()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{histogram_of, latencies, options};
    use super::*;
    use crate::Row;
    use crate::chains::Chain;
    use crate::report::BenchReport;
    use std::time::Duration;

    #[test]
    fn the_percentile_ladder_matches_the_order_statistics_of_the_recorded_calls() {
        let mut values = latencies(20_000, 7);
        let ladder = percentiles(&histogram_of(&values));
        values.sort_unstable();
        assert_eq!(
            ladder.iter().map(|p| p.percentile).collect::<Vec<_>>(),
            PERCENTILES
        );
        for point in &ladder {
            // Nearest rank: the smallest value with at least p % of the calls at or below it.
            let rank = ((point.percentile / 100.0) * values.len() as f64).ceil() as usize;
            let exact = values[rank.clamp(1, values.len()) - 1] as f64 / 1e3;
            // The histogram keeps three significant digits.
            assert!(
                (point.us - exact).abs() <= exact * 1e-3,
                "{point:?}: exact {exact} µs"
            );
        }
        assert!(ladder.windows(2).all(|w| w[0].us <= w[1].us), "{ladder:?}");
        assert!(
            ladder[14].us < ladder[15].us,
            "the tail reaches past 99.99 %"
        );
    }

    #[test]
    fn a_rows_percentiles_are_its_p50_p90_p99_and_max_and_stay_so_over_rounds() {
        let chain = |seed| Chain {
            histogram: histogram_of(&latencies(5_000, seed)),
            total: Duration::from_millis(300),
            span: None,
            final_value: 5_000,
        };
        let rounds: Vec<RowResult> = [1, 2, 3]
            .into_iter()
            .map(|seed| RowResult::from_chains(Row::Tcp, &[chain(seed)]).unwrap())
            .collect();
        let rows = vec![Row::Tcp];
        let runs = rounds.iter().map(|r| (Row::Tcp, Ok(r.clone()))).collect();
        let report = BenchReport::from_runs(&options(rows.clone()), &rows, runs, Vec::new(), None);
        for r in rounds.iter().chain(&report.rows) {
            let at = |p: f64| r.percentiles.iter().find(|x| x.percentile == p).unwrap().us;
            assert_eq!(
                [
                    Some(at(50.0)),
                    Some(at(90.0)),
                    Some(at(99.0)),
                    Some(at(100.0))
                ],
                [r.p50_us, r.p90_us, r.p99_us, r.max_us]
            );
            assert!(r.percentiles.windows(2).all(|w| w[0].us <= w[1].us));
        }
        // Each point is the median of the rounds' values there, as p50_us is.
        for (i, point) in report.rows[0].percentiles.iter().enumerate() {
            let mut seen: Vec<f64> = rounds.iter().map(|r| r.percentiles[i].us).collect();
            seen.sort_by(f64::total_cmp);
            assert_eq!(point.us, seen[1]);
        }
        // Without percentiles (the pipelined row) the ladder is empty and nothing is plotted.
        let throughput =
            RowResult::throughput_only(Row::StreamPipelined, 10, Duration::from_millis(1));
        assert!(throughput.percentiles.is_empty());
    }
}
