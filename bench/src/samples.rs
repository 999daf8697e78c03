//! Latency samples as the examples (`grpc_web_latency`, `json_latency`, `shadow_latency`)
//! report them: a percentile of a sorted list, in microseconds, and a table of clients.

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

/// Prints p50, p90 and p99 of each client's samples (`names[i]`'s are `all[i]`), each p50 also
/// as a difference from the first client's, named `first` in the column.
pub fn print_clients(names: &[&str], all: &mut [Vec<Duration>], first: &str) {
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0) + 2;
    println!(
        "{:<width$} {:>9} {:>9} {:>9}",
        "client", "p50 µs", "p90 µs", "p99 µs"
    );
    let base = all
        .first_mut()
        .map_or(Duration::ZERO, |seen| percentile(seen, 0.50));
    for (name, seen) in names.iter().zip(all.iter_mut()) {
        let p50 = percentile(seen, 0.50);
        println!(
            "{name:<width$} {:>9.1} {:>9.1} {:>9.1}   (p50 {:+.1} µs vs {first})",
            micros(p50),
            micros(percentile(seen, 0.90)),
            micros(percentile(seen, 0.99)),
            micros(p50) - micros(base),
        );
    }
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
