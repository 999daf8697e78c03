//! Chains at once: `--concurrency` clients, each on its own connection, warmed up and then
//! measured together (alone or in alternating pairs), the first error ending them all.

use crate::BenchOptions;
use crate::chains::{self, Chain, Incrementer};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Barrier;

/// Runs `options.concurrency` chains at once, each on its own connection to `addr`. Every chain
/// warms up first; the measured calls of all begin together, once the last has warmed up.
pub(crate) async fn concurrent<C, F, Fut>(
    options: &BenchOptions,
    addr: SocketAddr,
    connect: F,
) -> anyhow::Result<Vec<Chain>>
where
    C: Incrementer + Send + 'static,
    F: Fn(SocketAddr) -> Fut,
    Fut: Future<Output = anyhow::Result<C>>,
{
    let mut clients = Vec::with_capacity(options.concurrency);
    for _ in 0..options.concurrency {
        clients.push(connect(addr).await?);
    }
    let (warmup, n) = (options.warmup, options.requests);
    let start = Arc::new(Barrier::new(clients.len()));
    at_once(clients, move |mut client| {
        let start = start.clone();
        async move { chains::run(&mut client, warmup, n, Some(&start)).await }
    })
    .await
}

/// As [`concurrent`], for a pair of rows: each of the `options.concurrency` tasks alternates
/// between a client of `a` (made by `connect_a`) and a client of `b` (by `connect_b`; the same
/// client over another transport, say). Each chain's time is its own calls' time.
pub(crate) async fn concurrent_pairs<A, FA, FutA, B, FB, FutB>(
    options: &BenchOptions,
    (a, connect_a): (SocketAddr, FA),
    (b, connect_b): (SocketAddr, FB),
) -> anyhow::Result<[Vec<Chain>; 2]>
where
    A: Incrementer + Send + 'static,
    FA: Fn(SocketAddr) -> FutA,
    FutA: Future<Output = anyhow::Result<A>>,
    B: Incrementer + Send + 'static,
    FB: Fn(SocketAddr) -> FutB,
    FutB: Future<Output = anyhow::Result<B>>,
{
    let mut clients = Vec::with_capacity(options.concurrency);
    for _ in 0..options.concurrency {
        clients.push((connect_a(a).await?, connect_b(b).await?));
    }
    let (warmup, n) = (options.warmup, options.requests);
    let start = Arc::new(Barrier::new(clients.len()));
    let pairs = at_once(clients, move |(mut a, mut b)| {
        let start = start.clone();
        async move { chains::run_interleaved(&mut a, &mut b, warmup, n, Some(&start)).await }
    })
    .await?;
    let (chains_a, chains_b) = pairs.into_iter().unzip();
    Ok([chains_a, chains_b])
}

