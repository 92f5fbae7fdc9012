//! Runs the messaging-api binary as a process, and talks raw HTTP/1.1 to it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Cargo builds the binary before this test and tells where it is.
pub const BINARY: &str = env!("CARGO_BIN_EXE_messaging-api");

/// Every variable the server reads that a developer's or CI's environment
/// may hold: removed unless a test sets it.
const SERVER_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_PREFIX",
    "LISTEN_ADDR",
    "ADMIN_LISTEN",
    "BOOTSTRAP_KEY",
    "SECRETS_KEY",
    "SECRETS_KEY_FILE",
    "MESSAGING_API_CONFIG",
    "ALLOW_PRIVATE_WEBHOOK_URLS",
    "DATABASE_TIMEOUT_MS",
    "REQUEST_TIMEOUT_SECS",
];

/// A running server process.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The admin listener (`GET /metrics`).
    pub admin_addr: SocketAddr,
    output: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts the binary with `args` (and `--listen 127.0.0.1:0
    /// --admin-listen 127.0.0.1:0`) and `env`; returns once both listen.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(BINARY);
        for name in SERVER_VARIABLES {
            command.env_remove(name);
        }
        command
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start messaging-api");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (found, listening) = std::sync::mpsc::channel();
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            let found = found.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(addr) = line.strip_prefix("messaging-api listening on http://") {
                        let _ = found.send((false, addr.parse::<SocketAddr>().expect("an address")));
                    }
                    if let Some(addr) = line.strip_prefix("messaging-api admin listening on http://") {
                        let _ = found.send((true, addr.parse::<SocketAddr>().expect("an address")));
                    }
                    output.lock().unwrap().push(line);
                }
            }));
        }
        let (mut addr, mut admin_addr) = (None, None);
        while addr.is_none() || admin_addr.is_none() {
            match listening.recv_timeout(Duration::from_secs(60)) {
                Ok((true, found)) => admin_addr = Some(found),
                Ok((false, found)) => addr = Some(found),
                Err(_) => {
                    let _ = child.kill();
                    panic!("the server did not start: {:?}", output.lock().unwrap());
                }
            }
        }
        Server {
            child,
            addr: addr.expect("found"),
            admin_addr: admin_addr.expect("found"),
            output,
            readers,
        }
    }

    /// Everything printed so far.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// The bootstrap key it printed, if it printed one.
    pub fn bootstrap_key(&self) -> Option<String> {
        self.output()
            .iter()
            .find_map(|line| line.strip_prefix("bootstrap key: ").map(str::to_owned))
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal_term();
        wait(&mut self.child, Duration::from_secs(30))
    }

    /// Sends SIGTERM, waits for the process to exit and returns everything
    /// it printed, to the last line.
    pub fn stop(mut self) -> (ExitStatus, Vec<String>) {
        self.signal_term();
        let status = wait(&mut self.child, Duration::from_secs(30));
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.join();
        }
        (status, self.output())
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait(mut self) -> ExitStatus {
        wait(&mut self.child, Duration::from_secs(30))
    }

    /// Sends SIGKILL (`kill -9`) and waits.
    pub fn kill(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// One request; `key` as a bearer token when not empty.
    pub fn call(&self, method: &str, path: &str, key: &str, body: Option<&str>) -> Response {
        self.call_with(method, path, key, body, &[])
    }

    /// One request with extra headers.
    pub fn call_with(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Response {
        request(self.addr, method, path, key, body, headers)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "the server did not stop within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(found, _)| found.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !key.is_empty() {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    if let Some(body) = body {
        stream.write_all(body.as_bytes()).unwrap();
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse(&raw)
}

/// Parses a raw HTTP/1.1 response.
pub fn parse(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(name, value)| name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Response { status, headers, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// A fresh directory under the system's temporary one, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!("messaging-api-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The body of a valid text message.
pub const MESSAGE: &str = r#"{"to":"+15551234567","type":"text","text":{"body":"Hello"}}"#;

/// `DATABASE_URL` when it is PostgreSQL; `None` (after a skip line) when
/// unset, unless `TOLLGATE_REQUIRE_POSTGRES=1`.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => Some(url),
        _ if std::env::var("TOLLGATE_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("{test}: TOLLGATE_REQUIRE_POSTGRES=1 but DATABASE_URL is not a postgres:// URL")
        }
        _ => {
            println!("skipped {test}: set DATABASE_URL=postgres://… to run it");
            None
        }
    }
}

/// `REDIS_URL`; `None` (after a skip line) when unset, unless `TOLLGATE_REQUIRE_REDIS=1`.
pub fn redis_url(test: &str) -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("TOLLGATE_REQUIRE_REDIS").as_deref() == Ok("1") => {
            panic!("{test}: TOLLGATE_REQUIRE_REDIS=1 but REDIS_URL is not set")
        }
        _ => {
            println!("skipped {test}: set REDIS_URL=redis://… to run it");
            None
        }
    }
}

