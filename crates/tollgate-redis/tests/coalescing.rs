//! Concurrent rate-limit checks on one connection go to Redis in batches,
//! and every limit stays exact. Counted with `INFO commandstats` (script
//! calls) and `MONITOR` (the checks in each call: its number of keys) on a
//! redis-server of this test's own, so nobody else's calls are counted.
//!
//! Without `redis-server` on `PATH` it prints a skip line and passes, unless
//! `TOLLGATE_REQUIRE_REDIS=1`.

mod servers;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use servers::Servers;
use tollgate_core::rate_limit::{Limits, RateLimitStore};
use tollgate_redis::{RedisConfig, RedisStores};

const TASKS: usize = 96;
const CHECKS_PER_TASK: usize = 15;
const KEYS: usize = 4;
const BURST: u32 = 60;
const MAX_BATCH: usize = 64;

// How many times Redis ran a script (`EVALSHA` and `EVAL` calls).
async fn script_calls(url: &str) -> usize {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .unwrap();
    info.lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| line.split("calls=").nth(1)?.split(',').next()?.parse::<usize>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_share_script_calls_and_admit_exactly_the_plan() {
    if !servers::available("concurrent_checks_share_script_calls_and_admit_exactly_the_plan") {
        return;
    }
    let server = tokio::task::spawn_blocking(|| Servers::start(1, &[])).await.unwrap();
    let url = server.urls().remove(0);
    let stores = RedisStores::connect(RedisConfig::new(url.clone()).operation_timeout(Duration::from_secs(5)))
        .await
        .expect("connect to the test's server");
    // A burst of 60 and one request regained every 1,000 s: within the
    // test, exactly 60 admissions per key, whatever the interleaving.
    let limits = Limits::new(1, Duration::from_secs(1_000)).with_burst(BURST);
    let store = stores.rate_limit_store();
    // Loads the script, so that the count below is of checks alone.
    assert!(store.check("warm-up", &limits, 1).await.unwrap().is_allowed());
    let before = script_calls(&url).await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let monitor = client.get_async_monitor().await.unwrap();
    let mut lines = monitor.into_on_message::<String>();

    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            // Half the tasks on a store of their own from the same stores:
            // they share one queue.
            let store = if task % 2 == 0 {
                store.clone()
            } else {
                stores.rate_limit_store()
            };
            tokio::spawn(async move {
                let mut admitted: HashMap<String, usize> = HashMap::new();
                for check in 0..CHECKS_PER_TASK {
                    let key = format!("key{}", (task + check) % KEYS);
                    let decision = store.check(&key, &limits, 1).await.expect("no fault");
                    *admitted.entry(key).or_default() += usize::from(decision.is_allowed());
                }
                admitted
            })
        })
        .collect();
    let mut admitted: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        for (key, count) in task.await.unwrap() {
            *admitted.entry(key).or_default() += count;
        }
    }
    let calls = script_calls(&url).await - before;
    let checks = TASKS * CHECKS_PER_TASK;

    // `<time> [<db> <client>] "EVALSHA" "<sha>" "<number of keys>" …`: one line per call.
    let mut batches = Vec::new();
    let read = async {
        while batches.len() < calls {
            let line = lines.next().await.expect("MONITOR goes on");
            let mut quoted = line.split('"').skip(1).step_by(2);
            if quoted
                .next()
                .is_some_and(|command| command.eq_ignore_ascii_case("evalsha"))
            {
                let keys: usize = quoted.nth(1).and_then(|n| n.parse().ok()).expect("a key count");
                batches.push(keys);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("MONITOR shows every call");
    assert_eq!(batches.iter().sum::<usize>(), checks, "every check in exactly one call");
    let largest = batches.iter().max().copied().unwrap_or_default();
    assert!(largest <= MAX_BATCH, "a call of {largest} checks");
    assert!(largest > 1, "concurrent checks shared a call");

    let expected: HashMap<String, usize> = (0..KEYS).map(|k| (format!("key{k}"), BURST as usize)).collect();
    assert_eq!(admitted, expected, "exactly the burst of every key");
    println!("{checks} checks in {calls} script calls, at most {largest} in one");
    assert!(calls < checks, "{checks} checks took {calls} script calls");
    assert!(
        calls >= checks.div_ceil(MAX_BATCH),
        "{calls} calls for {checks} checks: more than {MAX_BATCH} in one"
    );
    drop(server);
}
