//! Latency samples as the examples (`grpc_web_latency`, `shadow_latency`) report them: a
//! percentile of a sorted list, in microseconds.

use std::time::Duration;

/// The `at` (0 to 1) percentile of `seen`, which is sorted in place (zero when empty).
pub fn percentile(seen: &mut [Duration], at: f64) -> Duration {
    seen.sort_unstable();
    let index = ((seen.len() as f64 * at) as usize).min(seen.len().saturating_sub(1));
    seen.get(index).copied().unwrap_or_default()
}

/// `duration` in microseconds.
pub fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_index_the_sorted_samples() {
        let mut seen: Vec<Duration> = (1..=10).rev().map(Duration::from_micros).collect();
        assert_eq!(percentile(&mut seen, 0.5), Duration::from_micros(6));
        assert_eq!(percentile(&mut seen, 0.99), Duration::from_micros(10));
        assert_eq!(percentile(&mut [], 0.5), Duration::ZERO);
        assert_eq!(micros(Duration::from_millis(2)), 2000.0);
    }
}
