//! Every store on a Redis Cluster: this test starts its own three-master
//! cluster on free loopback ports (`redis-server` and `redis-cli` from
//! `PATH`), runs every conformance suite and the fleet tests on it, and
//! stops it, also when a suite fails (a guard kills the servers on drop).
//!
//! Without `redis-server` on `PATH` it prints a skip line and passes, unless
//! `TOLLGATE_REQUIRE_REDIS=1`.

mod fleet;

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tollgate_core::conformance::unique_name;
use tollgate_redis::testing::{announce_skip, TestRedis};
use tollgate_redis::RedisConfig;

const MASTERS: usize = 3;
// The whole test, cluster start included, ends within this.
const BOUND: Duration = Duration::from_secs(180);
const STARTUP: Duration = Duration::from_secs(20);

/// Three `redis-server --cluster-enabled yes` processes and their files;
/// dropping it kills them and removes the files.
struct Cluster {
    servers: Vec<Child>,
    ports: Vec<u16>,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    /// Starts the servers, joins them into a cluster and waits until it serves.
    fn start() -> Cluster {
        let dir = std::env::temp_dir().join(unique_name("tollgate-cluster"));
        std::fs::create_dir_all(&dir).expect("a directory for the cluster's files");
        let mut cluster = Cluster {
            servers: Vec::new(),
            ports: free_ports(MASTERS),
            dir,
        };
        for &port in &cluster.ports.clone() {
            let server = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .arg("--cluster-config-file")
                .arg(cluster.dir.join(format!("nodes-{port}.conf")))
                .arg("--dir")
                .arg(&cluster.dir)
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            cluster.servers.push(server);
        }
        for &port in &cluster.ports {
            wait_for(
                || cli(port, &["PING"]).is_some_and(|reply| reply.trim() == "PONG"),
                "a node to start",
            );
        }
        let nodes: Vec<String> = cluster.ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
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
        for &port in &cluster.ports {
            wait_for(
                || cli(port, &["CLUSTER", "INFO"]).is_some_and(|info| info.contains("cluster_state:ok")),
                "the cluster to serve every slot",
            );
        }
        cluster
    }
}

// Ports whose cluster bus port (port + 10000) is free too.
fn free_ports(count: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < count {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("a free port");
        let port = listener.local_addr().expect("its address").port();
        let bus_free = port
            .checked_add(10_000)
            .is_some_and(|bus| TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, bus)).is_ok());
        if bus_free && port >= 1024 && !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + STARTUP;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn redis_server_available() -> bool {
    let found = |program: &str| {
        Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    found("redis-server") && found("redis-cli")
}

async fn stores(cluster: &Cluster, test: &str) -> TestRedis {
    let config = RedisConfig::cluster(cluster.urls())
        .prefix(format!("{}:", unique_name(test)))
        .operation_timeout(Duration::from_secs(2));
    TestRedis::on(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_store_works_on_a_redis_cluster() {
    if !redis_server_available() {
        let required = std::env::var("TOLLGATE_REQUIRE_REDIS").is_ok_and(|value| value == "1");
        assert!(
            !required,
            "TOLLGATE_REQUIRE_REDIS=1 but redis-server or redis-cli is not on PATH"
        );
        announce_skip("every_store_works_on_a_redis_cluster: skipped, redis-server is not on PATH");
        return;
    }
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("the cluster starts");
    tokio::time::timeout(BOUND, run_everything(&cluster))
        .await
        .expect("the cluster suites finish in time");
    drop(cluster);
}

async fn run_everything(cluster: &Cluster) {
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
