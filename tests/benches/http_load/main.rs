//! End-to-end HTTP load over loopback: what tollgate's middleware costs a
//! real axum server, against bare axum and against tower-http's bearer
//! check plus tower_governor, and what Redis stores cost against memory
//! stores.
//!
//! ```text
//! cargo bench -p tollgate-tests --bench http_load                    # bare full governor memory redis redis-cached
//! cargo bench -p tollgate-tests --bench http_load -- memory redis    # bare memory redis
//! cargo bench -p tollgate-tests --bench http_load -- all --connections 64 --runs 5
//! ```
//!
//! The Redis configurations need `REDIS_URL` (e.g. `redis://127.0.0.1:6379`);
//! without it they are skipped with a note. They write under a fresh key
//! prefix and purge it at the end.
//!
//! # Method
//!
//! - Two Tokio runtimes of one worker thread each, the server's and the load
//!   generator's, so on a two-core machine each has a core (not pinned: the
//!   OS schedules them, and Redis, when used, competes for the same two).
//! - Every configuration is served at once, each on its own port, by
//!   `axum::serve` with `ConnectInfo<SocketAddr>`; all answer `GET /v1/ping`
//!   with `pong` and see the same requests: 10,000 real tollgate keys of
//!   their own, round-robin, as bearer (`memory-429` and `redis-429` drive
//!   Free-plan keys past their limit instead and check the count of 200s
//!   is exactly what the plan allows; see `load`).
//! - A measurement opens `C` keep-alive HTTP/1.1 connections (hyper's
//!   client, `TCP_NODELAY`), each sending one request after another for the
//!   warm-up and then the measured window; responses completing inside the
//!   window are counted, and every response must be 200 (or, over the
//!   limit, 200 or 429).
//! - Runs are interleaved (run 1 of every configuration at every `C`, then
//!   run 2, …, rotating the order), so a burst of noise from other work on
//!   the machine spreads over configurations instead of hitting one. The
//!   report gives the median of the runs.
//! - The server threads' CPU time per request (from `/proc`) is reported
//!   beside throughput: it moves less than throughput when other work
//!   competes for the cores, and it is the cost the question is about
//!   once the server's core is saturated.
//! - For Redis configurations, `MONITOR` counts the commands one request
//!   sends, over a few hundred sequential requests after the measurements.

mod apps;
mod configs;
mod cpu;
mod load;
mod options;
mod redis_cpu;
mod report;
mod round_trips;
mod stacks;
mod stats;

use std::collections::BTreeMap;
use std::process::ExitCode;

