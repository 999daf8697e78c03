//! The decision of one interval: the canary's figures against the old version's over the same
//! interval (its baseline), under the thresholds the user set. Apart from how figures are read
//! and weights are changed, so it is tested on its own.

use super::figures::Figures;

/// Calls each side needs in an interval for its p99 to be compared: with fewer, the "99th
/// percentile" is only the slowest call.
pub(super) const P99_MIN_CALLS: f64 = 100.0;

/// What a step must keep to: `--max-error-rate`, `--max-p99-ratio`, `--min-calls`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Thresholds {
    /// How much higher than the baseline's the canary's error rate may be (0.01 = 1 point).
    pub(super) max_error_rate: f64,
    /// How many times the baseline's p99 the canary's p99 may be.
    pub(super) max_p99_ratio: f64,
    /// Calls the canary must have served in an interval for it to be judged at all.
    pub(super) min_calls: f64,
}

/// An interval's decision.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Verdict {
    /// Within every threshold.
    Pass,
    /// Too few calls reached the canary to judge it (nothing was verified).
    TooFewCalls,
    /// A threshold was crossed: why, with the figures.
    Fail(String),
}

/// Judges `canary` against `baseline` (the old version over the same interval, or the last
/// interval in which it served enough calls; `None` when it never did: the error rate is then
/// judged against 0 and the p99 not at all). The p99s are compared only when both sides served
/// at least [`P99_MIN_CALLS`] calls.
pub(super) fn judge(canary: &Figures, baseline: Option<&Figures>, limits: &Thresholds) -> Verdict {
    if canary.calls < limits.min_calls || canary.calls == 0.0 {
        return Verdict::TooFewCalls;
    }
    let base_rate = baseline.map_or(0.0, Figures::error_rate);
    let excess = canary.error_rate() - base_rate;
    if excess > limits.max_error_rate {
        return Verdict::Fail(format!(
            "error rate {} against the baseline's {}: more than {} points above it",
            percent(canary.error_rate()),
            percent(base_rate),
            percent(limits.max_error_rate).trim_end_matches(" %"),
        ));
    }
    let enough = |figures: &Figures| figures.calls >= P99_MIN_CALLS;
    if let (Some(p99), Some(base)) = (canary.p99, baseline.and_then(|b| b.p99))
        && enough(canary)
        && baseline.is_some_and(enough)
        && base > 0.0
        && p99 / base > limits.max_p99_ratio
    {
        return Verdict::Fail(format!(
            "p99 {} against the baseline's {}: {:.2} times it, more than {}",
            millis(p99),
            millis(base),
            p99 / base,
            limits.max_p99_ratio
        ));
    }
    Verdict::Pass
}

/// `rate` (0.05) as `5.00 %`.
pub(super) fn percent(rate: f64) -> String {
    format!("{:.2} %", rate * 100.0)
}

/// `seconds` as milliseconds, `12.3 ms`.
pub(super) fn millis(seconds: f64) -> String {
    format!("{:.1} ms", seconds * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Thresholds = Thresholds {
        max_error_rate: 0.01,
        max_p99_ratio: 1.2,
        min_calls: 50.0,
    };

    fn figures(calls: f64, errors: f64, p99: f64) -> Figures {
        Figures {
            calls,
            errors,
            p99: Some(p99),
        }
    }

    #[test]
    fn a_canary_is_judged_against_the_old_versions_figures_of_the_same_interval() {
        let base = figures(1000.0, 10.0, 0.010);
        // 1.5 % against 1 %: half a point above, within one.
        assert_eq!(
            judge(&figures(200.0, 3.0, 0.011), Some(&base), &LIMITS),
            Verdict::Pass
        );
        // 20 % against 1 %.
        let Verdict::Fail(why) = judge(&figures(200.0, 40.0, 0.010), Some(&base), &LIMITS) else {
            panic!("a 20 % error rate passed");
        };
        assert!(why.contains("20.00 %") && why.contains("1.00 %"), "{why}");
        // p99 1.5 times the baseline's.
        let Verdict::Fail(why) = judge(&figures(200.0, 0.0, 0.015), Some(&base), &LIMITS) else {
            panic!("a slower canary passed");
        };
        assert!(why.contains("1.50 times"), "{why}");
        // The same p99 from 99 calls: the slowest call, not judged.
        assert_eq!(
            judge(&figures(99.0, 0.0, 0.015), Some(&base), &LIMITS),
            Verdict::Pass
        );
        let few = figures(99.0, 0.0, 0.010);
        assert_eq!(
            judge(&figures(200.0, 0.0, 0.015), Some(&few), &LIMITS),
            Verdict::Pass
        );
    }

    #[test]
    fn too_few_calls_decide_nothing_and_no_baseline_means_against_zero() {
        let base = figures(1000.0, 0.0, 0.010);
        assert_eq!(
            judge(&figures(49.0, 49.0, 1.0), Some(&base), &LIMITS),
            Verdict::TooFewCalls
        );
        let zero = Thresholds {
            min_calls: 0.0,
            ..LIMITS
        };
        assert_eq!(
            judge(&Figures::default(), None, &zero),
            Verdict::TooFewCalls
        );
        assert_eq!(
            judge(&figures(100.0, 1.0, 9.0), None, &LIMITS),
            Verdict::Pass
        );
        assert!(matches!(
            judge(&figures(100.0, 2.0, 9.0), None, &LIMITS),
            Verdict::Fail(_)
        ));
    }
}
