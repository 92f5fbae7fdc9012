//! How many Redis round trips one request costs, counted with `MONITOR`
//! while the server answers a few hundred requests one after another.
//!
//! `INFO commandstats` cannot tell this apart: it also counts the commands
//! that Lua scripts run (they cost no round trip) and every other client of
//! a shared server. `MONITOR` names each command's client: the commands of
//! the server's own connection (the one that touched this run's key
//! prefix) are the round trips, those of `lua` on this prefix ran inside
//! scripts. `ECHO` markers from a separate connection bracket the count.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;
use tollgate_core::conformance::unique_name;

use crate::load::{send_sequentially, Target};

const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Commands per request, by command name.
#[derive(Debug, Default)]
pub struct RoundTrips {
    /// How many requests were counted.
    pub requests: u64,
    /// Commands the server sent to Redis (each a round trip, though
    /// concurrent ones share a pipeline).
    pub sent: BTreeMap<String, u64>,
    /// Commands scripts ran on this run's keys.
    pub in_scripts: BTreeMap<String, u64>,
}

impl RoundTrips {
    /// Round trips per request.
    pub fn per_request(&self) -> f64 {
        self.sent.values().sum::<u64>() as f64 / self.requests as f64
    }

    /// "EVALSHA 1.00, HGETALL 1.00"
    pub fn describe(counts: &BTreeMap<String, u64>, requests: u64) -> String {
        if counts.is_empty() {
            return "none".into();
        }
        counts
            .iter()
            .map(|(command, count)| format!("{command} {:.2}", *count as f64 / requests as f64))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Counts what `requests` sequential requests to `target` send to the
/// Redis at `url` on keys under `prefix`.
pub async fn count(url: &str, prefix: &str, target: &Target, requests: u64) -> Result<RoundTrips, String> {
    let redis_error = |error: redis::RedisError| format!("Redis: {error}");
    let client = redis::Client::open(url).map_err(redis_error)?;
    let monitor = client.get_async_monitor().await.map_err(redis_error)?;
    let mut control = client.get_multiplexed_async_connection().await.map_err(redis_error)?;
    let start = unique_name("tgbench-monitor-start");
    let end = unique_name("tgbench-monitor-end");

    let reader = {
        let end = end.clone();
        tokio::spawn(async move {
            let mut lines = Vec::new();
            let mut stream = monitor.into_on_message::<String>();
            while let Some(line) = stream.next().await {
                let done = line.contains(&end);
                lines.push(line);
                if done {
                    break;
                }
            }
            lines
        })
    };
    echo(&mut control, &start).await?;
    send_sequentially(target, requests).await?;
    echo(&mut control, &end).await?;
    let lines = tokio::time::timeout(READ_TIMEOUT, reader)
        .await
        .map_err(|_elapsed| "MONITOR did not show the end marker".to_owned())?
        .map_err(|error| format!("the MONITOR reader failed: {error}"))?;

    let window: Vec<Line<'_>> = lines
        .iter()
        .skip_while(|line| !line.contains(&start))
        .skip(1)
        .take_while(|line| !line.contains(&end))
        .filter_map(|line| Line::parse(line))
        .collect();
    // The server's connection(s): the clients that touched this run's keys directly.
    let ours: BTreeSet<&str> = window
        .iter()
        .filter(|line| line.client != "lua" && line.text.contains(prefix))
        .map(|line| line.client)
        .collect();
    let mut counted = RoundTrips {
        requests,
        ..RoundTrips::default()
    };
    for line in &window {
        if ours.contains(line.client) {
            *counted.sent.entry(line.command.clone()).or_default() += 1;
        } else if line.client == "lua" && line.text.contains(prefix) {
            *counted.in_scripts.entry(line.command.clone()).or_default() += 1;
        }
    }
    Ok(counted)
}

async fn echo(connection: &mut redis::aio::MultiplexedConnection, marker: &str) -> Result<(), String> {
    redis::cmd("ECHO")
        .arg(marker)
        .query_async::<String>(connection)
        .await
        .map(drop)
        .map_err(|error| format!("Redis ECHO: {error}"))
}

/// One MONITOR line: `1700000000.123456 [0 127.0.0.1:50000] "EVALSHA" "…" …`
/// (the client is `lua` for commands a script ran).
struct Line<'a> {
    client: &'a str,
    command: String,
    text: &'a str,
}

impl<'a> Line<'a> {
    fn parse(text: &'a str) -> Option<Line<'a>> {
        let open = text.find('[')?;
        let close = open + text[open..].find(']')?;
        let client = text[open + 1..close].split_whitespace().nth(1)?;
        let rest = text[close + 1..].trim_start().strip_prefix('"')?;
        let command = rest[..rest.find('"')?].to_ascii_uppercase();
        Some(Line { client, command, text })
    }
}
