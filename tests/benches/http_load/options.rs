//! The command line.

use std::time::Duration;

use crate::configs::Config;

pub const USAGE: &str = "\
usage: cargo bench -p tollgate-tests --bench http_load -- [CONFIG...] [OPTIONS]

CONFIG: bare full governor memory redis redis-cached full-redis memory-429 redis-429 redis-429-refusals, or all
        (default: bare full governor memory redis redis-cached; bare is always measured)
OPTIONS:
  --connections 1,16,64   concurrent keep-alive connections, each measured
  --runs 3                repetitions (the report shows their median)
  --warmup-ms 500         load before each measured window
  --measure-ms 2500       the measured window
Without --bench (which `cargo bench` passes, and `cargo test --benches`
does not) it runs a short smoke check of every configuration instead.";

/// What to measure and for how long.
#[derive(Debug)]
pub struct Options {
    /// Bare first, then the others in report order.
    pub configs: Vec<Config>,
    pub connections: Vec<usize>,
    pub runs: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// A quick check that every configuration answers, not a measurement.
    pub smoke: bool,
}

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut args = args.into_iter();
        let mut names = Vec::new();
        let mut bench = false;
        let (mut connections, mut runs, mut warmup, mut measure) = (None, None, None, None);
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match flag.as_str() {
                "--bench" => bench = true,
                "--help" | "-h" => return Err(USAGE.into()),
                "--connections" => connections = Some(parse_list(&value("--connections")?)?),
                "--runs" => runs = Some(parse_number(&value("--runs")?)?),
                "--warmup-ms" => warmup = Some(millis(&value("--warmup-ms")?)?),
                "--measure-ms" => measure = Some(millis(&value("--measure-ms")?)?),
                "all" => names.extend(Config::ALL),
                other => match Config::parse(other) {
                    Some(config) => names.push(config),
                    None => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
                },
            }
        }
        if names.is_empty() {
            names.extend(Config::ALL.into_iter().filter(|config| config.runs_by_default()));
        }
        // Bare is the baseline of every ratio; then report order, once each.
        let configs = Config::ALL
            .into_iter()
            .filter(|config| *config == Config::Bare || names.contains(config))
            .collect();
        let smoke = !bench;
        let options = Options {
            configs,
            connections: connections.unwrap_or_else(|| if smoke { vec![1, 4] } else { vec![1, 16, 64] }),
            runs: runs.unwrap_or(if smoke { 1 } else { 3 }),
            warmup: warmup.unwrap_or(Duration::from_millis(if smoke { 50 } else { 500 })),
            measure: measure.unwrap_or(Duration::from_millis(if smoke { 200 } else { 2500 })),
            smoke,
        };
        if options.runs == 0 || options.measure.is_zero() {
            return Err(format!("--runs and --measure-ms must be above zero\n\n{USAGE}"));
        }
        Ok(options)
    }
}

fn parse_number(text: &str) -> Result<usize, String> {
    text.parse().map_err(|_| format!("not a number: {text:?}"))
}

fn parse_list(text: &str) -> Result<Vec<usize>, String> {
    let list = text.split(',').map(parse_number).collect::<Result<Vec<_>, _>>()?;
    if list.is_empty() || list.contains(&0) || list.iter().any(|&c| c > 1024) {
        return Err(format!("--connections takes numbers from 1 to 1024: {text:?}"));
    }
    Ok(list)
}

fn millis(text: &str) -> Result<Duration, String> {
    let ms = parse_number(text)?;
    if ms > 60_000 {
        return Err(format!("at most 60000 ms: {text:?}"));
    }
    Ok(Duration::from_millis(ms as u64))
}
