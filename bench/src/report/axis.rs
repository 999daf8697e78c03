//! The ticks of the plots' log axes: 1, 2 and 5 times each power of ten, and their labels.

/// The largest of 1, 2, 5 times a power of ten at or below `v`.
pub(super) fn tick_at_or_below(v: f64) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|t| *t <= v * (1.0 + 1e-9))
        .unwrap_or(decade)
}

/// The smallest of 1, 2, 5 times a power of ten at or above `v`.
pub(super) fn tick_at_or_above(v: f64) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|t| *t >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * decade)
}

/// The ticks of a log axis from `lo` to `hi`: 1, 2 and 5 times each power of ten.
pub(super) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut exponent = lo.log10().floor() as i32;
    while 10f64.powi(exponent) <= hi {
        for m in [1.0, 2.0, 5.0] {
            // 10^e as a literal, not repeated multiplication: 0.05, not 0.05000000000000001.
            let tick = format!("{m}e{exponent}").parse::<f64>().unwrap_or(f64::NAN);
            if tick >= lo * (1.0 - 1e-9) && tick <= hi {
                ticks.push(tick);
            }
        }
        exponent += 1;
    }
    ticks
}

/// A tick's label: 0.05, 1, 20, 5000.
pub(super) fn tick_label(v: f64) -> String {
    let text = format!("{v:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}
