//! The report as plain-text tables for the terminal: the rows, h2load, new connections, the
//! proxies, then the ratios measured in alternation and the rows skipped.

use super::{BenchReport, RowResult, h2load_rps};
use crate::Row;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

impl BenchReport {
    /// The report as plain-text tables: no colour or terminal styling, whether stdout is a
    /// terminal or not. A figure nothing measured (the percentiles of the throughput-only row, a
    /// ratio to a row that did not run, every figure of a skipped row) is `–`, never `0.0`.
    pub fn render(&self) -> String {
        let mut table = plain_table();
        table.set_header([
            "row",
            "total ms",
            "mean µs",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "max µs",
            "calls/s",
            "× TCP p50",
            "× unary p50",
        ]);
        for r in &self.rows {
            table.add_row([
                r.label.to_string(),
                figure(Some(r.total_ms), 1),
                figure(Some(r.mean_us), 3),
                figure(r.p50_us, 1),
                figure(r.p90_us, 1),
                figure(r.p99_us, 1),
                figure(r.max_us, 1),
                figure(Some(r.calls_per_s), 0),
                figure(r.ratio_to_tcp, 2),
                figure(r.ratio_to_unary, 2),
            ]);
        }
        for (row, _) in self.skipped.iter().filter(|(row, _)| !row.runs_apart()) {
            let mut cells = vec![format!("{} (skipped)", row.label())];
            cells.extend(std::iter::repeat_n(NOTHING.to_string(), 9));
            table.add_row(cells);
        }
        // Only rows measured apart (h2load, new connections, proxies) ran: no empty table.
        let table = if self.rows.is_empty() && self.skipped.is_empty() {
            String::new()
        } else {
            format!("{table}\n")
        };
        let mut out = format!(
            "{} sequential dependent increments per chain after {} unmeasured, {} chain(s) at once, runtime {}, {}{}, median of {} round(s)\n{table}",
            self.requests,
            self.warmup,
            self.concurrency,
            self.runtime.name(),
            self.placement(),
            self.halt_poll_ns.map_or(String::new(), |ns| format!(
                ", guest halt polling {} µs",
                ns as f64 / 1e3
            )),
            self.repeat
        );
        if !self.h2load.is_empty() {
            let mut h2 = plain_table();
            h2.set_header([
                "h2load → Rust server",
                "-c",
                "-m",
                "req/s",
                "mean µs/request",
            ]);
            for r in &self.h2load {
                h2.add_row([
                    r.target.to_string(),
                    r.connections.to_string(),
                    r.streams.to_string(),
                    format!("{:.0}", r.requests_per_s),
                    format!("{:.1}", r.mean_request_us),
                ]);
            }
            out.push_str(&format!("{h2}\n"));
            if let Some(share) = self.h2load_router_share {
                out.push_str(&format!(
                    "h2load -c 10 -m 10: router reaches {:.1} % of direct requests/s\n",
                    share * 100.0
                ));
            }
            let tls_share = |c: u32| {
                let rps = |target| h2load_rps(&self.h2load, target, c);
                rps("direct-tls").zip(rps("direct")).map(|(t, d)| t / d)
            };
            if let Some((one, ten)) = tls_share(1).zip(tls_share(10)) {
                out.push_str(&format!(
                    "h2load over TLS: direct-tls reaches {:.1} % of direct plaintext requests/s at -c 10 -m 10, {:.1} % at -c 1 -m 1\n",
                    ten * 100.0,
                    one * 100.0
                ));
            }
        }
        if let Some(h) = &self.handshake {
            let mut table = plain_table();
            table.set_header([
                format!("new connection + first call ({} each)", h.connections),
                "p50 µs".to_string(),
                "p90 µs".to_string(),
                "mean µs".to_string(),
                "max µs".to_string(),
            ]);
            for (name, f) in [
                ("plaintext (h2c)", &h.plaintext),
                ("TLS (rustls, h2)", &h.tls),
            ] {
                table.add_row([
                    name.to_string(),
                    figure(Some(f.p50_us), 1),
                    figure(Some(f.p90_us), 1),
                    figure(Some(f.mean_us), 1),
                    figure(Some(f.max_us), 1),
                ]);
            }
            out.push_str(&format!(
                "{table}\nnew connection + first call, TLS / plaintext, measured in alternation: p50 {:.2}, p90 {:.2}\n",
                h.p50_ratio, h.p90_ratio
            ));
        }
        if let Some(proxies) = &self.proxies {
            out.push_str(&proxies.render());
        }
        let ratio = |a: Row, b: Row| {
            let p50 = |row| {
                self.rows
                    .iter()
                    .find(|r| r.row == row)
                    .map(RowResult::typical_us)
            };
            p50(a).zip(p50(b)).map(|(a, b)| a / b)
        };
        if let Some((stock, best)) =
            ratio(Row::UnaryV1, Row::Tcp).zip(ratio(Row::UnaryH2, Row::Tcp))
        {
            out.push_str(&format!(
                "gRPC unary p50 / raw TCP p50: {stock:.2} stock tonic client, {best:.2} one-write h2 client\n"
            ));
        }
        if let Some(r) = ratio(Row::UnaryH2, Row::UnaryH2StockServer) {
            out.push_str(&format!(
                "testbed port (guard, reflection, health) / stock tonic server, h2 client p50, measured in alternation: {r:.3}\n"
            ));
        }
        if let Some(r) = ratio(Row::UnaryRouter, Row::UnaryV2) {
            out.push_str(&format!(
                "router p50 / direct v2 unary p50, measured in alternation: {r:.3}\n"
            ));
        }
        for r in &self.rows {
            if let (Some(plaintext), Some(p50)) = (r.row.plaintext_partner(), r.ratio_to_plaintext)
            {
                let percentile = |row: Row, f: fn(&RowResult) -> Option<f64>| {
                    self.rows.iter().find(|r| r.row == row).and_then(f)
                };
                let p99 = percentile(r.row, |r| r.p99_us)
                    .zip(percentile(plaintext, |r| r.p99_us))
                    .map(|(tls, plain)| tls / plain);
                out.push_str(&format!(
                    "{} / plaintext, measured in alternation: p50 {p50:.3}, p99 {}\n",
                    r.label,
                    figure(p99, 3)
                ));
            }
        }
        if let Some(r) = ratio(Row::RustToPython, Row::UnaryV1) {
            out.push_str(&format!(
                "Rust client: Python server p50 / Rust server p50: {r:.2}\n"
            ));
        }
        if let Some(r) = ratio(Row::RustToPythonViaGateway, Row::RustToPython) {
            out.push_str(&format!(
                "gateway (serve --upstream) in front of the Python server / the Python server direct, p50, measured in alternation: {r:.3}\n"
            ));
        }
        for (row, reason) in &self.skipped {
            out.push_str(&format!("skipped {}: {reason}\n", row.label()));
        }
        out
    }

