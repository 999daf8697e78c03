//! What a load run saw, per phase and client version: as JSON (keyed by version) and as the
//! terminal table.

use super::{LoadOptions, Series, Tally};
use serde::Serialize;

/// Everything a load run saw: per phase, per client version.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// What was run.
    pub settings: LoadOptions,
    /// Phase names, in order.
    pub phases: Vec<String>,
    /// `tallies[phase]` holds the v1 and the v2 tally of that phase.
    pub tallies: Vec<[Tally; 2]>,
    /// Wall time of the run, s.
    pub seconds: f64,
    /// The run over time, per 100 ms.
    pub series: Series,
}

/// The v1 and v2 figures of something, keyed by version in JSON.
#[derive(Serialize)]
struct ByVersion<'a> {
    v1: &'a Tally,
    v2: &'a Tally,
}

impl Serialize for LoadReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Phase<'a> {
            name: &'a str,
            #[serde(flatten)]
            tallies: ByVersion<'a>,
        }
        #[derive(Serialize)]
        struct Settings {
            v1_clients: usize,
            v2_clients: usize,
            requests_per_client: Option<u64>,
            rate_per_client: Option<f64>,
            open_loop: bool,
            v1_requirement: Option<String>,
            v2_requirement: Option<String>,
            v2_waits_for_health: bool,
        }
        #[derive(Serialize)]
        struct Json<'a> {
            settings: Settings,
            seconds: f64,
            phases: Vec<Phase<'a>>,
            totals: ByVersion<'a>,
            series: &'a Series,
        }
        let totals = self.totals();
        let options = &self.settings;
        Json {
            settings: Settings {
                v1_clients: options.v1_clients,
                v2_clients: options.v2_clients,
                requests_per_client: options.requests_per_client,
                rate_per_client: options.rate_per_client,
                open_loop: options.open_loop,
                v1_requirement: options.v1_requirement.as_ref().map(ToString::to_string),
                v2_requirement: options.v2_requirement.as_ref().map(ToString::to_string),
                v2_waits_for_health: options.v2_waits_for_health,
            },
            seconds: self.seconds,
            phases: self
                .phases
                .iter()
                .zip(&self.tallies)
                .map(|(name, [v1, v2])| Phase {
                    name,
                    tallies: ByVersion { v1, v2 },
                })
                .collect(),
            totals: ByVersion {
                v1: &totals[0],
                v2: &totals[1],
            },
            series: &self.series,
        }
        .serialize(serializer)
    }
}

impl LoadReport {
    /// All phases together, v1 then v2.
    pub fn totals(&self) -> [Tally; 2] {
        let mut totals = [Tally::new(), Tally::new()];
        for phase in &self.tallies {
            totals[0].merge(&phase[0]);
            totals[1].merge(&phase[1]);
        }
        totals
    }

    /// Whether every request got a verified reply.
    pub fn clean(&self) -> bool {
        self.totals()
            .iter()
            .all(|t| t.wrong == 0 && t.failed() == 0)
    }

    /// The report as a terminal table.
    pub fn render(&self) -> String {
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        table.set_header([
            "phase",
            "clients",
            "requests",
            "ok",
            "failed",
            "wrong",
            "p50 µs",
            "p99 µs",
            "max µs",
            "served by",
        ]);
        let mut add = |phase: &str, api: &str, t: &Tally| {
            let errors: Vec<String> = t
                .errors
                .iter()
                .map(|(code, (count, _))| format!("{count} {code}"))
                .collect();
            let served: Vec<String> = t
                .served_by
                .iter()
                .map(|(v, n)| format!("{v}: {n}"))
                .collect();
            table.add_row([
                phase.to_string(),
                api.to_string(),
                t.requests.to_string(),
                t.ok.to_string(),
                if errors.is_empty() {
                    "0".into()
                } else {
                    errors.join(", ")
                },
                t.wrong.to_string(),
                micros(t.p50_us),
                micros(t.p99_us),
                micros(t.max_us),
                served.join(", "),
            ]);
        };
        for (name, [v1, v2]) in self.phases.iter().zip(&self.tallies) {
            add(name, "v1", v1);
            add(name, "v2", v2);
        }
        let [v1, v2] = self.totals();
        add("all", "v1", &v1);
        add("all", "v2", &v2);
        let mut out = match (self.settings.open_loop, self.settings.rate_per_client) {
            (true, Some(rate)) => format!(
                "open loop, {rate} requests/s per client on a fixed schedule; latencies from \
                 each request's intended send time\n"
            ),
            (false, Some(rate)) => format!("closed loop, each client paced to {rate}/s\n"),
            _ => "closed loop, each client back to back\n".to_string(),
        };
        out.push_str(&format!("{table}\n"));
        let total = v1.requests + v2.requests;
        out.push_str(&format!(
            "{total} requests in {:.1} s ({:.0}/s); {} failed, {} wrong\n",
            self.seconds,
            total as f64 / self.seconds.max(1e-9),
            v1.failed() + v2.failed(),
            v1.wrong + v2.wrong
        ));
        for example in v1.wrong_examples.iter().chain(&v2.wrong_examples) {
            out.push_str(&format!("wrong: {example}\n"));
        }
        for (code, (_, message)) in v1.errors.iter().chain(&v2.errors) {
            out.push_str(&format!("{code}: {message}\n"));
        }
        out
    }
}

/// A latency for a table: one decimal, or `–` when nothing was measured.
fn micros(us: Option<f64>) -> String {
    us.map_or_else(|| "–".to_string(), |us| format!("{us:.1}"))
}