/// Runs `job` on each of `inputs` as tasks of their own, all at once, and returns their results
/// in the order of `inputs`. The first error ends the others (they may be waiting for it at a
/// barrier) and is returned.
pub(crate) async fn at_once<I, T, J, Fut>(inputs: Vec<I>, job: J) -> anyhow::Result<Vec<T>>
where
    I: Send + 'static,
    T: Send + 'static,
    J: Fn(I) -> Fut,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for (i, input) in inputs.into_iter().enumerate() {
        let job = job(input);
        tasks.spawn(async move { (i, job.await) });
    }
    let mut results: Vec<Option<T>> = std::iter::repeat_with(|| None).take(tasks.len()).collect();
    while let Some(done) = tasks.join_next().await {
        let (i, result) = done.context("a bench chain panicked")?;
        // Returning drops `tasks`, which aborts the chains still running.
        results[i] = Some(result?);
    }
    results
        .into_iter()
        .map(|result| result.context("a bench chain vanished"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::options;
    use crate::{Row, RowResult};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// An increment that takes `delay` (a sleep, so chains at once overlap), and fails at call
    /// `fail_at` if set.
    struct Slow {
        delay: Duration,
        calls: u64,
        fail_at: Option<u64>,
    }

    impl Slow {
        fn new(delay_ms: u64) -> Self {
            Self {
                delay: Duration::from_millis(delay_ms),
                calls: 0,
                fail_at: None,
            }
        }
    }

    impl Incrementer for Slow {
        async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
            self.calls += 1;
            if self.fail_at == Some(self.calls) {
                anyhow::bail!("call {} failed", self.calls);
            }
            tokio::time::sleep(self.delay).await;
            Ok(value + 1)
        }
    }

    const ANY_ADDR: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

    /// The calls' mean latency as the per-call timer saw it, in µs: independent of the wall
    /// clock the row's calls/s and total come from.
    fn timed_mean_us(chains: &[Chain]) -> f64 {
        let (sum, count) = chains.iter().fold((0.0, 0), |(sum, count), chain| {
            let n = chain.histogram.len();
            (sum + chain.histogram.mean() * n as f64, count + n)
        });
        sum / count as f64 / 1e3
    }

    /// `a` within a factor `1.5` of `b`: figures that should agree, with room for a busy
    /// machine (timer overhead, scheduling) but none for counting four times the calls.
    fn agree(what: &str, a: f64, b: f64) {
        assert!(
            a / b < 1.5 && b / a < 1.5,
            "{what}: {a} and {b} disagree by more than a factor 1.5"
        );
    }

    #[tokio::test]
    async fn calls_per_s_and_total_count_only_the_measured_calls() {
        // Three times as many warm-up calls as measured ones: counting them in the wall time
        // would put calls/s and the total four times off.
        let options = options(20, 60, 1);
        let chains = concurrent(&options, ANY_ADDR, async |_| Ok(Slow::new(2)))
            .await
            .unwrap();
        let row = RowResult::from_chains(Row::Tcp, &chains).unwrap();
        assert_eq!(row.calls, 20);
        let mean = timed_mean_us(&chains);
        // One sequential chain: calls/s is one over the mean latency, the total is the count
        // times the mean, and calls/s is the count over the total.
        agree(
            "calls/s against 1 / timed mean",
            row.calls_per_s,
            1e6 / mean,
        );
        agree(
            "total ms against count × timed mean",
            row.total_ms,
            20.0 * mean / 1e3,
        );
        agree(
            "calls/s against count / total",
            row.calls_per_s,
            row.calls as f64 / (row.total_ms / 1e3),
        );
        agree(
            "calls/s against 1 / mean µs",
            row.calls_per_s,
            1e6 / row.mean_us,
        );
    }

    #[tokio::test]
    async fn chains_at_once_are_timed_together_without_their_warm_up() {
        // Two overlapping chains complete calls twice as fast as one.
        let options = options(20, 60, 2);
        let chains = concurrent(&options, ANY_ADDR, async |_| Ok(Slow::new(2)))
            .await
            .unwrap();
        let row = RowResult::from_chains(Row::Tcp, &chains).unwrap();
        assert_eq!(row.calls, 40);
        let mean = timed_mean_us(&chains);
        agree(
            "calls/s against 2 / timed mean",
            row.calls_per_s,
            2e6 / mean,
        );
        agree(
            "total ms against calls per chain × timed mean",
            row.total_ms,
            20.0 * mean / 1e3,
        );
        agree("mean µs against timed mean", row.mean_us, mean);
    }

    #[tokio::test]
    async fn interleaved_rows_are_timed_by_their_own_calls() {
        let options = options(20, 60, 1);
        let slow = async |_| Ok(Slow::new(2));
        let [a, b] = concurrent_pairs(&options, (ANY_ADDR, slow), (ANY_ADDR, slow))
            .await
            .unwrap();
        for chains in [a, b] {
            let row = RowResult::from_chains(Row::UnaryV2, &chains).unwrap();
            let mean = timed_mean_us(&chains);
            agree(
                "calls/s against 1 / timed mean",
                row.calls_per_s,
                1e6 / mean,
            );
            agree(
                "total ms against count × timed mean",
                row.total_ms,
                20.0 * mean / 1e3,
            );
        }
    }

    #[tokio::test]
    async fn a_chain_that_fails_ends_the_run_instead_of_stranding_the_others() {
        // The second client fails in its warm-up; the first waits for it at the barrier.
        let connected = AtomicUsize::new(0);
        let connect = async |_| {
            let mut client = Slow::new(1);
            if connected.fetch_add(1, Ordering::SeqCst) == 1 {
                client.fail_at = Some(3);
            }
            Ok(client)
        };
        let options = options(20, 10, 2);
        let run = concurrent(&options, ANY_ADDR, connect);
        let result = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("a failed chain left the others waiting");
        let err = result.unwrap_err();
        assert!(err.to_string().contains("call 3 failed"), "{err:#}");
    }
}
