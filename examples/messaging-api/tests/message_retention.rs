//! Message retention: the database store deletes messages past their age,
//! then the oldest past the count limit.

mod support;

use std::time::{Duration, SystemTime};

use messaging_api::db::messages::SqlMessages;
use messaging_api::db::Database;
use messaging_api::messages::{Message, SendMessage, Text};
use support::TempDir;
use tollgate_core::Environment;

fn message(id: &str, at: SystemTime) -> Message {
    let request = SendMessage {
        to: "+15551234567".into(),
        kind: "text".into(),
        text: Some(Text { body: "hi".into() }),
    };
    Message::new(id.into(), request, "acct_a", Environment::Live, at)
}

#[test]
fn old_messages_go_then_the_oldest_past_the_count() {
    let dir = TempDir::new("retention");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = Database::connect(&dir.file("api.db"), Duration::from_secs(5))
            .await
            .unwrap();
        let store = SqlMessages::new(db);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let day = Duration::from_secs(86_400);
        // Ten messages, one a day, the newest today.
        for age in 0..10u32 {
            let at = now - day * age;
            store.insert(&message(&format!("msg_{age}"), at), at).await.unwrap();
        }
        assert_eq!(store.count().await.unwrap(), 10);
        // Older than 7 days: msg_8 and msg_9 go (msg_7 is exactly 7 days old).
        let deleted = store.prune(now, day * 7, 100).await.unwrap();
        assert_eq!(deleted, 2);
        assert_eq!(store.count().await.unwrap(), 8);
        // At most 5: the three oldest left go.
        assert_eq!(store.prune(now, day * 7, 5).await.unwrap(), 3);
        assert_eq!(store.count().await.unwrap(), 5);
        for age in 0..5 {
            let kept = store
                .get(&format!("msg_{age}"), "acct_a", Environment::Live)
                .await
                .unwrap();
            assert!(kept.is_some(), "msg_{age} is among the newest five");
        }
        assert!(store.get("msg_5", "acct_a", Environment::Live).await.unwrap().is_none());
        assert_eq!(store.prune(now, day * 7, 5).await.unwrap(), 0, "nothing more to delete");
    });
}
