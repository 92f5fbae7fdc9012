//! What the rate-limit layer reports: its outcomes as metrics, read back
//! through a test recorder, and the daily-quota alerts at 80% and 100%.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tollgate_core::alerts::{Alert, Alerts};
use tollgate_core::rate_limit::{MemoryRateLimitStore, Plan};
use tollgate_core::{KeyKind, ManualClock, Principal};
use tollgate_ratelimit::{Plans, RateLimitLayer};
use tower::{Layer, ServiceExt};

const T0: u64 = 1_700_000_000;

type Body = Full<Bytes>;

fn request() -> Request<Body> {
    let mut request = Request::new(Body::default());
    request
        .extensions_mut()
        .insert(Principal::new("acct_1", "key_1", KeyKind::Production).with_plan("small"));
    request
}

#[tokio::test(flavor = "current_thread")]
async fn outcomes_are_counted_and_the_quota_alerts_fire_once() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The test runs on one thread, so the local recorder sees every report.
    let _local = metrics::set_default_local_recorder(&recorder);

    let clock = ManualClock::at_unix_secs(T0);
    let received: Arc<Mutex<Vec<Alert>>> = Arc::default();
    let (alerts, worker) = Alerts::builder().clock(clock.clone()).build({
        let received = Arc::clone(&received);
        move |alert: Alert| {
            received.lock().unwrap().push(alert);
            async {}
        }
    });
    // A plan of five requests a day.
    let plans = Plans::empty().with(Plan::new("small", 100).with_daily_quota(Some(5)));
    let layer = RateLimitLayer::new(MemoryRateLimitStore::new().with_clock(clock.clone()))
        .plans(plans)
        .alerts(alerts);
    let service = layer.layer(tower::service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("sent")))
    }));

    let mut statuses = Vec::new();
    let mut kinds = Vec::new();
    for _ in 0..8 {
        statuses.push(service.clone().oneshot(request()).await.unwrap().status().as_u16());
        worker.drain().await;
        kinds.push(
            received
                .lock()
                .unwrap()
                .iter()
                .map(Alert::kind)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    assert_eq!(
        kinds,
        [
            "",
            "",
            "",
            "quota_80",
            "quota_80,quota_100",
            "quota_80,quota_100",
            "quota_80,quota_100",
            "quota_80,quota_100"
        ],
        "80% at the fourth request, 100% at the fifth, once each"
    );
    let Alert::Quota { used, limit, .. } = &received.lock().unwrap()[0] else {
        panic!("a quota alert")
    };
    assert_eq!((*used, *limit), (4, 5));

    let mut counters: Vec<(String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(count) => {
                let labels: Vec<String> = key
                    .key()
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                Some((format!("{}{{{}}}", key.key().name(), labels.join(",")), count))
            }
            _ => None,
        })
        .collect();
    counters.sort();
    assert_eq!(
        counters,
        [
            ("tollgate_alerts_total{kind=quota_100}".to_owned(), 1),
            ("tollgate_alerts_total{kind=quota_80}".to_owned(), 1),
            (
                "tollgate_requests_total{layer=rate_limit,outcome=allowed}".to_owned(),
                5
            ),
            (
                "tollgate_requests_total{layer=rate_limit,outcome=daily_quota_exhausted}".to_owned(),
                3
            ),
        ]
    );
}
