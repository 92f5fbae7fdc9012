//! The markdown the benchmark prints: the table of every configuration at
//! every concurrency, with ratios to bare axum at the same concurrency.

use std::fmt::Write as _;

use crate::configs::Config;
use crate::stats::Summary;

/// Every summary, by configuration and concurrency.
pub struct Results {
    pub rows: Vec<(Config, usize, Summary)>,
}

impl Results {
    /// The summary of `config` at `connections`.
    pub fn get(&self, config: Config, connections: usize) -> Option<&Summary> {
        self.rows
            .iter()
            .find(|(c, n, _)| *c == config && *n == connections)
            .map(|(_, _, summary)| summary)
    }

    /// The table, ordered by concurrency then configuration.
    pub fn table(&self, configs: &[Config], connections: &[usize]) -> String {
        let mut out = String::new();
        out.push_str(
            "| C | configuration | req/s | vs bare | p50 ms | p99 ms | server CPU µs/req | vs bare | server busy | load busy | req/s of each run |\n",
        );
        out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for &c in connections {
            let bare = self.get(Config::Bare, c).map(|bare| &bare.median);
            for &config in configs {
                let Some(summary) = self.get(config, c) else { continue };
                let median = &summary.median;
                let rps_ratio = bare.map(|bare| median.rps / bare.rps);
                let cpu_ratio = bare
                    .and_then(|bare| bare.server_us_per_request)
                    .zip(median.server_us_per_request)
                    .map(|(bare, this)| this / bare);
                let each = summary
                    .each_rps
                    .iter()
                    .map(|rps| format!("{rps:.0}"))
                    .collect::<Vec<_>>()
                    .join(" / ");
                let _ = writeln!(
                    out,
                    "| {c} | {} | {:.0} | {} | {:.3} | {:.3} | {} | {} | {} | {} | {each} |",
                    config.name(),
                    median.rps,
                    ratio(rps_ratio),
                    median.p50_ms,
                    median.p99_ms,
                    median
                        .server_us_per_request
                        .map_or("n/a".into(), |us| format!("{us:.1}")),
                    ratio(cpu_ratio),
                    percent(median.server_busy),
                    percent(median.load_busy),
                );
            }
        }
        out
    }

    /// `numerator`'s throughput over `denominator`'s at each concurrency.
    pub fn throughput_ratios(
        &self,
        numerator: Config,
        denominator: Config,
        connections: &[usize],
    ) -> Vec<(usize, f64)> {
        connections
            .iter()
            .filter_map(|&c| {
                let top = self.get(numerator, c)?;
                let bottom = self.get(denominator, c)?;
                Some((c, top.median.rps / bottom.median.rps))
            })
            .collect()
    }
}

fn ratio(value: Option<f64>) -> String {
    value.map_or("n/a".into(), |value| format!("{value:.2}×"))
}

fn percent(value: Option<f64>) -> String {
    value.map_or("n/a".into(), |value| format!("{:.0}%", value * 100.0))
}