use apps::App;
use configs::Config;
use load::{Refusals, Window, LOAD_THREADS, SERVER_THREADS};
use options::Options;
use redis_cpu::RedisCpu;
use report::Results;
use round_trips::RoundTrips;
use stats::{Run, Summary};
use tokio::runtime::Runtime;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match Options::parse(args.clone()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let (server, load) = match (runtime(SERVER_THREADS), runtime(LOAD_THREADS)) {
        (Ok(server), Ok(load)) => (server, load),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("http_load: cannot build a Tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let load_average_before = load_average();

    let mut apps = Vec::new();
    let started = server.block_on(start_apps(&options, &mut apps));
    let outcome = started.and_then(|()| load.block_on(measure_all(&options, &apps)));
    server.block_on(purge(&apps));

    let code = match outcome {
        Ok((results, round_trips, refusals)) => {
            print_report(
                &options,
                &args,
                &apps,
                &results,
                &round_trips,
                &refusals,
                &load_average_before,
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("http_load FAILED: {error}");
            ExitCode::FAILURE
        }
    };
    load.shutdown_background();
    server.shutdown_background();
    code
}

fn runtime(name: &str) -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
}

// Starts every selected configuration; Redis ones are skipped with a note
// when REDIS_URL is unset or Redis is unreachable, unless
// TOLLGATE_REQUIRE_REDIS=1 (as in CI).
async fn start_apps(options: &Options, apps: &mut Vec<App>) -> Result<(), String> {
    let redis_url = std::env::var("REDIS_URL").ok();
    let redis_required = std::env::var("TOLLGATE_REQUIRE_REDIS").is_ok_and(|value| value == "1");
    for &config in &options.configs {
        if config.uses_redis() && redis_url.is_none() {
            if redis_required {
                return Err("TOLLGATE_REQUIRE_REDIS=1 but REDIS_URL is not set".into());
            }
            eprintln!("http_load: {} skipped: REDIS_URL is not set", config.name());
            continue;
        }
        match apps::start(config, redis_url.as_deref()).await {
            Ok(app) => apps.push(app),
            Err(error) if config.uses_redis() && !redis_required => {
                eprintln!("http_load: {} skipped: {error}", config.name());
            }
            Err(error) => return Err(format!("starting {}: {error}", config.name())),
        }
    }
    Ok(())
}

type Measured = (Results, Vec<(Config, RoundTrips)>, Vec<(Config, Refusals)>);

async fn measure_all(options: &Options, apps: &[App]) -> Result<Measured, String> {
    let window = Window {
        warmup: options.warmup,
        measure: options.measure,
    };
    if apps.is_empty() {
        return Err("no configuration could be started".into());
    }
    let mut redis_cpu = Vec::with_capacity(apps.len());
    for app in apps {
        redis_cpu.push(match &app.redis_url {
            Some(url) => Some(RedisCpu::connect(url).await?),
            None => None,
        });
    }
    let mut runs: BTreeMap<(usize, usize), Vec<Run>> = BTreeMap::new();
    let mut refusals = vec![Refusals::default(); apps.len()];
    for run in 0..options.runs {
        for (step, &connections) in options.connections.iter().enumerate() {
            // Rotate who goes first, so no configuration always follows another.
            let first = (run + step) % apps.len();
            for index in (0..apps.len()).map(|offset| (first + offset) % apps.len()) {
                let app = &apps[index];
                let name = app.config.name();
                let failed = |error| format!("{name} at C={connections}, run {}: {error}", run + 1);
                let redis_before = match &mut redis_cpu[index] {
                    Some(redis) => Some(redis.used().await.map_err(failed)?),
                    None => None,
                };
                let sample = load::measure(&app.target, connections, window).await.map_err(failed)?;
                let redis_used = match (&mut redis_cpu[index], redis_before) {
                    (Some(redis), Some(before)) => Some(redis.used().await.map_err(failed)?.saturating_sub(before)),
                    _ => None,
                };
                refusals[index].add(&sample.refusals);
                let figures = Run::of(&sample, window.measure, redis_used);
                eprintln!(
                    "run {}/{} C={connections:<3} {name:<12} {:>8.0} req/s  p50 {:.3} ms  p99 {:.3} ms",
                    run + 1,
                    options.runs,
                    figures.rps,
                    figures.p50_ms,
                    figures.p99_ms,
                );
                runs.entry((index, connections)).or_default().push(figures);
            }
        }
    }
    let rows = runs
        .iter()
        .map(|(&(index, connections), runs)| (apps[index].config, connections, Summary::of(runs)))
        .collect();

    let requests = if options.smoke { 20 } else { 300 };
    let mut round_trips = Vec::new();
    for app in apps {
        if let (Some(stores), Some(url)) = (&app.redis, &app.redis_url) {
            let counted = round_trips::count(url, stores.key_prefix(), &app.target, requests)
                .await
                .map_err(|error| format!("counting {}'s Redis round trips: {error}", app.config.name()))?;
            round_trips.push((app.config, counted));
        }
    }
    let refusals = apps
        .iter()
        .zip(refusals)
        .filter(|(app, _)| app.config.over_limit())
        .map(|(app, refusals)| (app.config, refusals))
        .collect();
    Ok((Results { rows }, round_trips, refusals))
}

async fn purge(apps: &[App]) {
    for app in apps {
        if let Some(stores) = &app.redis {
            match stores.purge().await {
                Ok(deleted) => eprintln!("http_load: {}: purged {deleted} Redis keys", app.config.name()),
                Err(error) => eprintln!(
                    "http_load: {}: could not purge prefix {:?}: {error}",
                    app.config.name(),
                    stores.key_prefix()
                ),
            }
        }
    }
}

fn print_report(
    options: &Options,
    args: &[String],
    apps: &[App],
    results: &Results,
    round_trips: &[(Config, RoundTrips)],
    refusals: &[(Config, Refusals)],
    load_average_before: &str,
) {
    let configs: Vec<Config> = apps.iter().map(|app| app.config).collect();
    let passed: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|arg| *arg != "--bench")
        .collect();
    let command = if passed.is_empty() {
        "cargo bench -p tollgate-tests --bench http_load".to_owned()
    } else {
        format!(
            "cargo bench -p tollgate-tests --bench http_load -- {}",
            passed.join(" ")
        )
    };
    println!();
    if options.smoke {
        println!("(smoke check, not a measurement: run it with `cargo bench` for figures)");
    }
    println!("### End-to-end HTTP load over loopback (`http_load`)\n");
    println!("`{command}`\n");
    println!(
        "Machine: {} CPUs ({}), {}; load average {} before, {} after.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        rustc_version(),
        load_average_before,
        load_average(),
    );
    println!(
        "Server: axum on a 1-worker Tokio runtime; load: hyper HTTP/1.1 keep-alive clients on another \
         1-worker runtime, closed loop; GET with a bearer key (10,000 keys round-robin), 200 `pong`. Warm-up {} ms, window {} ms, \
         median of {} interleaved runs. `server CPU µs/req` is the server threads' CPU time per response \
         (the steadier figure when other work shares the cores); `server busy` / `load busy` are the \
         server's and load generator's CPU share of the window (100% = one core).\n",
        options.warmup.as_millis(),
        options.measure.as_millis(),
        options.runs,
    );
    for config in &configs {
        println!("- `{}`: {}", config.name(), config.describe());
    }
    println!();
    print!("{}", results.table(&configs, &options.connections));
    println!();
    for (top, bottom) in [
        (Config::Full, Config::Bare),
        (Config::Governor, Config::Bare),
        (Config::Memory, Config::Bare),
        (Config::Redis, Config::Memory),
        (Config::RedisCached, Config::Memory),
        (Config::FullRedis, Config::Full),
        (Config::FullRedisFleet, Config::Full),
        (Config::RedisOverLimit, Config::MemoryOverLimit),
        (Config::RedisOverLimitRefusalCache, Config::RedisOverLimit),
    ] {
        let ratios = results.throughput_ratios(top, bottom, &options.connections);
        if ratios.is_empty() {
            continue;
        }
        let listed: Vec<String> = ratios.iter().map(|(c, ratio)| format!("C={c}: {ratio:.2}")).collect();
        println!("- throughput {} / {}: {}", top.name(), bottom.name(), listed.join(", "));
    }
    for redis in [Config::Redis, Config::RedisCached] {
        if let Some((_, ratio)) = results.throughput_ratios(redis, Config::Memory, &[64]).first() {
            let verdict = if *ratio >= 0.5 { "met" } else { "NOT met" };
            println!(
                "- Redis aim ({} ≥ 50% of memory at C=64): {ratio:.2}, {verdict}",
                redis.name()
            );
        }
    }
    for &config in &configs {
        let per_c: Vec<String> = options
            .connections
            .iter()
            .filter_map(|&c| {
                let us = results.get(config, c)?.median.redis_us_per_request?;
                Some(format!("C={c}: {us:.1} µs"))
            })
            .collect();
        if !per_c.is_empty() {
            println!(
                "- redis-server CPU per request, `{}` (INFO cpu over each whole measurement): {}",
                config.name(),
                per_c.join(", ")
            );
        }
    }
    for (config, seen) in refusals {
        println!(
            "- over the limit, `{}` (every run, warm-up included): {} responses 200 and {} 429; \
             of {} series judged exactly, {} answered 200 where the plans allow exactly {}; \
             {} series not judged (a slow response or a key reused before it refilled)",
            config.name(),
            seen.admitted,
            seen.limited,
            seen.exact_series,
            seen.exact_admitted,
            seen.expected_admitted,
            seen.unjudged_series,
        );
    }
    for (config, counted) in round_trips {
        println!(
            "- Redis commands per request, `{}` ({} sequential requests, MONITOR): {:.2} round trips ({}); \
             inside scripts on its keys: {}",
            config.name(),
            counted.requests,
            counted.per_request(),
            RoundTrips::describe(&counted.sent, counted.requests),
            RoundTrips::describe(&counted.in_scripts, counted.requests),
        );
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn rustc_version() -> String {
    std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map_or_else(|| "rustc unknown".into(), |text| text.trim().to_owned())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}
