//! Row 13: what a new connection costs, over plaintext and over TLS. Each sample opens a fresh
//! connection to the direct port, makes one v1 call on it and drops it; its time is the
//! connect (TCP; for TLS also the TLS 1.3 handshake, ALPN `h2`; then HTTP/2's preface and
//! settings) plus that first call. The plaintext and the TLS port are two identical
//! `testbed serve --deployment direct` processes, one serving the run's certificates; their
//! samples alternate ([`chains::run_interleaved`]), so drift on a shared machine hits both
//! alike. Each call carries the chain on (its value is the last reply), so the chain must end
//! at the number of connections, as every row's does.

use super::BenchOptions;
use super::chains::{self, Incrementer};
use super::targets::{Target, Targets};
use client::IncrementerClient;
use hdrhistogram::Histogram;
use port::Deployment;
use port::tls::ClientTls;
use serde::Serialize;
use services::Api;
use std::net::SocketAddr;

/// Fresh connections measured per transport and round, whatever `--requests` says: a
/// handshake costs a millisecond or so, and each leaves a socket in TIME_WAIT.
pub(crate) const CONNECTIONS: u64 = 50;

/// Unmeasured fresh connections per transport first (the servers' first accepts, the client's
/// first TLS configuration).
const WARMUP: u64 = 5;

/// A transport's connect-and-first-call times, µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ConnectFigures {
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Slowest.
    pub max_us: f64,
}

impl ConnectFigures {
    fn of(histogram: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1e3;
        Self {
            p50_us: us(histogram.value_at_quantile(0.50)),
            p90_us: us(histogram.value_at_quantile(0.90)),
            mean_us: histogram.mean() / 1e3,
            max_us: us(histogram.max()),
        }
    }
}

/// What a new connection costs: connect plus the first call, plaintext and TLS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HandshakeResult {
    /// Fresh connections measured per transport (in each round).
    pub connections: u64,
    /// The value each transport's chain ended at: it must equal `connections`.
    pub final_value: i64,
    /// Plaintext (h2c with prior knowledge).
    pub plaintext: ConnectFigures,
    /// TLS (rustls on both sides, TLS 1.3, ALPN `h2`, the server's certificate verified
    /// against the run's CA).
    pub tls: ConnectFigures,
    /// TLS p50 / plaintext p50.
    pub p50_ratio: f64,
    /// TLS p90 / plaintext p90.
    pub p90_ratio: f64,
}

impl HandshakeResult {
    pub(crate) fn new(
        connections: u64,
        final_value: i64,
        plaintext: ConnectFigures,
        tls: ConnectFigures,
    ) -> Self {
        Self {
            connections,
            final_value,
            plaintext,
            tls,
            p50_ratio: tls.p50_us / plaintext.p50_us,
            p90_ratio: tls.p90_us / plaintext.p90_us,
        }
    }

    /// Each figure's median over `rounds` (ratios of the medians); `None` when nothing ran.
    pub(crate) fn median(rounds: &[HandshakeResult]) -> Option<Self> {
        let first = rounds.first()?;
        let median = |f: fn(&HandshakeResult) -> f64| {
            let mut values: Vec<f64> = rounds.iter().map(f).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let plaintext = ConnectFigures {
            p50_us: median(|r| r.plaintext.p50_us),
            p90_us: median(|r| r.plaintext.p90_us),
            mean_us: median(|r| r.plaintext.mean_us),
            max_us: median(|r| r.plaintext.max_us),
        };
        let tls = ConnectFigures {
            p50_us: median(|r| r.tls.p50_us),
            p90_us: median(|r| r.tls.p90_us),
            mean_us: median(|r| r.tls.mean_us),
            max_us: median(|r| r.tls.max_us),
        };
        Some(Self::new(
            first.connections,
            first.final_value,
            plaintext,
            tls,
        ))
    }
}

/// Measures [`CONNECTIONS`] fresh connections of each transport, alternating.
pub(crate) async fn run(
    targets: &mut Targets,
    options: &BenchOptions,
) -> anyhow::Result<HandshakeResult> {
    let plaintext_addr = targets
        .addr(Target::Port(Deployment::Direct), options)
        .await?;
    let tls_addr = targets.addr(Target::TlsPort, options).await?;
    let mut plaintext = Fresh {
        addr: plaintext_addr,
        tls: None,
    };
    let mut tls = Fresh {
        addr: tls_addr,
        tls: Some(targets.tls()?),
    };
    let (plain, over_tls) =
        chains::run_interleaved(&mut plaintext, &mut tls, WARMUP, CONNECTIONS, None).await?;
    Ok(HandshakeResult::new(
        CONNECTIONS,
        plain.final_value,
        ConnectFigures::of(&plain.histogram),
        ConnectFigures::of(&over_tls.histogram),
    ))
}

/// A client that opens a fresh connection for every call and drops it after the reply.
struct Fresh {
    addr: SocketAddr,
    tls: Option<ClientTls>,
}

impl Incrementer for Fresh {
    async fn increment(&mut self, value: i64) -> anyhow::Result<i64> {
        let channel = match &self.tls {
            None => client::connect(self.addr).await?,
            Some(tls) => chains::tls_channel(self.addr, tls).await?,
        };
        let client = IncrementerClient::new(Api::V1, channel);
        Ok(client.increment(value, None, 1).await?.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(p50_us: f64, p90_us: f64) -> ConnectFigures {
        ConnectFigures {
            p50_us,
            p90_us,
            mean_us: p50_us,
            max_us: p90_us * 2.0,
        }
    }

    #[test]
    fn rounds_give_the_median_of_each_figure_and_ratios_of_the_medians() {
        let rounds: Vec<HandshakeResult> = [(100.0, 300.0), (120.0, 330.0), (90.0, 900.0)]
            .into_iter()
            .map(|(plain, tls)| {
                HandshakeResult::new(50, 50, figures(plain, plain * 2.0), figures(tls, tls * 2.0))
            })
            .collect();
        let median = HandshakeResult::median(&rounds).unwrap();
        assert_eq!(median.plaintext.p50_us, 100.0);
        assert_eq!(median.tls.p50_us, 330.0);
        assert!((median.p50_ratio - 3.3).abs() < 1e-9, "{median:?}");
        assert!((median.p90_ratio - 3.3).abs() < 1e-9, "{median:?}");
        assert_eq!(median.connections, 50);
        assert_eq!(HandshakeResult::median(&[]), None);
    }
}
