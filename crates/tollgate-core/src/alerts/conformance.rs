use std::time::{Duration, SystemTime};

use super::{AlertStore, NetworkUse};
use crate::conformance::{join_all, unique_name};

const WINDOW: Duration = Duration::from_secs(300);
const RECENT: Duration = Duration::from_secs(30 * 86_400);

/// The [`AlertStore`] conformance suite. Needs no manual clock: events are
/// fresh and live five minutes; network histories use explicit times.
pub async fn alert_store<S: AlertStore>(store: &S) {
    an_event_is_first_once_per_window(store).await;
    concurrent_sightings_of_one_event_have_exactly_one_first(store).await;
    a_short_window_ends(store).await;
    a_key_history_tells_first_use_known_and_new_networks(store).await;
    a_key_history_is_bounded_and_forgets_the_least_recent(store).await;
    histories_of_keys_are_apart(store).await;
}

async fn first<S: AlertStore>(store: &S, event: &str, window: Duration) -> bool {
    store.first(event, window).await.expect("first")
}

async fn an_event_is_first_once_per_window<S: AlertStore>(store: &S) {
    let event = unique_name("quota_80");
    assert!(first(store, &event, WINDOW).await, "the first sighting");
    assert!(!first(store, &event, WINDOW).await, "the second in the window");
    assert!(first(store, &format!("{event}x"), WINDOW).await, "another event");
}

async fn concurrent_sightings_of_one_event_have_exactly_one_first<S: AlertStore>(store: &S) {
    let event = unique_name("auth_failures");
    let sightings = join_all((0..16).map(|_| store.first(&event, WINDOW))).await;
    let firsts = sightings.iter().filter(|sighting| matches!(sighting, Ok(true))).count();
    assert_eq!(firsts, 1, "exactly one concurrent sighting is first: {sightings:?}");
}

async fn a_short_window_ends<S: AlertStore>(store: &S) {
    let event = unique_name("rotation_due");
    assert!(first(store, &event, Duration::from_millis(30)).await);
    // Real time: a network store expires on its own clock.
    std::thread::sleep(Duration::from_millis(80));
    assert!(first(store, &event, WINDOW).await, "first again once the window ended");
}

async fn record<S: AlertStore>(store: &S, key: &str, network: &str, at: SystemTime, capacity: usize) -> NetworkUse {
    store
        .record_network(key, network, at, RECENT, capacity)
        .await
        .expect("record_network")
}

fn day(n: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + n * 86_400)
}

async fn a_key_history_tells_first_use_known_and_new_networks<S: AlertStore>(store: &S) {
    let key = unique_name("key");
    assert_eq!(
        record(store, &key, "203.0.113.7/32", day(0), 64).await,
        NetworkUse::FirstUse
    );
    assert_eq!(
        record(store, &key, "203.0.113.7/32", day(1), 64).await,
        NetworkUse::Known
    );
    assert_eq!(record(store, &key, "2001:db8::/64", day(2), 64).await, NetworkUse::New);
    assert_eq!(
        record(store, &key, "2001:db8::/64", day(3), 64).await,
        NetworkUse::Known
    );
    // Thirty days after its last use (day 1) the first network is known...
    assert_eq!(
        record(store, &key, "203.0.113.7/32", day(31), 64).await,
        NetworkUse::Known
    );
    // ...and after more than thirty it is new again.
    assert_eq!(record(store, &key, "2001:db8::/64", day(34), 64).await, NetworkUse::New);
}

async fn a_key_history_is_bounded_and_forgets_the_least_recent<S: AlertStore>(store: &S) {
    let key = unique_name("key");
    let net = |n: u32| format!("198.51.100.{n}/32");
    for n in 0..4 {
        record(store, &key, &net(n), day(u64::from(n)), 3).await;
    }
    // Capacity 3: network 0, the least recently used, was forgotten.
    assert_eq!(record(store, &key, &net(3), day(5), 3).await, NetworkUse::Known);
    assert_eq!(record(store, &key, &net(0), day(5), 3).await, NetworkUse::New);
    // Recording network 0 again forgot network 1.
    assert_eq!(record(store, &key, &net(2), day(5), 3).await, NetworkUse::Known);
    assert_eq!(record(store, &key, &net(1), day(5), 3).await, NetworkUse::New);
}

async fn histories_of_keys_are_apart<S: AlertStore>(store: &S) {
    let (one, two) = (unique_name("key"), unique_name("key"));
    assert_eq!(
        record(store, &one, "192.0.2.1/32", day(0), 64).await,
        NetworkUse::FirstUse
    );
    assert_eq!(
        record(store, &two, "192.0.2.1/32", day(0), 64).await,
        NetworkUse::FirstUse
    );
    assert_eq!(record(store, &one, "192.0.2.2/32", day(0), 64).await, NetworkUse::New);
}
