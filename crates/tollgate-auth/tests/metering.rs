//! What the auth layer reports: outcomes as metrics, read back through a
//! test recorder, and its alerts — a burst of 401s from one address, a key
//! used from a new network, a key past its rotation age — through the layer.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, Response};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tollgate_auth::{BearerAuthLayer, KeyManager, NewKey};
use tollgate_core::alerts::{Alert, Alerts};
use tollgate_core::keys::MemoryKeyStore;
use tollgate_core::{ClientIp, KeyKind, ManualClock};
use tower::{Layer, ServiceExt};

type Body = Full<Bytes>;
type Received = Arc<Mutex<Vec<Alert>>>;

fn request(token: &str, from: &str) -> Request<Body> {
    let mut request = Request::post("/v1/messages")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::default())
        .unwrap();
    request
        .extensions_mut()
        .insert(ClientIp(from.parse::<IpAddr>().unwrap()));
    request
}

fn kinds(received: &Received) -> Vec<&'static str> {
    received.lock().unwrap().iter().map(Alert::kind).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn outcomes_are_counted_and_alerts_fire_once_per_window() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The test runs on one thread, so the local recorder sees every report.
    let _local = metrics::set_default_local_recorder(&recorder);

    // On an hour boundary, so the 401s below fall in one burst window.
    let clock = ManualClock::at_unix_secs(1_800_000_000);
    let store = MemoryKeyStore::new();
    let manager = KeyManager::new(store.clone()).clock(clock.clone());
    let created = manager
        .create(NewKey::new("acct_1", KeyKind::Production))
        .await
        .unwrap();
    let reader = manager.create(NewKey::new("acct_1", KeyKind::ReadOnly)).await.unwrap();
    let received = Received::default();
    let (alerts, worker) = Alerts::builder()
        .clock(clock.clone())
        .auth_failure_burst(3, Duration::from_secs(3_600))
        .build({
            let received = Arc::clone(&received);
            move |alert: Alert| {
                received.lock().unwrap().push(alert);
                async {}
            }
        });
    let service = BearerAuthLayer::new(store)
        .clock(clock.clone())
        .alerts(alerts)
        .layer(tower::service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::from("sent")))
        }));
    let send = |token: &str, from: &str| service.clone().oneshot(request(token, from));
    let key = created.secret.expose_secret().to_owned();

    // The first use does not alert.
    assert_eq!(send(&key, "203.0.113.7").await.unwrap().status(), 200);
    assert_eq!(send(&key, "203.0.113.7").await.unwrap().status(), 200);
    worker.drain().await;
    assert_eq!(kinds(&received), Vec::<&str>::new());

    // Five wrong keys from one address: one alert, at the third.
    for _ in 0..5 {
        assert_eq!(send("tg_live_wrong", "198.51.100.9").await.unwrap().status(), 401);
    }
    worker.drain().await;
    assert_eq!(kinds(&received), ["auth_failures"]);

    // The key from another network (one /64), twice: one alert.
    assert_eq!(send(&key, "2001:db8:5::1").await.unwrap().status(), 200);
    assert_eq!(send(&key, "2001:db8:5::2").await.unwrap().status(), 200);
    worker.drain().await;
    assert_eq!(kinds(&received), ["auth_failures", "new_ip"]);

    // Ninety days on, the key still in use is due for rotation: once that
    // day. Unused there for ninety days, its first network is new again.
    clock.advance(Duration::from_secs(90 * 86_400));
    assert_eq!(send(&key, "203.0.113.7").await.unwrap().status(), 200);
    assert_eq!(send(&key, "203.0.113.7").await.unwrap().status(), 200);
    worker.drain().await;
    assert_eq!(kinds(&received), ["auth_failures", "new_ip", "rotation_due", "new_ip"]);
    let Alert::RotationDue { key_id, .. } = received.lock().unwrap()[2].clone() else {
        panic!("a rotation alert")
    };
    assert_eq!(key_id, created.info.id);

    // A read-only key writing is forbidden.
    let reader = reader.secret.expose_secret().to_owned();
    assert_eq!(send(&reader, "203.0.113.7").await.unwrap().status(), 403);

    let mut counters: Vec<(String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(count) if key.key().name() == tollgate_core::metrics::REQUESTS => {
                let labels: Vec<String> = key
                    .key()
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                Some((labels.join(","), count))
            }
            _ => None,
        })
        .collect();
    counters.sort();
    assert_eq!(
        counters,
        [
            ("layer=auth,outcome=allowed".to_owned(), 6),
            ("layer=auth,outcome=forbidden".to_owned(), 1),
            ("layer=auth,outcome=unauthorized".to_owned(), 5),
        ]
    );
}
