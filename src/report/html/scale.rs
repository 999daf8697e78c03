//! The log axes of the page's charts: their range around the data, their ticks and labels.

/// Ticks 1, 2 and 5 times each power of ten in `[lo, hi]`.
pub(super) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi * 1.000_001 {
        // Over more than three decades, 2 and 5 would crowd the labels: powers of ten only.
        let steps: &[f64] = if hi / lo > 1_000.0 {
            &[1.0]
        } else {
            &[1.0, 2.0, 5.0]
        };
        for &m in steps {
            let t = decade * m;
            if t >= lo * 0.999_999 && t <= hi * 1.000_001 {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

pub(super) fn tick_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

/// The log axis covering `[min, max]`, from a power of ten to the next.
/// Powers of ten around the positive `values`, for a log axis (`None` when there are none).
pub(super) fn log_range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let (min, max) =
        values
            .into_iter()
            .filter(|v| *v > 0.0)
            .fold(None, |range: Option<(f64, f64)>, v| match range {
                None => Some((v, v)),
                Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
            })?;
    let lo = 10f64.powf(min.max(1e-3).log10().floor());
    let hi = 10f64.powf(max.max(lo * 10.0).log10().ceil());
    Some((lo, hi))
}