/// A fresh PostgreSQL database on the server of `DATABASE_URL`, dropped on drop.
pub struct TestDatabase {
    admin: String,
    name: String,
    /// Its URL.
    pub url: String,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

impl TestDatabase {
    pub fn create(admin: &str, test: &str) -> TestDatabase {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("svc_{test}_{}_{nanos}", std::process::id());
        runtime().block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(admin)
                .await
                .expect("connect to DATABASE_URL");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut connection)
                .await
                .expect("create a database");
        });
        let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
        TestDatabase {
            admin: admin.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// The URL with its host and port replaced by `addr`.
    pub fn url_via(&self, addr: SocketAddr) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap();
        let (user, host_path) = rest.split_once('@').map_or(("", rest), |(user, rest)| (user, rest));
        let path = host_path.split_once('/').map_or("", |(_, path)| path);
        let user = if user.is_empty() {
            String::new()
        } else {
            format!("{user}@")
        };
        format!("{scheme}://{user}{addr}/{path}")
    }

    /// The server's address.
    pub fn server_addr(&self) -> SocketAddr {
        let rest = self.admin.split_once("://").unwrap().1;
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let host = host.split('/').next().unwrap();
        let host = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:5432")
        };
        std::net::ToSocketAddrs::to_socket_addrs(&host).unwrap().next().unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        runtime().block_on(async move {
            use sqlx::Connection;
            if let Ok(mut connection) = sqlx::PgConnection::connect(&admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut connection)
                    .await;
            }
        });
    }
}

/// A loopback webhook receiver: records every request's `webhook-id` and
/// body; answers 500 while failing, 200 otherwise.
pub struct Receiver {
    pub addr: SocketAddr,
    pub events: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    pub failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let events: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
        let failing: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (recorded, fail) = (events.clone(), failing.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (recorded, fail) = (recorded.clone(), fail.clone());
                std::thread::spawn(move || serve_hook(stream, &recorded, &fail));
            }
        });
        Receiver { addr, events, failing }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Waits until `done` holds for the events received (10 s at most).
    pub fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[(String, serde_json::Value)]) -> bool,
    ) -> Vec<(String, serde_json::Value)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let events = self.events.lock().unwrap().clone();
            if done(&events) {
                return events;
            }
            assert!(Instant::now() < deadline, "{what}: got {events:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve_hook(
    mut stream: TcpStream,
    recorded: &Mutex<Vec<(String, serde_json::Value)>>,
    fail: &std::sync::atomic::AtomicBool,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0;
    let mut id = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "webhook-id" => id = value.trim().to_owned(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let failing = fail.load(std::sync::atomic::Ordering::SeqCst);
    if !failing {
        recorded
            .lock()
            .unwrap()
            .push((id, serde_json::from_slice(&body).unwrap_or_default()));
    }
    let status = if failing { "500 Internal Server Error" } else { "200 OK" };
    let _ = stream.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
}

/// A TCP proxy the test controls: `cut` closes every connection and
/// refuses new ones until `restore`.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (is_cut, streams) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if is_cut.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                {
                    let mut streams = streams.lock().unwrap();
                    streams.push(client.try_clone().unwrap());
                    streams.push(server.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy { addr, cut, open }
    }

    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// A fixed secrets key for the instances of one test (base64 of 32 bytes).
pub const SECRETS_KEY: &str = "c2VjcmV0cy1rZXktZm9yLXRlc3RzLW9ubHktMzItYnk=";
