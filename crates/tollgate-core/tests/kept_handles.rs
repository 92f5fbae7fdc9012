//! `metrics::keep_handles` is process-wide and for good, so it is tested in
//! a binary of its own, with a global recorder as an application has one.

use std::collections::BTreeMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tollgate_core::metrics::{self, Layer};

// The request counters since the last snapshot (taking one resets them), by
// their labels as `name=value` pairs joined with commas.
fn counts(snapshotter: &Snapshotter) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if let (metrics::REQUESTS, DebugValue::Counter(count)) = (key.key().name(), value) {
            let mut labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            counts.insert(labels.join(","), count);
        }
    }
    counts
}

fn expected(entries: &[(&str, u64)]) -> BTreeMap<String, u64> {
    entries
        .iter()
        .map(|(labels, count)| (labels.to_string(), *count))
        .collect()
}

#[test]
fn kept_handles_count_into_the_global_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder of this binary");
    metrics::keep_handles();

    for _ in 0..3 {
        metrics::allowed(Layer::Auth, "key_1");
    }
    metrics::unauthorized(Layer::Auth);
    metrics::rate_limited(Layer::RateLimit, Some("key_1"));
    // Only what was reported is a series.
    assert_eq!(
        counts(&snapshotter),
        expected(&[
            ("layer=auth,outcome=allowed", 3),
            ("layer=auth,outcome=unauthorized", 1),
            ("layer=rate_limit,outcome=rate_limited", 1),
        ])
    );

    // Key-id labels bypass the kept handles: one series per key.
    metrics::set_key_id_labels(true);
    metrics::allowed(Layer::Auth, "key_2");
    metrics::allowed(Layer::Auth, "key_2");
    metrics::unauthorized(Layer::Auth);
    metrics::set_key_id_labels(false);
    metrics::allowed(Layer::Auth, "key_2");
    assert_eq!(
        counts(&snapshotter),
        expected(&[
            ("key_id=key_2,layer=auth,outcome=allowed", 2),
            ("layer=auth,outcome=allowed", 1),
            ("layer=auth,outcome=unauthorized", 1),
            ("layer=rate_limit,outcome=rate_limited", 0),
        ])
    );

    // The handle is kept, not looked up: a local recorder set afterwards
    // does not see the series, its recorder at first use does.
    let local = DebuggingRecorder::new();
    let local_snapshotter = local.snapshotter();
    ::metrics::with_local_recorder(&local, || metrics::allowed(Layer::Auth, "key_1"));
    assert_eq!(counts(&local_snapshotter), expected(&[]));
    assert_eq!(counts(&snapshotter)["layer=auth,outcome=allowed"], 1);
}
