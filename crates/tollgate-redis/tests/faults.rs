//! A Redis that is down or hangs: every operation fails fast as
//! `Backend`/`Timeout`, never panics, never hangs. (Recovery after Redis
//! comes back is proven end to end in tests/tests/redis_faults.rs.)

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tollgate_core::allowlist::AllowlistStore;
use tollgate_core::idempotency::{Fingerprint, IdempotencyKey, IdempotencyStore};
use tollgate_core::keys::{KeyHash, KeyRecord, KeyRegistry, KeyStore, Rotation};
use tollgate_core::rate_limit::{Limits, RateLimitStore};
use tollgate_core::replay::ReplayStore;
use tollgate_core::{KeyKind, Principal, StoreError};
use tollgate_redis::{RedisConfig, RedisStores};

const OPERATION_TIMEOUT: Duration = Duration::from_millis(100);

// A loopback port with nothing listening on it.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

// A "server" that accepts connections and reads forever without answering:
// Redis stalled (a long script, swapping, a network black hole).
async fn black_hole() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buffer = [0u8; 1024];
                while matches!(socket.read(&mut buffer).await, Ok(n) if n > 0) {}
            });
        }
    });
    (port, task)
}

fn config(port: u16) -> RedisConfig {
    RedisConfig::new(format!("redis://127.0.0.1:{port}"))
        .operation_timeout(OPERATION_TIMEOUT)
        .connection_timeout(Duration::from_millis(300))
}

fn successor() -> KeyRecord {
    KeyRecord {
        principal: Principal::new("acct_1", "key_2", KeyKind::Production),
        hash: KeyHash::from_bytes([2; 32]),
        label: "Production Server".into(),
        display_prefix: "tg_live_ab".into(),
        created_at: std::time::SystemTime::now(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

// One operation of every store, each expected to fail as unavailable.
async fn every_store_fails(stores: &RedisStores, expect: fn(&StoreError) -> bool) {
    let key = IdempotencyKey::new("scope", "key");
    let results: Vec<(&str, Result<(), StoreError>)> = vec![
        (
            "key",
            stores
                .key_store()
                .find_by_hash(&KeyHash::from_bytes([1; 32]))
                .await
                .map(drop),
        ),
        (
            "key insert",
            stores
                .key_store()
                .revoke("key_1", std::time::SystemTime::now())
                .await
                .map(drop),
        ),
        (
            "key rotate",
            stores
                .key_store()
                .rotate(Rotation::new(
                    "key_1",
                    successor(),
                    std::time::SystemTime::now(),
                    std::time::SystemTime::now(),
                ))
                .await
                .map(drop),
        ),
        (
            "rate limit",
            stores
                .rate_limit_store()
                .check("k", &Limits::per_second(10), 1)
                .await
                .map(drop),
        ),
        (
            "idempotency",
            stores
                .idempotency_store()
                .begin(&key, Fingerprint::from_bytes([0; 32]), Duration::from_secs(1))
                .await
                .map(drop),
        ),
        (
            "allowlist",
            stores.allowlist_store().allowlists("a", "k").await.map(drop),
        ),
        (
            "replay",
            stores
                .replay_store()
                .check_and_remember("sender", "m", Duration::from_secs(1))
                .await
                .map(drop),
        ),
        ("ping", stores.ping().await),
    ];
    for (store, result) in results {
        match result {
            Err(error) => assert!(expect(&error), "{store}: unexpected {error:?}"),
            Ok(()) => panic!("{store}: succeeded without a server"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_fails_every_operation_fast() {
    let port = closed_port().await;
    let started = Instant::now();
    let error = RedisStores::connect(config(port)).await.expect_err("nothing listens");
    assert!(error.is_unavailable(), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "connect gives up within its timeout"
    );

    let stores = RedisStores::connect_lazy(config(port)).expect("lazy stores need no server");
    let started = Instant::now();
    every_store_fails(&stores, StoreError::is_unavailable).await;
    // Eight operations, each bounded by the operation timeout.
    assert!(
        started.elapsed() < OPERATION_TIMEOUT * 8 + Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out_without_hanging() {
    let (port, server) = black_hole().await;
    let stores = RedisStores::connect_lazy(config(port)).unwrap();
    let started = Instant::now();
    every_store_fails(&stores, |error| matches!(error, StoreError::Timeout)).await;
    assert!(
        started.elapsed() < OPERATION_TIMEOUT * 8 + Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    // Many concurrent requests: all time out together, none waits for another.
    let started = Instant::now();
    let checks = (0..200).map(|_| {
        let store = stores.rate_limit_store();
        tokio::spawn(async move { store.check("k", &Limits::per_second(10), 1).await })
    });
    let checks: Vec<_> = checks.collect();
    for check in checks {
        assert!(matches!(check.await.unwrap(), Err(StoreError::Timeout)));
    }
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    server.abort();
}
