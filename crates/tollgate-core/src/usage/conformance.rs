use std::sync::Arc;
use std::time::SystemTime;

use super::{Day, DayUsage, UsageDelta, UsageStore};
use crate::clock::unix_secs;
use crate::conformance::{join_all, unique_name, SpawnedTask};

/// The [`UsageStore`] conformance suite. Uses today and the few days
/// before it on the system clock (within any store's retention), and fresh
/// key ids.
///
/// - Deltas add up, for the same key and day in one batch and across batches.
/// - Ranges are inclusive at both ends and oldest first; days without
///   usage (also a day that only got a delta of zeros) are left out; a range ending before it starts is empty.
/// - Keys are apart, also keys that share a prefix; an unknown key has no days.
/// - Concurrent batches (polled together) sum exactly.
pub async fn usage_store<S: UsageStore>(store: &S) {
    a_delta_is_read_back(store).await;
    deltas_for_the_same_key_and_day_add_up(store).await;
    ranges_are_inclusive_and_days_without_usage_are_omitted(store).await;
    keys_are_apart(store).await;
    concurrent_batches_sum_exactly(store).await;
}

/// Adds under real parallelism: 8 tasks spawned on a multi-thread runtime
/// over clones of `store`, each adding 25 batches for the same two keys over
/// two days, sum exactly. `spawn` is as for
/// [`key_limit_in_parallel`](crate::conformance::key_limit_in_parallel).
pub async fn usage_in_parallel<S, F>(store: &S, spawn: F)
where
    S: UsageStore + Clone,
    F: Fn(SpawnedTask) -> SpawnedTask,
{
    const TASKS: u64 = 8;
    const BATCHES: u64 = 25;
    let today = today();
    let yesterday = Day(today.0 - 1);
    let keys = Arc::new([unique_name("key"), unique_name("key")]);
    let tasks: Vec<SpawnedTask> = (0..TASKS)
        .map(|task| {
            let (store, keys) = (store.clone(), keys.clone());
            spawn(Box::pin(async move {
                for batch in 0..BATCHES {
                    let deltas = vec![
                        delta(&keys[0], today, 1, batch % 2),
                        delta(&keys[1], today, 2, 0),
                        delta(&keys[0], yesterday, task + 1, 1),
                        delta(&keys[0], today, 1, 0),
                    ];
                    store.add(deltas).await.expect("add");
                }
            }))
        })
        .collect();
    for task in tasks {
        task.await;
    }
    let rate_limited_today = TASKS * (BATCHES / 2);
    assert_eq!(
        days(store, &keys[0], yesterday, today).await,
        vec![
            usage(yesterday, BATCHES * (1..=TASKS).sum::<u64>(), TASKS * BATCHES),
            usage(today, 2 * TASKS * BATCHES, rate_limited_today),
        ]
    );
    assert_eq!(
        days(store, &keys[1], yesterday, today).await,
        vec![usage(today, 2 * TASKS * BATCHES, 0)]
    );
}

fn today() -> Day {
    Day::from_unix_secs(unix_secs(SystemTime::now()))
}

fn ago(days: u32) -> Day {
    Day(today().0 - days)
}

fn delta(key_id: &str, day: Day, requests: u64, rate_limited: u64) -> UsageDelta {
    UsageDelta {
        key_id: key_id.to_owned(),
        day,
        requests,
        rate_limited,
    }
}

fn usage(day: Day, requests: u64, rate_limited: u64) -> DayUsage {
    DayUsage {
        day,
        requests,
        rate_limited,
    }
}

async fn add<S: UsageStore>(store: &S, deltas: Vec<UsageDelta>) {
    store.add(deltas).await.expect("add");
}

async fn days<S: UsageStore>(store: &S, key_id: &str, from: Day, to: Day) -> Vec<DayUsage> {
    store.days(key_id, from, to).await.expect("days")
}

async fn a_delta_is_read_back<S: UsageStore>(store: &S) {
    let key = unique_name("key");
    assert_eq!(days(store, &key, ago(7), today()).await, vec![], "no usage yet");
    add(store, vec![delta(&key, today(), 3, 1)]).await;
    assert_eq!(days(store, &key, today(), today()).await, vec![usage(today(), 3, 1)]);
    add(store, vec![]).await;
    assert_eq!(
        days(store, &key, today(), today()).await,
        vec![usage(today(), 3, 1)],
        "an empty batch adds nothing"
    );
}

