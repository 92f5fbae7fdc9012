//! Every store on a Redis Cluster: this test starts its own three-master
//! cluster on free loopback ports (`redis-server` and `redis-cli` from
//! `PATH`), runs every conformance suite and the fleet tests on it, and
//! stops it, also when a suite fails (a guard kills the servers on drop).
//!
//! Without `redis-server` on `PATH` it prints a skip line and passes, unless
//! `TOLLGATE_REQUIRE_REDIS=1`.

mod fleet;
mod servers;

use std::process::{Command, Stdio};
use std::time::Duration;

use servers::{cli, wait_for, Servers};
use tollgate_core::conformance::unique_name;
use tollgate_redis::testing::TestRedis;
use tollgate_redis::RedisConfig;

const MASTERS: usize = 3;
// The suites, once the cluster serves, end within this.
const BOUND: Duration = Duration::from_secs(180);

/// Three `redis-server --cluster-enabled yes` joined into one cluster.
fn start_cluster() -> Servers {
    let servers = Servers::start(
        MASTERS,
        &[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "{dir}/nodes-{port}.conf",
        ],
    );
    let nodes: Vec<String> = servers.ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
    let created = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&nodes)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run redis-cli --cluster create");
    assert!(
        created.status.success(),
        "redis-cli --cluster create failed: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    for &port in &servers.ports {
        wait_for(
            || cli(port, &["CLUSTER", "INFO"]).is_some_and(|info| info.contains("cluster_state:ok")),
            "the cluster to serve every slot",
        );
    }
    servers
}

async fn stores(cluster: &Servers, test: &str) -> TestRedis {
    let config = RedisConfig::cluster(cluster.urls())
        .prefix(format!("{}:", unique_name(test)))
        .operation_timeout(Duration::from_secs(2));
    TestRedis::on(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_store_works_on_a_redis_cluster() {
    if !servers::available("every_store_works_on_a_redis_cluster") {
        return;
    }
    let cluster = tokio::task::spawn_blocking(start_cluster)
        .await
        .expect("the cluster starts");
    tokio::time::timeout(BOUND, run_everything(&cluster))
        .await
        .expect("the cluster suites finish in time");
    drop(cluster);
}

async fn run_everything(cluster: &Servers) {
    use tollgate_core::conformance;

    let redis = stores(cluster, "cluster-keys").await;
    conformance::key_store(&redis.key_store()).await;
    conformance::key_limit_in_parallel(&redis.key_store(), |task| {
        let handle = tokio::spawn(task);
        Box::pin(async move { handle.await.expect("the task finished") })
    })
    .await;
    // The suites' keys are spread over the masters (the pointers by id and
    // by hash, and the accounts, each on their own slot): a real cluster.
    let pattern = format!("{}*", redis.key_prefix());
    let holding = cluster
        .ports
        .iter()
        .filter(|&&port| cli(port, &["KEYS", &pattern]).is_some_and(|keys| !keys.trim().is_empty()))
        .count();
    assert!(holding >= 2, "the keys landed on {holding} of {MASTERS} masters");
    redis.cleanup().await;
    for &port in &cluster.ports {
        let left = cli(port, &["KEYS", &pattern]).expect("KEYS");
        assert!(left.trim().is_empty(), "purge left {left:?} on port {port}");
    }

    let redis = stores(cluster, "cluster-limits").await;
    conformance::rate_limit_store(&redis.rate_limit_store()).await;
    redis.cleanup().await;

    let redis = stores(cluster, "cluster-idempotency").await;
    conformance::idempotency_store(&redis.idempotency_store()).await;
    redis.cleanup().await;

    let redis = stores(cluster, "cluster-allowlists").await;
    conformance::allowlist_store(&redis.allowlist_store()).await;
    redis.cleanup().await;

    let redis = stores(cluster, "cluster-replay").await;
    conformance::replay_store(&redis.replay_store()).await;
    redis.cleanup().await;

    let redis = stores(cluster, "cluster-fleet").await;
    fleet::instances_share_one_limit_per_key(&redis).await;
    fleet::a_revocation_on_one_instance_is_seen_by_another_on_its_next_lookup(&redis).await;
    fleet::an_allowlist_change_reaches_a_cached_instance_at_once(&redis).await;
    redis.cleanup().await;
}
