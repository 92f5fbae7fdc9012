//! The webhook outbox's claim, under real concurrency on each backend:
//! every due event is claimed by exactly one claimer, and a message's later
//! event is not due while its earlier one is pending.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use messaging_api::db::deliveries::{Outgoing, SqlDeliveries};
use messaging_api::db::Database;
use support::{postgres_url, TempDir, TestDatabase};

const MESSAGES: usize = 40;

fn claims_are_exclusive_and_ordered(url: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = Database::connect(url, Duration::from_secs(10)).await.unwrap();
        let outbox = SqlDeliveries::new(db);
        for message in 0..MESSAGES {
            let events: Vec<Outgoing> = (0..2)
                .map(|seq| Outgoing {
                    event_id: format!("evt_{message}_{seq}"),
                    account_id: "acct".into(),
                    message_id: format!("msg_{message}"),
                    seq,
                    url: "http://127.0.0.1:9/".into(),
                    body: "{}".into(),
                })
                .collect();
            outbox.enqueue(&events, 1_000).await.unwrap();
        }
        let claimed = Arc::new(Mutex::new(Vec::new()));
        let mut claimers = Vec::new();
        for claimer in 0..8 {
            let (outbox, claimed) = (outbox.clone(), claimed.clone());
            claimers.push(tokio::spawn(async move {
                let owner = format!("owner_{claimer}");
                let mut idle = 0;
                // Claim, then finish, until nothing is due several times running.
                while idle < 20 {
                    match outbox.claim(&owner, 2_000, 60_000).await.unwrap() {
                        Some(event) => {
                            idle = 0;
                            claimed.lock().unwrap().push(event.event_id.clone());
                            outbox.finish(&event.event_id, &owner).await.unwrap();
                        }
                        None => {
                            idle += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            }));
        }
        for claimer in claimers {
            claimer.await.unwrap();
        }
        let claimed = claimed.lock().unwrap().clone();
        let distinct: HashSet<&String> = claimed.iter().collect();
        assert_eq!(claimed.len(), MESSAGES * 2, "every event claimed once: {claimed:?}");
        assert_eq!(distinct.len(), MESSAGES * 2);
        for message in 0..MESSAGES {
            let first = claimed.iter().position(|id| *id == format!("evt_{message}_0")).unwrap();
            let second = claimed.iter().position(|id| *id == format!("evt_{message}_1")).unwrap();
            assert!(first < second, "message {message}'s events out of order");
        }
        assert_eq!(outbox.pending().await.unwrap(), 0);

        // A lease that has not run out keeps an event from every other claimer.
        outbox
            .enqueue(
                &[Outgoing {
                    event_id: "evt_leased".into(),
                    account_id: "acct".into(),
                    message_id: "msg_leased".into(),
                    seq: 0,
                    url: "http://127.0.0.1:9/".into(),
                    body: "{}".into(),
                }],
                1_000,
            )
            .await
            .unwrap();
        let held = outbox.claim("a", 2_000, 1_000).await.unwrap().unwrap();
        assert_eq!(held.attempts, 1);
        assert!(
            outbox.claim("b", 2_999, 1_000).await.unwrap().is_none(),
            "still leased to a"
        );
        let retried = outbox
            .claim("b", 3_000, 1_000)
            .await
            .unwrap()
            .expect("the lease ran out");
        assert_eq!((retried.event_id.as_str(), retried.attempts), ("evt_leased", 2));
        outbox.finish("evt_leased", "a").await.unwrap();
        assert_eq!(outbox.pending().await.unwrap(), 1, "a no longer owns it");
        outbox.finish("evt_leased", "b").await.unwrap();
        assert_eq!(outbox.pending().await.unwrap(), 0);
    });
}

#[test]
fn sqlite_claims_are_exclusive_and_ordered() {
    let dir = TempDir::new("outbox");
    claims_are_exclusive_and_ordered(&dir.file("outbox.db"));
}

#[test]
fn postgres_claims_are_exclusive_and_ordered() {
    let Some(admin) = postgres_url("outbox") else { return };
    let database = TestDatabase::create(&admin, "outbox");
    claims_are_exclusive_and_ordered(&database.url);
}