async fn deltas_for_the_same_key_and_day_add_up<S: UsageStore>(store: &S) {
    let key = unique_name("key");
    add(store, vec![delta(&key, today(), 5, 0), delta(&key, today(), 2, 2)]).await;
    assert_eq!(
        days(store, &key, today(), today()).await,
        vec![usage(today(), 7, 2)],
        "within one batch"
    );
    add(store, vec![delta(&key, today(), 10, 1)]).await;
    add(store, vec![delta(&key, today(), 0, 0), delta(&key, today(), 1, 0)]).await;
    assert_eq!(
        days(store, &key, today(), today()).await,
        vec![usage(today(), 18, 3)],
        "across batches"
    );
    // Large counts are not truncated.
    let big = u64::from(u32::MAX) * 3;
    add(store, vec![delta(&key, ago(1), big, big - 1)]).await;
    assert_eq!(
        days(store, &key, ago(1), ago(1)).await,
        vec![usage(ago(1), big, big - 1)]
    );
}

async fn ranges_are_inclusive_and_days_without_usage_are_omitted<S: UsageStore>(store: &S) {
    let key = unique_name("key");
    add(
        store,
        vec![
            delta(&key, today(), 1, 0),
            delta(&key, ago(4), 4, 4),
            delta(&key, ago(3), 0, 0),
            delta(&key, ago(2), 2, 1),
        ],
    )
    .await;
    let all = vec![usage(ago(4), 4, 4), usage(ago(2), 2, 1), usage(today(), 1, 0)];
    assert_eq!(
        days(store, &key, ago(4), today()).await,
        all,
        "both ends included, oldest first"
    );
    assert_eq!(days(store, &key, ago(10), today()).await, all);
    assert_eq!(days(store, &key, ago(3), ago(1)).await, vec![usage(ago(2), 2, 1)]);
    assert_eq!(
        days(store, &key, ago(2), ago(2)).await,
        vec![usage(ago(2), 2, 1)],
        "a one-day range"
    );
    assert_eq!(days(store, &key, ago(1), ago(1)).await, vec![], "a day without usage");
    assert_eq!(
        days(store, &key, ago(3), ago(3)).await,
        vec![],
        "a delta of nothing is no usage"
    );
    assert_eq!(
        days(store, &key, today(), ago(4)).await,
        vec![],
        "a range ending before it starts"
    );
}

async fn keys_are_apart<S: UsageStore>(store: &S) {
    let first = unique_name("key");
    let longer = format!("{first}0");
    let other = unique_name("key");
    add(
        store,
        vec![
            delta(&first, today(), 1, 0),
            delta(&longer, today(), 2, 0),
            delta(&other, ago(1), 3, 3),
        ],
    )
    .await;
    assert_eq!(days(store, &first, ago(1), today()).await, vec![usage(today(), 1, 0)]);
    assert_eq!(days(store, &longer, ago(1), today()).await, vec![usage(today(), 2, 0)]);
    assert_eq!(days(store, &other, ago(1), today()).await, vec![usage(ago(1), 3, 3)]);
    assert_eq!(
        days(store, &first.to_uppercase(), ago(1), today()).await,
        vec![],
        "ids are case-sensitive"
    );
    assert_eq!(days(store, &unique_name("key"), ago(30), today()).await, vec![]);
}

async fn concurrent_batches_sum_exactly<S: UsageStore>(store: &S) {
    let key = unique_name("key");
    let other = unique_name("key");
    let batches = (0..32u64).map(|n| store.add(vec![delta(&key, today(), n, n % 2), delta(&other, ago(1), 1, 0)]));
    for result in join_all(batches).await {
        result.expect("add");
    }
    assert_eq!(
        days(store, &key, ago(1), today()).await,
        vec![usage(today(), (0..32).sum(), 16)]
    );
    assert_eq!(days(store, &other, ago(1), today()).await, vec![usage(ago(1), 32, 0)]);
}
