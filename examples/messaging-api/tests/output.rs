//! The server's whole output — stdout and stderr, with every log level on —
//! holds no secret but the one `bootstrap key:` line of a generated key:
//! not created or rotated keys, not webhook signing secrets, not tokens
//! that failed to authenticate, not an operator's `BOOTSTRAP_KEY`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tollgate_auth::KeyFormat;
use tollgate_core::KeyKind;

/// A messaging-api process whose every line of output is collected.
struct Server {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    seen: Vec<String>,
}

impl Server {
    fn start(bootstrap_key: Option<&str>) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut command = Command::new(env!("CARGO_BIN_EXE_messaging-api"));
        command
            .args(["--listen", &addr.to_string(), "--allow-private-webhook-urls"])
            .env("RUST_LOG", "trace")
            // Only what this test means the server to use.
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("BOOTSTRAP_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(key) = bootstrap_key {
            command.env("BOOTSTRAP_KEY", key);
        }
        let mut child = command.spawn().expect("start messaging-api");
        let (sender, lines) = mpsc::channel();
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("stdout"));
        let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("stderr"));
        let readers = [stdout, stderr]
            .into_iter()
            .map(|stream| {
                let sender = sender.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines() {
                        let Ok(line) = line else { return };
                        if sender.send(line).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        let mut server = Server {
            child,
            addr,
            lines,
            readers,
            seen: Vec::new(),
        };
        server.wait_for("listening on");
        server
    }

    // The first line containing `needle`, waiting for output if need be;
    // panics after 60 s.
    fn wait_for(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|line| line.contains(needle)) {
            return line.clone();
        }
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no line with {needle:?}; output so far: {:#?}", self.seen));
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    // One HTTP/1.1 request on a fresh connection; returns status and body.
    fn call(&self, method: &str, path: &str, key: &str, body: Option<&str>) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let body = body.unwrap_or("");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read the response");
        let status = response
            .get(9..12)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
        let body = response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or("");
        (status, body.to_owned())
    }

    // Stops the server with SIGTERM and returns everything it printed.
    fn stop(mut self) -> Vec<String> {
        let terminated = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(terminated.success());
        let status = self.child.wait().expect("the server exits");
        for reader in self.readers.drain(..) {
            reader.join().expect("the output reader ends");
        }
        self.seen.extend(self.lines.try_iter());
        assert!(
            status.success(),
            "clean exit after SIGTERM: {status}; output: {:#?}",
            self.seen
        );
        self.seen
    }
}

fn field(body: &str, name: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("JSON: {body}"));
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {body}"))
        .to_owned()
}

fn lines_containing<'a>(output: &'a [String], secret: &str) -> Vec<&'a String> {
    output.iter().filter(|line| line.contains(secret)).collect()
}

#[test]
fn a_generated_bootstrap_key_is_printed_once_and_no_other_secret_ever() {
    let mut server = Server::start(None);
    let line = server.wait_for("bootstrap key:");
    let bootstrap = line.rsplit(' ').next().expect("the key ends the line").to_owned();
    assert!(bootstrap.starts_with("tg_live_"), "{line}");

    let (status, created) = server.call(
        "POST",
        "/v1/keys",
        &bootstrap,
        Some(r#"{"label":"Production Server","type":"production"}"#),
    );
    assert_eq!(status, 201, "{created}");
    let (created_id, created_key) = (field(&created, "id"), field(&created, "key"));
    let (status, rotated) = server.call("POST", &format!("/v1/keys/{created_id}/rotate"), &bootstrap, None);
    assert_eq!(status, 201, "{rotated}");
    let rotated_key = field(&rotated, "key");
    let (status, webhook) = server.call(
        "PUT",
        "/v1/webhooks",
        &bootstrap,
        Some(r#"{"url":"http://127.0.0.1:9/hooks"}"#),
    );
    assert_eq!(status, 200, "{webhook}");
    let webhook_secret = field(&webhook, "secret");
    // A well-formed key nobody holds, and garbage: both refused, neither echoed.
    let stranger = KeyFormat::default()
        .try_generate(KeyKind::Production)
        .expect("a key")
        .expose_secret()
        .to_owned();
    assert_eq!(server.call("GET", "/v1/keys", &stranger, None).0, 401);
    assert_eq!(
        server.call("GET", "/v1/keys", "tg_live_not-a-real-key-1234", None).0,
        401
    );
    assert_eq!(server.call("GET", "/v1/keys", &rotated_key, None).0, 200);

    let output = server.stop();
    assert_eq!(
        lines_containing(&output, &bootstrap),
        [&format!("bootstrap key: {bootstrap}")],
        "the generated key is printed once, on its own line"
    );
    for (what, secret) in [
        ("the created key", created_key.as_str()),
        ("the rotated key", rotated_key.as_str()),
        ("the webhook signing secret", webhook_secret.as_str()),
        ("an unknown key", stranger.as_str()),
        ("a malformed token", "tg_live_not-a-real-key-1234"),
    ] {
        assert!(
            lines_containing(&output, secret).is_empty(),
            "{what} appears in the output: {:#?}",
            lines_containing(&output, secret)
        );
    }
}

#[test]
fn an_operators_bootstrap_key_is_imported_and_never_echoed() {
    let key = KeyFormat::default()
        .try_generate(KeyKind::Production)
        .expect("a key")
        .expose_secret()
        .to_owned();
    let server = Server::start(Some(&key));
    assert_eq!(
        server.call("GET", "/v1/keys", &key, None).0,
        200,
        "the key was imported"
    );
    let output = server.stop();
    assert!(lines_containing(&output, &key).is_empty(), "{output:#?}");
    assert!(
        !output.iter().any(|line| line.contains("bootstrap key:")),
        "nothing is printed for a key the operator chose: {output:#?}"
    );
}