    /// Where client and servers ran, in words.
    pub(super) fn placement(&self) -> String {
        match (&self.cpus, &self.server_cpus) {
            (None, None) => "unpinned".to_string(),
            (Some(cpus), None) => format!("all processes pinned to CPU {cpus}"),
            (client, Some(servers)) => format!(
                "client on CPU {}, servers on CPU {servers}",
                client
                    .as_ref()
                    .map_or("any".to_string(), ToString::to_string)
            ),
        }
    }
}

/// What the table shows where nothing was measured.
const NOTHING: &str = "–";

/// A table of plain text: box-drawing borders, but no colour or other terminal styling, and
/// laid out the same whether stdout is a terminal or not (comfy-table would ask it otherwise).
fn plain_table() -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).force_no_tty();
    table
}

/// A figure to `digits` decimals, or as many more as it takes to show two significant digits
/// (a harness call of 0.03 µs is not `0.0`); `–` where nothing was measured.
pub(super) fn figure(value: Option<f64>, digits: usize) -> String {
    match value {
        Some(v) if v.is_finite() => {
            let needed = if v == 0.0 {
                0
            } else {
                (1.0 - v.abs().log10().floor()).clamp(0.0, 9.0) as usize
            };
            let digits = digits.max(needed);
            format!("{v:.digits$}")
        }
        _ => NOTHING.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{cells, h2load_run, measured, options, report};
    use super::*;
    use crate::HandshakeResult;

    #[test]
    fn nothing_measured_is_a_dash_in_the_table_and_null_in_json() {
        let report = report();
        let rendered = report.render();
        // The pipelined row has no percentiles, and no row has a ratio to gRPC unary.
        let pipelined = cells(&rendered, "gRPC bidi stream pipelined");
        assert_eq!(&pipelined[3..7], ["–"; 4], "{rendered}");
        assert_eq!(pipelined[9], "–", "{rendered}");
        assert!(
            !rendered.contains(" - "),
            "an ASCII hyphen for nothing:\n{rendered}"
        );
        // The skipped row is listed, with nothing measured.
        let skipped = cells(&rendered, "Python grpcio → Rust server (skipped)");
        assert_eq!(&skipped[1..], ["–"; 9], "{rendered}");
        // The harness's figures are measured, and small: they show, not as 0.0 or 0.00.
        let harness = cells(&rendered, "harness");
        assert_eq!(harness[3], "0.030", "{rendered}");
        assert_eq!(harness[8], "0.0010", "{rendered}");
        assert!(
            harness[1..]
                .iter()
                .all(|cell| !cell.trim_matches(['0', '.']).is_empty()),
            "a measured figure shown as zero:\n{rendered}"
        );

        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        let pipelined = &json["rows"][2];
        assert_eq!(pipelined["row"], "stream-pipelined");
        for key in ["p50_us", "p90_us", "p99_us", "max_us", "ratio_to_unary"] {
            assert!(pipelined[key].is_null(), "{key}: {pipelined}");
        }
        assert!(json["rows"][0]["ratio_to_unary"].is_null());
    }

    #[test]
    fn tls_rows_are_compared_with_plaintext_and_so_are_h2load_and_new_connections() {
        let rows = vec![
            Row::UnaryV1,
            Row::UnaryTls,
            Row::StreamPingPong,
            Row::StreamPingPongTls,
            Row::H2load,
            Row::Handshake,
        ];
        let runs = [
            (Row::UnaryV1, 100.0),
            (Row::UnaryTls, 110.0),
            (Row::StreamPingPong, 80.0),
            (Row::StreamPingPongTls, 84.0),
        ]
        .into_iter()
        .map(|(row, p50)| (row, Ok(measured(row, p50, p50))))
        .collect();
        let h2load = vec![
            h2load_run("direct-tls", 1, 900.0),
            h2load_run("direct-tls", 10, 8000.0),
            h2load_run("direct", 1, 1000.0),
            h2load_run("direct", 10, 10000.0),
        ];
        let plain = crate::ConnectFigures {
            p50_us: 200.0,
            p90_us: 250.0,
            mean_us: 210.0,
            max_us: 400.0,
        };
        let tls = crate::ConnectFigures {
            p50_us: 600.0,
            p90_us: 1000.0,
            mean_us: 700.0,
            max_us: 2000.0,
        };
        let handshake = HandshakeResult::new(50, 50, plain, tls);
        let report =
            BenchReport::from_runs(&options(rows.clone()), &rows, runs, vec![h2load], None)
                .with_handshake(vec![handshake]);
        // Only the rows measured in the table are in it; h2load and new connections apart.
        assert_eq!(report.rows.len(), 4);
        let ratio = |row: Row| {
            report
                .rows
                .iter()
                .find(|r| r.row == row)
                .unwrap()
                .ratio_to_plaintext
        };
        assert!((ratio(Row::UnaryTls).unwrap() - 1.1).abs() < 1e-9);
        assert!((ratio(Row::StreamPingPongTls).unwrap() - 1.05).abs() < 1e-9);
        assert_eq!(ratio(Row::UnaryV1), None);
        assert!((report.h2load_tls_share.unwrap() - 0.8).abs() < 1e-9);

        let rendered = report.render();
        for line in [
            "gRPC unary v1, direct, TLS / plaintext, measured in alternation: p50 1.100, p99 1.100",
            "gRPC bidi stream ping-pong, TLS / plaintext, measured in alternation: p50 1.050",
            "direct-tls reaches 80.0 % of direct plaintext requests/s at -c 10 -m 10, 90.0 % at -c 1 -m 1",
            "new connection + first call, TLS / plaintext, measured in alternation: p50 3.00, p90 4.00",
        ] {
            assert!(rendered.contains(line), "no {line:?} in\n{rendered}");
        }
        assert_eq!(
            cells(&rendered, "TLS (rustls, h2)"),
            ["TLS (rustls, h2)", "600.0", "1000.0", "700.0", "2000.0"],
            "{rendered}"
        );
        assert_eq!(
            cells(&rendered, "plaintext (h2c)")[1],
            "200.0",
            "{rendered}"
        );

        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["rows"][1]["row"], "unary-tls");
        assert!((json["rows"][1]["ratio_to_plaintext"].as_f64().unwrap() - 1.1).abs() < 1e-9);
        assert!(json["rows"][0]["ratio_to_plaintext"].is_null());
        assert_eq!(json["handshake"]["connections"], 50);
        assert_eq!(json["handshake"]["tls"]["p50_us"], 600.0);
        assert_eq!(json["handshake"]["p50_ratio"], 3.0);
        assert!((json["h2load_tls_share"].as_f64().unwrap() - 0.8).abs() < 1e-9);
        assert!(serde_json::to_value(self::report()).unwrap()["handshake"].is_null());
    }

    #[test]
    fn tables_are_plain_text() {
        let rendered = report().render();
        assert!(
            !rendered.contains('\u{1b}'),
            "terminal escapes in:\n{rendered:?}"
        );
        assert!(rendered.contains("after 7 unmeasured"), "{rendered}");
    }

    #[test]
    fn figures_keep_two_significant_digits() {
        assert_eq!(figure(Some(28.63), 1), "28.6");
        assert_eq!(figure(Some(0.03), 1), "0.030");
        assert_eq!(figure(Some(0.00105), 2), "0.0010");
        assert_eq!(figure(Some(11733876.0), 0), "11733876");
        assert_eq!(figure(Some(0.0), 1), "0.0");
        assert_eq!(figure(None, 1), "–");
        assert_eq!(figure(Some(f64::NAN), 1), "–");
        assert_eq!(figure(Some(f64::INFINITY), 1), "–");
    }
}
