use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

use super::*;
use crate::keys::{KeyHash, KeyRecord};
use crate::rate_limit::Usage;
use crate::{Clock, KeyKind, ManualClock, Principal};

const START: u64 = 1_800_000_000;

type Received = Arc<Mutex<Vec<Alert>>>;

// Alerts on a manual clock, whose sink keeps what it receives.
fn alerts(clock: &ManualClock, store: Arc<dyn AlertStore>) -> (Alerts, AlertWorker, Received) {
    let received = Received::default();
    let sink = {
        let received = Arc::clone(&received);
        move |alert: Alert| {
            received.lock().unwrap().push(alert);
            async {}
        }
    };
    let (alerts, worker) = Alerts::builder().clock(clock.clone()).store(store).build(sink);
    (alerts, worker, received)
}

fn store(clock: &ManualClock) -> Arc<dyn AlertStore> {
    Arc::new(MemoryAlertStore::new().with_clock(clock.clone()))
}

fn kinds(received: &Received) -> Vec<&'static str> {
    received.lock().unwrap().iter().map(Alert::kind).collect()
}

fn record(created: SystemTime) -> KeyRecord {
    KeyRecord {
        principal: Principal::new("acct_1", "key_1", KeyKind::Production),
        hash: KeyHash::from_bytes([7; 32]),
        label: "Production Server".into(),
        display_prefix: "sk_live_ab".into(),
        created_at: created,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test]
async fn quota_alerts_fire_at_80_and_100_percent_once_per_day() {
    let clock = ManualClock::at_unix_secs(START);
    let (alerts, worker, received) = alerts(&clock, store(&clock));
    // A plan of 10 a day; the reset is the time until 00:00 UTC.
    let reset = Duration::from_secs(86_400 - START % 86_400);
    let usage = |remaining| Usage {
        limit: 10,
        remaining,
        reset,
    };
    for remaining in (0..10).rev() {
        alerts.daily_usage("acct_1", "key_1", &usage(remaining));
        worker.drain().await;
        let expected: &[&str] = match remaining {
            3.. => &[],
            1..=2 => &["quota_80"],
            0 => &["quota_80", "quota_100"],
        };
        assert_eq!(kinds(&received), expected, "after {} used", 10 - remaining);
    }
    // Refused requests keep reporting 0 remaining: no more alerts today.
    for _ in 0..5 {
        alerts.daily_usage("acct_1", "key_1", &usage(0));
    }
    worker.drain().await;
    assert_eq!(kinds(&received), ["quota_80", "quota_100"]);
    assert_eq!(
        received.lock().unwrap()[0],
        Alert::Quota {
            account_id: "acct_1".into(),
            key_id: "key_1".into(),
            percent: 80,
            limit: 10,
            used: 8,
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(START),
        }
    );
    // The next quota day alerts again.
    clock.advance(reset + Duration::from_secs(3_600));
    alerts.daily_usage("acct_1", "key_1", &usage(0));
    worker.drain().await;
    assert_eq!(kinds(&received), ["quota_80", "quota_100", "quota_80", "quota_100"]);
}

#[tokio::test]
async fn a_burst_of_401s_from_one_address_alerts_once_per_window() {
    let clock = ManualClock::at_unix_secs(START - START % 60);
    let received = Received::default();
    let sink = {
        let received = Arc::clone(&received);
        move |alert: Alert| {
            received.lock().unwrap().push(alert);
            async {}
        }
    };
    let (alerts, worker) = Alerts::builder()
        .clock(clock.clone())
        .store(store(&clock))
        .auth_failure_burst(5, Duration::from_secs(60))
        .build(sink);
    let attacker = ip("198.51.100.9");
    for _ in 0..4 {
        alerts.auth_failure(attacker);
        alerts.auth_failure(ip("203.0.113.1"));
    }
    worker.drain().await;
    assert!(kinds(&received).is_empty(), "4 failures are not a burst");
    for _ in 0..20 {
        alerts.auth_failure(attacker);
    }
    worker.drain().await;
    assert_eq!(
        received.lock().unwrap().as_slice(),
        [Alert::AuthFailures {
            client_ip: attacker,
            failures: 5,
            window: Duration::from_secs(60),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(START - START % 60),
        }]
    );
    // A new window counts anew: 4 are not a burst, the 5th is.
    clock.advance(Duration::from_secs(60));
    for _ in 0..4 {
        alerts.auth_failure(attacker);
    }
    worker.drain().await;
    assert_eq!(kinds(&received), ["auth_failures"]);
    alerts.auth_failure(attacker);
    worker.drain().await;
    assert_eq!(kinds(&received), ["auth_failures", "auth_failures"]);
}

#[tokio::test]
async fn a_key_used_from_a_new_network_alerts_but_not_on_first_use() {
    let clock = ManualClock::at_unix_secs(START);
    let (alerts, worker, received) = alerts(&clock, store(&clock));
    let key = record(clock.now());
    let used_from = |text: &str| {
        alerts.key_used(&key, Some(ip(text)), clock.now());
    };
    used_from("203.0.113.7");
    used_from("2001:db8:1:2::1");
    used_from("2001:db8:1:2::ffff");
    worker.drain().await;
    let received_now = received.lock().unwrap().clone();
    assert_eq!(
        received_now,
        [Alert::NewNetwork {
            account_id: "acct_1".into(),
            key_id: "key_1".into(),
            client_ip: ip("2001:db8:1:2::1"),
            network: "2001:db8:1:2::/64".parse().unwrap(),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(START),
        }],
        "the first use does not alert; one /64 alerts once"
    );
    // Ten days on, both networks are known; a new address alerts.
    clock.advance(Duration::from_secs(10 * 86_400));
    alerts.key_used(&key, Some(ip("203.0.113.7")), clock.now());
    alerts.key_used(&key, Some(ip("2001:db8:1:2::7")), clock.now());
    alerts.key_used(&key, Some(ip("192.0.2.1")), clock.now());
    worker.drain().await;
    assert_eq!(kinds(&received), ["new_ip", "new_ip"]);
    // Forty days without the /64: it is new again.
    clock.advance(Duration::from_secs(40 * 86_400));
    alerts.key_used(&key, Some(ip("2001:db8:1:2::7")), clock.now());
    worker.drain().await;
    assert_eq!(kinds(&received), ["new_ip", "new_ip", "new_ip"]);
}

#[tokio::test]
async fn a_key_past_its_rotation_age_alerts_once_a_day() {
    let clock = ManualClock::at_unix_secs(START);
    let (alerts, worker, received) = alerts(&clock, store(&clock));
    let key = record(clock.now());
    clock.advance(Duration::from_secs(90 * 86_400 - 1));
    alerts.key_used(&key, None, clock.now());
    worker.drain().await;
    assert!(kinds(&received).is_empty(), "not yet 90 days old");
    clock.advance(Duration::from_secs(1));
    for _ in 0..10 {
        alerts.key_used(&key, None, clock.now());
    }
    worker.drain().await;
    assert_eq!(kinds(&received), ["rotation_due"]);
    clock.advance(Duration::from_secs(86_400));
    alerts.key_used(&key, None, clock.now());
    alerts.key_used(&key, None, clock.now());
    worker.drain().await;
    assert_eq!(kinds(&received), ["rotation_due", "rotation_due"]);
}

#[tokio::test]
async fn instances_sharing_a_store_send_each_alert_once() {
    let clock = ManualClock::at_unix_secs(START);
    let shared = store(&clock);
    let (one, one_worker, one_received) = alerts(&clock, Arc::clone(&shared));
    let (two, two_worker, two_received) = alerts(&clock, shared);
    let key = record(clock.now() - Duration::from_secs(100 * 86_400));
    one.key_used(&key, None, clock.now());
    two.key_used(&key, None, clock.now());
    one_worker.drain().await;
    two_worker.drain().await;
    let total = kinds(&one_received).len() + kinds(&two_received).len();
    assert_eq!(total, 1, "one rotation alert for the fleet");
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_waiting() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let clock = ManualClock::at_unix_secs(START);
    let (alerts, worker) = Alerts::builder()
        .clock(clock.clone())
        .queue_capacity(2)
        .build(|_: Alert| async {});
    metrics::with_local_recorder(&recorder, || {
        for n in 0..5u8 {
            alerts.auth_failure(IpAddr::from([192, 0, 2, n]));
        }
    });
    drop(worker);
    let _ = alerts;
    let snapshot = snapshotter.snapshot().into_vec();
    let dropped = snapshot
        .iter()
        .find(|(key, ..)| key.key().name() == crate::metrics::ALERTS_DROPPED)
        .map(|(.., value)| value);
    assert_eq!(dropped, None, "a burst of one per address needs 20 failures");
    let (alerts, _worker) = Alerts::builder()
        .clock(clock.clone())
        .queue_capacity(2)
        .auth_failure_burst(1, Duration::from_secs(60))
        .build(|_: Alert| async {});
    metrics::with_local_recorder(&recorder, || {
        for n in 0..5u8 {
            alerts.auth_failure(IpAddr::from([192, 0, 2, n]));
        }
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let dropped = snapshot
        .iter()
        .find(|(key, ..)| key.key().name() == crate::metrics::ALERTS_DROPPED)
        .map(|(.., value)| value);
    assert_eq!(dropped, Some(&DebugValue::Counter(3)), "two queued, three dropped");
}

#[tokio::test]
async fn the_worker_ends_when_every_handle_is_dropped() {
    let received = Received::default();
    let sink = {
        let received = Arc::clone(&received);
        move |alert: Alert| {
            received.lock().unwrap().push(alert);
            async {}
        }
    };
    let (alerts, worker) = Alerts::builder()
        .auth_failure_burst(1, Duration::from_secs(60))
        .build(sink);
    let running = tokio::spawn(worker.run());
    alerts.auth_failure(ip("192.0.2.1"));
    drop(alerts);
    running.await.unwrap();
    assert_eq!(kinds(&received), ["auth_failures"]);
}

#[tokio::test]
async fn the_memory_store_conforms() {
    crate::conformance::alert_store(&MemoryAlertStore::new()).await;
}

#[test]
fn networks_are_ipv4_addresses_and_ipv6_slash_64s() {
    assert_eq!(network_of(ip("203.0.113.7")).to_string(), "203.0.113.7/32");
    assert_eq!(network_of(ip("::ffff:203.0.113.7")).to_string(), "203.0.113.7/32");
    assert_eq!(network_of(ip("2001:db8:1:2:3:4:5:6")).to_string(), "2001:db8:1:2::/64");
}
