//! Authentication lookups (`KeyStore::find_by_hash`) over 10,000 keys, keys
//! drawn round-robin: the `MemoryKeyStore`, and a `CachedKeyStore` in front
//! of the SQL key store on SQLite (a temporary file) and PostgreSQL
//! (`DATABASE_URL`), warm (every key cached, TTL one hour) and cold (TTL
//! zero: every lookup is a query).
//!
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p tollgate-sql --bench lookups -- --warm-up-time 1 --measurement-time 3
//!
//! Without `DATABASE_URL` the PostgreSQL cases are skipped.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate_core::keys::{CachedKeyStore, KeyHash, KeyRecord, KeyRegistry, KeyStore, MemoryKeyStore};
use tollgate_core::{KeyKind, Principal};
use tollgate_sql::testing::TestSql;

const KEYS: usize = 10_000;

fn hash_of(n: usize) -> KeyHash {
    let mut bytes = [0u8; 32];
    let mut x = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for chunk in bytes.chunks_mut(8) {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    KeyHash::from_bytes(bytes)
}

fn record(n: usize) -> KeyRecord {
    KeyRecord {
        principal: Principal::new(format!("acct_{}", n % 1000), format!("key_{n}"), KeyKind::Production),
        hash: hash_of(n),
        label: "Production Server".into(),
        display_prefix: "tg_live_abcd".into(),
        created_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

async fn fill<S: KeyRegistry + Clone>(store: &S) {
    // 16 writers at a time: fast enough on PostgreSQL, harmless on SQLite.
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(16) {
        let writes = chunk.iter().map(|&n| {
            let store = store.clone();
            tokio::spawn(async move { store.insert(record(n), None, SystemTime::now()).await })
        });
        for write in writes.collect::<Vec<_>>() {
            write.await.expect("finished").expect("insert");
        }
    }
}

fn lookups<S: KeyStore>(c: &mut Criterion, runtime: &tokio::runtime::Runtime, name: &str, store: &S) {
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let found = store.find_by_hash(&hash_of(i % KEYS)).await.expect("lookup");
                    assert!(found.is_some());
                }
                start.elapsed()
            })
        })
    });
}

async fn warm<S: KeyStore>(store: &S) {
    for n in 0..KEYS {
        store.find_by_hash(&hash_of(n)).await.expect("lookup").expect("known");
    }
}

fn sql_cases(c: &mut Criterion, runtime: &tokio::runtime::Runtime, label: &str, db: &TestSql) {
    runtime.block_on(fill(&db.key_store()));
    let warm_cache = CachedKeyStore::new(db.key_store()).ttl(Duration::from_secs(3600));
    runtime.block_on(warm(&warm_cache));
    assert_eq!(warm_cache.cached_entries(), KEYS);
    lookups(c, runtime, &format!("{label}/cached warm"), &warm_cache);
    let cold_cache = CachedKeyStore::new(db.key_store()).ttl(Duration::ZERO);
    lookups(c, runtime, &format!("{label}/cached cold (a query each)"), &cold_cache);
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");

    let memory = MemoryKeyStore::new();
    runtime.block_on(fill(&memory));
    lookups(c, &runtime, "memory store", &memory);

    let sqlite = runtime.block_on(TestSql::sqlite("bench_lookups"));
    sql_cases(c, &runtime, "sqlite", &sqlite);
    drop(sqlite);

    if let Some(postgres) = runtime.block_on(TestSql::postgres("bench_lookups")) {
        sql_cases(c, &runtime, "postgres", &postgres);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
