//! Alerts on Redis: the store conforms, and two instances sharing it send
//! each alert once.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tollgate_core::alerts::{Alert, AlertStore, Alerts};
use tollgate_core::rate_limit::Usage;
use tollgate_redis::testing::TestRedis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_store_conforms() {
    let Some(redis) = TestRedis::connect("alert_store_conforms").await else {
        return;
    };
    tollgate_core::conformance::alert_store(&redis.stores.alert_store()).await;
    redis.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_send_each_alert_once() {
    let Some(redis) = TestRedis::connect("two_instances_send_each_alert_once").await else {
        return;
    };
    let other = redis.another_instance().await;
    let received: Arc<Mutex<Vec<(usize, &'static str)>>> = Arc::default();
    let instance = |n: usize, store: Arc<dyn AlertStore>| {
        let received = Arc::clone(&received);
        Alerts::builder()
            .store(store)
            .auth_failure_burst(3, Duration::from_secs(3_600))
            .build(move |alert: Alert| {
                received.lock().unwrap().push((n, alert.kind()));
                async {}
            })
    };
    let (one, one_worker) = instance(1, Arc::new(redis.stores.alert_store()));
    let (two, two_worker) = instance(2, Arc::new(other.alert_store()));
    let one_worker = tokio::spawn(one_worker.run());
    let two_worker = tokio::spawn(two_worker.run());
    // Both instances see the key pass 80% and then spend the quota, and
    // both see a burst of 401s from one address, concurrently.
    let usage = |remaining| Usage {
        limit: 10,
        remaining,
        reset: Duration::from_secs(3_600),
    };
    let attacker: IpAddr = "198.51.100.9".parse().unwrap();
    let tasks: Vec<_> = [one.clone(), two.clone()]
        .into_iter()
        .map(|alerts| {
            tokio::spawn(async move {
                for remaining in [2, 1, 0, 0] {
                    alerts.daily_usage("acct_1", "key_1", &usage(remaining));
                }
                for _ in 0..5 {
                    alerts.auth_failure(attacker);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    drop((one, two));
    one_worker.await.unwrap();
    two_worker.await.unwrap();
    let mut kinds: Vec<&str> = received.lock().unwrap().iter().map(|(_, kind)| *kind).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["auth_failures", "quota_100", "quota_80"],
        "once per fleet: {received:?}"
    );
    redis.cleanup().await;
}

// Every Redis operation records its latency under its method's name.
#[tokio::test(flavor = "current_thread")]
async fn store_operations_record_their_latency() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tollgate_core::replay::ReplayStore;

    let Some(redis) = TestRedis::connect("store_operations_record_their_latency").await else {
        return;
    };
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    {
        // One thread runs the test: the recorder sees its every operation.
        let _local = metrics::set_default_local_recorder(&recorder);
        let store = redis.stores.alert_store();
        assert!(store.first("latency", Duration::from_secs(60)).await.unwrap());
        assert!(!store.first("latency", Duration::from_secs(60)).await.unwrap());
        let replay = redis.stores.replay_store();
        assert!(replay
            .check_and_remember("sender", "msg", Duration::from_secs(60))
            .await
            .unwrap());
    }
    let mut histograms: Vec<(String, usize)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == tollgate_core::metrics::STORE_DURATION)
        .map(|(key, _, _, value)| {
            let labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let DebugValue::Histogram(samples) = value else {
                panic!("a histogram")
            };
            assert!(samples
                .iter()
                .all(|seconds| seconds.into_inner() > 0.0 && seconds.into_inner() < 2.0));
            (labels.join(","), samples.len())
        })
        .collect();
    histograms.sort();
    assert_eq!(
        histograms,
        [
            ("store=redis,operation=check_and_remember".to_owned(), 1),
            ("store=redis,operation=first".to_owned(), 2),
        ]
    );
    redis.cleanup().await;
}
