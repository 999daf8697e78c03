//! A load run over time: per client version, requests, failures and p99 in each 100 ms
//! bucket, merged from each client's own buckets.

use serde::Serialize;
use std::time::Duration;

/// Width of one time-series bucket.
pub const BUCKET: Duration = Duration::from_millis(100);

/// One client version's figures in one [`BUCKET`] of the run (by completion time).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Point {
    /// Requests completed in the bucket (verified, failed or wrong).
    pub requests: u64,
    /// Of those, failed with a status or answered wrongly.
    pub failed: u64,
    /// 99th percentile of the verified replies' latencies, µs (`None`: none verified).
    pub p99_us: Option<f64>,
}

/// The run over time: one [`Point`] per [`BUCKET`] and client version, from the start of the
/// load, and when each phase began.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    /// Bucket width, ms.
    pub bucket_ms: u64,
    /// When each phase began, s from the start of the load (the first is 0).
    pub phase_starts_s: Vec<f64>,
    /// v1 clients, bucket by bucket.
    pub v1: Vec<Point>,
    /// v2 clients, bucket by bucket.
    pub v2: Vec<Point>,
}

/// What one client saw in one bucket: verified latencies (µs) and failures.
#[derive(Debug, Clone, Default)]
pub(super) struct RawBucket {
    pub(super) latencies_us: Vec<f32>,
    pub(super) failed: u64,
}

/// Merges clients' buckets into points: the p99 is taken over every verified reply of the
/// bucket (nearest rank).
pub(super) fn points(clients: &[&Vec<RawBucket>], buckets: usize) -> Vec<Point> {
    (0..buckets)
        .map(|i| {
            let mut latencies: Vec<f32> = Vec::new();
            let mut failed = 0;
            for client in clients {
                if let Some(bucket) = client.get(i) {
                    latencies.extend_from_slice(&bucket.latencies_us);
                    failed += bucket.failed;
                }
            }
            latencies.sort_by(f32::total_cmp);
            let p99_us = (!latencies.is_empty()).then(|| {
                let rank = ((latencies.len() as f64) * 0.99).ceil() as usize;
                f64::from(latencies[rank.clamp(1, latencies.len()) - 1])
            });
            Point {
                requests: latencies.len() as u64 + failed,
                failed,
                p99_us,
            }
        })
        .collect()
}
