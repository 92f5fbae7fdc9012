//! redis-server processes of a test's own, on free loopback ports, for
//! what the shared server cannot give: a cluster, or a server nobody else
//! talks to. Dropping [`Servers`] kills them and removes their files, also
//! while a failing test unwinds.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tollgate_core::conformance::unique_name;
use tollgate_redis::testing::announce_skip;

const STARTUP: Duration = Duration::from_secs(20);

/// Running servers and their directory.
pub struct Servers {
    children: Vec<Child>,
    /// Their ports, in start order.
    pub ports: Vec<u16>,
    dir: PathBuf,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Servers {
    /// `count` servers, each with `extra` arguments (`{port}` and `{dir}` in
    /// them are replaced), answering PING.
    pub fn start(count: usize, extra: &[&str]) -> Servers {
        let dir = std::env::temp_dir().join(unique_name("tollgate-redis-servers"));
        std::fs::create_dir_all(&dir).expect("a directory for the servers' files");
        let mut servers = Servers {
            children: Vec::new(),
            ports: free_ports(count),
            dir,
        };
        for port in servers.ports.clone() {
            let dir = servers.dir.to_string_lossy().into_owned();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir", &dir])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(
                    extra
                        .iter()
                        .map(|arg| arg.replace("{port}", &port.to_string()).replace("{dir}", &dir)),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            servers.children.push(child);
        }
        for &port in &servers.ports {
            wait_for(
                || cli(port, &["PING"]).is_some_and(|reply| reply.trim() == "PONG"),
                "a server to start",
            );
        }
        servers
    }

    /// `redis://127.0.0.1:<port>` of each.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }
}

/// Whether `redis-server` and `redis-cli` are on `PATH`; if not, prints a
/// skip line for `test` (a failure with `TOLLGATE_REQUIRE_REDIS=1`).
pub fn available(test: &str) -> bool {
    let found = |program: &str| {
        Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if found("redis-server") && found("redis-cli") {
        return true;
    }
    let required = std::env::var("TOLLGATE_REQUIRE_REDIS").is_ok_and(|value| value == "1");
    assert!(
        !required,
        "{test}: TOLLGATE_REQUIRE_REDIS=1 but redis-server or redis-cli is not on PATH"
    );
    announce_skip(&format!("{test}: skipped, redis-server is not on PATH"));
    false
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

/// `redis-cli -p <port> <args>`'s output, if it succeeded.
pub fn cli(port: u16, args: &[&str]) -> Option<String> {
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

/// Waits (at most 20 s) until `ready`.
pub fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + STARTUP;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
